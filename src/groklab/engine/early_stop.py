"""Per-run early stop: retire a run once its validation accuracy has stayed above a threshold
for a number of evaluations in a row (docs/protocol.md §4, run settings ``stop_val_acc`` and
``stop_patience``).

The rule is a run setting, not a cohort one: every run has its own threshold and patience (or
none), and a run without one is never stopped. It is an evaluation hook of ``CohortState``:
at the evaluation where a run's streak of evaluations with ``val_acc > stop_val_acc``
reaches ``stop_patience``, that evaluation is recorded and the run retires. Everything
before that is untouched, so a stopped run's curve is the prefix of the same run trained to
the full budget, and its final metrics are those of that prefix. The streaks are part of
the cohort's ``state_dict`` so a resumed cohort stops at the same evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from groklab.engine.hooks import CohortView, HookResult
from groklab.spec import RunSpec


class EarlyStop:
    """The stop rule of every run of a cohort (its rows: ``specs``); the streaks are the
    per-run state."""

    def __init__(self, specs: Sequence[RunSpec]):
        self.threshold = [s.stop_val_acc for s in specs]
        self.patience = [s.stop_patience for s in specs]
        self.streak = [0] * len(specs)

    def __call__(self, state: CohortView, step: int,
                 metrics: dict[str, torch.Tensor]) -> HookResult:
        acc = metrics["val_acc"].tolist()
        retire = []
        for i, row in enumerate(state.index):
            threshold = self.threshold[row]
            if threshold is None:
                continue
            self.streak[row] = self.streak[row] + 1 if acc[i] > threshold else 0
            if self.streak[row] >= self.patience[row]:
                retire.append(i)
        return HookResult(retire=retire)

    def rows(self) -> dict[str, list[int]]:
        return {"streak": self.streak}


def early_stop(specs: Sequence[RunSpec]) -> EarlyStop | None:
    """The cohort's stop rule when any run sets ``stop_val_acc``; else None."""
    return EarlyStop(specs) if any(s.stop_val_acc is not None for s in specs) else None
