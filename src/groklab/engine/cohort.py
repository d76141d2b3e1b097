"""Train a cohort of R runs that share a cohort key as ONE stacked computation.

``train_cohort`` is a thin loop over ``CohortState`` (engine/state.py): step, evaluate every
``eval_every`` steps and at the end, hand each evaluation to a callback, checkpoint when due
(engine/checkpoint.py), hand each run's final parameters to a callback, stop when every run
has finished or retired.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from groklab.engine.checkpoint import Checkpointer, decode_curves, deferred_interrupt
from groklab.engine.hooks import Hook, HookResult, stop_when
from groklab.engine.sampler import SAMPLE_CHUNK, run_generators
from groklab.engine.state import CohortState, RunEnd
from groklab.progress import bar as progress_bar
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
) -> list[list[EvalRow]]:
    """Train every spec (all with one cohort key) together; return each run's curve.

    ``compile`` runs the forward and objective through ``torch.compile`` (same results to
    float rounding; worth its compile time on runs of thousands of steps). ``hooks`` run at
    every evaluation and may add named metrics or retire runs (a retired run's curve ends at
    its last evaluation). ``parents``: final weights by run id, for runs that start from
    another run's (``init_from``). ``checkpoint`` writes the cohort's state when due and at
    Ctrl-C; ``resume`` (a checkpoint it loaded) continues from there, its curves included.
    ``on_run_done`` receives every run's end (``RunEnd``) when it finishes or retires: its
    final parameters, its final optimiser state for the runs at ``keep_optimizer``
    (positions: parents whose children carry it; ``parent_optimizers`` by run id), and
    whether an external hook stopped it.
    """
    if not specs:
        return []
    state = CohortState(specs, device, compile=compile, hooks=hooks, parents=parents,
                        parent_optimizers=parent_optimizers, keep_optimizer=keep_optimizer)
    curves: list[list[EvalRow]] = [[] for _ in specs]
    ids = [s.run_id for s in specs]
    if resume is not None:
        state.load_state_dict(resume["state"])
        curves = decode_curves(resume["curves"])
    bar = progress_bar(total=state.steps, initial=state.t,
                       desc=desc or f"{specs[0].task} ×{len(specs)}", disable=not progress,
                       unit="step", dynamic_ncols=True, leave=False)
    with deferred_interrupt(enabled=checkpoint is not None) as interrupt:
        while not state.done:
            state.step()
            if state.t % state.eval_every == 0 or state.t == state.steps:
                rows = state.evaluate()
                for pos, row in rows.items():
                    curves[pos].append(row)
                va = [r.val_acc for r in rows.values()]
                bar.set_postfix_str(f"val acc {min(va):.3f}–{max(va):.3f}", refresh=False)
                if on_eval is not None:
                    on_eval(state.t, [rows.get(i) for i in range(len(specs))])
                for pos, end in state.ended.items():
                    if on_run_done is not None:
                        on_run_done(pos, end)
                state.ended.clear()
            bar.update(1)
            if checkpoint is not None and not state.done and (
                    interrupt.requested or checkpoint.due(state.t)):
                checkpoint.save(ids, state.state_dict(), curves)
            if interrupt.requested:
                raise KeyboardInterrupt
    bar.close()
    if on_run_done is not None:
        for i, pos in enumerate(state.index):
            on_run_done(pos, state.run_end(i))
    return curves


__all__ = ["EvalCallback", "EvalRow", "Hook", "HookResult", "RunDone", "RunEnd", "SAMPLE_CHUNK",
           "run_generators", "stop_when", "train_cohort"]
