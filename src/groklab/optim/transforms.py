"""Gradient transforms over a cohort's flat ``[R, N]`` buffer, chained into an optimiser.

In the spirit of optax: each transform is small, holds its per-run hyper-parameters as
``[R, 1]`` (or ``[R, N]``) tensors in ``hp`` and its state as a dict of tensors with the run
axis first, and maps an update to the next one. ``Chain`` runs them in order after
backward and applies the result (docs/design.md, decision 8):

    filter (Grokfast; per run via Subset) -> clip (per run) -> ⊥Grad (per run; optim/ortho.py)
    -> L2 / moments (Adam) or momentum (SGD) or, per column kind (Columns), Adam's moments
    and Muon's orthogonalised momentum (optim/muon.py)
    -> decoupled weight decay (masked) -> scale by -rate (from the rate policy)

The named chains of optim/chains.py assemble them; ``torch.optim`` is the reference:
``adamw_chain`` equals ``torch.optim.AdamW`` with parameter groups, ``adam_chain``
``torch.optim.Adam``, ``sgd_chain`` ``torch.optim.SGD`` and ``muon_chain``
``torch.optim.Muon`` plus ``torch.optim.AdamW`` (tests/test_optim.py,
tests/test_transforms.py, tests/test_muon.py).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

State = dict[str, torch.Tensor]
# what a failed compile raises (Inductor's errors arrive wrapped in the first)
COMPILE_ERRORS = (torch._dynamo.exc.BackendCompilerFailed, torch._inductor.exc.InductorError)


def column(values: Iterable[float], device: torch.device | None = None,
           dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[R, 1]``: one value per run, the shape of a per-run hyper-parameter (``hp``)."""
    return torch.tensor(list(values), dtype=dtype, device=device).view(-1, 1)


@dataclass
class Context:
    """What an update may read: the update count ``t`` (1 for the first), the parameters and
    the rates of this update (``[R, N]``), and ``offset``: ``[R, 1]`` updates each run had
    before this cohort's first (a warm start that carries its parent's optimiser state), or
    None when every run starts at 0."""

    t: int
    params: torch.Tensor
    lr: torch.Tensor
    offset: torch.Tensor | None = None

    @property
    def run_t(self) -> int | torch.Tensor:
        """Every run's own update count: ``t``, or ``[R, 1]`` ``t + offset``."""
        return self.t if self.offset is None else self.offset + self.t

    def rows(self, rows: torch.Tensor) -> Context:
        return Context(self.t, self.params[rows], self.lr[rows],
                       None if self.offset is None else self.offset[rows])

    def columns(self, cols: torch.Tensor) -> Context:
        return Context(self.t, self.params[:, cols], self.lr[:, cols], self.offset)


@dataclass
class Transform:
    """Base: per-run hyper-parameters ``hp`` (run axis first); stateless unless overridden.

    ``fusable``: the update compiles into one graph whatever the update count (a fused
    chain compiles runs of such transforms together: ``Chain(fuse=True)``); a transform
    whose code branches on the count in ways a compiled graph would be rebuilt for (the
    Grokfast-MA window's slot) or whose work is not element-wise (Muon's Newton–Schulz
    products) says False and runs as written."""

    hp: dict[str, torch.Tensor] = field(default_factory=dict)
    fusable: ClassVar[bool] = True

    def init(self, params: torch.Tensor) -> State:
        return {}

    def update(self, u: torch.Tensor, state: State, ctx: Context) -> torch.Tensor:
        raise NotImplementedError

    @property
    def name(self) -> str:
        return type(self).__name__

    def run_state(self, i: int, state: State, t: int) -> State:
        """Run ``i``'s state, by ``<transform>.<key>`` (its row of every state tensor), at
        the chain's update count ``t`` (for state laid out by the count: ``MaFilter``)."""
        return {f"{self.name}.{k}": v[i].clone() for k, v in state.items()}

    def load_run_state(self, i: int, state: State, saved: State, t: int) -> None:
        """Set run ``i``'s rows from a ``run_state`` (of the same transform), at this chain's
        update count ``t``."""
        for k, v in state.items():
            v[i] = saved[f"{self.name}.{k}"]


class Subset(Transform):
    """``inner`` applied to the runs at positions ``rows`` only; the other runs' updates pass
    through unchanged. It lets one cohort mix runs with and without a transform (a Grokfast
    filter on some runs, another filter or window on others) while each run computes exactly
    what it computes alone; the inner state exists for those rows only."""

    def __init__(self, inner: Transform, rows: Sequence[int]):
        super().__init__()
        self.inner = inner
        self.rows = torch.as_tensor(list(rows), dtype=torch.long)
        self.fusable = inner.fusable

    def init(self, params: torch.Tensor) -> State:
        self.rows = self.rows.to(params.device)
        return self.inner.init(params[self.rows])

    def update(self, u: torch.Tensor, state: State, ctx: Context) -> torch.Tensor:
        if not len(self.rows):
            return u
        u[self.rows] = self.inner.update(u[self.rows], state, ctx.rows(self.rows))
        return u

    @property
    def name(self) -> str:
        return self.inner.name

    def _row(self, i: int) -> int | None:
        where = (self.rows == i).nonzero().flatten().tolist()
        return where[0] if where else None

    def run_state(self, i: int, state: State, t: int) -> State:
        row = self._row(i)
        return {} if row is None else self.inner.run_state(row, state, t)

    def load_run_state(self, i: int, state: State, saved: State, t: int) -> None:
        row = self._row(i)
        if row is not None:
            self.inner.load_run_state(row, state, saved, t)


class Columns(Transform):
    """``inner`` applied to the columns ``cols`` only (``[R, len(cols)]``, in that order); the
    other columns pass through unchanged. It gives the parameters of some kinds their own
    transform (Muon: the hidden matrices orthogonalised, the rest through Adam's moments);
    the inner state exists for those columns only."""

    def __init__(self, inner: Transform, cols: torch.Tensor):
        super().__init__()
        self.inner = inner
        self.cols = cols
        self.fusable = inner.fusable

    def init(self, params: torch.Tensor) -> State:
        self.cols = self.cols.to(params.device)
        return self.inner.init(params[:, self.cols])

    def update(self, u: torch.Tensor, state: State, ctx: Context) -> torch.Tensor:
        part = self.inner.update(u[:, self.cols], state, ctx.columns(self.cols))
        return u.index_copy_(1, self.cols, part)

    @property
    def name(self) -> str:
        return self.inner.name

    def run_state(self, i: int, state: State, t: int) -> State:
        return self.inner.run_state(i, state, t)

    def load_run_state(self, i: int, state: State, saved: State, t: int) -> None:
        self.inner.load_run_state(i, state, saved, t)


class EmaFilter(Transform):
    """Grokfast-EMA: ``m ← α m + (1 - α) g`` (m starts at the first g); ``g ← g + λ m``."""

    def init(self, params: torch.Tensor) -> State:
        return {"ema": torch.zeros_like(params)}

    def update(self, u: torch.Tensor, state: State, ctx: Context) -> torch.Tensor:
        m = state["ema"]
        if ctx.offset is not None:  # runs at different counts: the first update per run
            m.copy_(torch.where(ctx.run_t == 1, u, m.lerp(u, 1 - self.hp["alpha"])))
        elif ctx.t == 1:
            m.copy_(u)
        else:
            m.lerp_(u, 1 - self.hp["alpha"])
        return u.add_(m * self.hp["lamb"])


class MaFilter(Transform):
    """Grokfast-MA: keep the last ``window`` gradients; once the window is full,
    ``g ← g + λ · mean(window)``. The window's sum is kept running and recomputed exactly
    once per window so rounding cannot accumulate."""

    fusable = False  # the slot it writes depends on the count: one graph per slot

    def __init__(self, window: int, hp: dict[str, torch.Tensor]):
        super().__init__(hp)
        self.window = window

    def init(self, params: torch.Tensor) -> State:
        R, N = params.shape
        return {"window": params.new_zeros(R, self.window, N), "sum": torch.zeros_like(params)}

    def update(self, u: torch.Tensor, state: State, ctx: Context) -> torch.Tensor:
        buf, total = state["window"], state["sum"]
        slot = (ctx.t - 1) % self.window
        if ctx.t > self.window or ctx.offset is not None:  # a slot not yet written holds 0
            total.sub_(buf[:, slot])
        buf[:, slot] = u
        if slot == self.window - 1:
            torch.sum(buf, dim=1, out=total)
        else:
            total.add_(u)
        if ctx.offset is not None:  # the window is full per run
            return torch.where(ctx.run_t >= self.window,
                               u + total * (self.hp["lamb"] / self.window), u)
        if ctx.t < self.window:
            return u
        return u.add_(total * (self.hp["lamb"] / self.window))

    def run_state(self, i: int, state: State, t: int) -> State:
        """Run ``i``'s window in age order (oldest first), so a run carried into another
        cohort finds its slots where that cohort's count puts them."""
        out = super().run_state(i, state, t)
        key = f"{self.name}.window"
        out[key] = torch.roll(out[key], -(t % self.window), 0)
        return out

    def load_run_state(self, i: int, state: State, saved: State, t: int) -> None:
        """The inverse of ``run_state`` at this chain's count ``t`` (0 at a cohort's start)."""
        key = f"{self.name}.window"
        aligned = dict(saved) | {key: torch.roll(saved[key], t % self.window, 0)}
        super().load_run_state(i, state, aligned, t)


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
        t = ctx.run_t
        bias1 = 1 - b1**t
        bias2_sqrt = (1 - b2**t).sqrt()
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
        if ctx.offset is not None:
            b.copy_(torch.where(ctx.run_t == 1, u, b * mu + u))
        elif ctx.t == 1:
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


class Scale(Transform):
    """``u ← s · u`` with a fixed ``s`` (``[R, 1]`` or ``[R, N]``)."""

    def update(self, u: torch.Tensor, state: State, ctx: Context) -> torch.Tensor:
        return u.mul_(self.hp["scale"])


class ScaleByRate(Transform):
    """The final step: ``u ← -rate · u`` with the rate policy's ``[R, N]`` rates."""

    def update(self, u: torch.Tensor, state: State, ctx: Context) -> torch.Tensor:
        return u.mul_(ctx.lr).neg_()


def compiled(fn: Callable[..., Any], dynamic: bool | None = None) -> Callable[..., Any]:
    """``torch.compile(fn, dynamic=dynamic)`` that falls back to ``fn`` as written, saying
    so once on stderr, where the compile fails (a machine without the C++ compiler Inductor
    needs): compiling is chosen by default for long runs (engine/executor.py) and must never
    be what stops one. A compile fails before the compiled code runs, so nothing was
    changed in place when ``fn`` takes over."""
    fast = torch.compile(fn, dynamic=dynamic)
    chosen = [fast]

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return chosen[0](*args, **kwargs)
        except COMPILE_ERRORS as e:
            if chosen[0] is fn:
                raise
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            print(f"groklab: torch.compile failed ({reason[:200]}); running as written",
                  file=sys.stderr)
            chosen[0] = fn
            return fn(*args, **kwargs)

    return call


def apply_transforms(transforms: Sequence[Transform], states: Sequence[State],
                     u: torch.Tensor, t: int, params: torch.Tensor, lr: torch.Tensor,
                     offset: torch.Tensor | None, last: bool) -> torch.Tensor:
    """``transforms`` in order on ``u`` at update count ``t``; with ``last``, the result is
    added to ``params`` as well (the update's final pass)."""
    ctx = Context(t, params, lr, offset)
    for tr, state in zip(transforms, states, strict=True):
        u = tr.update(u, state, ctx)
    if last:
        params.add_(u)
    return u


class Chain:
    """Transforms applied in order; ``step`` updates the parameters in place.

    ``rates(t)`` gives the ``[R, N]`` rates of update t (0-based; see ``optim.rate_policy``).
    The chain's state (every transform's tensors and the update count) is a checkpoint.

    ``fuse``: each run of consecutive ``fusable`` transforms (with the final addition to the
    parameters) goes through ``torch.compile`` as one function, so that the ten-odd
    element-wise passes of an update become one or two loops over the buffer (equal to the
    unfused chain to float rounding; the update count and the cohort's size are graph
    inputs, so a graph is built once, or twice for a transform that treats the first update
    apart, and then reused): the chain of transforms,
    fused (docs/design.md, decision 8).
    """

    def __init__(self, params: torch.Tensor, transforms: Sequence[Transform],
                 rates: Callable[[int], torch.Tensor], fuse: bool = False):
        self.params = params
        self.transforms = list(transforms)
        self.rates = rates
        self.states = [tr.init(params) for tr in self.transforms]
        self.t = 0  # updates done so far
        self.offset: torch.Tensor | None = None  # [R, 1] carried updates (load_run_state)
        self.fused = fuse
        self._segments = self._plan(fuse)

    def _plan(self, fuse: bool) -> list[tuple[Callable[..., torch.Tensor], slice]]:
        """The update as segments ``(function, slice of the transforms)``: with ``fuse``, each
        run of consecutive fusable transforms is one compiled segment; every other
        transform is a segment of its own, run as written. The last segment adds the
        update to the parameters."""
        spans: list[tuple[bool, slice]] = []
        for i, tr in enumerate(self.transforms):
            together = fuse and tr.fusable
            if together and spans and spans[-1][0]:
                spans[-1] = (True, slice(spans[-1][1].start, i + 1))
            else:
                spans.append((together, slice(i, i + 1)))
        spans = spans or [(fuse, slice(0, 0))]  # no transforms: the addition alone
        # dynamic: the update count and the cohort's size are graph inputs from the start
        fast = compiled(apply_transforms, dynamic=True) if fuse else apply_transforms
        return [(fast if together else apply_transforms, span)
                for together, span in spans]

    @torch.no_grad()
    def step(self, grad: torch.Tensor) -> None:
        """One update from ``grad`` (``[R, N]``; used as scratch space and overwritten)."""
        lr = self.rates(self.t)
        u = grad
        for k, (fn, span) in enumerate(self._segments):
            u = fn(self.transforms[span], self.states[span], u, self.t + 1, self.params, lr,
                   self.offset, k == len(self._segments) - 1)
        self.t += 1

    @torch.no_grad()
    def run_state(self, i: int) -> State:
        """Run ``i``'s whole optimiser state: every transform's rows and its update count
        ``t`` (a warm start may carry it: ``load_run_state``)."""
        out: State = {"t": torch.tensor(self.t + self._offset(i), dtype=torch.int64)}
        for tr, state in zip(self.transforms, self.states, strict=True):
            out |= tr.run_state(i, state, self.t)
        return out

    @torch.no_grad()
    def load_run_state(self, i: int, saved: State) -> None:
        """Continue run ``i`` from another chain's ``run_state`` (before the first update):
        its moments, filter state and update count. The two chains must hold the same
        transforms for the run (``ValueError`` naming the difference)."""
        if self.t:
            raise RuntimeError("optimiser state is carried in before the first update")
        mine: set[str] = set()
        for tr, state in zip(self.transforms, self.states, strict=True):
            mine |= set(tr.run_state(i, state, self.t))
        theirs = set(saved) - {"t"}
        if mine != theirs:
            raise ValueError(f"the carried optimiser state holds {sorted(theirs)}, this run's "
                             f"optimiser {sorted(mine)}: same optimiser and gradient filter "
                             "needed")
        for tr, state in zip(self.transforms, self.states, strict=True):
            tr.load_run_state(i, state, saved, self.t)
        if self.offset is None:
            self.offset = torch.zeros(self.params.shape[0], 1, dtype=self.params.dtype,
                                      device=self.params.device)
        self.offset[i] = float(saved["t"])

    def _offset(self, i: int) -> int:
        return 0 if self.offset is None else int(self.offset[i].item())

    def state_dict(self) -> dict:
        return {"t": self.t, "states": [{k: v.clone() for k, v in s.items()}
                                        for s in self.states],
                "offset": None if self.offset is None else self.offset.clone()}

    def load_state_dict(self, sd: dict) -> None:
        self.t = int(sd["t"])
        for state, saved in zip(self.states, sd["states"], strict=True):
            for k, v in saved.items():
                state[k].copy_(v)
        saved = sd.get("offset")
        self.offset = None if saved is None else saved.to(self.params.device, self.params.dtype)
