"""Anything that stops a run early is part of its id, or the run is never recorded as the
full-length run (docs/design.md, decision 11): a run an external hook retires is stored as
'halted_by_hook' (no weights, no final metrics) and trained in full by the next invocation; a run
its own stop rule retires is finished under an id that carries the rule."""

from conftest import tiny

from groklab.engine import HookResult, run_specs, stop_when
from groklab.spec import RunSpec
from groklab.store import Store
from groklab.store.weights import has_weights

BASE = tiny(steps=24, lr=(3e-3, 3e-3, 3e-3))


def test_external_hook_stops_are_not_recorded_as_full_runs(tmp_path):
    specs = [RunSpec(**BASE, seed=s) for s in (0, 1)]

    def retire_seed0_at_8(state, step, metrics):
        rows = [i for i, pos in enumerate(state.index) if state.specs[pos].seed == 0]
        return HookResult(retire=rows) if step == 8 else None

    counts = run_specs(specs, tmp_path, progress=False, hooks=[retire_seed0_at_8])
    assert counts["trained"] == 2 and counts["stopped"] == 1
    with Store(tmp_path, create=False) as store:
        by_seed = {r["seed"]: r for r in store.runs()}
        stopped, full = by_seed[0], by_seed[1]
        assert stopped["status"] == "halted_by_hook" and full["status"] == "finished"
        assert stopped["final_val_acc"] is None and stopped["step_val_acc_99"] is None
        assert [r.step for r in store.curve(stopped["id"])] == [4, 8]
        assert [r.step for r in store.curve(full["id"])][-1] == 24
    assert not has_weights(tmp_path, stopped["id"]) and has_weights(tmp_path, full["id"])

    # the next invocation (no hook) trains the stopped run to its whole budget, same id
    again = run_specs(specs, tmp_path, progress=False)
    assert again == {"total": 2, "trained": 1, "skipped": 1, "waiting": 0, "elsewhere": 0,
                     "stopped": 0}
    with Store(tmp_path, create=False) as store:
        row = next(r for r in store.runs() if r["id"] == stopped["id"])
        assert row["status"] == "finished"
        assert [r.step for r in store.curve(row["id"])] == [4, 8, 12, 16, 20, 24]
    assert has_weights(tmp_path, stopped["id"])


def test_public_stop_hook_through_the_runner_records_stopped(tmp_path):
    spec = RunSpec(**BASE)
    run_specs([spec], tmp_path, progress=False, hooks=[stop_when("val_acc", -1.0)])
    with Store(tmp_path, create=False) as store:
        assert store.status(spec.run_id) == "halted_by_hook"


def test_own_stop_rule_is_in_the_id_and_finishes(tmp_path):
    plain = RunSpec(**BASE)
    ruled = RunSpec(**BASE, stop_val_acc=0.0, stop_patience=1)  # stops at the first eval
    assert ruled.run_id != plain.run_id
    run_specs([ruled], tmp_path, progress=False)
    with Store(tmp_path, create=False) as store:
        assert store.status(ruled.run_id) == "finished"
        assert store.status(plain.run_id) is None
        curve = store.curve(ruled.run_id)
    # the rule, written out: stop at the first evaluation with val acc > 0
    assert all(r.val_acc <= 0.0 for r in curve[:-1])
    assert curve[-1].val_acc > 0.0 or curve[-1].step == BASE["steps"]
