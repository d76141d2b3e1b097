"""Continuous batching of runs: a cohort is S slots over a queue of runs that share its cohort
key (docs/design.md, decision 15).

``train_slots`` trains the runs a ``RunQueue`` gives, at most ``slots`` at a time, as one
stacked computation (``CohortState``). Every run lives its own life in it:

- it starts at its own step 0 when it takes a slot, and counts every per-run quantity
  (warm-up, schedules, Adam's bias correction, filter state, sampler and dropout streams,
  early stop, measures) by its own steps, so its curve is the one it has trained alone;
- it is evaluated every ``eval_every`` of its own steps and at its last, and ends there:
  ``on_run_done`` gets its end (final weights, optimiser state when kept) and whole curve at
  that evaluation, while its cohort mates train on;
- a run that ended leaves its slot; the queue's next run takes it at the next *boundary* (an
  update after which every training run sits at a multiple of ``eval_every`` of its own
  steps), so the runs of one cohort stay aligned to evaluations.

Changing the set of runs (a run leaving, one joining) builds a new state with the staying runs
carried over as data (``CohortState.take_run``: parameters, optimiser state with its count,
every component's row) and the new ones fresh. When to compact is one policy
(``compact_due``): on a CPU at once, so a finished run costs nothing and results stay those
of the runs alone; on an accelerator once half the slots are idle (or a run waits for a
slot), so shapes stay fixed in between.

A checkpoint holds which run sits in which row, each run's own step, the state and curves of
the runs in the slots, and the queue as it stood: resuming continues bitwise (runs that ended
after the checkpoint are trained again in their place without being recorded twice).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from groklab.engine.checkpoint import (
    Checkpointer,
    decode_curves,
    deferred_interrupt,
    encode_curves,
)
from groklab.engine.hooks import Hook
from groklab.engine.state import CohortState, RunEnd
from groklab.progress import bar as progress_bar
from groklab.records import EvalRow
from groklab.spec import RunSpec

Weights = Mapping[str, Mapping[str, torch.Tensor]]
# parents (final weights by run id) and parents' optimiser states for runs about to start
ParentsFor = Callable[[Sequence[RunSpec]], tuple[Weights | None, Weights | None]]


class RunQueue(Protocol):
    """Where a cohort's runs come from: ``take(n)`` gives up to ``n`` runs that start now
    (fewer or none when it has no more now); ``pending`` lists the ids of the runs it would
    give next, in order (a checkpoint keeps them); ``more`` says whether it may still give
    runs later (a search that asks as slots free)."""

    def take(self, n: int) -> list[RunSpec]: ...

    def pending(self) -> list[str]: ...

    def more(self) -> bool: ...


class ListQueue:
    """A fixed list of runs, given in order."""

    def __init__(self, specs: Sequence[RunSpec]):
        self.specs = list(specs)

    def take(self, n: int) -> list[RunSpec]:
        out, self.specs = self.specs[:n], self.specs[n:]
        return out

    def pending(self) -> list[str]:
        return [s.run_id for s in self.specs]

    def more(self) -> bool:
        return bool(self.specs)

    def restore(self, ids: Sequence[str], started: Sequence[str] = ()) -> None:
        """Continue a checkpoint's queue: its runs (``ids``) first in its order, without the
        runs that had started by then (``started``); runs it does not name follow."""
        by_id = {s.run_id: s for s in self.specs}
        for i in started:
            by_id.pop(i, None)
        first = [by_id.pop(i) for i in ids if i in by_id]
        self.specs = first + list(by_id.values())


def compact_due(idle: int, rows: int, waiting: bool, device: torch.device) -> bool:
    """Whether to rebuild the cohort without its idle rows now (see the module docstring)."""
    if idle == 0:
        return False
    return device.type == "cpu" or waiting or 2 * idle >= rows


@dataclass
class Evaluated:
    """An evaluation of the runs ``rows`` names (each with its row)."""

    rows: list[tuple[RunSpec, EvalRow]]


@dataclass
class Ended:
    """A run's end (finished or retired; ``end.stopped``: by an external hook) with its whole
    curve."""

    spec: RunSpec
    end: RunEnd
    curve: list[EvalRow]
    wall_s: float  # since it took its slot (or since the life resumed it)


@dataclass
class Snapshot:
    """A checkpoint of the slots: the runs in their rows, the state, their curves so far and
    ``extra`` (the queue, the cohort's update count, the curves of runs already ended)."""

    run_ids: list[str]
    state: dict
    curves: list[list[EvalRow]]
    extra: dict


Event = Evaluated | Ended | Snapshot


class CheckpointDue(Protocol):
    """When a checkpoint is due (engine/checkpoint.py, ``CheckpointPolicy``)."""

    def due(self, t: int) -> bool: ...

    def mark(self, t: int) -> None: ...


def train_slots(
    queue: RunQueue,
    slots: int,
    device: str | torch.device = "cpu",
    *,
    on_eval: Callable[[list[tuple[RunSpec, EvalRow]]], None] | None = None,
    on_run_done: Callable[[RunSpec, RunEnd, list[EvalRow]], None] | None = None,
    checkpoint: Checkpointer | None = None,
    **life: Any,
) -> dict[str, list[EvalRow]]:
    """Train the queue's runs in ``slots`` slots (see the module docstring and ``slot_life``,
    which takes the other keywords); returns every run's curve by id.

    ``on_eval([(spec, row), ...])`` receives each evaluation (the runs evaluated then);
    ``on_run_done(spec, end, curve)`` each run's end when it finishes or retires (an
    external hook's retirement: ``end.stopped``). ``checkpoint`` writes the slots' state
    when due and at Ctrl-C (Ctrl-C is deferred to the end of the step while it is set).
    """
    events = slot_life(queue, slots, device, checkpoint=checkpoint,
                       interruptible=checkpoint is not None, **life)
    try:
        while True:
            try:
                event = next(events)
            except StopIteration as done:
                return done.value
            if isinstance(event, Evaluated):
                if on_eval is not None:
                    on_eval(event.rows)
            elif isinstance(event, Ended):
                if on_run_done is not None:
                    on_run_done(event.spec, event.end, event.curve)
            elif checkpoint is not None:
                checkpoint.save(event.run_ids, event.state, event.curves, event.extra)
    finally:
        events.close()  # a consumer's error: the life's signal handlers are put back


def slot_life(
    queue: RunQueue,
    slots: int,
    device: str | torch.device = "cpu",
    *,
    parents_for: ParentsFor | None = None,
    keep_optimizer: Sequence[str] = (),
    progress: bool = True,
    desc: str | None = None,
    compile: bool = False,
    hooks: Sequence[Hook] = (),
    checkpoint: CheckpointDue | None = None,
    interruptible: bool = False,
    resume: dict | None = None,
    known: Mapping[str, RunSpec] | None = None,
    total_runs: int | None = None,
) -> Generator[Event, None, dict[str, list[EvalRow]]]:
    """The life of a cohort's slots as events, whoever consumes them (``train_slots`` in
    this process; a Ray task streams them to its driver: integrations/ray_executor.py).
    Yields ``Evaluated`` at each evaluation, ``Ended`` as each run ends and ``Snapshot``
    when ``checkpoint.due`` says so (and, when ``interruptible``, at a deferred Ctrl-C,
    after which ``KeyboardInterrupt`` is raised); returns every run's curve by id.

    ``parents_for(specs)`` gives the final weights (and optimiser states) of the parents of
    runs about to start (``init_from``); ``keep_optimizer``: ids of runs whose final
    optimiser state their end must carry. ``resume`` (a checkpoint's payload) continues from
    there: ``known`` gives the specs of the runs it names by id.
    """
    device = torch.device(device)
    keep = set(keep_optimizer)
    curves: dict[str, list[EvalRow]] = {}
    state: CohortState | None = None
    clock = 0  # updates of the cohort so far (checkpoints are due by it)
    started: dict[str, float] = {}  # when each run took its slot (or was resumed)

    def build(specs: list[RunSpec], carried: list, fresh: list[RunSpec]) -> CohortState:
        parents, optimizers = parents_for(fresh) if parents_for and fresh else (None, None)
        return CohortState(specs, device, compile=compile, hooks=hooks, parents=parents,
                           parent_optimizers=optimizers, carried=carried,
                           keep_optimizer=[i for i, s in enumerate(specs) if s.run_id in keep])

    if resume is not None:
        by_id = dict(known or {})
        ids = resume["run_ids"]
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise ValueError(f"the checkpoint holds run(s) this call does not train: "
                             f"{', '.join(missing[:3])}")
        specs = [by_id[i] for i in ids]
        state = build(specs, [None] * len(specs), specs)
        state.load_state_dict(resume["state"])
        ended = resume.get("ended", {})
        curves = dict(zip(ended, decode_curves(list(ended.values())), strict=True))
        curves |= dict(zip(ids, decode_curves(resume["curves"]), strict=True))
        clock = int(resume.get("clock", state.t))
        started = dict.fromkeys(ids, time.perf_counter())
        if isinstance(queue, ListQueue):
            queue.restore(resume.get("queue", []), started=list(curves))
    n_total = total_runs if total_runs is not None else len(queue.pending()) + (
        len(state.specs) if state is not None else 0)
    steps = (state.steps if state is not None else None)
    bar = progress_bar(total=None, desc=desc or "runs", disable=not progress, unit="step",
                       dynamic_ncols=True, leave=False)

    def boundary() -> bool:
        return state is None or all(state.own_step(i) % state.eval_every == 0
                                    for i in state.index)

    with deferred_interrupt(enabled=interruptible) as interrupt:
        while True:
            # -- leave and join (compact, refill) --------------------------------------------
            if state is None or boundary():
                free = slots - (state.n_runs if state is not None else 0)
                fresh = queue.take(free) if free > 0 else []
            else:
                fresh = []
            rows = len(state.specs) if state is not None else 0
            idle = rows - (state.n_runs if state is not None else 0)
            if fresh or (state is not None and compact_due(idle, rows, queue.more(), device)):
                staying = list(state.index) if state is not None else []
                specs = [state.specs[r] for r in staying] + fresh if state else list(fresh)
                carried = [state.take_run(r) for r in staying] if state else []
                state = build(specs, carried + [None] * len(fresh), fresh) if specs else None
                for s in fresh:
                    curves[s.run_id] = []
                    started[s.run_id] = time.perf_counter()
                if steps is None and state is not None:
                    steps = state.steps
                    bar.total = steps * max(n_total, 1)
            if state is None:
                break  # nothing training and nothing to start
            # -- one update ------------------------------------------------------------------
            state.step()
            clock += 1
            stepped = state.n_runs  # run-steps this update (before anyone retires)
            due = state.due()
            if due:
                evaluated = state.evaluate(due)
                for r, row in evaluated.items():
                    curves[state.specs[r].run_id].append(row)
                yield Evaluated([(state.specs[r], row) for r, row in evaluated.items()])
                for r in [r for r in state.index if state.own_step(r) >= state.steps]:
                    state.retire([r])  # reached its budget
                va = [row.val_acc for row in evaluated.values()]
                bar.set_postfix_str(f"{state.n_runs} training, val acc {min(va):.3f}–"
                                    f"{max(va):.3f}", refresh=False)
                ended = sorted(state.ended.items())
                state.ended.clear()
                for r, end in ended:
                    spec = state.specs[r]
                    yield Ended(spec, end, curves[spec.run_id],
                                time.perf_counter() - started[spec.run_id])
            bar.update(stepped)
            if checkpoint is not None and (interrupt.requested or checkpoint.due(clock)) \
                    and (state.index or queue.more()):
                rows = {s.run_id for s in state.specs}
                yield Snapshot([s.run_id for s in state.specs], state.state_dict(),
                               [list(curves[s.run_id]) for s in state.specs],
                               {"queue": queue.pending(), "clock": clock,
                                "ended": {rid: encode_curves([c])[0] for rid, c in
                                          curves.items() if rid not in rows}})
                checkpoint.mark(clock)
            if interrupt.requested:
                raise KeyboardInterrupt
    bar.close()
    return curves
