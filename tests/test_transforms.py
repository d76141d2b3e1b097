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


def _reference_ma(model, grads, window, lamb):
    """Grokfast's published ``gradfilter_ma`` (warm-up on, mean), per named parameter."""
    from collections import deque

    if grads is None:
        grads = {n: deque(maxlen=window) for n, _ in model.named_parameters()}
    for n, p in model.named_parameters():
        grads[n].append(p.grad.detach().clone())
        if len(grads[n]) == window:
            p.grad = p.grad + sum(grads[n]) / len(grads[n]) * lamb
    return grads


def _reference_ema(model, grads, alpha, lamb):
    """Grokfast's published ``gradfilter_ema``, per named parameter."""
    if grads is None:
        grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        grads[n] = grads[n] * alpha + p.grad.detach() * (1 - alpha)
        p.grad = p.grad + grads[n] * lamb
    return grads


def test_filters_in_one_cohort_equal_grokfast_on_torch_nn_models():
    """Three small torch.nn models trained with torch.optim.AdamW after the published filters
    (MA, EMA, none) equal one cohort whose runs carry those filters (Subset per filter)."""
    from groklab.optim.build import grokfast_filters
    from groklab.optim.transforms import AddDecayedWeights, ScaleByAdam
    from groklab.spec import RunSpec

    specs = [RunSpec(grad_filter="ma", filter_window=3, filter_lamb=5.0),
             RunSpec(grad_filter="ema", filter_alpha=0.9, filter_lamb=2.0), RunSpec()]
    make = lambda s: torch.nn.Sequential(  # noqa: E731
        torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    refs = []
    for r in range(3):
        torch.manual_seed(r)
        refs.append(make(r))
    ours = [make(0) for _ in range(3)]
    plain = [make(0) for _ in range(2)]  # runs 0 and 1 without their filters
    for ref, mine in zip(refs, ours, strict=True):
        mine.load_state_dict(ref.state_dict())
    for r in range(2):
        plain[r].load_state_dict(refs[r].state_dict())
    plain_opts = [torch.optim.AdamW(m.parameters(), lr=1e-2, betas=(0.9, 0.98),
                                    weight_decay=0.01) for m in plain]
    flat = torch.stack([torch.cat([p.detach().reshape(-1) for p in m.parameters()])
                        for m in ours])
    lr, wd = 1e-2, 0.01
    hp = {"beta1": col([0.9] * 3), "beta2": col([0.98] * 3), "eps": col([1e-8] * 3)}
    chain = Chain(flat, [*grokfast_filters(specs, flat), ScaleByAdam(hp),
                         AddDecayedWeights({"wd": col([wd] * 3)}), ScaleByRate()],
                  lambda t: torch.full_like(flat, lr))
    opts = [torch.optim.AdamW(m.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=wd)
            for m in refs]
    state = [None, None, None]
    g = torch.Generator().manual_seed(7)
    for _ in range(10):
        x, y = torch.randn(16, 4, generator=g), torch.randint(0, 3, (16,), generator=g)
        grad = torch.zeros_like(flat)
        for r in range(3):
            torch.nn.utils.vector_to_parameters(flat[r], ours[r].parameters())
            ours[r].zero_grad()
            torch.nn.functional.cross_entropy(ours[r](x), y).backward()
            grad[r] = torch.cat([p.grad.reshape(-1) for p in ours[r].parameters()])
            opts[r].zero_grad()
            torch.nn.functional.cross_entropy(refs[r](x), y).backward()
            if r == 0:
                state[r] = _reference_ma(refs[r], state[r], window=3, lamb=5.0)
            elif r == 1:
                state[r] = _reference_ema(refs[r], state[r], alpha=0.9, lamb=2.0)
            opts[r].step()
            if r < 2:
                plain_opts[r].zero_grad()
                torch.nn.functional.cross_entropy(plain[r](x), y).backward()
                plain_opts[r].step()
        chain.step(grad)
        for r in range(3):
            expect = torch.cat([p.detach().reshape(-1) for p in refs[r].parameters()])
            torch.testing.assert_close(flat[r], expect, rtol=1e-5, atol=1e-6)
    for r in range(2):  # the filters changed the trajectories
        unfiltered = torch.nn.utils.parameters_to_vector(plain[r].parameters()).detach()
        assert torch.linalg.vector_norm(flat[r] - unfiltered) > 1e-2


def test_a_filter_in_a_subset_reports_its_run_state_as_alone():
    """The chain's update count reaches a filter inside ``Subset``: a filtered run's state
    (the MA window in age order, oldest first) is the same as with the filter on every run."""
    from groklab.optim.transforms import Subset

    stream = grads(6, seed=3)
    n = sum(math.prod(s) for s in SHAPES.values())
    ones = lambda t: torch.ones(R, n)  # noqa: E731
    alone = Chain(torch.zeros(R, n), [MaFilter(4, {"lamb": col([5.0] * R)}), ScaleByRate()],
                  ones)
    part = Chain(torch.zeros(R, n), [Subset(MaFilter(4, {"lamb": col([5.0])}), [1]),
                                     ScaleByRate()], ones)
    for g in stream:
        alone.step(flat_of(g).clone())
        part.step(flat_of(g).clone())
    a, b = alone.run_state(1), part.run_state(1)
    assert a.keys() == b.keys() == {"t", "MaFilter.window", "MaFilter.sum"}
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(b["MaFilter.window"], torch.stack([flat_of(g)[1] for g in stream[2:]]))
    assert part.run_state(0).keys() == {"t"}  # run 0 has no filter
