"""Each transform against a direct per-parameter implementation on single models."""

import math

import pytest
import torch

from groklab.optim.transforms import (
    Chain,
    ClipByGlobalNorm,
    EmaFilter,
    MaFilter,
    ScaleByRate,
)

SHAPES = {"w": (5, 3), "b": (3,), "e": (4, 2)}
R = 3


def flat_of(per_param):
    """[R, N] from name -> [R, *shape]."""
    return torch.cat([per_param[n].reshape(R, -1) for n in SHAPES], 1)


def grads(steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{n: torch.randn(R, *s, generator=g) for n, s in SHAPES.items()}
            for _ in range(steps)]


def run_chain(transforms, stream):
    """The parameter changes a chain with unit rates makes from each gradient: ``-u``."""
    params = torch.zeros(R, sum(math.prod(s) for s in SHAPES.values()))
    chain = Chain(params, [*transforms, ScaleByRate()], lambda t: torch.ones_like(params))
    out = []
    for g in stream:
        before = params.clone()
        chain.step(flat_of(g).clone())
        out.append(before - params)
    return out


def col(values):
    return torch.tensor(values, dtype=torch.float32).view(-1, 1)


def test_ema_filter_equals_grokfast_per_parameter():
    """Grokfast's gradfilter_ema: the average starts at the first gradient."""
    alpha, lamb = [0.98, 0.9, 0.5], [2.0, 0.0, 1.0]
    stream = grads(12)
    ours = run_chain([EmaFilter({"alpha": col(alpha), "lamb": col(lamb)})], stream)
    for r in range(R):
        ema = {}
        for t, g in enumerate(stream):
            expect = {}
            for n in SHAPES:
                gr = g[n][r]
                ema[n] = gr.clone() if t == 0 else ema[n] * alpha[r] + gr * (1 - alpha[r])
                expect[n] = gr + ema[n] * lamb[r]
            torch.testing.assert_close(ours[t][r], torch.cat([expect[n].reshape(-1)
                                                               for n in SHAPES]))


@pytest.mark.parametrize("window", [1, 3, 4])
def test_ma_filter_equals_grokfast_per_parameter(window):
    """Grokfast's gradfilter_ma (warm-up on): g + λ·mean(last w) once w gradients are in."""
    lamb = [5.0, 1.0, 0.0]
    stream = grads(3 * window + 5, seed=1)
    ours = run_chain([MaFilter(window, {"lamb": col(lamb)})], stream)
    for r in range(R):
        history = []
        for t, g in enumerate(stream):
            flat = torch.cat([g[n][r].reshape(-1) for n in SHAPES])
            history = (history + [flat])[-window:]
            expect = flat + lamb[r] * sum(history) / window if len(history) == window else flat
            torch.testing.assert_close(ours[t][r], expect, rtol=1e-5, atol=1e-5)


def test_clip_equals_clip_grad_norm_per_run():
    max_norm = [0.5, float("inf"), 100.0]
    stream = grads(2, seed=2)
    ours = run_chain([ClipByGlobalNorm({"max_norm": col(max_norm)})], stream)
    for t, g in enumerate(stream):
        for r in range(R):
            params = [torch.nn.Parameter(torch.zeros(s)) for s in SHAPES.values()]
            for p, n in zip(params, SHAPES, strict=True):
                p.grad = g[n][r].clone()
            torch.nn.utils.clip_grad_norm_(params, max_norm[r])
            expect = torch.cat([p.grad.reshape(-1) for p in params])
            torch.testing.assert_close(ours[t][r], expect)
    norms = [torch.linalg.vector_norm(ours[0][r]).item() for r in range(R)]
    assert norms[0] == pytest.approx(0.5, rel=1e-4)  # clipped
    assert norms[2] > 1.0  # under the limit: untouched


def test_chain_state_dict_resumes_exactly():
    stream = grads(10, seed=3)
    make = lambda: [EmaFilter({"alpha": col([0.9] * R), "lamb": col([2.0] * R)}),  # noqa: E731
                    MaFilter(3, {"lamb": col([1.0] * R)})]
    straight = run_chain(make(), stream)
    params = torch.zeros(R, straight[0].shape[1])
    first = Chain(params, [*make(), ScaleByRate()], lambda t: torch.ones_like(params))
    for g in stream[:4]:
        first.step(flat_of(g).clone())
    saved, p_saved = first.state_dict(), params.clone()
    params2 = p_saved.clone()
    second = Chain(params2, [*make(), ScaleByRate()], lambda t: torch.ones_like(params2))
    second.load_state_dict(saved)
    for t, g in enumerate(stream[4:], start=4):
        before = params2.clone()
        second.step(flat_of(g).clone())
        torch.testing.assert_close(before - params2, straight[t])
