"""The model registry: model names, the run settings each model reads, and ``build_model``.

A model registers a builder ``builder(task, *, setting, ...) -> CohortModel`` with
``@register_model("name")``. The builder's keyword parameters name the run settings it reads
(``n_layers``, ``d_model``, ...): ``build_model`` passes exactly those from a run's spec, and
the spec leaves the model-shape settings a model does not read out of the run's identity
(``RunSpec.ignored``). The spec is read by attribute, so this layer never imports it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from groklab.models.base import CohortModel
from groklab.registry import Registry
from groklab.tasks import TaskData

ModelBuilder = Callable[..., CohortModel]
B = TypeVar("B", bound=ModelBuilder)


class ModelSpec(Protocol):
    """What ``build_model`` needs of a run's spec: the model's name; the settings the model
    reads are looked up by attribute."""

    @property
    def model(self) -> str: ...


@dataclass(frozen=True)
class _Entry:
    builder: ModelBuilder
    reads: tuple[str, ...]  # the builder's keyword parameters
    settings: frozenset[str]  # reads, and the settings kept in the identity without a read


_MODELS: Registry[_Entry] = Registry("model")


def register_model(name: str, *, unread: Iterable[str] = ()) -> Callable[[B], B]:
    """Decorator: register ``builder(task, *, **settings) -> CohortModel`` under ``name``.

    The builder's keyword-only parameters are the run settings it reads. ``unread`` names
    settings the model does not read but that stay in its runs' identity all the same (so ids
    written before the model declared its settings do not change).
    """

    def wrap(builder: B) -> B:
        params = inspect.signature(builder).parameters.values()
        reads = tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)
        _MODELS.add(name, _Entry(builder, reads, frozenset(reads) | frozenset(unread)))
        return builder

    return wrap


def model_names() -> list[str]:
    """Every registered model's name, sorted."""
    return _MODELS.names()


def model_settings(name: str) -> frozenset[str]:
    """The run settings of model ``name``'s identity: those its builder reads (and any it
    keeps unread, see ``register_model``)."""
    return _MODELS.get(name).settings


def build_model(spec: ModelSpec, task: TaskData) -> CohortModel:
    """The model named by ``spec.model``, sized for ``task``, from the settings it reads."""
    entry = _MODELS.get(spec.model)
    settings: dict[str, Any] = {k: getattr(spec, k) for k in entry.reads}
    return entry.builder(task, **settings)
