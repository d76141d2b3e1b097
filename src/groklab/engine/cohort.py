"""Train a cohort of R runs that share a cohort key as ONE stacked computation.

``train_cohort`` trains a fixed list of runs through the slot loop (engine/slots.py): by
default every run in its own slot at once; with ``slots`` fewer at a time, the others taking
a slot as one ends. Each evaluation goes to a callback, a checkpoint is written when due
(engine/checkpoint.py), and each run's end (final parameters) to a callback the moment it
finishes or retires.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from groklab.engine.checkpoint import Checkpointer
from groklab.engine.hooks import Hook, HookResult, stop_when
from groklab.engine.sampler import SAMPLE_CHUNK, run_generators
from groklab.engine.slots import ListQueue, train_slots
from groklab.engine.state import RunEnd
from groklab.records import EvalRow
from groklab.spec import RunSpec

# (step, rows) with rows[i] the evaluation of specs[i], or None for a retired run
EvalCallback = Callable[[int, list[EvalRow | None]], None]


# (position in specs, how that run ended: final parameters, optimiser state, stopped or not)
RunDone = Callable[[int, RunEnd], None]


def train_cohort(
    specs: Sequence[RunSpec],
    device: str | torch.device = "cpu",
    *,
    on_eval: EvalCallback | None = None,
    progress: bool = True,
    desc: str | None = None,
    compile: bool = False,
    hooks: Sequence[Hook] = (),
    parents: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
    checkpoint: Checkpointer | None = None,
    resume: dict | None = None,
    on_run_done: RunDone | None = None,
    parent_optimizers: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
    keep_optimizer: Sequence[int] = (),
    slots: int | None = None,
) -> list[list[EvalRow]]:
    """Train every spec (all with one cohort key, distinct runs) together; return each
    run's curve.

    ``slots``: at most that many runs train at once, the others wait in a queue and take
    a slot as one ends (engine/slots.py; default: all at once). ``compile`` runs the forward
    and objective through ``torch.compile`` (same results to float rounding; worth its
    compile time on runs of thousands of steps). ``hooks`` run at every evaluation and may
    add named metrics or retire runs (a retired run's curve ends at its last evaluation).
    ``parents``: final weights by run id, for runs that start from another run's
    (``init_from``). ``checkpoint`` writes the cohort's state when due and at Ctrl-C;
    ``resume`` (a checkpoint it loaded) continues from there, its curves included.
    ``on_run_done`` receives every run's end (``RunEnd``) when it finishes or retires: its
    final parameters, its final optimiser state for the runs at ``keep_optimizer``
    (positions: parents whose children carry it; ``parent_optimizers`` by run id), and
    whether an external hook stopped it.
    """
    if not specs:
        return []
    ids = [s.run_id for s in specs]
    if len(set(ids)) != len(ids):
        raise ValueError("a cohort trains distinct runs (two specs have one run id)")
    pos = {rid: i for i, rid in enumerate(ids)}

    def evaluated(rows: list[tuple[RunSpec, EvalRow]]) -> None:
        if on_eval is not None and rows:
            by_pos: list[EvalRow | None] = [None] * len(specs)
            for spec, row in rows:
                by_pos[pos[spec.run_id]] = row
            on_eval(max(row.step for _, row in rows), by_pos)

    def done(spec: RunSpec, end: RunEnd, curve: list[EvalRow]) -> None:
        if on_run_done is not None:
            on_run_done(pos[spec.run_id], end)

    queue = ListQueue(specs)
    curves = train_slots(
        queue, slots or len(specs), device, on_eval=evaluated, on_run_done=done,
        parents_for=lambda _: (parents, parent_optimizers),
        keep_optimizer=[ids[i] for i in keep_optimizer], progress=progress,
        desc=desc or f"{specs[0].task} ×{len(specs)}", compile=compile, hooks=hooks,
        checkpoint=checkpoint, resume=resume, known={s.run_id: s for s in specs},
        total_runs=len(specs))
    return [curves.get(rid, []) for rid in ids]


__all__ = ["EvalCallback", "EvalRow", "Hook", "HookResult", "RunDone", "RunEnd", "SAMPLE_CHUNK",
           "run_generators", "stop_when", "train_cohort"]
