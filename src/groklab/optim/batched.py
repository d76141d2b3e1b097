"""Optimisers that update a whole cohort at once.

The cohort's parameters live in one flat buffer ``[R, N]`` (run axis first); every
hyper-parameter is a tensor over the run axis (``[R, 1]``) and the learning rate is a tensor
``[R, N]`` built from each run's per-group rates. One step is a handful of element-wise ops
over the whole buffer. ``torch.optim`` parameter-group semantics are the reference
(tests/test_optim.py checks a step against ``torch.optim.AdamW`` with param groups).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from groklab.spec import RunSpec


def _col(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(list(values), dtype=like.dtype, device=like.device).view(-1, 1)


def warmup_factor(warmup: torch.Tensor, step: int) -> torch.Tensor:
    """LambdaLR-style linear warm-up: update ``step`` (0-based) uses ``min(1, step / warmup)``."""
    return torch.where(warmup > 0, (step / warmup.clamp(min=1)).clamp(max=1.0), 1.0)


class BatchedOptimizer:
    """Base: holds the flat params, the ``[R, N]`` base rates and the per-run warm-up."""

    def __init__(self, params: torch.Tensor, base_lr: torch.Tensor, specs: Sequence[RunSpec]):
        self.params = params
        self.base_lr = base_lr
        self.warmup = _col([s.warmup for s in specs], params)
        self.weight_decay = _col([s.weight_decay for s in specs], params)
        self.t = 0  # updates done so far

    def lr(self) -> torch.Tensor:
        """The rates used by the next update (``[R, N]``)."""
        return self.base_lr * warmup_factor(self.warmup, self.t)

    @torch.no_grad()
    def step(self, grad: torch.Tensor) -> None:
        lr = self.lr()
        self.t += 1
        self._update(grad, lr)

    def _update(self, grad: torch.Tensor, lr: torch.Tensor) -> None:
        raise NotImplementedError


class BatchedAdamW(BatchedOptimizer):
    """AdamW (decoupled weight decay) or, with ``decoupled=False``, Adam with L2 in the grad."""

    def __init__(self, params, base_lr, specs, decoupled: bool = True):  # noqa: ANN001
        super().__init__(params, base_lr, specs)
        self.beta1 = _col([s.beta1 for s in specs], params)
        self.beta2 = _col([s.beta2 for s in specs], params)
        self.eps = _col([s.eps for s in specs], params)
        self.decoupled = decoupled
        self.exp_avg = torch.zeros_like(params)
        self.exp_avg_sq = torch.zeros_like(params)

    def _update(self, grad: torch.Tensor, lr: torch.Tensor) -> None:
        p, m, v = self.params, self.exp_avg, self.exp_avg_sq
        if self.decoupled:
            p.mul_(1 - lr * self.weight_decay)
        else:
            grad = grad.add(p * self.weight_decay)
        m.lerp_(grad, 1 - self.beta1)
        v.mul_(self.beta2).add_(grad * grad * (1 - self.beta2))
        bias1 = 1 - self.beta1**self.t
        bias2_sqrt = (1 - self.beta2**self.t).sqrt()
        denom = (v.sqrt() / bias2_sqrt).add_(self.eps)
        p.sub_(lr / bias1 * m / denom)


class BatchedSGD(BatchedOptimizer):
    """SGD with L2 weight decay, optional momentum and Nesterov (torch.optim.SGD semantics)."""

    def __init__(self, params, base_lr, specs):  # noqa: ANN001
        super().__init__(params, base_lr, specs)
        self.momentum = _col([s.momentum for s in specs], params)
        self.nesterov = _col([float(s.nesterov) for s in specs], params)
        self.buf: torch.Tensor | None = None

    def _update(self, grad: torch.Tensor, lr: torch.Tensor) -> None:
        g = grad.add(self.params * self.weight_decay)
        if self.buf is None:
            self.buf = g.clone()
        else:
            self.buf.mul_(self.momentum).add_(g)
        with_momentum = torch.where(self.nesterov > 0, g + self.momentum * self.buf, self.buf)
        g = torch.where(self.momentum > 0, with_momentum, g)
        self.params.sub_(lr * g)


def make_optimizer(
    name: str, params: torch.Tensor, base_lr: torch.Tensor, specs: Sequence[RunSpec]
) -> BatchedOptimizer:
    """The optimiser a cohort's specs name (all runs of a cohort share the family)."""
    if name == "adamw":
        return BatchedAdamW(params, base_lr, specs)
    if name == "adam":
        return BatchedAdamW(params, base_lr, specs, decoupled=False)
    if name == "sgd":
        return BatchedSGD(params, base_lr, specs)
    raise ValueError(f"unknown optimizer {name!r}")
