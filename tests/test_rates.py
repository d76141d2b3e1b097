"""Rate policies against their formulas (docs/protocol.md §5) at chosen steps."""

import math

import pytest
import torch

from groklab.models import Transformer
from groklab.models.layout import ParamLayout
from groklab.optim import RatePolicy
from groklab.optim.rate_policy import depth_multiplier
from groklab.spec import RunSpec

MODEL = Transformer(vocab_size=9, n_classes=7, seq_len=4, n_layers=4, d_model=8, n_heads=2,
                    d_ff=16)
LAYOUT = ParamLayout.build(MODEL.param_info(), MODEL.default_groups(), MODEL.n_blocks)


def rate_of(policy, name, t, run=0):
    a, _ = LAYOUT.offsets[name]
    return policy(t)[run, a].item()


def spec(**kw):
    return RunSpec(task="x_plus_y", p=7, n_layers=4, d_model=8, n_heads=2, **kw)


def test_groups_warmup_then_constant():
    s = spec(lr=(1e-4, 2e-3, 3e-2), warmup=10, steps=100)
    policy = RatePolicy(LAYOUT, [s], torch.device("cpu"))
    for t, f in [(0, 0.0), (3, 0.3), (10, 1.0), (99, 1.0)]:
        assert rate_of(policy, "tok_emb", t) == pytest.approx(1e-4 * f, rel=1e-6)
        assert rate_of(policy, "blocks.1.ffn.fc.weight", t) == pytest.approx(2e-3 * f, rel=1e-6)
        assert rate_of(policy, "blocks.2.ln1.bias", t) == pytest.approx(3e-2 * f, rel=1e-6)
        assert rate_of(policy, "head.weight", t) == pytest.approx(3e-2 * f, rel=1e-6)


def test_cosine_schedule_after_warmup():
    s = spec(lr=(1e-3,) * 3, warmup=100, steps=5000, lr_schedule="cosine", min_lr_ratio=0.1)
    policy = RatePolicy(LAYOUT, [s], torch.device("cpu"))
    for t in (0, 50, 100, 1000, 2550, 4999):
        warm = min(1.0, t / 100)
        progress = min(max((t - 100) / 4900, 0.0), 1.0)
        cos = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
        assert rate_of(policy, "blocks.0.attn.qkv.weight", t) == pytest.approx(
            1e-3 * warm * cos, rel=1e-5)


@pytest.mark.parametrize("kind", ["exponential", "linear", "cosine"])
def test_depth_decay_formulas(kind):
    s = spec(lr=(1e-3,) * 3, warmup=0, lr_depth=kind, lr_depth_gamma=0.8, lr_depth_floor=0.1)
    policy = RatePolicy(LAYOUT, [s], torch.device("cpu"))
    L = 4
    formula = {"exponential": lambda i: 0.8**i,
               "linear": lambda i: 1 - 0.9 * i / (L - 1),
               "cosine": lambda i: 0.1 + 0.9 * (1 + math.cos(math.pi * i / (L - 1))) / 2}[kind]
    for i in range(L):
        assert depth_multiplier(kind, i, L, 0.8, 0.1) == pytest.approx(formula(i))
        assert rate_of(policy, f"blocks.{i}.ffn.out.weight", 5) == pytest.approx(
            1e-3 * formula(i), rel=1e-6)
    assert rate_of(policy, "tok_emb", 5) == pytest.approx(1e-3)  # embeddings take η_0
    assert rate_of(policy, "head.bias", 5) == pytest.approx(1e-3 * formula(L - 1), rel=1e-6)


def test_per_run_policies_and_custom_groups():
    rules = ((r"emb", "emb"), (r"attn", "attention"), (r".", "rest"))
    a = spec(group_rules=rules, lr={"emb": 1e-4, "attention": 5e-4, "rest": 1e-3}, warmup=0)
    b = spec(group_rules=rules, lr={"emb": 2e-4, "attention": 6e-4, "rest": 3e-3}, warmup=4)
    layout = ParamLayout.build(MODEL.param_info(), rules, MODEL.n_blocks)
    policy = RatePolicy(layout, [a, b], torch.device("cpu"))
    rates = policy(2)
    qkv, _ = layout.offsets["blocks.3.attn.qkv.bias"]
    ffn, _ = layout.offsets["blocks.0.ffn.fc.bias"]
    assert rates[0, qkv].item() == pytest.approx(5e-4)
    assert rates[1, qkv].item() == pytest.approx(6e-4 * 0.5)
    assert rates[1, ffn].item() == pytest.approx(3e-3 * 0.5)


def test_set_slot_rates_changes_the_base():
    s = spec(lr=(1e-4, 2e-3, 3e-2), warmup=0)
    policy = RatePolicy(LAYOUT, [s], torch.device("cpu"))
    new = policy.slot_rates.clone()
    emb = policy.slots.index(("embedding", 0))
    new[0, emb] = 7e-3
    policy.set_slot_rates(new)
    assert rate_of(policy, "pos_emb", 3) == pytest.approx(7e-3)
    assert rate_of(policy, "head.weight", 3) == pytest.approx(3e-2)
