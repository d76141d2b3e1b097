"""RunSpec: everything that determines one run's result (docs/design.md, decision 1).

A spec is validated once on construction. Its id in the store is the hash of its
*identity*: a semantics version plus the settings that matter for this run.

- Settings the run ignores are normalised before hashing: permutation ignores ``p``, the
  modular tasks ignore ``k``, a model ignores the model-shape settings it does not
  register (``groklab.models.model_settings``: the MLP ignores ``n_heads``), SGD ignores
  the Adam betas and Adam ignores momentum, only Muon reads the ``muon_*`` settings, a
  constant schedule ignores its floor, and
  ``d_ff = 4 · d_model`` is the same as leaving it unset. Two specs that train the same
  run have the same id.
- Fields added after semantics version 1 are left out of the identity while they hold
  their default (which must be the neutral "feature off" value and must never change), so
  adding a setting never changes an existing id.
- ``semantics`` names the version of the training code's meaning: version 1 is the
  original initialisation (every linear U(±1/√fan_in)); version 2 initialises as the
  torch.nn reference does (docs/protocol.md §3). Version-1 ids are exactly those that
  groklab 0.1 wrote; a version-2 identity carries ``"semantics": 2``.

``cohort_key`` is the identity minus ``PER_RUN``: the per-run fields the engine reads
from each spec separately. Any other field, including one added later, is structural and
splits cohorts, so no run ever silently trains with a neighbour's setting.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from groklab.measures.scope import fourier_scope
from groklab.models import model_settings
from groklab.rates import FILTER_LAMB, GROUPS, LR_CONFIGS
from groklab.tasks import build_task
from groklab.tasks.base import task_builder

SEMANTICS = 2  # the current meaning of a run; see the module docstring

Precision = Literal["fp32", "bf16"]
OptimizerName = Literal["adamw", "adam", "sgd", "muon"]
Schedule = Literal["constant", "cosine"]
DepthDecay = Literal["none", "exponential", "linear", "cosine"]
DecayParams = Literal["all", "matrices", "2d"]
GradFilter = Literal["none", "ema", "ma"]
Activation = Literal["relu", "gelu", "tanh"]
Rates = tuple[float, float, float] | dict[str, float]

# The fields of groklab 0.1 (semantics version 1): they stay in the identity even at their
# defaults, so version-1 ids are unchanged. Every later field is left out at its default.
V1_FIELDS = frozenset({
    "task", "p", "k", "train_fraction", "model", "n_layers", "d_model", "n_heads", "d_ff",
    "optimizer", "lr", "group_rules", "beta1", "beta2", "eps", "weight_decay", "momentum",
    "nesterov", "warmup", "steps", "batch_size", "eval_every", "precision", "seed"})

# Fields the engine reads from every run separately: they may differ inside one cohort.
PER_RUN = frozenset({
    "seed", "lr", "train_fraction", "dropout", "beta1", "beta2", "eps", "weight_decay", "momentum",
    "nesterov", "warmup", "lr_schedule", "min_lr_ratio", "lr_depth", "lr_depth_gamma",
    "lr_depth_floor", "decay_params", "grad_clip", "grad_filter", "filter_alpha",
    "filter_window", "filter_lamb", "init_from", "embedding_lr", "embedding_lr_c",
    "embedding_lr_every", "sampling", "stop_val_acc", "stop_patience", "init_optimizer",
    "muon_lr_ratio", "muon_momentum", "muon_nesterov", "muon_adjust_lr", "grad_ortho", "loss",
    "measures", "measures_every"})

# The reason ``RunSpec.ignored_reasons`` gives a value equal to what leaving it unset gives
AS_UNSET = "the same as leaving it unset"

# Task arguments: each task takes the subset its builder names; it ignores the rest.
TASK_FIELDS = ("p", "k", "operands", "n_examples", "corpus", "context")

# Model-shape settings: each model reads the subset it registers (``model_settings``); it
# ignores the rest.
MODEL_FIELDS = ("n_layers", "d_model", "n_heads", "d_ff", "max_len", "d_hidden", "activation",
                "embedding")

class RunSpec(BaseModel):
    """One training run. Defaults are the reference settings of docs/protocol.md §2–§5."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    # task (protocol §2)
    task: str = "x_plus_y"
    p: int = Field(97, ge=2)
    k: int = Field(5, ge=2)
    operands: int = Field(2, ge=2)  # sum: K, the number of operands
    n_examples: int = Field(10_000, ge=2)  # sum: sample size when p^K is larger
    corpus: str = "tinyshakespeare"  # text: a UTF-8 file or the shipped corpus (id: its hash)
    context: int = Field(64, ge=1)  # text: characters per window
    train_fraction: float = Field(0.5, gt=0.0, lt=1.0)
    # model (protocol §3)
    model: str = "transformer"  # a registered model (groklab.models)
    n_layers: int = Field(2, ge=1)  # Transformer blocks, MLP hidden layers, LSTM layers
    d_model: int = Field(128, ge=1)  # embedding width
    n_heads: int = Field(4, ge=1)  # Transformer and GPT only
    d_ff: int | None = Field(None, ge=1)  # Transformer only; None: 4 · d_model
    max_len: int | None = Field(None, ge=1)  # Transformer positions; None: the task's length
    d_hidden: int = Field(512, ge=1)  # MLP and LSTM hidden width
    activation: Activation = "relu"  # MLP only
    embedding: bool = True  # MLP only; False: one-hot inputs, no embedding table
    dropout: float = Field(0.0, ge=0.0, lt=1.0)  # training only (docs/protocol.md §3)
    # embedding study (protocol §5, §6.7): adaptive embedding rate, balanced batches, and
    # recording σ_max, norms, rates and token update counts at every evaluation
    embedding_lr: Literal["fixed", "adaptive"] = "fixed"
    embedding_lr_c: float = Field(1.0, gt=0.0)
    embedding_lr_every: int = Field(100, ge=1)  # recompute every N updates
    sampling: Literal["uniform", "balanced"] = "uniform"
    diagnostics: bool = False
    # progress measures (protocol §4.1): "norms" records weight norms, "fourier" also the
    # Fourier spectra of the embedding and the logits and the restricted and excluded losses
    # (x_plus_y, x_minus_y, sum with 2 operands), at the first, every measures_every-th and
    # last evaluation
    measures: Literal["none", "norms", "fourier"] = "none"
    measures_every: int = Field(10, ge=1)
    # optimiser (protocol §4)
    optimizer: OptimizerName = "adamw"
    beta1: float = Field(0.9, ge=0.0, lt=1.0)
    beta2: float = Field(0.98, ge=0.0, lt=1.0)
    eps: float = Field(1e-8, gt=0.0)
    weight_decay: float = Field(0.5, ge=0.0)
    # "matrices": no decay on biases, norms, embeddings; "2d": matrices and embedding tables
    # (every tensor of 2+ dimensions: nanoGPT's rule), not norms or biases
    decay_params: DecayParams = "all"
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    nesterov: bool = False
    grad_clip: float | None = Field(None, gt=0.0)  # max global gradient norm per run
    grad_filter: GradFilter = "none"  # Grokfast: slow-gradient amplification
    filter_alpha: float = Field(0.98, ge=0.0, lt=1.0)  # ema momentum
    filter_window: int = Field(100, ge=1)  # ma window
    filter_lamb: float | None = Field(None, ge=0.0)  # None: 2 for ema, 5 for ma
    # Muon (optimizer "muon", protocol §4): orthogonalised momentum on the hidden matrices,
    # AdamW on the rest; a matrix's Muon rate is muon_lr_ratio × its AdamW rate (optim/muon.py)
    muon_lr_ratio: float = Field(20.0, gt=0.0)
    muon_momentum: float = Field(0.95, ge=0.0, lt=1.0)
    muon_nesterov: bool = True
    muon_adjust_lr: Literal["original", "match_rms_adamw"] = "original"  # torch's adjust_lr_fn
    grad_ortho: bool = False  # ⊥Grad: each tensor's gradient orthogonal to it, norm kept
    loss: Literal["softmax", "stablemax"] = "softmax"  # the cross-entropy's normaliser
    # rates (protocol §5): per group, then warm-up, schedule and depth multipliers
    lr: Rates = LR_CONFIGS["baseline"]
    lr_name: str | None = None  # a label for the rates; not part of the run's identity
    group_rules: tuple[tuple[str, str], ...] | None = None  # None: the model's default rule
    warmup: int = Field(50, ge=0)
    lr_schedule: Schedule = "constant"
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0)  # cosine decays to this × the rate
    lr_depth: DepthDecay = "none"
    lr_depth_gamma: float = Field(0.8, gt=0.0)  # exponential: η_i = η_0 γ^i
    lr_depth_floor: float = Field(0.1, ge=0.0, le=1.0)  # linear/cosine: deepest = floor × η_0
    # warm start (protocol §6): the id of a finished run of the same store whose final
    # weights this run starts from
    init_from: str | None = Field(None, pattern=r"^[0-9a-f]{16}$")
    # with init_from: the optimiser starts fresh, or carries the parent's final state (Adam
    # moments, filter state, momentum, update count) as if training went on
    init_optimizer: Literal["fresh", "carried"] = "fresh"
    # schedule and evaluation (protocol §4)
    steps: int = Field(7500, ge=1)
    batch_size: int = Field(512, ge=1)
    eval_every: int = Field(10, ge=1)
    # None: evaluate on the whole validation split (train metrics: the batches trained on);
    # N: on N random batches of each split in eval mode, from the run's own stream (LM)
    eval_batches: int | None = Field(None, ge=1)
    # early stop (protocol §4): retire the run once val acc > stop_val_acc for stop_patience
    # evaluations in a row (engine/early_stop.py); None: train the whole budget
    stop_val_acc: float | None = Field(None, ge=0.0, lt=1.0)
    stop_patience: int = Field(1, ge=1)
    precision: Precision = "fp32"
    semantics: int = Field(SEMANTICS, ge=1, le=SEMANTICS)
    seed: int = Field(0, ge=0)

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
        if (self.task == "text") != (self.model == "gpt"):
            raise ValueError("the text task trains model 'gpt', and model 'gpt' trains the text "
                             f"task (got task {self.task!r} with model {self.model!r})")
        if "n_heads" in model_settings(self.model) and self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.measures == "fourier":
            fourier_scope(self.task, self.task_args())  # MeasureError: out of scope, and why
        if self.embedding_lr == "adaptive" and self.model == "mlp" and not self.embedding:
            raise ValueError("embedding_lr 'adaptive' needs an embedding table (the MLP has "
                             "none with embedding = false)")
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
        return _seq_len(self.task, tuple(sorted(self.task_args().items())))

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
        """``ignored()`` with why, by setting: what makes it mean nothing for this run
        ("ignored by optimizer 'adamw'"), or ``AS_UNSET`` for a value equal to what leaving
        it unset gives (``d_ff`` = 4 · ``d_model``), which means what it says. A setting's
        first reason is kept. The command refuses a setting given explicitly that means
        nothing (docs/protocol.md §9), so a rule added here reaches it unchanged."""
        out: dict[str, str] = {}

        def by(why: str, *fields: str) -> None:
            for f in fields:
                out.setdefault(f, why)

        by(f"ignored by task {self.task!r}", *(f for f in TASK_FIELDS
                                              if f not in self.task_args()))
        optimizer = f"ignored by optimizer {self.optimizer!r}"
        if self.optimizer == "sgd":
            by(optimizer, "beta1", "beta2", "eps")
        else:
            by(optimizer, "momentum", "nesterov")
        if self.optimizer != "muon":
            by(optimizer, "muon_lr_ratio", "muon_momentum", "muon_nesterov", "muon_adjust_lr")
        elif self.muon_momentum == 0:  # no momentum: the Nesterov step is the gradient
            by("ignored with muon_momentum 0", "muon_nesterov")
        if self.lr_schedule == "constant":
            by("ignored by lr_schedule 'constant'", "min_lr_ratio")
        by(f"ignored by lr_depth {self.lr_depth!r}",
           *{"none": ("lr_depth_gamma", "lr_depth_floor"), "exponential": ("lr_depth_floor",),
             "linear": ("lr_depth_gamma",), "cosine": ("lr_depth_gamma",)}[self.lr_depth])
        by(f"ignored by grad_filter {self.grad_filter!r}",
           *{"none": ("filter_alpha", "filter_window", "filter_lamb"), "ema": ("filter_window",),
             "ma": ("filter_alpha",)}[self.grad_filter])
        by(f"ignored by model {self.model!r}",
           *(f for f in MODEL_FIELDS if f not in model_settings(self.model)))
        if self.d_ff == 4 * self.d_model:
            by(AS_UNSET, "d_ff")
        if self.max_len is not None and self.max_len == self.seq_len():
            by(AS_UNSET, "max_len")  # exactly the positions the task has
        if self.task == "text":  # the split is fixed: first 90 % / last 10 %
            by("ignored by task 'text' (its split is fixed)", "train_fraction")
        if self.stop_val_acc is None:
            by("ignored without stop_val_acc", "stop_patience")
        if self.init_from is None:
            by("ignored without init_from", "init_optimizer")
        if self.embedding_lr == "fixed":
            by("ignored by embedding_lr 'fixed'", "embedding_lr_c", "embedding_lr_every")
        if self.model == "mlp" and not self.embedding:
            by("ignored by model 'mlp' without an embedding table", "d_model")
        if self.measures == "none":
            by("ignored by measures 'none'", "measures_every")
        return out

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
        if "corpus" in self.task_args():  # the text, not where it lies
            from groklab.tasks.text import corpus_digest

            d["corpus"] = corpus_digest(self.corpus)
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
def _seq_len(task: str, args: tuple[tuple[str, Any], ...]) -> int:
    """A task's sequence length (cached apart from the tables, which per-run samples evict)."""
    return build_task(task, **dict(args)).seq_len


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value))
