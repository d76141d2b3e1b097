"""Building blocks over *stacked* parameters: every weight carries a leading run axis R.

A cohort of R runs is one computation: ``x`` is ``[R, M, in]``, a weight ``[R, in, out]``, so a
linear layer is one batched matmul instead of R small ones (docs/design.md, decision 3).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ w + b`` per run: x ``[R, ..., in]``, w ``[R, in, out]``, b ``[R, out]``."""
    shape = x.shape
    x2 = x.reshape(shape[0], -1, shape[-1])
    y = torch.bmm(x2, w) if b is None else torch.baddbmm(b.unsqueeze(1), x2, w)
    return y.view(*shape[:-1], w.shape[-1])


def layer_norm(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """LayerNorm over the last axis with per-run affine ``w, b`` of shape ``[R, D]``."""
    y = F.layer_norm(x, x.shape[-1:], eps=eps)
    view = (w.shape[0],) + (1,) * (x.dim() - 2) + (w.shape[-1],)
    return torch.addcmul(b.view(view), y, w.view(view))


def embed(table: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Row lookup per run: table ``[R, V, D]``, tokens ``[R, ...]`` -> ``[R, ..., D]``.

    Tokens must lie in ``[0, V)``: one outside would read another run's rows of the stacked
    table. The engine checks a cohort's whole task table once (``check_vocabulary`` in
    engine/state.py) rather than every batch here; a single run's table (R = 1) has no
    neighbour rows, and the lookup itself refuses an id outside it."""
    R, V, D = table.shape
    offsets = (torch.arange(R, device=tokens.device) * V).view(R, *([1] * (tokens.dim() - 1)))
    return F.embedding(tokens + offsets, table.reshape(R * V, D))


def uniform_(t: torch.Tensor, fan_in: int, generator: torch.Generator) -> torch.Tensor:
    """PyTorch's default nn.Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return t.uniform_(-bound, bound, generator=generator)
