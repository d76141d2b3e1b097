"""Train a cohort of R runs that share a cohort key as ONE stacked computation.

``train_cohort`` is a thin loop over ``CohortState`` (engine/state.py): step, evaluate every
``eval_every`` steps and at the end, hand each evaluation to a callback, stop when every run
has finished or retired.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm

from groklab.engine.records import EvalRow
from groklab.engine.sampler import SAMPLE_CHUNK, run_generators
from groklab.engine.state import CohortState, Hook, HookResult, stop_when
from groklab.spec import RunSpec

# (step, rows) with rows[i] the evaluation of specs[i], or None for a retired run
EvalCallback = Callable[[int, list[EvalRow | None]], None]


def train_cohort(
    specs: Sequence[RunSpec],
    device: str | torch.device = "cpu",
    *,
    on_eval: EvalCallback | None = None,
    progress: bool = True,
    desc: str | None = None,
    compile: bool = False,
    hooks: Sequence[Hook] = (),
) -> list[list[EvalRow]]:
    """Train every spec (all with one cohort key) together; return each run's curve.

    ``compile`` runs the forward and objective through ``torch.compile`` (same results to
    float rounding; worth its compile time on runs of thousands of steps). ``hooks`` run at
    every evaluation and may add named metrics or retire runs (a retired run's curve ends at
    its last evaluation).
    """
    if not specs:
        return []
    state = CohortState(specs, device, compile=compile, hooks=hooks)
    curves: list[list[EvalRow]] = [[] for _ in specs]
    bar = tqdm(total=state.steps, desc=desc or f"{specs[0].task} ×{len(specs)}",
               disable=not progress, unit="step", dynamic_ncols=True, leave=False)
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
        bar.update(1)
    bar.close()
    return curves


__all__ = ["EvalRow", "EvalCallback", "Hook", "HookResult", "SAMPLE_CHUNK", "run_generators",
           "stop_when", "train_cohort"]
