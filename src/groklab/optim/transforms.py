"""Gradient transforms over a cohort's flat ``[R, N]`` buffer, chained into an optimiser.

In the spirit of optax: each transform is small, holds its per-run hyper-parameters as
``[R, 1]`` (or ``[R, N]``) tensors in ``hp`` and its state as a dict of tensors with the run
axis first, and maps an update to the next one. ``Chain`` runs them in order after
backward and applies the result (docs/design.md, decision 8):

    filter (Grokfast; per run via Subset) -> clip (per run) -> L2 / moments (Adam) or momentum (SGD)
    -> decoupled weight decay (masked) -> scale by -rate (from the rate policy)

``torch.optim`` is the reference: ``adamw_chain`` equals ``torch.optim.AdamW`` with parameter
groups, ``adam_chain`` ``torch.optim.Adam`` and ``sgd_chain`` ``torch.optim.SGD``
(tests/test_optim.py, tests/test_transforms.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

State = dict[str, torch.Tensor]


@dataclass
class Context:
    """What an update may read: the update count ``t`` (1 for the first), the parameters and
    the rates of this update (``[R, N]``)."""

    t: int
    params: torch.Tensor
    lr: torch.Tensor


@dataclass
class Transform:
    """Base: per-run hyper-parameters ``hp`` (run axis first); stateless unless overridden."""

    hp: dict[str, torch.Tensor] = field(default_factory=dict)

    def init(self, params: torch.Tensor) -> State:
        return {}

    def update(self, u: torch.Tensor, state: State, ctx: Context) -> torch.Tensor:
        raise NotImplementedError

    def select(self, keep: torch.Tensor, state: State) -> None:
        """Keep the runs at positions ``keep`` (after others retired) in ``hp`` and ``state``."""
        self.hp = {k: v[keep] for k, v in self.hp.items()}
        for k in state:
            state[k] = state[k][keep]


class Subset(Transform):
    """``inner`` applied to the runs at positions ``rows`` only; the other runs' updates pass
    through unchanged. It lets one cohort mix runs with and without a transform (a Grokfast
    filter on some runs, another filter or window on others) while each run computes exactly
    what it computes alone; the inner state exists for those rows only."""

    def __init__(self, inner: Transform, rows: Sequence[int]):
        super().__init__()
        self.inner = inner
        self.rows = torch.as_tensor(list(rows), dtype=torch.long)

    def init(self, params: torch.Tensor) -> State:
        self.rows = self.rows.to(params.device)
        return self.inner.init(params[self.rows])

    def update(self, u: torch.Tensor, state: State, ctx: Context) -> torch.Tensor:
        if not len(self.rows):
            return u
        sub = Context(ctx.t, ctx.params[self.rows], ctx.lr[self.rows])
        u[self.rows] = self.inner.update(u[self.rows], state, sub)
        return u

    def select(self, keep: torch.Tensor, state: State) -> None:
        where = {int(r): i for i, r in enumerate(self.rows.tolist())}
        kept = [(pos, where[int(r)]) for pos, r in enumerate(keep.tolist()) if int(r) in where]
        inner_keep = torch.tensor([i for _, i in kept], dtype=torch.long, device=keep.device)
        self.inner.select(inner_keep, state)
        self.rows = torch.tensor([pos for pos, _ in kept], dtype=torch.long, device=keep.device)


class EmaFilter(Transform):
    """Grokfast-EMA: ``m ← α m + (1 - α) g`` (m starts at the first g); ``g ← g + λ m``."""

    def init(self, params: torch.Tensor) -> State:
        return {"ema": torch.zeros_like(params)}

    def update(self, u: torch.Tensor, state: State, ctx: Context) -> torch.Tensor:
        m = state["ema"]
        if ctx.t == 1:
            m.copy_(u)
        else:
            m.lerp_(u, 1 - self.hp["alpha"])
        return u.add_(m * self.hp["lamb"])


class MaFilter(Transform):
    """Grokfast-MA: keep the last ``window`` gradients; once the window is full,
    ``g ← g + λ · mean(window)``. The window's sum is kept running and recomputed exactly
    once per window so rounding cannot accumulate."""

    def __init__(self, window: int, hp: dict[str, torch.Tensor]):
        super().__init__(hp)
        self.window = window

    def init(self, params: torch.Tensor) -> State:
        R, N = params.shape
        return {"window": params.new_zeros(R, self.window, N), "sum": torch.zeros_like(params)}

    def update(self, u: torch.Tensor, state: State, ctx: Context) -> torch.Tensor:
        buf, total = state["window"], state["sum"]
        slot = (ctx.t - 1) % self.window
        if ctx.t > self.window:
            total.sub_(buf[:, slot])
        buf[:, slot] = u
        if slot == self.window - 1:
            torch.sum(buf, dim=1, out=total)
        else:
            total.add_(u)
        if ctx.t < self.window:
            return u
        return u.add_(total * (self.hp["lamb"] / self.window))


class ClipByGlobalNorm(Transform):
    """Per run: scale the update so its L2 norm is at most ``max_norm`` (inf: no clipping),
    as ``torch.nn.utils.clip_grad_norm_`` does on one model."""

    def update(self, u: torch.Tensor, state: State, ctx: Context) -> torch.Tensor:
        norm = torch.linalg.vector_norm(u, dim=1, keepdim=True)
        return u.mul_((self.hp["max_norm"] / (norm + 1e-6)).clamp(max=1.0))


class AddL2(Transform):
    """Coupled weight decay: ``g ← g + wd · p`` (Adam's and SGD's ``weight_decay``)."""

    def update(self, u: torch.Tensor, state: State, ctx: Context) -> torch.Tensor:
        return u.addcmul_(ctx.params, self.hp["wd"])


class ScaleByAdam(Transform):
    """Adam's moments with bias correction: ``m̂ / (√v̂ + eps)``."""

    def init(self, params: torch.Tensor) -> State:
        return {"exp_avg": torch.zeros_like(params), "exp_avg_sq": torch.zeros_like(params)}

    def update(self, u: torch.Tensor, state: State, ctx: Context) -> torch.Tensor:
        b1, b2, eps = self.hp["beta1"], self.hp["beta2"], self.hp["eps"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(u, 1 - b1)
        v.mul_(b2).addcmul_(u, u * (1 - b2))
        bias1 = 1 - b1**ctx.t
        bias2_sqrt = (1 - b2**ctx.t).sqrt()
        denom = v.sqrt().div_(bias2_sqrt).add_(eps)
        return torch.div(m, denom, out=u).div_(bias1)


class Momentum(Transform):
    """SGD momentum (``torch.optim.SGD``, dampening 0): ``b ← μ b + g`` with ``b = g`` at the
    first update; the update is ``b``, ``g + μ b`` with Nesterov, or ``g`` when μ = 0."""

    def init(self, params: torch.Tensor) -> State:
        return {"momentum_buffer": torch.zeros_like(params)}

    def update(self, u: torch.Tensor, state: State, ctx: Context) -> torch.Tensor:
        mu, nesterov = self.hp["momentum"], self.hp["nesterov"]
        b = state["momentum_buffer"]
        if ctx.t == 1:
            b.copy_(u)
        else:
            b.mul_(mu).add_(u)
        with_momentum = torch.where(nesterov > 0, u + mu * b, b)
        return torch.where(mu > 0, with_momentum, u)


class AddDecayedWeights(Transform):
    """Decoupled weight decay (AdamW): ``u ← u + wd · p``; ``wd`` is ``[R, 1]`` or a masked
    ``[R, N]`` (no decay on the masked-out columns)."""

    def update(self, u: torch.Tensor, state: State, ctx: Context) -> torch.Tensor:
        return u.addcmul_(ctx.params, self.hp["wd"])


class ScaleByRate(Transform):
    """The final step: ``u ← -rate · u`` with the rate policy's ``[R, N]`` rates."""

    def update(self, u: torch.Tensor, state: State, ctx: Context) -> torch.Tensor:
        return u.mul_(ctx.lr).neg_()


class Chain:
    """Transforms applied in order; ``step`` updates the parameters in place.

    ``rates(t)`` gives the ``[R, N]`` rates of update t (0-based; see ``optim.rates``).
    The chain's state (every transform's tensors and the update count) is a checkpoint.
    """

    def __init__(self, params: torch.Tensor, transforms: Sequence[Transform],
                 rates: Callable[[int], torch.Tensor]):
        self.params = params
        self.transforms = list(transforms)
        self.rates = rates
        self.states = [tr.init(params) for tr in self.transforms]
        self.t = 0  # updates done so far

    @torch.no_grad()
    def step(self, grad: torch.Tensor) -> None:
        """One update from ``grad`` (``[R, N]``; used as scratch space and overwritten)."""
        ctx = Context(self.t + 1, self.params, self.rates(self.t))
        u = grad
        for tr, state in zip(self.transforms, self.states, strict=True):
            u = tr.update(u, state, ctx)
        self.params.add_(u)
        self.t += 1

    def select(self, keep: torch.Tensor) -> None:
        """Keep the runs at positions ``keep`` (the parameters are re-pointed by the caller)."""
        for tr, state in zip(self.transforms, self.states, strict=True):
            tr.select(keep, state)

    def state_dict(self) -> dict:
        return {"t": self.t, "states": [{k: v.clone() for k, v in s.items()}
                                        for s in self.states]}

    def load_state_dict(self, sd: dict) -> None:
        self.t = int(sd["t"])
        for state, saved in zip(self.states, sd["states"], strict=True):
            for k, v in saved.items():
                state[k].copy_(v)
