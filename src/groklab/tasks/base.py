"""Task data, the task registry and the seeded train/validation split.

The registry is also the door of what a task brings beside its table (docs/design.md,
Plug-in doors): a check of a run's settings (called by ``RunSpec``), an output hook (called
by the engine once a run is finished: the text task's generated sample) and whether its runs
are language models (losses, not accuracies). The core consults these by the task's name and
never names a task; ``SpecCheck`` is the models' too (models/registry.py).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch

from groklab.registry import Registry

# Symbol tokens come first in every vocabulary (docs/protocol.md §2); group elements follow.
OP_TOKEN = 0
EQ_TOKEN = 1
N_SYMBOLS = 2


class TaskError(ValueError):
    """An impossible task setting (composite p for division, k < 2, ...)."""


@dataclass(frozen=True)
class TaskData:
    """A whole task table: ``inputs[i]`` is a token sequence, ``targets[i]`` its class id, or
    (a sequence task: ``targets`` is ``[N, T]``) the class id of the next token at every
    position (tasks/text.py)."""

    name: str
    inputs: torch.Tensor  # [N, T] int64 token ids
    targets: torch.Tensor  # [N] int64 class ids in 0..n_classes-1
    vocab_size: int
    n_classes: int
    seeded: bool = False  # the table is a sample drawn from the ``sample_seed`` it was built with
    split: tuple[torch.Tensor, torch.Tensor] | None = None  # fixed (train, val) rows; None: seeded
    alphabet: str | None = None  # a text task's characters, token id = position

    @property
    def sequence(self) -> bool:
        """Targets at every position (language modelling) rather than one class per example."""
        return self.targets.dim() == 2

    @property
    def seq_len(self) -> int:
        return int(self.inputs.shape[1])

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


TaskBuilder = Callable[..., TaskData]

SpecCheck = Callable[[Any], None]
"""``check(spec)``: raise ``ValueError`` for settings the task or model cannot train. The
spec is read by attribute (``spec.model``, ``spec.embedding``): these layers lie below
groklab.spec and never import it."""


def no_check(spec: Any) -> None:
    """The check of a task or model that registers none: every spec passes."""


@dataclass(frozen=True)
class Outputs:
    """What a finished run adds to the store beside its curve (an output hook's result):
    named metrics, recorded at the run's last step, and named texts."""

    metrics: dict[str, float] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)


OutputHook = Callable[[Any, TaskData, Any, Mapping[str, torch.Tensor], str], Outputs]
"""``outputs(spec, task, model, params, device)``: what a finished run of the task adds,
from its table, its model (``build_model``) and its final weights (one run's, unstacked) on
``device``; called by the engine once the run is recorded finished (engine/finish.py)."""


@dataclass(frozen=True)
class TaskHooks:
    """A task's doors: the check of a run's spec (called when the spec is built), its output
    hook (None: none), whether its runs are language models (the results list losses,
    the report gives them its language-model section), and ``identity``: how its settings
    enter a run's id where their value is not what determines the result (the text task:
    the corpus's digest, not the path it lies at; None: as they are)."""

    check: SpecCheck = no_check
    outputs: OutputHook | None = None
    language_model: bool = False
    identity: Callable[[dict[str, Any]], dict[str, Any]] | None = None


@dataclass(frozen=True)
class _Task:
    builder: TaskBuilder
    hooks: TaskHooks


_TASKS: Registry[_Task] = Registry("task", TaskError)


def register_task(name: str, *, check: SpecCheck = no_check, outputs: OutputHook | None = None,
                  language_model: bool = False,
                  identity: Callable[[dict[str, Any]], dict[str, Any]] | None = None
                  ) -> Callable[[TaskBuilder], TaskBuilder]:
    """Decorator: register ``builder(**settings) -> TaskData`` under ``name``.

    The builder's keyword parameters (``p``, ``k``, ...) are the settings the task takes;
    a run's other task settings are ignored and do not change its id. End the signature
    with ``**_`` to accept (and ignore) the others. The keywords are the task's doors
    (``TaskHooks``): a ``check`` of a run's spec, an ``outputs`` hook for its finished runs,
    ``language_model`` for a task whose runs are language models, and ``identity``: the
    values its settings (``task_args``) enter a run's id with, where not as they are.
    """
    hooks = TaskHooks(check, outputs, language_model, identity)

    def wrap(builder: TaskBuilder) -> TaskBuilder:
        _TASKS.add(name, _Task(builder, hooks))
        return builder

    return wrap


def task_names() -> list[str]:
    return _TASKS.names()


def task_builder(name: str) -> TaskBuilder:
    """The registered builder of task ``name``; its keyword parameters are the task's settings."""
    return _TASKS.get(name).builder


def task_hooks(name: str) -> TaskHooks:
    """What task ``name`` registered beside its builder (``register_task``)."""
    return _TASKS.get(name).hooks


def language_tasks() -> frozenset[str]:
    """The tasks whose runs are language models (``register_task(language_model=True)``)."""
    return frozenset(n for n in _TASKS.names() if _TASKS.get(n).hooks.language_model)


@lru_cache(maxsize=32)
def build_task(name: str, **settings: Any) -> TaskData:
    """Build task ``name`` (cached) from the settings its builder takes; others are ignored."""
    builder = task_builder(name)
    params = inspect.signature(builder).parameters
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD and p.name != "_"
                    for p in params.values())
    return builder(**{k: v for k, v in settings.items() if takes_all or k in params})


def binary_task(name: str, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, n: int) -> TaskData:
    """Encode ``a ∘ b = c`` over ``n`` elements as ``[a, op, b, =] -> c`` (docs/protocol.md §2)."""
    a, b = a.long(), b.long()
    op = torch.full_like(a, OP_TOKEN)
    eq = torch.full_like(a, EQ_TOKEN)
    inputs = torch.stack([a + N_SYMBOLS, op, b + N_SYMBOLS, eq], dim=1)
    return TaskData(name, inputs, c.long(), vocab_size=n + N_SYMBOLS, n_classes=n)


def split_indices(
    n: int, fraction: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded random split of ``range(n)`` into (train, validation) by ``fraction``."""
    if not 0.0 < fraction < 1.0:
        raise TaskError(f"training fraction must lie strictly between 0 and 1, got {fraction}")
    n_train = int(fraction * n)
    if n_train < 1 or n_train >= n:
        raise TaskError(f"training fraction {fraction} leaves an empty split of {n} examples")
    perm = torch.randperm(n, generator=generator)
    return perm[:n_train], perm[n_train:]
