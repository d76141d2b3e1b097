"""The ``sum`` task (K operands) against independent arithmetic, per-run sampled tables in a
cohort, and position embeddings sized by ``max_len``."""

import itertools

import pytest
import torch

from groklab.engine import CohortState, train_cohort
from groklab.engine.sampler import run_generators
from groklab.engine.tables import run_table
from groklab.spec import RunSpec
from groklab.tasks import TaskError, build_task
from groklab.tasks.base import EQ_TOKEN, N_SYMBOLS, OP_TOKEN


def decode(task, k):
    """(operands, target) of every example, checking the [x1, +, x2, +, …, xK, =] layout."""
    out = []
    for row, c in zip(task.inputs.tolist(), task.targets.tolist(), strict=True):
        assert len(row) == 2 * k and row[-1] == EQ_TOKEN
        assert all(t == OP_TOKEN for t in row[1:-1:2])
        xs = row[0::2]
        assert all(x >= N_SYMBOLS for x in xs)
        out.append((tuple(x - N_SYMBOLS for x in xs), c))
    return out


@pytest.mark.parametrize("p, k", [(2, 2), (5, 2), (7, 3), (3, 5)])
def test_full_tables_hold_every_tuple_and_its_sum(p, k):
    task = build_task("sum", p=p, operands=k, n_examples=p**k)
    rows = decode(task, k)
    assert [xs for xs, _ in rows] == list(itertools.product(range(p), repeat=k))
    assert all(c == sum(xs) % p for xs, c in rows)
    assert not task.seeded and task.vocab_size == p + 2 and task.n_classes == p


@pytest.mark.parametrize("p", [7, 97])
def test_two_operands_equal_x_plus_y(p):
    ours, ref = build_task("sum", p=p, operands=2), build_task("x_plus_y", p=p)
    assert torch.equal(ours.inputs, ref.inputs) and torch.equal(ours.targets, ref.targets)
    assert (ours.vocab_size, ours.n_classes) == (ref.vocab_size, ref.n_classes)


@pytest.mark.parametrize("p, k, n", [(97, 3, 10_000), (11, 3, 1000), (97, 6, 5000)])
def test_samples_are_distinct_correct_and_reproducible(p, k, n):
    task = build_task("sum", p=p, operands=k, n_examples=n, sample_seed=3)
    rows = decode(task, k)
    assert task.seeded and len(rows) == n and len({xs for xs, _ in rows}) == n
    assert all(c == sum(xs) % p for xs, c in rows)
    assert all(0 <= x < p for xs, _ in rows for x in xs)
    build_task.cache_clear()
    again = build_task("sum", p=p, operands=k, n_examples=n, sample_seed=3)
    other = build_task("sum", p=p, operands=k, n_examples=n, sample_seed=4)
    assert torch.equal(again.inputs, task.inputs)
    assert not torch.equal(other.inputs, task.inputs)


def test_sum_settings_are_checked():
    for bad in (dict(operands=1), dict(operands=33), dict(n_examples=1),
                dict(p=97, operands=5, n_examples=10**6 * 3)):
        with pytest.raises(TaskError):
            build_task("sum", **bad)
    with pytest.raises(ValueError, match="max_len"):
        RunSpec(task="sum", operands=3, max_len=5)


def test_a_run_draws_its_own_sample_from_its_seed():
    spec = RunSpec(task="sum", p=11, operands=3, n_examples=500)
    a = run_table(spec, run_generators(0)["data"])
    b = run_table(spec, run_generators(0)["data"])
    c = run_table(spec, run_generators(1)["data"])
    assert a.seeded and torch.equal(a.inputs, b.inputs) and not torch.equal(a.inputs, c.inputs)


def test_sampled_runs_in_a_cohort_train_on_their_own_tables():
    base = dict(task="sum", p=11, operands=3, n_examples=400, d_model=16, n_heads=2,
                steps=12, batch_size=16, eval_every=4, warmup=2)
    specs = [RunSpec(**base, seed=s, train_fraction=f) for s, f in ((0, 0.5), (1, 0.3), (2, 0.6))]
    state = CohortState(specs)
    assert len(state.inputs) == 3 * 400
    for r, s in enumerate(specs):
        own = run_table(s, run_generators(s.seed)["data"]).inputs
        block = state.inputs[r * 400 : (r + 1) * 400]
        assert torch.equal(block, own)
        rows = state.data.train_idx[r, : int(s.train_fraction * 400)]
        assert ((rows >= r * 400) & (rows < (r + 1) * 400)).all()
    together = train_cohort(specs, progress=False)
    for s, curve in zip(specs, together, strict=True):
        alone = train_cohort([s], progress=False)[0]
        a = torch.tensor([[r.train_loss, r.train_acc, r.val_loss, r.val_acc] for r in alone])
        b = torch.tensor([[r.train_loss, r.train_acc, r.val_loss, r.val_acc] for r in curve])
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_max_len_sizes_position_embeddings_and_normalises_at_the_task_length():
    plain = RunSpec(task="sum", operands=3)
    assert RunSpec(task="sum", operands=3, max_len=6).run_id == plain.run_id
    assert RunSpec(max_len=12).run_id != RunSpec().run_id
    short = RunSpec(task="sum", p=7, operands=2, d_model=16, n_heads=2, max_len=12)
    state = CohortState([short])
    assert state.params.views["pos_emb"].shape == (1, 12, 16)
    long = RunSpec(task="sum", p=7, operands=6, n_examples=500, d_model=16, n_heads=2,
                   max_len=12)
    other = CohortState([long])
    # the K=2 model's parameters run unchanged on K=6 sequences
    out = other.model.forward(state.params.views, other.inputs[None, :5])
    assert out.shape == (1, 5, 7)
