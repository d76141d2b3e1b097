"""Evaluation hooks: what they see of a cohort, what they return (a leaf of the engine).

At every evaluation ``CohortState`` calls each hook with itself, the step and the named
per-run metrics (name -> ``[R]`` over the runs still training). A hook may add named metrics
(they go to the store's long ``metrics`` table) and ask to retire runs (they stop costing
compute). Hooks that come from the runs' own settings (early stop, diagnostics) are built by
the cohort; hooks a caller passes in (``run_specs(hooks=...)``, a live TensorBoard writer) are
*external*: a run an external hook retires did not run the training its id describes, so the
store records it as ``stopped``, never as finished (docs/design.md, decision 11).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from groklab.engine.params import FlatParams
from groklab.spec import RunSpec


class CohortView(Protocol):
    """What a hook may read of the cohort it watches (``CohortState`` provides it)."""

    specs: list[RunSpec]  # every run of the cohort, by position
    index: list[int]  # position in ``specs`` of each run still training (the metrics' rows)
    t: int  # updates done
    params: FlatParams  # the parameters of the runs still training


@dataclass
class HookResult:
    """What an evaluation hook returns: extra named per-run metrics (``[R]`` each; NaN for a
    run not measured at this evaluation, which records nothing) and the positions (in the
    current cohort) of runs to retire."""

    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    retire: Sequence[int] = ()


# hook(cohort, step, metrics name -> [R]) -> HookResult or None
Hook = Callable[[CohortView, int, dict[str, torch.Tensor]], "HookResult | None"]


def stop_when(metric: str = "val_acc", above: float = 0.99) -> Hook:
    """A hook that retires every run whose ``metric`` exceeds ``above``. Passed to
    ``run_specs`` it is external (its runs are recorded as stopped, not finished); to stop
    runs *and* record them, set the run settings ``stop_val_acc`` / ``stop_patience``."""

    def hook(state: CohortView, step: int, metrics: dict[str, torch.Tensor]) -> HookResult:
        done = (metrics[metric] > above).nonzero().flatten().tolist()
        return HookResult(retire=done)

    return hook
