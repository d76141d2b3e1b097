"""Progress measures at evaluations, and afterwards from a finished run's saved weights
(docs/protocol.md §4.1; the measures themselves: groklab/measures).

``ProgressMeasures`` is an own hook (engine/hooks.py): the run setting ``measures`` ("norms"
or "fourier", per run) asks for it and is part of the run's id. A run with
``measures_every`` = N is measured at the cohort's first evaluation, at every evaluation
whose step is a multiple of N · ``eval_every``, and at the last step; at its other
evaluations, and for runs without measures, the hook gives NaN, which the cohort does not
record. Measuring reads the parameters only: under ``torch.no_grad``, the model in eval mode
(no dropout), no random stream drawn, nothing written; so a run's curve is the same with
measures on or off, alone or beside runs with other measures (tests/test_measures.py).

``measure_saved`` computes the same measures for a finished run from its final weights
(store/weights.py), with its training split rebuilt from its seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from groklab.engine.hooks import CohortView, HookResult
from groklab.engine.sampler import run_generators
from groklab.engine.tables import cohort_tables
from groklab.measures import FourierScope, MeasureError, fourier_scope, measure
from groklab.models import CohortModel
from groklab.models.layout import assign_groups
from groklab.spec import RunSpec
from groklab.store.weights import load_run


def train_pairs(scope: FourierScope, inputs: torch.Tensor, rows: Sequence[torch.Tensor]
                ) -> torch.Tensor:
    """``[R, p²]`` bool: the pairs (x, y) in each run's training split (``rows``: per run,
    rows of the table ``inputs``)."""
    mask = torch.zeros(len(rows), scope.p * scope.p, dtype=torch.bool)
    for r, idx in enumerate(rows):
        mask[r, scope.pair_index(inputs[idx.cpu()].cpu())] = True
    return mask


class ProgressMeasures:
    """The evaluation hook recording each run's measures (see the module docstring)."""

    def __init__(self, specs: Sequence[RunSpec], model: CohortModel, groups: dict[str, str],
                 inputs: torch.Tensor, train: Sequence[torch.Tensor], device: torch.device,
                 chunk: Callable[[int], int]):
        self.kind = [s.measures for s in specs]
        self.every = [s.measures_every for s in specs]
        self.steps, self.eval_every = specs[0].steps, specs[0].eval_every
        self.model, self.groups, self.chunk = model, groups, chunk
        fourier = [i for i, k in enumerate(self.kind) if k == "fourier"]
        self.scope = fourier_scope(specs[0].task, specs[0].task_args()) if fourier else None
        self.train = None  # [R, p²] pairs in each run's training split (Fourier runs)
        if self.scope is not None:
            self.train = train_pairs(self.scope, inputs, train).to(device)

    def due(self, pos: int, t: int) -> bool:
        """Whether the run at position ``pos`` of the cohort is measured at step ``t``."""
        if self.kind[pos] == "none":
            return False
        return (t == min(self.eval_every, self.steps) or t == self.steps
                or t % (self.every[pos] * self.eval_every) == 0)

    @torch.no_grad()
    def __call__(self, state: CohortView, step: int,
                 metrics: dict[str, torch.Tensor]) -> HookResult | None:
        due = {kind: [i for i, pos in enumerate(state.index)
                      if self.kind[pos] == kind and self.due(pos, step)]
               for kind in ("norms", "fourier")}
        if not any(due.values()):
            return None
        views = state.params.views
        out: dict[str, torch.Tensor] = {}
        for kind, rows in due.items():
            if not rows:
                continue
            pick = torch.tensor(rows, device=state.params.flat.device)
            params = {n: v.detach().index_select(0, pick) for n, v in views.items()}
            train = None
            if kind == "fourier":
                assert self.train is not None
                train = self.train[[state.index[i] for i in rows]]
            values = measure(kind, self.model, params, self.groups, self.scope, train,
                             chunk=self.chunk(len(rows)))
            for name, v in values.items():
                if name not in out:
                    out[name] = torch.full((len(state.index),), math.nan, dtype=torch.float64)
                out[name][rows] = v.detach().cpu().double()  # MPS has no float64
        return HookResult(metrics=out)


def progress_measures(specs: Sequence[RunSpec], model: CohortModel, groups: dict[str, str],
                      inputs: torch.Tensor, train: Sequence[torch.Tensor],
                      device: torch.device, chunk: Callable[[int], int]
                      ) -> ProgressMeasures | None:
    """The cohort's measures hook when a run asks for measures, else None."""
    if all(s.measures == "none" for s in specs):
        return None
    return ProgressMeasures(specs, model, groups, inputs, train, device, chunk)


@dataclass(frozen=True)
class RunMeasures:
    """A finished run's measures from its final weights: ``values`` by name (see
    groklab/measures/compute.py); ``scope`` None and ``why`` set when the Fourier measures
    are not defined for its task (then weight norms only)."""

    spec: RunSpec
    values: dict[str, float]
    scope: FourierScope | None
    why: str | None = None


def measure_saved(root: str | Path, run_id: str, *, key: Sequence[int] | None = None,
                  device: str | torch.device = "cpu") -> RunMeasures:
    """The measures of finished run ``run_id`` of the store in ``root``, from its saved final
    weights (its training pairs rebuilt from its seed); ``key`` fixes the key frequencies
    (default: those of its own spectrum)."""
    loaded = load_run(root, run_id)
    spec, model = loaded.spec, loaded.model
    groups = assign_groups(model.param_info(), spec.group_rules or model.default_groups())
    params = {n: t.to(device=device, dtype=torch.float32)[None]
              for n, t in loaded.params.items()}
    try:
        scope: FourierScope | None = fourier_scope(spec.task, spec.task_args())
        why = None
    except MeasureError as e:
        scope, why = None, str(e)
    train = None
    if scope is not None:
        tables = cohort_tables([spec], [run_generators(spec.seed)])
        train = train_pairs(scope, tables.inputs, tables.train).to(device)
    values = measure("fourier" if scope else "norms", model, params, groups, scope, train,
                     key=key)
    return RunMeasures(spec, {n: float(v[0]) for n, v in values.items()}, scope, why)
