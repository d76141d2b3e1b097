"""Run records: what an evaluation produces for one run (the four curve metrics and any named
extras) and the summary metrics of a finished run's curve (docs/protocol.md §4).

A leaf module: the engine produces these records, the store keeps them, reports read them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


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


FINAL_METRICS = ("final_train_loss", "final_train_acc", "final_val_loss", "final_val_acc",
                 "step_val_acc_99", "max_val_acc", "step_train_acc_99", "grokking_delay",
                 "step_val_acc_99_held")


def held_step(curve: Sequence[EvalRow], threshold: float = 0.99) -> int | None:
    """The first evaluated step from which validation accuracy stays above ``threshold``
    through the curve's last row (docs/protocol.md §4): None when the last row is not above
    it (the run had not grokked for good when it ended: censored). A run that passes the
    threshold, spikes back down (Adam's slingshot) and recovers is held only from the
    recovery on."""
    held = None
    for row in reversed(curve):
        if not row.val_acc > threshold:
            break
        held = row.step
    return held


def final_metrics(curve: Sequence[EvalRow], threshold: float = 0.99) -> dict[str, Any]:
    """A run's summary metrics (docs/protocol.md §4): final train/val loss and accuracy (the
    curve's last row: a run retired early has a shorter curve); the first evaluated step with
    val acc > 0.99 (generalisation) and with train acc > 0.99 (memorisation; train accuracy is
    the mean over the batches since the previous evaluation); the grokking delay between the
    two (None unless both were reached); the best validation accuracy evaluated."""
    if not curve:
        return dict.fromkeys(FINAL_METRICS)
    last = curve[-1]
    reached = next((r.step for r in curve if r.val_acc > threshold), None)
    memorised = next((r.step for r in curve if r.train_acc > threshold), None)
    delay = reached - memorised if reached is not None and memorised is not None else None
    return {"final_train_loss": last.train_loss, "final_train_acc": last.train_acc,
            "final_val_loss": last.val_loss, "final_val_acc": last.val_acc,
            "step_val_acc_99": reached, "max_val_acc": max(r.val_acc for r in curve),
            "step_train_acc_99": memorised, "grokking_delay": delay,
            "step_val_acc_99_held": held_step(curve, threshold)}
