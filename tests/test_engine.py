"""The cohort state: per-run fields read per run, ragged splits, retiring runs, checkpoints,
the reference initialisation, and token ids that cannot leak into another run's table."""

import math

import pytest
import torch
from conftest import TINY

from groklab.engine import CohortState, HookResult, stop_when, train_cohort
from groklab.engine.splits import pad_stack
from groklab.engine.state import check_vocabulary
from groklab.models import Transformer
from groklab.models.stacked import embed
from groklab.spec import PER_RUN, RunSpec
from groklab.tasks import TaskData

# cohorts whose runs differ from the first one in per-run fields; together they vary every
# PER_RUN field
COHORTS = {
    "adamw": [dict(), dict(seed=3), dict(lr=(1e-4, 2e-3, 5e-3)), dict(train_fraction=0.3),
              dict(beta1=0.8, beta2=0.9), dict(eps=1e-6), dict(weight_decay=0.05),
              dict(warmup=0), dict(lr_schedule="cosine", min_lr_ratio=0.3),
              dict(lr_depth="exponential", lr_depth_gamma=0.5),
              dict(lr_depth="linear", lr_depth_floor=0.3), dict(decay_params="matrices"),
              dict(grad_clip=0.05), dict(stop_val_acc=0.0, stop_patience=2)],
    "sgd": [dict(optimizer="sgd", lr=(0.05, 0.1, 0.2)),
            dict(optimizer="sgd", lr=(0.05, 0.1, 0.2), momentum=0.9),
            dict(optimizer="sgd", lr=(0.05, 0.1, 0.2), momentum=0.9, nesterov=True,
                 weight_decay=0.01)],
    "grokfast": [dict(grad_filter="ema"), dict(grad_filter="ema", filter_alpha=0.8),
                 dict(grad_filter="ema", filter_lamb=5.0, seed=1), dict(),
                 dict(grad_filter="ma", filter_window=3), dict(grad_filter="ma", seed=2,
                                                             filter_window=5, filter_lamb=2.0)],
    "dropout": [dict(dropout=0.1), dict(), dict(dropout=0.3, seed=2)],
    "mlp": [dict(model="mlp", d_hidden=32), dict(model="mlp", d_hidden=32, dropout=0.2, seed=1),
            dict(model="mlp", d_hidden=32, lr=(1e-4, 2e-3, 5e-3), embedding_lr="adaptive",
                 embedding_lr_every=5)],
    "mlp_one_hot": [dict(model="mlp", embedding=False, d_hidden=32),
                    dict(model="mlp", embedding=False, d_hidden=32, dropout=0.2, seed=1,
                         sampling="balanced")],
    "lstm": [dict(model="lstm", d_hidden=16), dict(model="lstm", d_hidden=16, dropout=0.2,
                                                    seed=1, grad_filter="ema")],
    "embedding": [dict(diagnostics=True), dict(diagnostics=True, embedding_lr="adaptive",
                                               embedding_lr_every=4),
                  dict(diagnostics=True, sampling="balanced", seed=1),
                  dict(diagnostics=True, embedding_lr="adaptive", embedding_lr_c=0.5,
                       embedding_lr_every=3, sampling="balanced", seed=2)],
    "measures": [dict(measures="fourier", measures_every=1), dict(seed=1),  # every evaluation
                 dict(measures="norms", measures_every=2, seed=2),
                 dict(measures="fourier", measures_every=2, dropout=0.2, seed=3)],
    "muon": [dict(optimizer="muon"), dict(optimizer="muon", muon_lr_ratio=5.0, seed=1),
             dict(optimizer="muon", muon_momentum=0.8, muon_nesterov=False, seed=2),
             dict(optimizer="muon", muon_adjust_lr="match_rms_adamw", grad_ortho=True,
                  loss="stablemax", seed=3)],
    "accelerators": [dict(grad_ortho=True), dict(loss="stablemax"), dict(),
                     dict(grad_ortho=True, loss="stablemax", grad_filter="ema", seed=1)],
}


def spec(**kw):
    return RunSpec(**(TINY | kw))


def as_tensor(curve):
    return torch.tensor([[r.train_loss, r.train_acc, r.val_loss, r.val_acc] for r in curve])


def test_the_cohorts_vary_every_per_run_field():
    varied = {k for runs in COHORTS.values() for kw in runs for k in kw}
    # init_from needs a parent's weights: tests/test_warm.py trains such a cohort;
    # tests/test_carry.py one that mixes carried and fresh optimiser states
    assert PER_RUN <= varied | {"seed", "init_from", "init_optimizer"}


@pytest.mark.parametrize("name", list(COHORTS))
def test_every_run_of_a_cohort_equals_the_run_alone(name):
    specs = [spec(**kw) for kw in COHORTS[name]]
    assert len({s.cohort_key() for s in specs}) == 1
    together = train_cohort(specs, progress=False)
    for s, curve in zip(specs, together, strict=True):
        alone = train_cohort([s], progress=False)[0]
        torch.testing.assert_close(as_tensor(curve), as_tensor(alone), rtol=1e-4, atol=1e-4,
                                   msg=lambda m, s=s: f"{s.identity()}: {m}")
        extras = [[r.extra.get(k, math.nan) for k in sorted(curve[0].extra)] for r in curve]
        alone_extras = [[r.extra[k] for k in sorted(curve[0].extra)] for r in alone]
        torch.testing.assert_close(torch.tensor(extras), torch.tensor(alone_extras), rtol=1e-4,
                                   atol=1e-4)
    finals = {round(c[-1].train_loss, 5) for c in together}
    assert len(finals) == len(specs)  # every per-run setting had an effect


def test_ragged_splits_evaluate_each_run_on_its_own_split():
    specs = [spec(train_fraction=0.3), spec(train_fraction=0.7)]
    state = CohortState(specs)
    n = len(state.inputs)
    counts = state.data.val_mask.sum(1).tolist()
    assert counts == [n - int(0.3 * n), n - int(0.7 * n)]
    padded, mask = pad_stack([torch.tensor([4, 5, 6]), torch.tensor([7])])
    assert padded.tolist() == [[4, 5, 6], [7, 7, 7]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_no_training_batch_contains_a_validation_example():
    specs = [spec(seed=0), spec(seed=1, train_fraction=0.3)]
    state = CohortState(specs)
    n = len(state.inputs)
    for r in range(2):
        n_train = int(specs[r].train_fraction * n)
        train = set(state.data.train_idx[r, :n_train].tolist())
        val_rows = state.data.val_x[r][state.data.val_mask[r] > 0]
        val = {int(((state.inputs == x).all(1)).nonzero()) for x in val_rows}
        assert not train & val and len(train) + len(val) == n
        for _ in range(70):  # more than one sampling chunk
            assert set(state.train_rows()[r].tolist()) <= train
            state.sampler.next()


@pytest.mark.parametrize("filters", [{}, {0: "ema", 1: "ma", 2: "ema"}])
def test_hooks_add_metrics_and_retire_runs_without_touching_the_others(filters):
    specs = [spec(seed=s, grad_filter=filters.get(s, "none"), filter_window=3)
             for s in range(3)]

    def retire_first_at_8(state, step, metrics):
        norm = torch.linalg.vector_norm(state.params.flat.detach(), dim=1)
        out = HookResult(metrics={"param_norm": norm})
        if step == 8 and 0 in state.index:
            out.retire = [state.index.index(0)]
        return out

    curves = train_cohort(specs, progress=False, hooks=[retire_first_at_8])
    assert [r.step for r in curves[0]] == [4, 8]
    assert [r.step for r in curves[1]] == [4, 8, 12]
    assert all(r.extra["param_norm"] > 0 for c in curves for r in c)
    for s, curve in zip(specs[1:], curves[1:], strict=True):
        alone = train_cohort([s], progress=False)[0]
        torch.testing.assert_close(as_tensor(curve), as_tensor(alone), rtol=1e-4, atol=1e-4)
    stopped = train_cohort([spec(seed=0)], progress=False, hooks=[stop_when("val_acc", -1.0)])
    assert [r.step for r in stopped[0]] == [4]


@pytest.mark.parametrize("extra", [{}, dict(diagnostics=True, embedding_lr="adaptive",
                                             embedding_lr_every=20, sampling="balanced")])
def test_state_dict_continues_exactly(extra):
    specs = [spec(seed=0, grad_filter="ema", **extra),
             spec(seed=5, grad_filter="ema", warmup=0, **extra)]
    straight = CohortState(specs)
    for _ in range(70):  # past one sampling chunk
        straight.step()
    first = CohortState(specs)
    for _ in range(30):
        first.step()
    saved = first.state_dict()
    resumed = CohortState(specs)
    resumed.load_state_dict(saved)
    for _ in range(40):
        resumed.step()
    torch.testing.assert_close(resumed.params.flat, straight.params.flat)
    assert resumed.evaluate() == straight.evaluate()


def test_initialisation_matches_torch_nn_modules():
    """Version 2: the torch.nn reference (MultiheadAttention, Linear, Embedding, LayerNorm)."""
    D = 128
    m = Transformer(vocab_size=99, n_classes=97, seq_len=4, d_model=D, n_heads=4, d_ff=512)
    p = m.init(torch.Generator().manual_seed(0))
    mha = torch.nn.MultiheadAttention(D, 4)
    ffn = torch.nn.Linear(D, 512)
    emb = torch.nn.Embedding(99, D)
    uniform = [(p["blocks.0.attn.qkv.weight"], mha.in_proj_weight),
               (p["blocks.1.attn.proj.weight"], mha.out_proj.weight),
               (p["blocks.0.ffn.fc.weight"], ffn.weight), (p["blocks.0.ffn.fc.bias"], ffn.bias)]
    for i, (ours, ref) in enumerate([*uniform, (p["tok_emb"], emb.weight)]):
        ref = ref.detach()
        # same law: equal spread (std within 5 %) and, for uniform laws, the same bound
        assert ours.std().item() == pytest.approx(ref.std().item(), rel=0.05)
        if i < len(uniform):
            assert ours.abs().max().item() <= ref.abs().max().item() * 1.02
            assert ours.abs().max().item() >= ref.abs().max().item() * 0.95
    assert p["blocks.0.attn.qkv.weight"].abs().max() <= math.sqrt(6 / (4 * D))
    for name in ("blocks.0.attn.qkv.bias", "blocks.1.attn.proj.bias", "ln_f.bias",
                 "blocks.0.ln1.bias"):
        assert (p[name] == 0).all(), name
    assert (p["blocks.1.ln2.weight"] == 1).all()
    legacy = Transformer(vocab_size=99, n_classes=97, seq_len=4, legacy_init=True)
    q = legacy.init(torch.Generator().manual_seed(0))
    assert (q["blocks.0.attn.qkv.bias"] != 0).all()
    assert q["blocks.0.attn.qkv.weight"].abs().max() <= 1 / math.sqrt(D)


def test_token_outside_the_vocabulary_fails_loudly():
    """A cohort's task table is checked once, whole: in the stacked embedding an id outside
    the vocabulary would read another run's rows. One run's lookup refuses it by itself."""
    def table(inputs: list[list[int]]) -> TaskData:
        return TaskData("t", torch.tensor(inputs), torch.zeros(len(inputs), dtype=torch.long),
                        vocab_size=5, n_classes=1)

    check_vocabulary(table([[0, 4], [1, 2]]))
    for bad in ([[0, 5], [1, 2]], [[0, 1], [-1, 2]]):
        with pytest.raises(IndexError, match="outside its vocabulary"):
            check_vocabulary(table(bad))
    assert embed(torch.randn(2, 5, 3), torch.tensor([[0, 4], [1, 2]])).shape == (2, 2, 3)
    for bad in (5, -1):
        with pytest.raises(IndexError):
            embed(torch.randn(1, 5, 3), torch.tensor([[bad]]))


def test_dropout_acts_in_training_only():
    s = spec(dropout=0.5)
    state = CohortState([s, spec()])
    rows = state.data.train_idx[:, :8]
    x = state.inputs[rows]
    params = state.params.views
    model, rng = state.model, state.rng
    evals = [model.forward(params, x, train=False, rng=rng) for _ in range(2)]
    torch.testing.assert_close(evals[0], evals[1], rtol=0, atol=0)
    trains = [model.forward(params, x, train=True, rng=rng) for _ in range(2)]
    assert not torch.equal(trains[0][0], trains[1][0])  # run 0 drops units, anew each time
    torch.testing.assert_close(trains[0][1], evals[0][1], rtol=0, atol=0)  # run 1: p = 0
    assert not torch.equal(trains[0][0], evals[0][0])
