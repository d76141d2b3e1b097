"""StableMax cross-entropy (``loss = "stablemax"``): against the paper's definition written
out here in Python floats, finite and correct where float32 softmax saturates, per run in a
mixed cohort (cohort = solo), for classification and next-token prediction; run ids."""

import math

import pytest
import torch
import torch.nn.functional as F

from groklab.engine import CohortState, train_cohort
from groklab.engine.loss import (
    CrossEntropy,
    LastTokenClassification,
    NextTokenPrediction,
    stablemax_cross_entropy,
)
from groklab.spec import RunSpec


def reference_loss(logits: list[float], target: int) -> float:
    """Prieto et al. (2025): s(x) = x + 1 for x ≥ 0, 1/(1 − x) for x < 0; p_i = s(z_i) / Σ_j
    s(z_j); the loss is −log p_target. In Python floats (double), summed exactly."""
    s = [x + 1 if x >= 0 else 1 / (1 - x) for x in logits]
    return -math.log(s[target] / math.fsum(s))


def test_stablemax_equals_the_definition():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 11, generator=gen) * 4
    targets = torch.randint(11, (6,), generator=gen)
    ours = stablemax_cross_entropy(logits, targets)
    assert ours.dtype == torch.float32 and ours.shape == (6,)
    for i in range(6):
        expect = reference_loss(logits[i].tolist(), int(targets[i]))
        assert ours[i].item() == pytest.approx(expect, rel=1e-6)


def test_large_logits_stay_finite_and_correct_where_softmax_saturates():
    """z = 200 on the target: float32 softmax gives a loss of exactly 0 and no gradient
    (Softmax Collapse); StableMax keeps a finite, correct loss and a gradient."""
    logits = torch.tensor([[200.0, 0.0, -50.0, 3.0], [1e6, -1e6, 5e5, 0.0],
                           [-3e4, 2e4, 1e4, -1.0]], requires_grad=True)
    targets = torch.tensor([0, 2, 0])
    softmax = F.cross_entropy(logits, targets, reduction="none")
    assert softmax[0].item() == 0.0  # saturated
    loss = stablemax_cross_entropy(logits, targets)
    for i in range(3):
        expect = reference_loss(logits[i].tolist(), int(targets[i]))
        assert math.isfinite(loss[i].item())
        assert loss[i].item() == pytest.approx(expect, rel=1e-6)
    assert loss[0].item() > 0
    loss.sum().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[0].abs().sum() > 0


def test_each_run_uses_its_own_loss():
    gen = torch.Generator().manual_seed(1)
    out = torch.randn(3, 5, 7, generator=gen) * 3
    y = torch.randint(7, (3, 5), generator=gen)
    ce = CrossEntropy(["softmax", "stablemax", "softmax"])
    loss, metrics = LastTokenClassification(ce)(out, y)
    for r, fn in enumerate([None, stablemax_cross_entropy, None]):
        expect = (F.cross_entropy(out[r], y[r], reduction="none") if fn is None
                  else fn(out[r], y[r]))
        torch.testing.assert_close(loss[r], expect)
    assert torch.equal(metrics["acc"], (out.argmax(-1) == y).float())  # same arg-max
    later = CrossEntropy(["stablemax", "softmax"])  # a compacted cohort: run 0 left
    torch.testing.assert_close(later(out[1:], y[1:])[0], stablemax_cross_entropy(out[1], y[1]))


def test_next_token_prediction_with_stablemax():
    gen = torch.Generator().manual_seed(2)
    out = torch.randn(2, 3, 4, 6, generator=gen)
    y = torch.randint(6, (2, 3, 4), generator=gen)
    loss, _ = NextTokenPrediction(CrossEntropy(["stablemax", "softmax"]))(out, y)
    for b in range(3):
        per_token = [reference_loss(out[0, b, t].tolist(), int(y[0, b, t])) for t in range(4)]
        assert loss[0, b].item() == pytest.approx(sum(per_token) / 4, rel=1e-6)
    torch.testing.assert_close(loss[1], F.cross_entropy(out[1].reshape(-1, 6), y[1].reshape(-1),
                                                        reduction="none").view(3, 4).mean(1))
    lm = RunSpec(task="text", model="gpt", context=8, n_layers=1, d_model=16, n_heads=2,
                 steps=2, batch_size=4, eval_every=1, eval_batches=1, loss="stablemax")
    state = CohortState([lm])
    state.step()
    assert math.isfinite(state.evaluate()[0].val_loss)


def test_a_stablemax_run_alone_equals_it_inside_a_mixed_cohort():
    base = dict(task="x_plus_y", p=11, d_model=16, n_heads=2, steps=20, batch_size=32,
                eval_every=5)
    target = RunSpec(**base, seed=1, loss="stablemax", weight_decay=0.0, dropout=0.1)
    mates = [RunSpec(**base, seed=0, grad_filter="ma", filter_window=3), target,
             RunSpec(**base, seed=2, loss="stablemax", grad_ortho=True, lr_depth="linear"),
             RunSpec(**base, seed=3, stop_val_acc=0.0)]  # retires at its first evaluation
    together = train_cohort(mates, progress=False)
    for i in (1, 0):  # the StableMax run and a softmax mate
        alone = train_cohort([mates[i]], progress=False)[0]
        a = torch.tensor([[r.train_loss, r.val_loss, r.train_acc, r.val_acc] for r in alone])
        b = torch.tensor([[r.train_loss, r.val_loss, r.train_acc, r.val_acc]
                          for r in together[i]])
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    softmax = train_cohort([target.model_copy(update={"loss": "softmax"})], progress=False)[0]
    assert softmax[0].train_loss != together[1][0].train_loss


def test_loss_is_a_per_run_setting_in_the_id_only_when_set():
    assert "loss" not in RunSpec().identity()
    assert RunSpec(loss="stablemax").run_id != RunSpec().run_id
    assert RunSpec(loss="stablemax").cohort_key() == RunSpec().cohort_key()
