"""The embedding study's mechanics: σ_max by power iteration, the adaptive embedding rate,
balanced sampling and the diagnostics recorded at every evaluation."""

import torch
from conftest import TINY

from groklab.engine import CohortState, train_cohort
from groklab.engine.balanced import MixedSampler
from groklab.engine.embedding import WARM_ITERS, sigma_max
from groklab.spec import RunSpec
from groklab.tasks import build_task, split_indices
from groklab.tasks.base import N_SYMBOLS


def test_sigma_max_matches_svdvals_cold_and_warm():
    g = torch.Generator().manual_seed(0)
    for shape in ((3, 99, 128), (2, 128, 384), (4, 40, 7)):
        a = torch.randn(*shape, generator=g)
        sigma, v = sigma_max(a)
        exact = torch.linalg.svdvals(a)[:, 0]
        torch.testing.assert_close(sigma, exact, rtol=1e-3, atol=0)
        nudged = a + 0.01 * torch.randn(*shape, generator=g)  # a training step later
        warm, _ = sigma_max(nudged, v, WARM_ITERS)
        torch.testing.assert_close(warm, torch.linalg.svdvals(nudged)[:, 0], rtol=1e-3, atol=0)


def test_adaptive_rate_follows_the_formula_every_n_steps_and_holds_in_between():
    every, c = 4, 0.7
    specs = [RunSpec(**TINY, lr=(1e-3, 2e-3, 3e-3), embedding_lr="adaptive",
                     embedding_lr_every=every, embedding_lr_c=c),
             RunSpec(**TINY, lr=(1e-3, 2e-3, 3e-3), seed=1)]  # fixed rate, same cohort
    state = CohortState(specs)
    mon = state.embedding
    seen = []
    observe = mon.observe
    mon.observe = lambda tokens: (seen.append(tokens.clone()), observe(tokens))[1]
    e_slot, w_slot = mon.e_slots[0], mon.w_slot
    V = mon.vocab
    rates = []
    for t in range(12):
        before = {n: v.detach().clone() for n, v in state.params.views.items()}
        state.step()
        rate = state.policy.slot_rates[:, e_slot].clone()
        rates.append(rate)
        if t % every == 0:  # recomputed before update t from the weights before it
            window = seen[-1:] if t == 0 else seen[-every:]
            f_e = sum(len(torch.unique(b[0])) / V for b in window) / len(window)
            s_e = torch.linalg.svdvals(before["tok_emb"][0])[0]
            s_w = torch.linalg.svdvals(before["blocks.0.attn.qkv.weight"][0])[0]
            expect = 2e-3 * c * float(s_e / s_w) / f_e
            assert abs(float(rate[0]) - expect) < 1e-3 * expect, (t, float(rate[0]), expect)
        else:
            assert torch.equal(rate, rates[-2])
        assert float(rate[1]) == 1e-3  # the fixed run keeps its configured rate
        assert float(state.policy.slot_rates[0, w_slot]) == 2e-3
    assert len({round(float(r[0]), 12) for r in rates}) == 3  # t = 0, 4, 8


def _token_counts(tokens: torch.Tensor, V: int) -> torch.Tensor:
    """[B, T] batch -> per-token occurrence counts of the operand tokens."""
    ops = tokens[tokens >= N_SYMBOLS]
    return torch.bincount(ops, minlength=V)[N_SYMBOLS:].float()


def test_balanced_batches_spread_tokens_evenly_and_stay_in_the_train_split():
    task = build_task("x_plus_y", p=23)
    train, val = split_indices(len(task), 0.5, torch.Generator().manual_seed(3))
    tokens = task.inputs[train]
    V = task.vocab_size
    make = lambda balanced: MixedSampler(  # noqa: E731
        [torch.Generator().manual_seed(5)], [tokens], [balanced], 32, torch.device("cpu"))
    variance = {}
    for balanced in (False, True):
        sampler = make(balanced)
        draws = torch.stack([sampler.next()[0] for _ in range(300)])  # [steps, B]
        assert int(draws.max()) < len(train)  # positions into the train split only
        again = make(balanced)
        assert torch.equal(draws, torch.stack([again.next()[0] for _ in range(300)]))
        variance[balanced] = torch.stack([_token_counts(tokens[d], V).var() for d in draws]
                                         ).mean()
        if balanced:
            reached = torch.zeros(len(train), dtype=torch.bool)
            reached[draws.flatten()] = True
            more = torch.stack([sampler.next()[0] for _ in range(2000)])
            reached[more.flatten()] = True
            assert bool(reached.all())  # every training example is drawn eventually
    assert variance[True] < 0.5 * variance[False], variance  # measured: 0.39


def test_balanced_batches_are_reproducible_and_never_validation():
    spec = RunSpec(**TINY, sampling="balanced")
    a, b = CohortState([spec]), CohortState([spec])
    rows_a = torch.stack([a.train_rows() for _ in range(70)])  # crosses a 64-step chunk
    rows_b = torch.stack([b.train_rows() for _ in range(70)])
    assert torch.equal(rows_a, rows_b)
    val_rows = set()
    for x in a.data.val_x[0][a.data.val_mask[0] > 0]:
        val_rows.add(tuple(x.tolist()))
    train_rows = {tuple(a.inputs[r].tolist()) for r in rows_a.flatten().tolist()}
    assert not train_rows & val_rows


def test_diagnostics_are_recorded_at_every_evaluation():
    curve = train_cohort([RunSpec(**TINY, diagnostics=True, embedding_lr="adaptive")],
                         progress=False)[0]
    names = {"sigma_max_E", "sigma_max_W", "fro_E", "fro_W", "eta_E_over_eta_W",
             "token_updates_cv", "token_updates_min_over_mean"}
    assert [r.step for r in curve] == [4, 8, 12]
    for row in curve:
        assert set(row.extra) == names
        assert row.extra["sigma_max_E"] > 0 and row.extra["fro_E"] >= row.extra["sigma_max_E"]
        assert row.extra["eta_E_over_eta_W"] > 0
    plain = train_cohort([RunSpec(**TINY)], progress=False)[0]
    assert all(not r.extra for r in plain)
