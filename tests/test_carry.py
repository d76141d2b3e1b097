"""Warm starts that carry the parent's optimiser state (``init_optimizer = "carried"``): the
chain continued from a saved ``run_state`` equals the chain that never stopped (Adam
moments and bias correction, Grokfast EMA and MA windows, SGD momentum), runs at different
update counts share a cohort, and the runner saves a parent's state for its carried child."""

import pytest
import torch
from conftest import tiny

from groklab.engine import CohortState, run_specs, train_cohort
from groklab.models.layout import ParamLayout
from groklab.optim import build_optimizer
from groklab.spec import RunSpec
from groklab.store.weights import load_optimizer, load_weights, optimizer_path

BASE = tiny(warmup=0, weight_decay=0.1)
CHAINS = {
    "adamw": dict(),
    "adamw+ema": dict(grad_filter="ema", filter_alpha=0.9),
    "adamw+ma": dict(grad_filter="ma", filter_window=4),
    "sgd+nesterov": dict(optimizer="sgd", momentum=0.9, nesterov=True, lr=(0.05,) * 3),
    "adam+clip": dict(optimizer="adam", grad_clip=0.5),
}


def chain_for(settings, params):
    spec = RunSpec(**(BASE | settings))
    state = CohortState([spec])
    layout = ParamLayout.build(state.model.param_info(), state.model.default_groups(),
                               state.model.n_blocks)
    return build_optimizer([spec] * params.shape[0], layout, params)[0]


@pytest.mark.parametrize("name", list(CHAINS))
def test_a_continued_chain_equals_the_one_that_never_stopped(name):
    """10 updates in one go vs 6 updates, run_state, a new chain that loads it (beside a
    fresh run at count 0), 4 more updates. Rates are constant (no warm-up)."""
    n = CohortState([RunSpec(**(BASE | CHAINS[name]))]).params.flat.shape[1]
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(1, n, generator=gen) for _ in range(10)]
    start = torch.randn(1, n, generator=gen)
    straight = start.clone()
    chain = chain_for(CHAINS[name], straight)
    for g in grads:
        chain.step(g.clone())
    first = start.clone()
    chain = chain_for(CHAINS[name], first)
    for g in grads[:6]:
        chain.step(g.clone())
    saved = chain.run_state(0)
    assert int(saved["t"]) == 6
    both = torch.cat([first, start])  # row 0 carried, row 1 a fresh run
    chain = chain_for(CHAINS[name], both)
    chain.load_run_state(0, saved)
    fresh = start.clone()
    alone = chain_for(CHAINS[name], fresh)
    for g in grads[6:]:
        chain.step(torch.cat([g, g]))
        alone.step(g.clone())
    torch.testing.assert_close(both[0], straight[0], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(both[1], fresh[0], rtol=1e-5, atol=1e-7)
    resumed = chain.run_state(0)
    assert int(resumed["t"]) == 10


def test_a_different_optimiser_cannot_carry_the_state():
    params = torch.zeros(1, CohortState([RunSpec(**BASE)]).params.flat.shape[1])
    saved = chain_for(CHAINS["adamw+ema"], params.clone()).run_state(0)
    with pytest.raises(ValueError, match="same optimiser and gradient filter"):
        chain_for(CHAINS["adamw"], params.clone()).load_run_state(0, saved)


def test_the_runner_saves_the_parent_state_and_the_child_carries_it(tmp_path):
    parent = RunSpec(**(BASE | {"grad_filter": "ema"}))
    carried = RunSpec(**(BASE | {"grad_filter": "ema", "init_from": parent.run_id,
                                 "init_optimizer": "carried", "seed": 1}))
    fresh = RunSpec(**(BASE | {"grad_filter": "ema", "init_from": parent.run_id, "seed": 1}))
    assert carried.run_id != fresh.run_id  # the setting is part of the child's identity
    assert RunSpec(**(BASE | {"init_optimizer": "carried"})).run_id == RunSpec(**BASE).run_id
    counts = run_specs([parent, carried, fresh], tmp_path, progress=False)
    assert counts["trained"] == 3
    assert optimizer_path(tmp_path, parent.run_id).is_file()
    assert not optimizer_path(tmp_path, fresh.run_id).exists()  # nobody carries it
    state = load_optimizer(tmp_path, parent.run_id)
    assert int(state["t"]) == 12 and "EmaFilter.ema" in state
    weights = {parent.run_id: load_weights(tmp_path, parent.run_id)}
    both = train_cohort([carried, fresh], progress=False, parents=weights,
                        parent_optimizers={parent.run_id: state})
    alone = train_cohort([carried], progress=False, parents=weights,
                         parent_optimizers={parent.run_id: state})[0]
    assert [r.val_loss for r in both[0]] != [r.val_loss for r in both[1]]
    torch.testing.assert_close(torch.tensor([r.val_loss for r in both[0]]),
                               torch.tensor([r.val_loss for r in alone]), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="was not saved"):
        CohortState([carried], parents=weights)

