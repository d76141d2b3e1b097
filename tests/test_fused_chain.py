"""A fused optimiser chain (``Chain(fuse=True)``: runs of element-wise transforms through
``torch.compile``) equals the chain as written to float rounding, for every transform kind,
and builds its graphs once, not at every update."""

import pytest
import torch
from torch._dynamo.utils import counters

from groklab.engine.state import CohortState
from groklab.optim.transforms import Chain
from groklab.spec import RunSpec

BASE = dict(task="x_plus_y", p=11, d_model=32, n_heads=2, steps=10, batch_size=16)
CHAINS = {
    # Grokfast-EMA and clipping, Grokfast-MA (not fusable: it runs between two compiled
    # segments), ⊥Grad, each on its own run (Subset), then Adam's moments, decay and rates
    "adamw, every filter": [dict(grad_filter="ema", grad_clip=0.5, seed=0),
                            dict(grad_filter="ma", filter_window=3, seed=1),
                            dict(grad_ortho=True, weight_decay=0.1, seed=2)],
    "sgd, nesterov": [dict(optimizer="sgd", momentum=0.9, nesterov=True, seed=0)],
    # Adam on some columns (Columns), Newton-Schulz (not fusable) on the others
    "muon": [dict(optimizer="muon", seed=0)],
}


def chain(runs, fuse):
    state = CohortState([RunSpec(**BASE, **r) for r in runs])
    opt = state.opt
    return Chain(state.params.flat.clone(), opt.transforms, opt.rates, fuse=fuse)


@pytest.mark.slow
@pytest.mark.parametrize("name", CHAINS)
def test_a_fused_chain_equals_the_chain_as_written(name):
    plain, fused = chain(CHAINS[name], False), chain(CHAINS[name], True)
    kinds = [tr.fusable for tr in fused.transforms]
    # one compiled segment per run of fusable transforms, one per other transform
    assert len(fused._segments) == sum(not k or i == 0 or not kinds[i - 1]
                                       for i, k in enumerate(kinds))
    assert not plain.fused and fused.fused and len(plain._segments) == len(kinds)
    # the same transforms, so each chain gets states of its own
    fused.states = [tr.init(fused.params) for tr in fused.transforms]
    gen = torch.Generator().manual_seed(0)
    counters.clear()
    for _ in range(BASE["steps"]):
        g = torch.randn(plain.params.shape, generator=gen)
        plain.step(g.clone())
        fused.step(g)
    # Inductor reorders float arithmetic: rounding, not bits
    torch.testing.assert_close(fused.params, plain.params, rtol=1e-5, atol=1e-6)
    for a, b in zip(fused.states, plain.states, strict=True):
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    # two graphs per compiled segment (the first update, then the count as an input), not
    # one per update
    assert counters["stats"]["unique_graphs"] <= 2 * sum(1 for f, _ in fused._segments
                                                         if f is not plain._segments[0][0])


def test_long_runs_are_compiled_by_default_and_the_choice_is_said():
    from groklab.cli.common import Compile
    from groklab.engine.executor import COMPILE_MIN_STEPS, KeyWork, compile_note, compiles

    def work(steps):
        specs = [RunSpec(**(BASE | {"steps": steps}))]
        return KeyWork(specs, specs, 1, desc="[1/1] x_plus_y ×1")

    long, short = work(COMPILE_MIN_STEPS), work(COMPILE_MIN_STEPS - 1)
    assert compiles(long, None) and not compiles(short, None)
    assert compiles(short, True) and not compiles(long, False)  # the caller's choice wins
    note = compile_note(long, None)
    assert f"{COMPILE_MIN_STEPS:,}" in note and "--no-compile" in note
    assert compile_note(short, None) is None and compile_note(long, True) is None
    # the flag's help states the same threshold
    assert f"{COMPILE_MIN_STEPS:,} steps" in Compile.__metadata__[0].help
