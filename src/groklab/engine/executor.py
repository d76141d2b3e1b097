"""Executors: where a generation's cohorts train (docs/design.md, decision 11).

The runner (engine/runner.py) plans cohorts and, by default, trains them one by one in its
own process. An ``Executor`` given to ``run_specs`` (``run_study``, ``tune``) takes a
generation's cohorts instead: it claims their runs in the store, has them trained wherever it
likes (groklab/integrations/ray_executor.py: Ray tasks on a cluster), and records each
finished cohort from the driver with ``record_cohort``: only the driver writes the store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence, Set
from typing import TYPE_CHECKING, Protocol

import torch

from groklab.records import EvalRow
from groklab.spec import RunSpec

if TYPE_CHECKING:
    from groklab.engine.state import Hook
    from groklab.store import Store


class Executor(Protocol):
    """Trains a generation's cohorts into ``store``; returns how many runs it trained."""

    def train(self, store: Store, cohorts: list[list[RunSpec]], device: str, *,
              compile: bool, hooks: Sequence[Hook], on_done: Callable[[int], None],
              keep_optimizer: Set[str] = frozenset()) -> int:
        """``keep_optimizer``: ids of runs whose final optimiser state must be saved (a child
        carries it: ``init_optimizer = "carried"``)."""
        ...


def record_cohort(store: Store, cohort: Sequence[RunSpec], curves: Sequence[list[EvalRow]],
                  params: Sequence[dict[str, torch.Tensor]], wall_s: float,
                  device: str = "cpu",
                  optimizers: Mapping[int, dict[str, torch.Tensor]] | None = None) -> list[str]:
    """Save every run's final weights, then mark the runs finished with their curves (as the
    in-process runner does; a language model's sample is generated here, on ``device``);
    returns the ids finished."""
    from groklab.lm.outputs import record_samples
    from groklab.store.weights import save_weights

    for spec, p in zip(cohort, params, strict=True):
        save_weights(store.root, spec.run_id, p, spec.model_dump(mode="json"))
    for pos, state in (optimizers or {}).items():  # parents of carried warm starts
        spec = cohort[pos]
        save_weights(store.root, spec.run_id, state, spec.model_dump(mode="json"),
                     optimizer=True)
    curves_by_id = {s.run_id: list(c) for s, c in zip(cohort, curves, strict=True)}
    done = store.finish(curves_by_id, curves_by_id, wall_s)
    by_id = {s.run_id: (s, p) for s, p in zip(cohort, params, strict=True)}
    record_samples(store, {rid: by_id[rid] for rid in done}, device)
    return done
