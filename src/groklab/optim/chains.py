"""Named chains: each optimiser name maps to the function that builds its transforms.

A chain function takes a cohort's per-run hyper-parameters (``CohortHyper``) and returns the
optimiser's transforms, ending in the step by -rate; ``optim.build`` puts the gradient
filters and clipping in front. Adding an optimiser is one function decorated with
``@register_chain("name")`` (and the name in ``groklab.spec.OptimizerName``; a test keeps the
two equal).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from groklab.models.layout import ParamLayout
from groklab.optim.muon import Orthogonalize, muon_matrices
from groklab.optim.transforms import (
    AddDecayedWeights,
    AddL2,
    Columns,
    Momentum,
    Scale,
    ScaleByAdam,
    ScaleByRate,
    Transform,
    column,
)
from groklab.registry import Registry

if TYPE_CHECKING:
    from groklab.spec import RunSpec


@dataclass(frozen=True)
class CohortHyper:
    """A cohort's per-run hyper-parameters: the runs' specs, the ``[R, N]`` parameters whose
    dtype and device the columns take, the weight decay ``wd`` (``[R, 1]``, or ``[R, N]``
    masked by each run's ``decay_params``) and the parameter layout (which columns hold
    what; chains that treat kinds of parameters apart read it)."""

    specs: Sequence[RunSpec]
    params: torch.Tensor
    wd: torch.Tensor
    layout: ParamLayout

    def column(self, values: Iterable[float]) -> torch.Tensor:
        """``[R, 1]``: one value per run, in the dtype and on the device of the parameters."""
        return column(values, self.params.device, self.params.dtype)

    def setting(self, name: str) -> torch.Tensor:
        """``[R, 1]``: every run's spec setting ``name``."""
        return self.column(getattr(s, name) for s in self.specs)


ChainBuilder = Callable[[CohortHyper], list[Transform]]
_CHAINS: Registry[ChainBuilder] = Registry("optimizer")


def register_chain(name: str) -> Callable[[ChainBuilder], ChainBuilder]:
    """Decorator: register ``chain(hyper) -> transforms`` as optimiser ``name``."""

    return lambda chain: _CHAINS.add(name, chain)


def chain_names() -> list[str]:
    """Every registered optimiser's name, sorted."""
    return _CHAINS.names()


def optimizer_chain(name: str) -> ChainBuilder:
    """The chain function of optimiser ``name`` (``ValueError`` for an unknown name)."""
    return _CHAINS.get(name)


def _adam(h: CohortHyper) -> ScaleByAdam:
    return ScaleByAdam({"beta1": h.setting("beta1"), "beta2": h.setting("beta2"),
                        "eps": h.setting("eps")})


@register_chain("adamw")
def adamw_chain(h: CohortHyper) -> list[Transform]:
    """``torch.optim.AdamW``: Adam's moments, then decoupled weight decay."""
    return [_adam(h), AddDecayedWeights({"wd": h.wd}), ScaleByRate()]


@register_chain("adam")
def adam_chain(h: CohortHyper) -> list[Transform]:
    """``torch.optim.Adam``: weight decay added to the gradient (L2), then Adam's moments."""
    return [AddL2({"wd": h.wd}), _adam(h), ScaleByRate()]


@register_chain("sgd")
def sgd_chain(h: CohortHyper) -> list[Transform]:
    """``torch.optim.SGD``: L2 weight decay, then momentum (Nesterov per run)."""
    return [AddL2({"wd": h.wd}),
            Momentum({"momentum": h.setting("momentum"), "nesterov": h.setting("nesterov")}),
            ScaleByRate()]


@register_chain("muon")
def muon_chain(h: CohortHyper) -> list[Transform]:
    """``torch.optim.Muon`` on the hidden matrices and ``torch.optim.AdamW`` on the other
    parameters (optim/muon.py): Adam's moments on the other columns, Muon's orthogonalised
    momentum on the matrices' columns, decoupled weight decay, then the matrices' rates
    scaled by each run's ``muon_lr_ratio``."""
    layout = h.layout
    names = muon_matrices(layout)
    if not names:
        raise ValueError("optimizer 'muon' needs 2-D hidden weight matrices; this model has "
                         "none (its matrices are embeddings or the output head)")
    device = h.params.device
    mask = torch.zeros(layout.n_columns, dtype=torch.bool)
    for name in names:
        a, b = layout.offsets[name]
        mask[a:b] = True
    matrix_cols = mask.nonzero().flatten().to(device)
    other_cols = (~mask).nonzero().flatten().to(device)
    dtype = torch.bfloat16 if h.specs[0].precision == "bf16" else torch.float32
    shapes = [(layout.infos[n].shape[0], layout.infos[n].shape[1]) for n in names]
    ortho = Orthogonalize(shapes, {
        "momentum": h.setting("muon_momentum"), "nesterov": h.setting("muon_nesterov"),
        "match_rms": h.column(s.muon_adjust_lr == "match_rms_adamw" for s in h.specs)},
        dtype)
    ratio = h.setting("muon_lr_ratio")
    scale = torch.where(mask.to(device), ratio, torch.ones_like(ratio))
    return [Columns(_adam(h), other_cols), Columns(ortho, matrix_cols),
            AddDecayedWeights({"wd": h.wd}), Scale({"scale": scale}), ScaleByRate()]
