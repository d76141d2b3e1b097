"""The model registry: model names, the run settings each model reads, and ``build_model``.

A model registers a builder ``builder(task, *, setting, ...) -> CohortModel`` with
``@register_model("name")``. The builder's keyword parameters name the run settings it reads
(``n_layers``, ``d_model``, ...): ``build_model`` passes exactly those from a run's spec, and
the spec leaves the model-shape settings a model does not read out of the run's identity
(``RunSpec.ignored``). The spec is read by attribute, so this layer never imports it.

The registration is also the model's door into the core (docs/design.md, Plug-in doors):
a ``check`` of a run's spec (``tasks.base.SpecCheck``, called by ``RunSpec``) and the
``reference`` run ``groklab bench`` times it on (``model_hooks``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from groklab.models.base import CohortModel
from groklab.registry import Registry
from groklab.tasks import TaskData
from groklab.tasks.base import SpecCheck, no_check

ModelBuilder = Callable[..., CohortModel]
B = TypeVar("B", bound=ModelBuilder)


class ModelSpec(Protocol):
    """What ``build_model`` needs of a run's spec: the model's name; the settings the model
    reads are looked up by attribute."""

    @property
    def model(self) -> str: ...


@dataclass(frozen=True)
class ModelHooks:
    """A model's doors: the check of a run's spec (called when the spec is built) and the
    settings of its reference run in ``groklab bench`` (None: the grokking reference)."""

    check: SpecCheck = no_check
    reference: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class _Entry:
    builder: ModelBuilder
    reads: tuple[str, ...]  # the builder's keyword parameters
    settings: frozenset[str]  # reads, and the settings kept in the identity without a read
    hooks: ModelHooks


_MODELS: Registry[_Entry] = Registry("model")


def register_model(name: str, *, unread: Iterable[str] = (), check: SpecCheck = no_check,
                   reference: Mapping[str, Any] | None = None) -> Callable[[B], B]:
    """Decorator: register ``builder(task, *, **settings) -> CohortModel`` under ``name``.

    The builder's keyword-only parameters are the run settings it reads. ``unread`` names
    settings the model does not read but that stay in its runs' identity all the same (so ids
    written before the model declared its settings do not change). ``check`` and
    ``reference`` are the model's doors (``ModelHooks``).
    """
    hooks = ModelHooks(check, reference)

    def wrap(builder: B) -> B:
        params = inspect.signature(builder).parameters.values()
        reads = tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)
        _MODELS.add(name, _Entry(builder, reads, frozenset(reads) | frozenset(unread), hooks))
        return builder

    return wrap


def model_names() -> list[str]:
    """Every registered model's name, sorted."""
    return _MODELS.names()


def model_settings(name: str) -> frozenset[str]:
    """The run settings of model ``name``'s identity: those its builder reads (and any it
    keeps unread, see ``register_model``)."""
    return _MODELS.get(name).settings


def model_hooks(name: str) -> ModelHooks:
    """What model ``name`` registered beside its builder (``register_model``)."""
    return _MODELS.get(name).hooks


def build_model(spec: ModelSpec, task: TaskData) -> CohortModel:
    """The model named by ``spec.model``, sized for ``task``, from the settings it reads."""
    entry = _MODELS.get(spec.model)
    settings: dict[str, Any] = {k: getattr(spec, k) for k in entry.reads}
    return entry.builder(task, **settings)
