"""Every run lives its own life: slots over a queue (engine/slots.py).

A run that takes a slot while its cohort mates are part-way through (it *joins* at their step
N) must train exactly what it trains alone, and so must the mates it joins (they are carried
into a rebuilt state as data); per feature that keeps per-run state.
"""

from __future__ import annotations

import math

import pytest
import torch

from groklab.engine import HookResult, train_cohort
from groklab.engine.checkpoint import Checkpointer
from groklab.engine.slots import ListQueue, compact_due
from groklab.engine.state import CohortState
from groklab.spec import RunSpec

BASE = dict(task="x_plus_y", p=11, d_model=16, n_heads=2, steps=24, batch_size=16,
            eval_every=4, warmup=6)

# one entry per feature that keeps per-run state or counts steps
FEATURES = {
    "plain": {},
    "cosine schedule": dict(lr_schedule="cosine", min_lr_ratio=0.2),
    "dropout": dict(dropout=0.1),
    "grokfast ema": dict(grad_filter="ema"),
    "grokfast ma": dict(grad_filter="ma", filter_window=3),
    "muon": dict(optimizer="muon"),
    "orthograd": dict(grad_ortho=True),
    "stablemax": dict(loss="stablemax"),
    "adaptive embedding rate": dict(embedding_lr="adaptive", embedding_lr_every=3,
                                    diagnostics=True),
    "balanced sampling": dict(sampling="balanced"),
    "measures": dict(measures="fourier", measures_every=2),
    "sampled evaluation": dict(eval_batches=2),
    "sgd momentum": dict(optimizer="sgd", momentum=0.9),
}


def retire_seed0_at(step_at: int):
    """An external hook that retires the seed-0 run at its own step ``step_at``."""

    def hook(state, step, metrics):
        if step == step_at:
            return HookResult(retire=[i for i, r in enumerate(state.index)
                                      if state.specs[r].seed == 0])
        return None

    return hook


def as_rows(curve):
    return [(r.step, r.train_loss, r.train_acc, r.val_loss, r.val_acc,
             sorted(r.extra.items())) for r in curve]


def assert_same_curve(got, alone, exact: bool = False):
    assert [r.step for r in got] == [r.step for r in alone]
    if exact:
        assert as_rows(got) == as_rows(alone)
        return
    a = torch.tensor([[r.train_loss, r.train_acc, r.val_loss, r.val_acc] for r in got])
    b = torch.tensor([[r.train_loss, r.train_acc, r.val_loss, r.val_acc] for r in alone])
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    for x, y in zip(got, alone, strict=True):
        assert sorted(x.extra) == sorted(y.extra)
        for k in x.extra:
            assert math.isclose(x.extra[k], y.extra[k], rel_tol=1e-3, abs_tol=1e-4), k


@pytest.mark.parametrize("feature", list(FEATURES))
def test_a_run_joining_at_step_8_equals_the_run_alone(feature):
    """Slots 2: seed 0 is retired at step 8, seed 2 takes its slot while seed 1 is at step 8;
    seed 1 (carried into the rebuilt cohort) and seed 2 (joined) each equal the run alone."""
    specs = [RunSpec(**BASE, **FEATURES[feature], seed=s) for s in range(3)]
    ends = {}
    curves = train_cohort(specs, progress=False, slots=2, hooks=[retire_seed0_at(8)],
                          on_run_done=lambda pos, end: ends.setdefault(pos, end.step))
    assert ends == {0: 8, 1: 24, 2: 24}
    assert [r.step for r in curves[0]] == [4, 8]
    for s in (1, 2):
        assert_same_curve(curves[s], train_cohort([specs[s]], progress=False)[0])


def test_a_warm_started_child_joining_later_equals_the_child_alone():
    parent = RunSpec(**BASE, seed=9)
    weights = {}
    train_cohort([parent], progress=False,
                 on_run_done=lambda pos, end: weights.setdefault(parent.run_id, end.params))
    kids = [RunSpec(**BASE, seed=s, init_from=parent.run_id) for s in range(3)]
    together = train_cohort(kids, progress=False, slots=2, parents=weights,
                            hooks=[retire_seed0_at(8)])
    for s in (1, 2):
        alone = train_cohort([kids[s]], progress=False, parents=weights)[0]
        assert_same_curve(together[s], alone)


def test_a_queue_longer_than_its_slots_trains_every_run_once_in_order():
    specs = [RunSpec(**BASE, seed=s) for s in range(5)]
    started = []
    curves = train_cohort(specs, progress=False, slots=2, hooks=[retire_seed0_at(8)],
                          on_eval=lambda step, rows: started.extend(
                              i for i, r in enumerate(rows) if r is not None and r.step == 4))
    assert started == [0, 1, 2, 3, 4]  # queued runs start in their order
    assert all([r.step for r in c] == [4, 8, 12, 16, 20, 24] for c in curves[1:])
    for s in (3, 4):  # joined at step 16 of seed 2 and step 8 of seed 3
        assert_same_curve(curves[s], train_cohort([specs[s]], progress=False)[0])


def test_runs_retire_at_their_own_last_step_off_the_evaluation_grid():
    """steps 10 with eval_every 4: each run is evaluated at 4, 8 and its last step 10, even
    when its mate started 8 steps later."""
    specs = [RunSpec(**(BASE | dict(steps=10)), seed=s) for s in range(3)]
    curves = train_cohort(specs, progress=False, slots=2, hooks=[retire_seed0_at(8)])
    assert [r.step for r in curves[1]] == [4, 8, 10]
    assert [r.step for r in curves[2]] == [4, 8, 10]
    for s in (1, 2):
        assert_same_curve(curves[s], train_cohort([specs[s]], progress=False)[0])


def test_a_cohort_checkpoint_after_a_join_resumes_bit_for_bit(tmp_path):
    specs = [RunSpec(**BASE, seed=s, grad_filter="ma", filter_window=3) for s in range(4)]
    straight = train_cohort(specs, progress=False, slots=2, hooks=[retire_seed0_at(8)])
    ckpt = Checkpointer(tmp_path / "c.ckpt", every_steps=4, every_seconds=None)
    clock = []

    def crash(state, step, metrics):
        clock.append(step)
        if len(clock) == 9:  # after seed 2 joined at step 8 of seed 1 (a checkpoint since)
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        train_cohort(specs, progress=False, slots=2, checkpoint=ckpt,
                     hooks=[retire_seed0_at(8), crash])
    saved = ckpt.load(lambda s: None)
    assert saved is not None and saved["run_ids"][-1] == specs[2].run_id
    assert saved["queue"] == [specs[3].run_id]
    resumed = train_cohort(specs, progress=False, slots=2, resume=saved,
                           hooks=[retire_seed0_at(8)])
    for a, b in zip(resumed, straight, strict=True):
        assert as_rows(a) == as_rows(b)


def test_an_old_checkpoint_is_refused_in_one_line(tmp_path, capsys):
    spec = RunSpec(**BASE)
    ckpt = Checkpointer(tmp_path / "old.ckpt")
    ckpt.save([spec.run_id], {"t": 4, "index": [0]}, [[]])  # the layout before slots
    assert ckpt.load([spec.run_id]) is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "older groklab" in err[0]
    with pytest.raises(ValueError, match="older groklab"):
        CohortState([spec]).load_state_dict({"t": 4, "index": [0]})


def test_compaction_policy():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert compact_due(1, 8, False, cpu) and not compact_due(0, 8, True, cpu)
    assert not compact_due(3, 8, False, gpu) and compact_due(4, 8, False, gpu)
    assert compact_due(1, 8, True, gpu)  # a run waits for the slot


def test_list_queue_continues_a_checkpoint_queue():
    specs = [RunSpec(**BASE, seed=s) for s in range(5)]
    q = ListQueue(specs)
    q.restore([specs[3].run_id, specs[2].run_id], started=[specs[0].run_id, specs[1].run_id])
    assert q.pending() == [specs[i].run_id for i in (3, 2, 4)]
    assert [s.seed for s in q.take(2)] == [3, 2] and q.more()
