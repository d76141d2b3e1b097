"""The batched optimisers against torch.optim with parameter groups on single models."""

from typing import get_args

import pytest
import torch

from groklab.engine.params import FlatParams
from groklab.models import Transformer
from groklab.models.layout import ParamLayout, assign_groups
from groklab.optim import build_optimizer, chain_names
from groklab.rates import GROUPS, LR_CONFIGS, parse_lr
from groklab.spec import OptimizerName, RunSpec

MODEL = Transformer(vocab_size=9, n_classes=7, seq_len=4, n_layers=2, d_model=16, n_heads=2,
                    d_ff=32)


def reference_optimizer(spec, params, groups, decay_of=lambda name: True):
    """torch.optim with one param group per (layer-wise group, decayed or not) and LambdaLR
    warm-up; ``decay_of(name)`` False puts a parameter in a group without weight decay."""
    param_groups = [
        {"params": [p for n, p in params.items() if groups[n] == g and decay_of(n) == d],
         "lr": spec.lr[i], "weight_decay": spec.weight_decay if d else 0.0}
        for i, g in enumerate(GROUPS) for d in (True, False)]
    if spec.optimizer == "adamw":
        opt = torch.optim.AdamW(param_groups, betas=(spec.beta1, spec.beta2), eps=spec.eps,
                                weight_decay=spec.weight_decay)
    elif spec.optimizer == "adam":
        opt = torch.optim.Adam(param_groups, betas=(spec.beta1, spec.beta2), eps=spec.eps,
                               weight_decay=spec.weight_decay)
    else:
        opt = torch.optim.SGD(param_groups, momentum=spec.momentum, nesterov=spec.nesterov,
                              weight_decay=spec.weight_decay)
    w = spec.warmup
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, s / w) if w else 1.0)
    return opt, sched


def run_both(specs, steps=8, decay_of=lambda name: True):
    inits = [MODEL.init(torch.Generator().manual_seed(10 + r)) for r in range(len(specs))]
    flat = FlatParams.stack(inits, torch.device("cpu"))
    names = list(flat.views)
    layout = ParamLayout.build(MODEL.param_info(), MODEL.default_groups(), MODEL.n_blocks)
    ours, _ = build_optimizer(specs, layout, flat.flat)
    refs = []
    for r, spec in enumerate(specs):
        params = {n: torch.nn.Parameter(t.clone()) for n, t in inits[r].items()}
        refs.append((params, *reference_optimizer(spec, params, layout.groups, decay_of)))
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        grads = {n: torch.randn(flat.views[n].shape, generator=g) for n in names}
        ours.step(torch.cat([grads[n].reshape(len(specs), -1) for n in names], 1))
        for r, (params, opt, sched) in enumerate(refs):
            for n, p in params.items():
                p.grad = grads[n][r].clone()
            opt.step()
            sched.step()
    return flat, refs


@pytest.mark.parametrize(
    "settings",
    [
        [dict(lr=LR_CONFIGS["layerwise"], warmup=3, weight_decay=0.5),
         dict(lr=LR_CONFIGS["run1"], warmup=5, weight_decay=0.1, beta2=0.99)],
        [dict(lr=LR_CONFIGS["baseline"], warmup=0, weight_decay=0.0)],
        [dict(optimizer="adam", lr=LR_CONFIGS["run2"], warmup=2, weight_decay=0.05)] * 2,
        [dict(optimizer="sgd", lr=(0.1, 0.05, 0.01), warmup=2, weight_decay=0.05),
         dict(optimizer="sgd", lr=(0.1, 0.05, 0.01), momentum=0.9, nesterov=True, warmup=0),
         dict(optimizer="sgd", lr=(0.1, 0.05, 0.01), momentum=0.9, warmup=3)],
    ],
    ids=["adamw-two-runs", "adamw-no-warmup", "adam", "sgd-variants"],
)
def test_batched_step_equals_torch_optim(settings):
    specs = [RunSpec(task="x_plus_y", p=7, **s) for s in settings]
    flat, refs = run_both(specs)
    for r, (params, _, _) in enumerate(refs):
        for n, p in params.items():
            torch.testing.assert_close(flat.views[n][r].detach(), p.detach(), rtol=1e-5,
                                       atol=1e-6, msg=f"run {r} param {n}")


def test_decay_on_matrices_only_equals_param_groups_without_decay():
    """``decay_params = "matrices"``: biases, norms and embeddings get no weight decay."""
    specs = [RunSpec(task="x_plus_y", p=7, lr=LR_CONFIGS["layerwise"], warmup=2,
                     weight_decay=0.5, decay_params="matrices"),
             RunSpec(task="x_plus_y", p=7, lr=LR_CONFIGS["run1"], warmup=2, weight_decay=0.3)]
    info = MODEL.param_info()
    is_matrix = lambda n: info[n].kind == "matrix"  # noqa: E731
    flat, refs = run_both(specs[:1], decay_of=is_matrix)
    for n, p in refs[0][0].items():
        torch.testing.assert_close(flat.views[n][0].detach(), p.detach(), rtol=1e-5, atol=1e-6)
    mixed, refs = run_both(specs, decay_of=is_matrix)  # run 0 masked, run 1 decays all
    for n, p in refs[0][0].items():
        torch.testing.assert_close(mixed.views[n][0].detach(), p.detach(), rtol=1e-5, atol=1e-6)
    _, all_refs = run_both(specs)
    for n, p in all_refs[1][0].items():
        torch.testing.assert_close(mixed.views[n][1].detach(), p.detach(), rtol=1e-5, atol=1e-6)


def test_groups_follow_the_rule():
    groups = assign_groups(MODEL.shapes(), MODEL.default_groups())
    assert groups["tok_emb"] == groups["pos_emb"] == "embedding"
    assert groups["blocks.0.ffn.fc.weight"] == "lower"
    assert groups["blocks.1.attn.qkv.bias"] == groups["ln_f.weight"] == "higher"
    assert groups["head.weight"] == "higher"
    custom = assign_groups(MODEL.shapes(), [(r"emb", "embedding"), (r"head", "higher"),
                                            (r".", "lower")])
    assert custom["blocks.1.ln2.weight"] == "lower" and custom["head.bias"] == "higher"


def test_parse_lr():
    assert parse_lr("layerwise") == ("layerwise", (8e-4, 2e-3, 3e-3))
    assert parse_lr("1e-3, 2e-3, 3e-3") == (None, (1e-3, 2e-3, 3e-3))
    assert parse_lr("5e-4") == (None, (5e-4, 5e-4, 5e-4))
    for bad in ("nope", "1,2", "0,1,1", "-1e-3"):
        with pytest.raises(ValueError):
            parse_lr(bad)


def test_the_spec_names_exactly_the_registered_chains():
    """spec.py lies below optim/ and cannot read the registry: its Literal must not drift."""
    assert sorted(get_args(OptimizerName)) == chain_names()
