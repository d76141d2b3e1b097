"""What an evaluation produces for one run: the four curve metrics and any named extras."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class EvalRow:
    """One run at one evaluated step.

    ``extra`` holds named per-run metrics beyond loss and accuracy (a hook's diagnostics,
    a gradient norm, ...); the store keeps them in its long ``metrics`` table.
    """

    step: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    extra: Mapping[str, float] = field(default_factory=dict)
