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
    # at most two graphs per compiled segment (the count and the size are inputs; a filter
    # or momentum that treats the first update apart adds one), not one per update
    assert counters["stats"]["unique_graphs"] <= 2 * sum(1 for f, _ in fused._segments
                                                         if f is not plain._segments[0][0])


def test_runs_holding_enough_work_are_compiled_by_default_on_a_cpu(capsys):
    from groklab.cli.common import Compile
    from groklab.engine.executor import COMPILE_MIN_FLOPS, KeyWork, compiles, run_flops
    from groklab.engine.limits import step_flops

    def work(steps, **kw):
        specs = [RunSpec(**(dict(task="x_div_y", p=97, batch_size=512, steps=steps) | kw))]
        return KeyWork(specs, specs, 1, desc="[1/1] x_div_y ×1")

    per_step = step_flops(work(1).todo[0])  # the paper's Transformer at batch 512
    at = int(COMPILE_MIN_FLOPS // per_step) + 1
    long, short = work(at), work(at - 1)
    assert run_flops(long.todo[0]) >= COMPILE_MIN_FLOPS > run_flops(short.todo[0])
    assert 6_000 < at < 7_500  # the default run of 7,500 steps is compiled
    assert compiles(long, None, "cpu")
    note = capsys.readouterr().err  # chosen by default: said, once
    assert note.count("groklab: compiling cohort") == 1
    assert f"{COMPILE_MIN_FLOPS:.0e}" in note and "--no-compile" in note
    assert not compiles(short, None, "cpu")
    assert not compiles(long, None, "cuda")  # not measured on a GPU: only when asked
    assert compiles(short, True, "cpu") and not compiles(long, False, "cpu")  # asked: so
    # a small model's run of a million steps holds less work than the compile costs
    assert not compiles(work(1_000_000, d_model=16, n_heads=2, batch_size=16, p=7), None,
                        "cpu")
    assert capsys.readouterr().err == ""  # not chosen by default: nothing said
    assert "3e13 FLOPs" in Compile.__metadata__[0].help and COMPILE_MIN_FLOPS == 3e13


def test_the_runner_compiles_a_cohort_by_default_and_says_so(tmp_path, monkeypatch, capsys):
    """Through the runner: a cohort over the threshold goes to its slot life compiled, and
    the command says so once on stderr; one under it, or told ``--no-compile``, does not.
    (Compiled training itself, model and fused chain: tests/test_compile.py.)"""
    import groklab.engine.executor as executor
    from groklab.engine import run_specs

    asked = []
    real = executor.slot_life

    def life(*args, **kwargs):
        asked.append(kwargs["compile"])
        return real(*args, **(kwargs | {"compile": False}))  # the training itself: eager

    monkeypatch.setattr(executor, "slot_life", life)
    specs = [RunSpec(**BASE, seed=s) for s in range(2)]
    run_specs(specs, tmp_path / "short", progress=False)
    assert asked == [False] and "compiling" not in capsys.readouterr().err
    monkeypatch.setattr(executor, "COMPILE_MIN_FLOPS", 1.0)  # any run holds enough work
    run_specs(specs, tmp_path / "long", progress=False)
    err = capsys.readouterr().err
    assert asked == [False, True]
    assert err.count("groklab: compiling cohort") == 1 and "--no-compile" in err
    run_specs(specs, tmp_path / "told", progress=False, compile=False)
    assert asked == [False, True, False] and "compiling" not in capsys.readouterr().err


def test_a_compile_that_fails_runs_as_written_and_says_so(monkeypatch, capsys):
    """Where Inductor cannot compile (no C++ compiler), a compiled cohort trains as written,
    the failure said once on stderr: the same curves as eager, bit for bit."""
    from torch._inductor.exc import InductorError

    from groklab.engine.cohort import train_cohort

    calls = []

    def broken(fn, **kwargs):
        def fail(*args, **kw):
            calls.append(fn.__name__)
            raise InductorError(RuntimeError("g++: not found"), None)
        return fail

    specs = [RunSpec(**BASE, seed=s) for s in range(2)]
    eager = train_cohort(specs, progress=False)
    monkeypatch.setattr(torch, "compile", broken)
    fallen = train_cohort(specs, progress=False, compile=True)
    assert fallen == eager
    assert sorted(set(calls)) == ["apply_transforms", "fn"]  # each tried once, then not
    assert len(calls) == 2
    err = capsys.readouterr().err
    assert err.count("torch.compile failed") == 2 and "g++: not found" in err
