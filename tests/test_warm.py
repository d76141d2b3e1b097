"""Saved weights and warm starts: a finished run's final weights are on disk and loadable
by id; a child run (``init_from``) starts from exactly its parent's final weights, its id
depends on its parent's, parents train first, and a warm run's result does not depend on
its cohort mates."""

import torch
from conftest import tiny

from groklab import load_run
from groklab.engine import CohortState, HookResult, run_specs, train_cohort
from groklab.spec import RunSpec
from groklab.store import Store
from groklab.store.weights import load_weights, weights_path

BASE = tiny(task="sum", p=7, operands=2, max_len=6)


def spec(**kw):
    return RunSpec(**(BASE | kw))


def final_params(s):
    state = CohortState([s])
    while not state.done:
        state.step()
    return state.params.run(0)


def test_finished_runs_save_their_final_weights_and_load_by_id(tmp_path):
    parent = spec(seed=1)
    run_specs([parent], tmp_path, progress=False)
    saved = load_weights(tmp_path, parent.run_id)
    expected = final_params(parent)
    assert saved.keys() == expected.keys()
    assert all(torch.equal(saved[n], expected[n]) for n in saved)
    loaded = load_run(tmp_path, parent.run_id)
    assert loaded.spec.run_id == parent.run_id
    tokens = torch.tensor([[2, 0, 3, 1], [8, 0, 8, 1]])
    assert loaded.logits(tokens).shape == (2, 7)
    assert not list(tmp_path.glob("weights/.*"))  # no temporary files left


def test_a_child_starts_from_its_parents_final_weights(tmp_path):
    parent = spec(seed=1)
    run_specs([parent], tmp_path, progress=False)
    child = spec(seed=1, operands=3, n_examples=300, init_from=parent.run_id)
    state = CohortState([child], parents={parent.run_id: load_weights(tmp_path, parent.run_id)})
    start = state.params.run(0)
    end = final_params(parent)
    assert all(torch.equal(start[n], end[n]) for n in start)
    fresh = CohortState([spec(seed=1, operands=3, n_examples=300)]).params.run(0)
    assert not torch.equal(fresh["tok_emb"], start["tok_emb"])


def test_changing_the_parent_changes_the_childs_id():
    a, b = spec(seed=1), spec(seed=1, weight_decay=0.1)
    child_a = spec(operands=3, n_examples=300, init_from=a.run_id)
    child_b = spec(operands=3, n_examples=300, init_from=b.run_id)
    assert child_a.run_id != child_b.run_id
    assert child_a.cohort_key() == child_b.cohort_key()  # both train in one cohort
    assert spec(operands=3, n_examples=300).run_id not in (child_a.run_id, child_b.run_id)


def test_parents_train_first_and_children_wait_for_them(tmp_path):
    parent = spec(seed=2)
    child = spec(seed=2, operands=3, n_examples=300, steps=8, init_from=parent.run_id)
    counts = run_specs([child], tmp_path / "alone", progress=False)
    assert counts["waiting"] == 1 and counts["trained"] == 0
    counts = run_specs([child, parent], tmp_path / "both", progress=False)
    assert counts["trained"] == 2 and counts["waiting"] == 0
    with Store(tmp_path / "both") as store:
        runs = {r["id"]: r for r in store.runs()}
    assert runs[parent.run_id]["finished"] <= runs[child.run_id]["started"]
    assert weights_path(tmp_path / "both", child.run_id).is_file()


def test_warm_runs_in_a_cohort_equal_the_runs_alone(tmp_path):
    parents = [spec(seed=s) for s in (0, 1)]
    run_specs(parents, tmp_path, progress=False)
    weights = {p.run_id: load_weights(tmp_path, p.run_id) for p in parents}
    children = [spec(seed=0, operands=3, n_examples=300, init_from=parents[0].run_id),
                spec(seed=1, operands=3, n_examples=300, init_from=parents[1].run_id,
                 lr=(2e-3, 2e-3, 2e-3)),
                spec(seed=3, operands=3, n_examples=300)]
    together = train_cohort(children, progress=False, parents=weights)
    for s, curve in zip(children, together, strict=True):
        alone = train_cohort([s], progress=False, parents=weights)[0]
        a = torch.tensor([[r.train_loss, r.val_loss, r.train_acc, r.val_acc] for r in alone])
        b = torch.tensor([[r.train_loss, r.val_loss, r.train_acc, r.val_acc] for r in curve])
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_retired_runs_report_their_weights_when_they_retire():
    specs = [spec(seed=s) for s in range(3)]
    done = {}

    def retire_first_at_8(state, step, metrics):
        if step == 8 and 0 in state.index:
            snapshot["at_8"] = state.params.run(state.index.index(0))
            return HookResult(retire=[state.index.index(0)])
        return None

    snapshot = {}
    train_cohort(specs, progress=False, hooks=[retire_first_at_8],
                 on_run_done=lambda pos, end: done.setdefault(pos, end.params))
    assert sorted(done) == [0, 1, 2]
    assert all(torch.equal(done[0][n], snapshot["at_8"][n]) for n in done[0])
    alone = final_params(specs[1])
    for n in alone:  # the cohort's other runs went on to the end
        torch.testing.assert_close(done[1][n], alone[n], rtol=1e-5, atol=1e-6)
