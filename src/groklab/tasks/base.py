"""Task data, the task registry and the seeded train/validation split."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
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
_TASKS: Registry[TaskBuilder] = Registry("task", TaskError)


def register_task(name: str) -> Callable[[TaskBuilder], TaskBuilder]:
    """Decorator: register ``builder(**settings) -> TaskData`` under ``name``.

    The builder's keyword parameters (``p``, ``k``, ...) are the settings the task takes;
    a run's other task settings are ignored and do not change its id. End the signature
    with ``**_`` to accept (and ignore) the others.
    """

    return lambda builder: _TASKS.add(name, builder)


def task_names() -> list[str]:
    return _TASKS.names()


def task_builder(name: str) -> TaskBuilder:
    """The registered builder of task ``name``; its keyword parameters are the task's settings."""
    return _TASKS.get(name)


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
