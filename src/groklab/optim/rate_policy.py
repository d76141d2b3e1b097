"""Rate policies: ``(update t) -> [R, N]`` learning rates for a cohort (docs/protocol.md §5).

A run's rate for a column is

    rate = group rate × depth multiplier(block) × warm-up(t) × schedule(t)

- group rate: the run's rate for the column's group (``RunSpec.rates()``);
- depth multiplier: 1, or a decay over blocks i = 0..L-1 (embeddings take block 0, the final
  norm and head the deepest block): exponential γ^i, linear 1 - (1 - r)·i/(L-1), cosine
  r + (1 - r)(1 + cos(π i/(L-1)))/2;
- warm-up: ``min(1, t / warmup)`` for update t counted from 0 (``LambdaLR`` semantics);
- schedule: 1 (constant), or after warm-up a cosine from 1 down to ``min_lr_ratio`` at the
  last update.

The per-column base rates (group × depth) are kept as one ``[R, N]`` tensor; a policy that
adapts them during training (an adaptive embedding rate) calls ``set_slot_rates``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from groklab.models.layout import ParamLayout
from groklab.optim.transforms import column

if TYPE_CHECKING:
    from groklab.spec import RunSpec


def depth_multiplier(kind: str, i: int, n_blocks: int, gamma: float = 0.8,
                     floor: float = 0.1) -> float:
    """The depth-decay factor of block ``i`` of ``n_blocks`` (protocol §5)."""
    if kind == "none":
        return 1.0
    if kind == "exponential":
        return gamma**i
    frac = i / (n_blocks - 1) if n_blocks > 1 else 0.0
    if kind == "linear":
        return 1.0 - (1.0 - floor) * frac
    if kind == "cosine":
        return floor + (1.0 - floor) * (1.0 + math.cos(math.pi * frac)) / 2.0
    raise ValueError(f"unknown depth decay {kind!r}")


class RatePolicy:
    """Per-run, per-column learning rates at every update, from the runs' specs."""

    def __init__(self, layout: ParamLayout, specs: Sequence[RunSpec], device: torch.device):
        self.layout = layout
        # slots: (group, block) pairs; every column belongs to one
        slot_of: dict[str, int] = {}
        self.slots: list[tuple[str, int]] = []
        for name in layout.infos:
            key = (layout.groups[name], layout.block_of(name))
            if key not in self.slots:
                self.slots.append(key)
            slot_of[name] = self.slots.index(key)
        self.slot_of = slot_of
        self.slot_rates = torch.tensor(
            [[s.rates()[g] * depth_multiplier(s.lr_depth, i, layout.n_blocks, s.lr_depth_gamma,
                                              s.lr_depth_floor)
              for g, i in self.slots] for s in specs], dtype=torch.float64)  # [R, S]
        self.hp = {
            "warmup": column((s.warmup for s in specs), device),
            "cosine": column((s.lr_schedule == "cosine" for s in specs), device),
            "min_ratio": column((s.min_lr_ratio for s in specs), device),
        }
        self.total = max(s.steps for s in specs)  # cohort runs share ``steps``
        # from this update on every factor is 1 (no schedule left), so the base is the rate
        self.flat_from = (max(s.warmup for s in specs)
                          if all(s.lr_schedule == "constant" for s in specs) else None)
        self.device = device
        self._cols: torch.Tensor | None = None
        # [R, 1] updates each run had before this cohort's first (runs that joined a cohort
        # later than others, or were carried over from another cohort); None: all 0
        self.offset: torch.Tensor | None = None
        self._min_offset = 0

    def set_offsets(self, offsets: Sequence[int]) -> None:
        """Every run's own update count at this cohort's update 0 (warm-up and schedule go
        by the run's own count)."""
        if not any(offsets):
            self.offset, self._min_offset = None, 0
            return
        self.offset = column(offsets, self.device)
        self._min_offset = min(offsets)

    def set_slot_rates(self, rates: torch.Tensor) -> None:
        """Replace the base rate of every (run, slot): ``[R, S]``."""
        self.slot_rates = rates.detach().to(torch.float64).cpu()
        self._cols = None

    def base(self) -> torch.Tensor:
        """``[R, N]`` base rates (group × depth), before warm-up and schedule."""
        if self._cols is None:
            R = self.slot_rates.shape[0]
            out = torch.empty(R, self.layout.n_columns, device=self.device)
            values = {n: self.slot_rates[:, s] for n, s in self.slot_of.items()}
            self._cols = self.layout.columns(values, out)
        return self._cols

    def factor(self, t: int | torch.Tensor) -> torch.Tensor:
        """``[R, 1]`` warm-up × schedule for update ``t`` (0-based; or ``[R, 1]``, per run)."""
        w = self.hp["warmup"]
        warm = torch.where(w > 0, (t / w.clamp(min=1)).clamp(max=1.0), 1.0)
        span = (self.total - w).clamp(min=1)
        progress = ((t - w) / span).clamp(0.0, 1.0)
        cos = self.hp["min_ratio"] + (1 - self.hp["min_ratio"]) * 0.5 * (
            1 + torch.cos(math.pi * progress))
        return warm * torch.where(self.hp["cosine"] > 0, cos, 1.0)

    def __call__(self, t: int) -> torch.Tensor:
        """``[R, N]`` rates for this cohort's update ``t`` (0-based; every run at its own
        count ``t + offset``; read-only: may be the base itself)."""
        if self.flat_from is not None and t + self._min_offset >= self.flat_from:
            return self.base()
        return self.base() * self.factor(t if self.offset is None else self.offset + t)

    def rows(self) -> dict[str, torch.Tensor]:
        """The per-run state (engine/rows.py): every run's base rate per slot."""
        return {"slot_rates": self.slot_rates}

    def loaded(self, j: int) -> None:
        self._cols = None
