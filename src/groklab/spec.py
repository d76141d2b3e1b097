"""RunSpec: every setting that determines one run's result (docs/design.md, decision 1).

Its fields are the settings declared in ``groklab.settings`` (type, default, limits, who
reads each). A spec is validated once on construction. Its id in the store is the hash of
its *identity*: a semantics version plus the settings that matter for this run.

- Settings the run ignores are normalised before hashing: a setting is ignored when a
  condition of its declared readers fails (permutation's builder does not take ``p``; the
  MLP's does not take ``n_heads``; SGD reads no Adam betas; only Muon reads the ``muon_*``
  settings; a constant schedule has no floor), and a value equal to what leaving it unset means
  (``d_ff = 4 · d_model``) is the same as leaving it unset. Two specs that train the same
  run have the same id.
- Fields added after semantics version 1 are left out of the identity while they hold
  their default (which must be the neutral "feature off" value and must never change), so
  adding a setting never changes an existing id.
- ``semantics`` names the version of the training code's meaning: version 1 is the
  original initialisation (every linear U(±1/√fan_in)); version 2 initialises as the
  torch.nn reference does (docs/protocol.md §3). Version-1 ids are exactly those that
  groklab 0.1 wrote; a version-2 identity carries ``"semantics": 2``.

``cohort_key`` is the identity minus ``PER_RUN``: the per-run fields (declared ``per_run``)
the engine reads from each spec separately. Any other field, including one added later, is
structural and splits cohorts, so no run ever silently trains with a neighbour's setting.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import math
import types
import typing
from collections.abc import Callable, Collection, Mapping
from typing import Any

from pydantic import (
    ConfigDict,
    Field,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from groklab.measures.scope import fourier_scope
from groklab.models import model_hooks, model_settings
from groklab.rates import FILTER_LAMB, GROUPS
from groklab.settings import PER_RUN, SETTINGS, Plugin, Setting, read_by
from groklab.settings import SEMANTICS as SEMANTICS  # the current meaning of a run
from groklab.tasks import build_task
from groklab.tasks.base import task_builder, task_hooks

OptimizerName = SETTINGS["optimizer"].type  # the optimisers' names (optim/chains.py)
Rates = SETTINGS["lr"].type

# The fields of groklab 0.1 (semantics version 1): they stay in the identity even at their
# defaults, so version-1 ids are unchanged. Every later field is left out at its default.
V1_FIELDS = frozenset({
    "task", "p", "k", "train_fraction", "model", "n_layers", "d_model", "n_heads", "d_ff",
    "optimizer", "lr", "group_rules", "beta1", "beta2", "eps", "weight_decay", "momentum",
    "nesterov", "warmup", "steps", "batch_size", "eval_every", "precision", "seed"})

# The reason ``RunSpec.ignored_reasons`` gives a value equal to what leaving it unset gives
AS_UNSET = "the same as leaving it unset"

# Task arguments: each task takes the subset its builder names; it ignores the rest.
TASK_FIELDS = read_by("task")

# Model-shape settings: each model reads the subset it registers (``model_settings``); it
# ignores the rest.
MODEL_FIELDS = read_by("model")


def _field(s: Setting) -> tuple[Any, Any]:
    """A declared setting as a pydantic field: its type, default and limits."""
    return s.type, Field(s.default, ge=s.ge, gt=s.gt, le=s.le, lt=s.lt, pattern=s.pattern,
                         description=s.help)


# One field per declared setting, in declaration order (RunSpec adds the rules across them).
DeclaredSettings = create_model("DeclaredSettings", __module__=__name__,
                                **{name: _field(s) for name, s in SETTINGS.items()})

class RunSpec(DeclaredSettings):
    """One training run. Defaults are the reference settings of docs/protocol.md §2–§5; each
    field is a setting declared in ``groklab.settings``."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _strict_kinds(cls, v: Any, info: ValidationInfo) -> Any:
        """Booleans are not numbers and strings are neither numbers nor booleans: ``steps =
        true`` or ``weight_decay = "0.5"`` is an error, not 1 step or a rate of 0.5; a switch
        takes true or false only (not ``"yes"`` or 1). Checked before pydantic's own
        coercion, which would accept all of these."""
        kind = _KINDS.get(info.field_name or "")
        if kind == "number" and (_boolean(v) or isinstance(v, str)):
            raise ValueError(f"expects a number, got {_shown(v)}")
        if kind == "switch" and not _boolean(v):
            raise ValueError(f"expects true or false, got {_shown(v)}")
        if info.field_name == "lr":
            values = v.values() if isinstance(v, dict) else v if isinstance(v, list | tuple) \
                else [v]
            bad = [r for r in values if _boolean(r) or isinstance(r, str)]
            if bad:
                raise ValueError(f"rates are numbers, got {_shown(bad[0])}")
        return v

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        model_settings(v)  # raises for an unknown model, naming the known ones
        return v

    @field_validator("lr")
    @classmethod
    def _positive_rates(cls, v: Rates) -> Rates:
        values = v.values() if isinstance(v, dict) else v
        if not values:
            raise ValueError("give at least one learning rate")
        if any(not (math.isfinite(r) and r > 0) for r in values):
            raise ValueError("learning rates must be positive finite numbers")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> RunSpec:
        task_builder(self.task)  # raises for an unknown task, naming the known ones
        task_hooks(self.task).check(self)  # the task's and the model's own checks
        model_hooks(self.model).check(self)  # (register_task / register_model: check=...)
        if "n_heads" in model_settings(self.model) and self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.measures == "fourier":
            fourier_scope(self.task, self.task_args())  # MeasureError: out of scope, and why
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ValueError("nesterov needs optimizer 'sgd' with momentum > 0")
        groups = {g for _, g in self.group_rules} if self.group_rules else set(GROUPS)
        if isinstance(self.lr, dict):
            if set(self.lr) != groups:
                raise ValueError(f"lr names groups {sorted(self.lr)} but the group rules name "
                                 f"{sorted(groups)}")
        elif not groups <= set(GROUPS):
            raise ValueError(f"group rules name {sorted(groups - set(GROUPS))}: give lr as a "
                             "table of rates per group")
        build_task(self.task, **self.task_args())  # raises TaskError for impossible settings
        if "max_len" in model_settings(self.model) and self.max_len is not None \
                and self.max_len < self.seq_len():
            raise ValueError(f"max_len {self.max_len} is shorter than the task's sequences "
                             f"({self.seq_len()} tokens)")
        return self

    # -- what the run uses ------------------------------------------------------------------
    def task_args(self) -> dict[str, Any]:
        """The task settings this run's task takes (by its builder's signature)."""
        params = inspect.signature(task_builder(self.task)).parameters
        return {f: getattr(self, f) for f in TASK_FIELDS if f in params}

    def seq_len(self) -> int:
        """Tokens per example of this run's task."""
        return _task_shape(self.task, tuple(sorted(self.task_args().items())))[0]

    def rates(self) -> dict[str, float]:
        """The base learning rate of every group, by group name."""
        if isinstance(self.lr, dict):
            return dict(self.lr)
        return dict(zip(GROUPS, self.lr, strict=True))

    def resolved_filter_lamb(self) -> float:
        """The filter's amplification λ (the filter's reference value when unset)."""
        if self.filter_lamb is not None:
            return self.filter_lamb
        return FILTER_LAMB.get(self.grad_filter, 0.0)

    def ignored(self) -> set[str]:
        """Settings that cannot change this run's result (normalised in its identity)."""
        return set(self.ignored_reasons())

    def ignored_reasons(self) -> dict[str, str]:
        """``ignored()`` with why, by setting: the first of its declared readers
        (``groklab.settings``) that does not read it for this run ("ignored by optimizer
        'adamw'"), or ``AS_UNSET`` for a value equal to what leaving it unset gives (``d_ff``
        = 4 · ``d_model``), which means what it says. The command refuses a setting given
        explicitly that means nothing (docs/protocol.md §9), so a reader declared with a new
        setting reaches it unchanged."""
        values = dict(self)
        plugins: dict[str, Collection[str]] = {}  # what each plug-in of this run reads
        why: dict[str, str | None] = {}

        def unread(name: str) -> str | None:
            """Why this run does not read ``name`` (None: it does). A condition on another
            setting sees that setting's default where this run ignores it too (the
            Transformer ignores ``embedding``, so its ``d_model`` is read whatever
            ``embedding`` holds)."""
            if name not in why:
                why[name] = None
                for c in SETTINGS[name].conditions:
                    if isinstance(c, Plugin):
                        if c.kind not in plugins:
                            plugins[c.kind] = _PLUGIN_READS[c.kind](self)
                        reads = name in plugins[c.kind]
                    else:
                        reads = c.holds(SETTINGS[c.setting].default if unread(c.setting)
                                        else values[c.setting])
                    if not reads:
                        why[name] = "ignored " + c.why.format_map(values)
                        break
            return why[name]

        out = {name: reason for name in SETTINGS if (reason := unread(name)) is not None}
        for name, s in SETTINGS.items():
            if name not in out and s.none_is is not None and values[name] is not None \
                    and values[name] == s.none_is(self):
                out[name] = AS_UNSET
        return out

    def fixed_split(self) -> bool:
        """Whether this run's task fixes its train/validation split (text: first 90 %, last
        10 %) rather than drawing it from the run's seed by ``train_fraction``."""
        return _task_shape(self.task, tuple(sorted(self.task_args().items())))[1]

    # -- identity ---------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """The settings that determine the result, normalised (see the module docstring)."""
        return dict(self._identity)

    @functools.cached_property
    def _identity(self) -> dict[str, Any]:
        """``identity``, computed once per spec (a spec is frozen; the text task's corpus is
        hashed once)."""
        fields = type(self).model_fields
        d = self.model_dump(mode="json", exclude={"lr_name"})
        if self.grad_filter != "none":
            d["filter_lamb"] = self.resolved_filter_lamb()
        identity = task_hooks(self.task).identity  # e.g. the text, not where it lies
        if identity is not None:
            d |= identity(self.task_args())
        for name in self.ignored():
            d[name] = _json(fields[name].default)
        for name in list(d):
            at_default = d[name] == _json(fields[name].default)
            if d[name] is None or (name not in V1_FIELDS and at_default):
                del d[name]
        if self.semantics != 1:
            d["semantics"] = self.semantics
        else:
            d.pop("semantics", None)
        return d

    @functools.cached_property
    def run_id(self) -> str:
        """The run's id in the store: the hash of its identity."""
        return identity_hash(self._identity)

    @functools.cached_property
    def _cohort_key(self) -> str:
        ident = self._identity
        return json.dumps({k: v for k, v in ident.items() if k not in PER_RUN}, sort_keys=True)

    def cohort_key(self) -> str:
        """Runs with equal keys share data shapes, model shape and optimiser family and can
        train as one cohort: the identity without the ``PER_RUN`` fields."""
        return self._cohort_key

    def model_copy(self, *, update: Mapping[str, Any] | None = None,
                   deep: bool = False) -> RunSpec:
        """A validated copy with ``update`` applied (never carries the cached identity)."""
        return type(self)(**(self.model_dump() | dict(update or {})))

    def settings_key(self) -> str:
        """The identity without the seed: runs with equal keys are seeds of one configuration.
        ``init_from`` is left out too: each seed of a curriculum continues its own parent (the
        parent's settings key carries the difference; reports tell curricula by label)."""
        ident = {k: v for k, v in self._identity.items() if k not in ("seed", "init_from")}
        return json.dumps(ident, sort_keys=True)

    @property
    def label(self) -> str:
        if self.lr_name:
            return self.lr_name
        return ",".join(f"{r:g}" if isinstance(self.lr, tuple) else f"{g}={r:g}"
                        for g, r in self.rates().items())


def _kind(annotation: Any) -> str | None:
    """"number" for a setting of numbers (int, float, either or None), "switch" for a
    bool, else None (names, tables, lists: pydantic's own checks suffice)."""
    args = {a for a in (typing.get_args(annotation) or (annotation,)) if a is not type(None)}
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType, None):
        return None
    if args == {bool}:
        return "switch"
    if args and args <= {int, float}:
        return "number"
    return None


def _boolean(value: Any) -> bool:
    """A Python or NumPy boolean (a data frame's switch column holds NumPy ones)."""
    return isinstance(value, bool) or getattr(getattr(value, "dtype", None), "kind", "") == "b"


def _shown(value: Any) -> str:
    """A value as the user wrote it (TOML/JSON spelling: true, "yes", 1.5)."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


# each setting's kind, for RunSpec._strict_kinds
_KINDS = {name: k for name, f in RunSpec.model_fields.items()
          if (k := _kind(f.annotation)) is not None}


def identity_hash(identity: dict[str, Any]) -> str:
    """A run id: the first 16 hex digits of the identity's canonical JSON's SHA-256."""
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def stored_spec(record: Mapping[str, Any]) -> RunSpec:
    """The RunSpec of a stored run (its spec dump, or a ``Store.runs()`` row: other keys and
    missing values are skipped; a record without ``semantics`` predates it and is version 1).
    """
    fields = {k: v for k, v in record.items() if k in RunSpec.model_fields and v is not None
              and not (isinstance(v, float) and math.isnan(v))}
    fields.setdefault("semantics", 1)
    return RunSpec(**fields)


def comparable_settings(row: Mapping[str, Any]) -> str:
    """The settings key of a stored run (see ``stored_spec`` and ``RunSpec.settings_key``)."""
    return stored_spec(row).settings_key()


@functools.lru_cache(maxsize=256)
def _task_shape(task: str, args: tuple[tuple[str, Any], ...]) -> tuple[int, bool]:
    """A task's sequence length and whether it fixes its split (cached apart from the tables,
    which per-run samples evict)."""
    data = build_task(task, **dict(args))
    return data.seq_len, data.split is not None


# What a plug-in reads (``settings.Plugin``): a task the parameters of its builder, a model the
# keywords of its builder, the seeded split every run whose task does not fix its split.
_PLUGIN_READS: dict[str, Callable[[RunSpec], Collection[str]]] = {
    "task": lambda spec: set(spec.task_args()),
    "model": lambda spec: model_settings(spec.model),
    "split": lambda spec: () if spec.fixed_split() else read_by("split"),
}


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value))
