"""One way to finish a cohort, whichever executor trained it (docs/design.md, decisions 11 and 14).

As each run ends (``RunEnd``), ``Finisher.run_done`` saves its final weights (and its final
optimiser state when a child carries it) next to the store; ``Finisher.finish`` then writes
the runs' remaining rows and final metrics and marks them finished in one transaction, and
records what a finished run adds after training: its task's output hook (``register_task(
outputs=...)``, docs/design.md: Plug-in doors; the text task's generated sample).
A run an external hook stopped (engine/hooks.py) gets neither weights nor final metrics: it
is recorded as ``stopped``, never as the full-length run its id names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from groklab.engine.state import RunEnd
from groklab.models import build_model
from groklab.records import EvalRow
from groklab.spec import RunSpec
from groklab.store import Store
from groklab.store.weights import save_weights
from groklab.tasks import build_task, task_hooks


class Finisher:
    """Finishes the runs of one claimed ``cohort`` into ``store``."""

    def __init__(self, store: Store, cohort: Sequence[RunSpec], device: str):
        self.store, self.cohort, self.device = store, list(cohort), device
        self.kept: dict[str, dict[str, torch.Tensor]] = {}  # params needed after finishing
        self.stopped: set[str] = set()

    def run_done(self, pos: int, end: RunEnd) -> None:
        """Run ``cohort[pos]`` has ended: save what must exist before it is marked finished."""
        spec = self.cohort[pos]
        if end.stopped:
            self.stopped.add(spec.run_id)
            return
        settings = spec.model_dump(mode="json")
        save_weights(self.store.root, spec.run_id, end.params, settings)
        if end.optimizer is not None:  # a parent whose children carry its optimiser state
            save_weights(self.store.root, spec.run_id, end.optimizer, settings, optimizer=True)
        if task_hooks(spec.task).outputs is not None:  # its outputs come once it is finished
            self.kept[spec.run_id] = {k: v.detach().clone() for k, v in end.params.items()}

    def end_run(self, spec: RunSpec, end: RunEnd, rows: Sequence[EvalRow],
                curve: Sequence[EvalRow], wall_s: float) -> bool:
        """Finish one run the moment it ends: its weights, then its ``rows`` not yet in the
        store, final metrics and status (``stopped`` for an external hook's retirement) in
        one transaction, with its own ``wall_s``; then its outputs. Returns whether the
        store took it (this instance still owned it)."""
        if spec not in self.cohort:
            self.cohort.append(spec)
        self.run_done(self.cohort.index(spec), end)
        rid = spec.run_id
        done = self.finish({rid: list(rows)}, {rid: list(curve)}, wall_s)
        return bool(done) or rid in self.stopped

    def finish(self, rows: Mapping[str, Sequence[EvalRow]],
               curves: Mapping[str, Sequence[EvalRow]], wall_s: float) -> list[str]:
        """Write ``rows`` (those not yet in the store), mark every ended run finished with
        its whole curve (``curves``; stopped runs: ``stopped``), then record outputs;
        returns the ids finished."""
        finished = {rid: c for rid, c in curves.items() if rid not in self.stopped}
        done = self.store.finish(rows, finished, wall_s, stopped=self.stopped & set(curves))
        by_id = {s.run_id: s for s in self.cohort}
        record_outputs(self.store, {rid: (by_id[rid], self.kept[rid]) for rid in done
                                    if rid in self.kept}, self.device)
        return done


def record_outputs(store: Store, finished: Mapping[str, tuple[RunSpec, Mapping[str, torch.Tensor]]],
                   device: str) -> None:
    """Record what each run of ``finished`` (run id -> (spec, final weights)) adds after
    training: its task's output hook's metrics (at the run's last step) and texts; a run
    whose task has no output hook is skipped."""
    for rid, (spec, params) in finished.items():
        hook = task_hooks(spec.task).outputs
        if hook is None:
            continue
        task = build_task(spec.task, **spec.task_args())
        out = hook(spec, task, build_model(spec, task), params, device)
        last = store.curve(rid)
        store.record_outputs(rid, last[-1].step if last else spec.steps, out.metrics, out.texts)
