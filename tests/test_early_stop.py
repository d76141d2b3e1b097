"""Early stop (stop_val_acc, stop_patience): a stopped run's curve is the prefix of the same run
trained to the full budget, up to the evaluation the rule names; a cohort whose runs have all
stopped ends there."""

import pytest
import torch
from conftest import tiny

from groklab.engine import CohortState, run_specs, train_cohort
from groklab.records import final_metrics
from groklab.spec import RunSpec
from groklab.store import Store

BASE = tiny(steps=40, lr=(3e-3, 3e-3, 3e-3))


def expected_length(acc: list[float], threshold: float, patience: int) -> int:
    """The rule, written out: evaluations recorded until val acc > threshold `patience` times
    in a row (all of them when that never happens)."""
    streak = 0
    for i, a in enumerate(acc):
        streak = streak + 1 if a > threshold else 0
        if streak == patience:
            return i + 1
    return len(acc)


def rows(curve):
    return torch.tensor([[r.step, r.train_loss, r.train_acc, r.val_loss, r.val_acc]
                         for r in curve], dtype=torch.float64)


@pytest.fixture(scope="module")
def full():
    """The reference run trained to its whole budget."""
    return train_cohort([RunSpec(**BASE)], progress=False)[0]


def test_a_stopped_run_is_the_prefix_of_the_full_run(full):
    acc = [r.val_acc for r in full]
    levels = sorted(set(acc))
    cuts = [(a + b) / 2 for a, b in zip(levels, levels[1:], strict=False)]
    rules = [(t, n) for t in cuts for n in (1, 2, 5)]
    lengths = {rule: expected_length(acc, *rule) for rule in rules}
    # the data exercise the rule: a run stopped early, one never stopped, a streak reset
    first_above = {rule: next((i for i, a in enumerate(acc) if a > rule[0]), None)
                   for rule in rules}
    assert min(lengths.values()) < len(acc) and max(lengths.values()) == len(acc)
    assert any(first_above[r] is not None and lengths[r] > first_above[r] + r[1]
               for r in rules), "no rule saw its streak reset; choose other data"

    specs = [RunSpec(**BASE)] + [RunSpec(**BASE, stop_val_acc=t, stop_patience=n)
                                 for t, n in rules]
    curves = train_cohort(specs, progress=False)
    torch.testing.assert_close(rows(curves[0]), rows(full), rtol=1e-5, atol=1e-5)
    for rule, curve in zip(rules, curves[1:], strict=True):
        assert len(curve) == lengths[rule], rule
        torch.testing.assert_close(rows(curve), rows(full[: lengths[rule]]), rtol=1e-5,
                                   atol=1e-5)
        assert final_metrics(curve).keys() == final_metrics(full).keys()


def test_a_cohort_ends_when_all_its_runs_stopped_and_the_store_is_exact(full, tmp_path):
    acc = [r.val_acc for r in full]
    threshold = (acc[0] + min(a for a in acc if a > acc[0])) / 2  # not at the first evaluation
    n_rows = expected_length(acc, threshold, 1)
    assert 1 < n_rows < len(acc)
    other = (min(acc) + acc[0]) / 2, 2
    specs = [RunSpec(**BASE, stop_val_acc=threshold),
             RunSpec(**BASE, stop_val_acc=other[0], stop_patience=other[1])]
    last = max(n_rows, expected_length(acc, *other))
    assert last < len(acc)
    steps_seen = []
    train_cohort(specs, progress=False, on_eval=lambda step, _: steps_seen.append(step))
    assert steps_seen == [r.step for r in full[:last]]

    run_specs(specs[:1], tmp_path, device="cpu", progress=False)
    with Store(tmp_path, create=False) as store:
        stored = store.curve(specs[0].run_id)
        run = next(r for r in store.runs() if r["id"] == specs[0].run_id)
    assert [r.step for r in stored] == [r.step for r in full[:n_rows]]
    expected = final_metrics(full[:n_rows])
    for name, value in expected.items():
        if value is None:
            assert run[name] is None, name
        else:
            assert abs(run[name] - value) < 1e-5, name
    assert (tmp_path / "weights" / f"{specs[0].run_id}.safetensors").is_file()


def test_the_rule_is_part_of_the_identity_only_when_set_and_its_streak_is_saved():
    assert RunSpec().run_id == RunSpec(stop_patience=5).run_id  # no threshold: no rule
    assert RunSpec().run_id != RunSpec(stop_val_acc=0.99).run_id
    assert RunSpec(stop_val_acc=0.99).run_id != RunSpec(stop_val_acc=0.99,
                                                        stop_patience=3).run_id
    assert RunSpec().cohort_key() == RunSpec(stop_val_acc=0.5, stop_patience=2).cohort_key()
    specs = [RunSpec(**BASE, stop_val_acc=0.0, stop_patience=9), RunSpec(**BASE, seed=1)]
    state = CohortState(specs)
    for _ in range(BASE["eval_every"]):
        state.step()
    state.evaluate()
    saved = state.state_dict()
    assert saved["early_stop"] == {"streak": [int(state.early_stop.streak[0]), 0]}
    again = CohortState(specs)
    again.load_state_dict(saved)
    assert again.early_stop.streak == state.early_stop.streak
