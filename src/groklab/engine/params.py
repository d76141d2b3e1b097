"""A cohort's parameters: one flat ``[R, N]`` buffer with named ``[R, *shape]`` views into it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class FlatParams:
    flat: torch.Tensor  # [R, N], updated in place by the optimiser
    views: dict[str, torch.Tensor]  # name -> [R, *shape] leaf views of ``flat`` (requires grad)
    offsets: dict[str, tuple[int, int]]  # name -> (start, stop) column range in ``flat``

    @classmethod
    def stack(cls, per_run: Sequence[dict[str, torch.Tensor]], device: torch.device) -> FlatParams:
        """Stack R runs' parameter dicts (same names and shapes) into one buffer."""
        names = list(per_run[0])
        R = len(per_run)
        flat = torch.cat(
            [torch.stack([p[n].reshape(-1) for p in per_run]) for n in names], dim=1
        ).to(device)
        views, offsets, start = {}, {}, 0
        for n in names:
            shape = per_run[0][n].shape
            stop = start + per_run[0][n].numel()
            views[n] = flat[:, start:stop].view(R, *shape).requires_grad_()
            offsets[n] = (start, stop)
            start = stop
        return cls(flat, views, offsets)

    def flatten_grads(self, grads: Sequence[torch.Tensor], out: torch.Tensor) -> torch.Tensor:
        """Write per-view gradients into ``out`` (``[R, N]``, same layout as ``flat``)."""
        R = self.flat.shape[0]
        return torch.cat([g.reshape(R, -1) for g in grads], dim=1, out=out)

    def select(self, keep: Sequence[int]) -> FlatParams:
        """A new buffer holding only the runs at positions ``keep`` (same layout)."""
        flat = self.flat.detach()[list(keep)].clone()
        R = flat.shape[0]
        views = {n: flat[:, a:b].view(R, *v.shape[1:]).requires_grad_()
                 for (n, (a, b)), v in zip(self.offsets.items(), self.views.values(), strict=True)}
        return FlatParams(flat, views, dict(self.offsets))

    def run(self, r: int) -> dict[str, torch.Tensor]:
        """Run ``r``'s parameters as a plain dict (copies)."""
        return {n: v[r].detach().clone() for n, v in self.views.items()}
