"""⊥Grad: every weight tensor's gradient made orthogonal to the tensor, its norm kept.

From "Grokking at the Edge of Numerical Stability" (Prieto, Barsbey, Mediano and Birdal,
2025), as its official code (``OrthoGrad._orthogonalize_gradients``, the same in
``pytorch_optimizer.OrthoGrad``) defines it: for each parameter tensor ``w`` (every one:
matrices, embeddings, biases, norms) with gradient ``g``, both flattened,

    g⊥ = g − (w·g / (w·w + 1e-30)) w
    g ← g⊥ · ‖g‖ / (‖g⊥‖ + 1e-30)

before the base optimiser sees the gradient (docs/protocol.md §4, ⊥Grad). A tensor that is
all zeros (a fresh bias) keeps its gradient. Per run: each run's own tensors, never the
cohort's. In a chain it stands where the gradient filters end, after the Grokfast filter and
clipping (the order of a training loop that filters and clips ``p.grad`` and then calls the
wrapped optimiser's ``step``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from groklab.optim.transforms import Context, State, Transform

EPS = 1e-30  # the official implementation's


class OrthoGrad(Transform):
    """⊥Grad over the parameters at column ranges ``segments`` (``(start, end)``, one per
    tensor; from the layout's offsets), for every run of the input."""

    # four reductions per parameter tensor: a compiled graph of them took a minute to build
    fusable = False

    def __init__(self, segments: Sequence[tuple[int, int]]):
        super().__init__()
        self.segments = list(segments)

    def update(self, u: torch.Tensor, state: State, ctx: Context) -> torch.Tensor:
        for a, b in self.segments:
            w, g = ctx.params[:, a:b], u[:, a:b]
            proj = torch.linalg.vecdot(w, g, dim=1).unsqueeze(1) / (
                torch.linalg.vecdot(w, w, dim=1).unsqueeze(1) + EPS)
            g_norm = torch.linalg.vector_norm(g, dim=1, keepdim=True)
            ortho = torch.addcmul(g, proj, w, value=-1)
            scale = g_norm / (torch.linalg.vector_norm(ortho, dim=1, keepdim=True) + EPS)
            g.copy_(ortho.mul_(scale))
        return u
