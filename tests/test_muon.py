"""Muon (optimizer "muon"): the batched chain against torch.optim.Muon on the hidden matrices
plus torch.optim.AdamW on the rest, step by step on single models; the Newton–Schulz
iteration against torch's own; which parameters Muon takes; cohort = solo; checkpoint resume
and carried optimiser state; run ids."""

import inspect

import pytest
import torch

from groklab.engine import train_cohort
from groklab.engine.params import FlatParams
from groklab.models import Transformer
from groklab.models.layout import ParamInfo, ParamLayout
from groklab.optim import build_optimizer
from groklab.optim.muon import muon_matrices, newton_schulz
from groklab.rates import GROUPS, LR_CONFIGS
from groklab.spec import RunSpec

MODEL = Transformer(vocab_size=9, n_classes=7, seq_len=4, n_layers=2, d_model=16, n_heads=2,
                    d_ff=32)  # qkv [16, 48], proj [16, 16] (square), fc [16, 32], out [32, 16]
LAYOUT = ParamLayout.build(MODEL.param_info(), MODEL.default_groups(), MODEL.n_blocks)
# the published recipe's split, written out: the blocks' weight matrices go to Muon; the
# embeddings, biases, LayerNorms and the head to AdamW
HIDDEN = {f"blocks.{i}.{m}.weight" for i in range(2)
          for m in ("attn.qkv", "attn.proj", "ffn.fc", "ffn.out")}


@pytest.fixture
def fp32_torch_muon(monkeypatch):
    """torch.optim.Muon with its Newton–Schulz run in fp32: torch's own function, its one
    cast to bf16 replaced by a copy in fp32 (groklab iterates in fp32 on fp32 runs)."""
    import torch.optim._muon as muon_module

    source = inspect.getsource(muon_module._zeropower_via_newtonschulz)
    assert source.count("grad.bfloat16()") == 1
    namespace = dict(vars(muon_module))
    exec(source.replace("grad.bfloat16()", "grad.float().clone()"), namespace)
    monkeypatch.setattr(muon_module, "_zeropower_via_newtonschulz",
                        namespace["_zeropower_via_newtonschulz"])


def reference(spec, init, decay_of):
    """One run as torch would train it: torch.nn orientation (``[out, in]``: the transpose
    of groklab's ``[in, out]``) for the Muon matrices; torch.optim.Muon on them and
    torch.optim.AdamW on the rest, one parameter group per (rate group, decayed or not), the
    Muon rate = muon_lr_ratio × the group's rate; the same LambdaLR warm-up on both."""
    params = {n: torch.nn.Parameter(t.T.clone() if n in HIDDEN else t.clone())
              for n, t in init.items()}
    rates = spec.rates()
    adjust = "match_rms_adamw" if spec.muon_adjust_lr == "match_rms_adamw" else None

    def groups(names, scale):
        return [{"params": [params[n] for n in names
                            if LAYOUT.groups[n] == g and decay_of(n) == d],
                 "lr": rates[g] * scale, "weight_decay": spec.weight_decay if d else 0.0}
                for g in GROUPS for d in (True, False)]

    muon = torch.optim.Muon(groups(HIDDEN, spec.muon_lr_ratio), momentum=spec.muon_momentum,
                            nesterov=spec.muon_nesterov, adjust_lr_fn=adjust)
    adamw = torch.optim.AdamW(groups(set(params) - HIDDEN, 1.0), betas=(spec.beta1, spec.beta2),
                              eps=spec.eps)
    w = spec.warmup
    scheds = [torch.optim.lr_scheduler.LambdaLR(o, lambda s: min(1.0, s / w) if w else 1.0)
              for o in (muon, adamw)]
    return params, [muon, adamw], scheds


def run_both(specs, steps=6, decay_of=lambda n: True):
    inits = [MODEL.init(torch.Generator().manual_seed(10 + r)) for r in range(len(specs))]
    flat = FlatParams.stack(inits, torch.device("cpu"))
    names = list(flat.views)
    ours, _ = build_optimizer(specs, LAYOUT, flat.flat)
    refs = [reference(s, inits[r], decay_of) for r, s in enumerate(specs)]
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        grads = {n: torch.randn(flat.views[n].shape, generator=g) for n in names}
        ours.step(torch.cat([grads[n].reshape(len(specs), -1) for n in names], 1))
        for r, (params, opts, scheds) in enumerate(refs):
            for n, p in params.items():
                p.grad = grads[n][r].T.clone() if n in HIDDEN else grads[n][r].clone()
            for o in opts:
                o.step()
            for s in scheds:
                s.step()
    return flat, refs


def assert_runs_match(flat, refs, rtol, atol):
    for r, (params, _, _) in enumerate(refs):
        for n, p in params.items():
            expect = p.detach().T if n in HIDDEN else p.detach()
            torch.testing.assert_close(flat.views[n][r].detach(), expect, rtol=rtol, atol=atol,
                                       msg=lambda m, r=r, n=n: f"run {r} param {n}: {m}")


def muon(**kw):
    return RunSpec(task="x_plus_y", p=7, optimizer="muon", **kw)


def test_muon_takes_the_hidden_matrices_only():
    assert set(muon_matrices(LAYOUT)) == HIDDEN
    from groklab.models import build_model
    from groklab.tasks import build_task

    task = build_task("x_plus_y", p=7)
    for model, expect in [("mlp", {"layers.0.weight", "layers.1.weight"}),
                          ("lstm", {"layers.0.weight_ih", "layers.0.weight_hh",
                                    "layers.1.weight_ih", "layers.1.weight_hh"})]:
        m = build_model(RunSpec(task="x_plus_y", p=7, model=model, d_hidden=8, d_model=8), task)
        layout = ParamLayout.build(m.param_info(), m.default_groups(), m.n_blocks)
        assert set(muon_matrices(layout)) == expect, model  # never the head


def test_a_model_without_hidden_matrices_cannot_take_muon():
    from groklab.optim.chains import CohortHyper, muon_chain

    infos = {"tok_emb": ParamInfo((5, 4), "embedding", -1), "head.weight": ParamInfo((4, 3),
                                                                                   "matrix", 1)}
    layout = ParamLayout.build(infos, [(".", "lower")], 1)
    params = torch.zeros(1, layout.n_columns)
    with pytest.raises(ValueError, match="hidden weight matrices"):
        muon_chain(CohortHyper([muon()], params, torch.zeros(1, 1), layout))


def test_newton_schulz_equals_torch_per_matrix(fp32_torch_muon):
    """Batched over [K, m, n] vs torch's iteration on each matrix alone (in fp32)."""
    from torch.optim._muon import _zeropower_via_newtonschulz as torch_ns

    g = torch.randn(3, 5, 12, generator=torch.Generator().manual_seed(1))
    ours = newton_schulz(g)
    for k in range(3):
        expect = torch_ns(g[k], (3.4445, -4.7750, 2.0315), 5, 1e-7)
        torch.testing.assert_close(ours[k], expect, rtol=1e-5, atol=1e-6)
    # nearly orthogonal rows: singular values within the quintic's band around 1
    s = torch.linalg.svdvals(ours)
    assert s.min() > 0.5 and s.max() < 1.5


@pytest.mark.parametrize("settings", [
    [dict(lr=LR_CONFIGS["layerwise"], warmup=3, weight_decay=0.5),
     dict(lr=LR_CONFIGS["run1"], warmup=0, weight_decay=0.1, muon_lr_ratio=5.0,
          muon_momentum=0.9, muon_nesterov=False, beta2=0.99)],
    [dict(warmup=2, weight_decay=0.0, muon_adjust_lr="match_rms_adamw", muon_lr_ratio=1.0),
     dict(warmup=0, weight_decay=0.3, muon_momentum=0.0)],
], ids=["layerwise-nesterov-or-not", "match-rms-no-momentum"])
def test_muon_chain_equals_torch_muon_and_adamw(fp32_torch_muon, settings):
    flat, refs = run_both([muon(**s) for s in settings])
    # measured: the largest difference after 6 steps is 7e-7 (rounding: batched matmuls,
    # the order of decay and update); a wrong momentum form or shape factor is ~1e-3 off
    assert_runs_match(flat, refs, rtol=1e-5, atol=1e-6)


def test_muon_with_decay_on_matrices_only(fp32_torch_muon):
    info = MODEL.param_info()
    spec = muon(lr=LR_CONFIGS["layerwise"], warmup=2, weight_decay=0.5, decay_params="matrices")
    flat, refs = run_both([spec], decay_of=lambda n: info[n].kind == "matrix")
    assert_runs_match(flat, refs, rtol=1e-5, atol=1e-6)


def test_bf16_runs_iterate_in_bf16_as_torch_does():
    """precision bf16: the iteration in bf16, as unpatched torch.optim.Muon (measured largest
    difference after 6 steps 7e-7, as in fp32; an fp32 iteration is 2e-3 away from torch's
    bf16 one, so the tolerance tells the two apart)."""
    spec = muon(precision="bf16", lr=LR_CONFIGS["layerwise"], warmup=0, weight_decay=0.1)
    flat, refs = run_both([spec], steps=6)
    assert_runs_match(flat, refs, rtol=1e-5, atol=1e-6)


def test_a_muon_run_alone_equals_it_inside_a_mixed_cohort():
    base = dict(task="x_plus_y", p=11, d_model=16, n_heads=2, steps=20, batch_size=32,
                eval_every=5, optimizer="muon")
    target = RunSpec(**base, seed=1, lr=LR_CONFIGS["layerwise"], muon_lr_ratio=10.0)
    mates = [RunSpec(**base, seed=0, muon_momentum=0.8, muon_nesterov=False, grad_ortho=True),
             target,
             RunSpec(**base, seed=2, muon_adjust_lr="match_rms_adamw", loss="stablemax",
                     grad_filter="ema", weight_decay=0.0, dropout=0.1)]
    alone = train_cohort([target], progress=False)[0]
    together = train_cohort(mates, progress=False)[1]
    a = torch.tensor([[r.train_loss, r.val_loss, r.train_acc, r.val_acc] for r in alone])
    b = torch.tensor([[r.train_loss, r.val_loss, r.train_acc, r.val_acc] for r in together])
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_a_resumed_muon_cohort_equals_the_uninterrupted_one(tmp_path):
    from groklab.engine import HookResult
    from groklab.engine.checkpoint import Checkpointer, checkpoint_path

    tiny = dict(task="x_plus_y", p=11, d_model=16, n_heads=2, steps=20, batch_size=16,
                eval_every=3, warmup=2, optimizer="muon")
    specs = [RunSpec(**tiny, seed=0), RunSpec(**tiny, seed=1, muon_nesterov=False)]
    straight = train_cohort(specs, progress=False)
    ids = [s.run_id for s in specs]
    ckpt = Checkpointer(checkpoint_path(tmp_path, ids), every_steps=7, every_seconds=None)

    def crash(state, t, metrics):
        if t == 12:
            raise KeyboardInterrupt
        return HookResult()

    with pytest.raises(KeyboardInterrupt):
        train_cohort(specs, progress=False, checkpoint=ckpt, hooks=[crash])
    saved = Checkpointer(ckpt.path).load(ids)
    assert any("momentum_buffer" in st for st in saved["state"]["opt"]["states"])
    assert saved["state"]["t"] == 7
    assert train_cohort(specs, progress=False, resume=saved) == straight  # bit for bit


def test_a_carried_muon_state_continues_the_chain():
    """6 updates, run_state, a new chain that loads it beside a fresh run, 4 more updates
    = 10 updates in one go (the momentum buffer and Adam's moments carried)."""
    spec = muon(warmup=0, weight_decay=0.1)
    n = LAYOUT.n_columns
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(1, n, generator=gen) for _ in range(10)]
    start = torch.randn(1, n, generator=gen)
    straight = start.clone()
    chain = build_optimizer([spec], LAYOUT, straight)[0]
    for g in grads:
        chain.step(g.clone())
    first = start.clone()
    chain = build_optimizer([spec], LAYOUT, first)[0]
    for g in grads[:6]:
        chain.step(g.clone())
    saved = chain.run_state(0)
    assert {"Orthogonalize.momentum_buffer", "ScaleByAdam.exp_avg"} <= set(saved)
    both = torch.cat([first, start])
    chain = build_optimizer([spec] * 2, LAYOUT, both)[0]
    chain.load_run_state(0, saved)
    for g in grads[6:]:
        chain.step(torch.cat([g, g]))
    torch.testing.assert_close(both[0], straight[0], rtol=1e-5, atol=1e-6)
    adamw = build_optimizer([RunSpec(task="x_plus_y", p=7)], LAYOUT, start.clone())[0]
    with pytest.raises(ValueError, match="same optimiser"):
        adamw.load_run_state(0, saved)


# ids of the code before Muon, ⊥Grad and StableMax (computed with HEAD's spec.py)
OLD_IDS = {
    "40606ebf651dd5c4": dict(),
    "e9b50d1f1859b1a6": dict(task="permutation", lr=(8e-4, 2e-3, 3e-3), seed=2),
    "9e3779220b66adde": dict(optimizer="sgd", momentum=0.9, nesterov=True, grad_filter="ema",
                             decay_params="matrices"),
    "2107243ba167f7e3": dict(model="mlp", optimizer="adam", weight_decay=0.0, dropout=0.1),
}


@pytest.mark.parametrize("run_id", list(OLD_IDS))
def test_existing_run_ids_are_unchanged(run_id):
    settings = OLD_IDS[run_id]
    assert RunSpec(**settings).run_id == run_id
    explicit = dict(grad_ortho=False, loss="softmax", muon_lr_ratio=20.0, muon_momentum=0.95,
                    muon_nesterov=True, muon_adjust_lr="original")
    assert RunSpec(**(settings | explicit)).run_id == run_id


def test_muon_settings_are_in_the_id_only_for_muon_runs():
    plain = RunSpec()
    for name, value in [("muon_lr_ratio", 5.0), ("muon_momentum", 0.5),
                        ("muon_nesterov", False), ("muon_adjust_lr", "match_rms_adamw")]:
        assert RunSpec(**{name: value}).run_id == plain.run_id, name  # adamw ignores it
        assert name in plain.ignored()
        assert RunSpec(optimizer="muon", **{name: value}).run_id != \
            RunSpec(optimizer="muon").run_id, name
    # without momentum the Nesterov step is the gradient: the flag does not matter
    assert RunSpec(optimizer="muon", muon_momentum=0.0, muon_nesterov=False).run_id == \
        RunSpec(optimizer="muon", muon_momentum=0.0).run_id
    assert RunSpec(optimizer="muon").run_id != plain.run_id
    muon_key = RunSpec(optimizer="muon").cohort_key()
    assert RunSpec(optimizer="muon", muon_lr_ratio=3.0, muon_momentum=0.5).cohort_key() == \
        muon_key  # per run: one cohort


def test_groklab_run_takes_the_three_methods(tmp_path, cli):
    """``--optimizer muon --muon-lr-ratio``, ``--grad-ortho`` and ``--loss stablemax``: the
    flags reach the stored runs' settings; a bad value is refused by name."""
    from conftest import results_json

    small = ["--task", "x_plus_y", "--p", "11", "--steps", "4", "--batch-size", "16",
             "--eval-every", "2", "--no-progress"]
    cli("run", *small, "--optimizer", "muon", "--muon-lr-ratio", "10", "--grad-ortho",
        "--loss", "stablemax", "--set", "muon_momentum=0.9", "--out", str(tmp_path / "a"))
    (run,) = results_json(tmp_path / "a")
    assert (run["optimizer"], run["muon_lr_ratio"], run["muon_momentum"]) == ("muon", 10.0, 0.9)
    assert run["grad_ortho"] is True and run["loss"] == "stablemax"
    assert run["status"] == "finished"
    proc = cli("run", *small, "--loss", "sparsemax", "--out", str(tmp_path / "b"), check=False)
    assert proc.returncode == 2 and "loss" in proc.stderr
