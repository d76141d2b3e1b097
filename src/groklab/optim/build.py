"""The optimiser a run's spec names, as a chain of transforms (see ``optim.transforms``).

``build_optimizer`` reads every per-run setting from each run's own spec (betas, eps, weight
decay and its mask, momentum, Nesterov, clipping, filter strength, ⊥Grad) and puts the
gradient filters in front of the optimiser's named chain (``optim.chains``): Grokfast, then
clipping, then ⊥Grad (``optim.ortho``). Filters are per run: runs with different filters,
or none, share a cohort.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import torch

from groklab.models.layout import KINDS, ParamLayout
from groklab.optim.chains import CohortHyper, optimizer_chain
from groklab.optim.ortho import OrthoGrad
from groklab.optim.rate_policy import RatePolicy
from groklab.optim.transforms import (
    Chain,
    ClipByGlobalNorm,
    EmaFilter,
    MaFilter,
    Subset,
    Transform,
    column,
)

if TYPE_CHECKING:
    from groklab.spec import RunSpec


def decay_columns(specs: Sequence[RunSpec], layout: ParamLayout, like: torch.Tensor
                  ) -> torch.Tensor:
    """Per-run weight decay: ``[R, 1]`` when every run decays everything, else ``[R, N]``
    with zeros where a run's ``decay_params`` excludes the column."""
    wd = column((s.weight_decay for s in specs), like.device, like.dtype)
    if all(s.decay_params == "all" for s in specs):
        return wd
    kinds = {"all": KINDS, "matrices": ("matrix",), "2d": ("matrix", "embedding")}
    masks = torch.stack([layout.mask(kinds[s.decay_params]).to(like.device) for s in specs])
    return wd * masks.to(like.dtype)


def grokfast_filters(specs: Sequence[RunSpec], params: torch.Tensor) -> list[Transform]:
    """One filter per (kind, MA window) among the runs, each over its own runs only
    (``Subset``; no wrapper when every run of the cohort shares it)."""
    groups: dict[tuple[str, int], list[int]] = {}
    for i, s in enumerate(specs):
        if s.grad_filter != "none":
            window = s.filter_window if s.grad_filter == "ma" else 0
            groups.setdefault((s.grad_filter, window), []).append(i)
    def per_run(values: Iterable[float]) -> torch.Tensor:
        return column(values, params.device, params.dtype)

    out: list[Transform] = []
    for (kind, window), rows in groups.items():
        lamb = per_run(specs[i].resolved_filter_lamb() for i in rows)
        f: Transform = (EmaFilter({"alpha": per_run(specs[i].filter_alpha for i in rows),
                                   "lamb": lamb}) if kind == "ema"
                        else MaFilter(window, {"lamb": lamb}))
        out.append(f if len(rows) == len(specs) else Subset(f, rows))
    return out


def transforms_for(specs: Sequence[RunSpec], layout: ParamLayout, params: torch.Tensor
                   ) -> list[Transform]:
    """The transform list of a cohort's optimiser, hyper-parameters per run: the Grokfast
    filters, clipping, ⊥Grad, then the chain named by the cohort's ``optimizer``."""
    chain = optimizer_chain(specs[0].optimizer)
    out = grokfast_filters(specs, params)
    if any(s.grad_clip is not None for s in specs):
        out.append(ClipByGlobalNorm({"max_norm": column(
            (s.grad_clip if s.grad_clip is not None else float("inf") for s in specs),
            params.device, params.dtype)}))
    ortho = [i for i, s in enumerate(specs) if s.grad_ortho]
    if ortho:
        f = OrthoGrad(list(layout.offsets.values()))
        out.append(f if len(ortho) == len(specs) else Subset(f, ortho))
    return out + chain(CohortHyper(specs, params, decay_columns(specs, layout, params), layout))


def build_optimizer(specs: Sequence[RunSpec], layout: ParamLayout, params: torch.Tensor,
                    fuse: bool = False) -> tuple[Chain, RatePolicy]:
    """The cohort's optimiser over ``params`` (``[R, N]``) and the rate policy it reads;
    ``fuse``: its element-wise transforms compiled together (``Chain``)."""
    policy = RatePolicy(layout, specs, params.device)
    return Chain(params, transforms_for(specs, layout, params), policy, fuse), policy
