"""The held threshold metric ``step_val_acc_99_held`` (docs/protocol.md §4): the first evaluated
step from which validation accuracy stays above 0.99 to the end of the run; its back-fill by
the store migration; and the early-stop rule that matches it."""

import sqlite3
from pathlib import Path

import pytest

from groklab.engine import train_cohort
from groklab.records import EvalRow, final_metrics, held_step
from groklab.spec import RunSpec
from groklab.store import STORE_NAME, Store


def curve(accs: list[float], every: int = 10) -> list[EvalRow]:
    return [EvalRow((i + 1) * every, 1.0, 1.0, 1.0, a) for i, a in enumerate(accs)]


def held_written_out(accs: list[float], every: int = 10) -> int | None:
    """The definition, independently: the earliest i with every acc[j > = i] > 0.99."""
    for i in range(len(accs)):
        if all(a > 0.99 for a in accs[i:]):
            return (i + 1) * every
    return None


CASES = {
    "never": [0.1, 0.5, 0.9],
    "held from the first crossing": [0.1, 0.995, 1.0, 1.0],
    "slingshot: passes, falls to 0.5, recovers": [0.2, 0.995, 1.0, 0.5, 0.7, 0.999, 1.0],
    "falls at the end: censored": [0.2, 1.0, 1.0, 0.98],
    "exactly 0.99 is not above": [1.0, 0.99, 1.0],
    "above from the start": [1.0, 1.0],
}


@pytest.mark.parametrize("name", CASES)
def test_held_step_matches_its_definition(name: str):
    accs = CASES[name]
    assert held_step(curve(accs)) == held_written_out(accs)


def test_held_differs_from_the_first_crossing_after_a_spike():
    m = final_metrics(curve(CASES["slingshot: passes, falls to 0.5, recovers"]))
    assert (m["step_val_acc_99"], m["step_val_acc_99_held"]) == (20, 60)
    m = final_metrics(curve(CASES["falls at the end: censored"]))
    assert (m["step_val_acc_99"], m["step_val_acc_99_held"]) == (20, None)
    assert final_metrics([])["step_val_acc_99_held"] is None


def test_the_migration_back_fills_held_from_stored_curves(tmp_path: Path):
    """A version-3 store (before the column) gains it, computed from each finished run's
    curve exactly as ``final_metrics`` does; an unfinished run keeps NULL."""
    specs = [RunSpec(p=11, d_model=16, n_heads=2, steps=20, seed=s) for s in range(len(CASES) + 1)]
    curves = {s.run_id: curve(accs) for s, accs in zip(specs, CASES.values(), strict=False)}
    with Store(tmp_path) as store:
        store.begin(specs, "cpu")
        store.append({specs[-1].run_id: curve([0.1, 1.0])})  # still running
        store.finish(curves, curves, 1.0)
    db = sqlite3.connect(tmp_path / STORE_NAME)
    with db:  # back to version 3: the column (and the later invocation tables) did not exist
        db.execute("ALTER TABLE runs DROP COLUMN step_val_acc_99_held")
        db.execute("DROP TABLE invocation_specs")
        db.execute("DROP TABLE invocations")
        db.execute("PRAGMA user_version = 3")
    db.close()
    with Store(tmp_path, create=False) as store:
        got = {r["id"]: r["step_val_acc_99_held"] for r in store.runs()}
    want = {rid: held_step(c) for rid, c in curves.items()}
    assert {rid: got[rid] for rid in want} == want
    assert sorted(v for v in want.values() if v is not None) == [10, 20, 30, 60]  # data exercise it
    assert got[specs[-1].run_id] is None


def test_a_run_stopped_once_held_has_its_held_step_where_its_streak_began():
    """The matching stop rule: threshold ``stop_val_acc`` (0.99 in the acceleration study)
    and ``stop_patience`` N retire a run at the N-th evaluation in a row above the threshold;
    its held step is then the first of those N evaluations."""
    tiny = dict(task="x_plus_y", p=11, d_model=16, n_heads=2, steps=120, batch_size=32,
                eval_every=4, warmup=2, lr=(1e-2, 1e-2, 1e-2), weight_decay=0.1,
                train_fraction=0.8)
    full = train_cohort([RunSpec(**tiny)], progress=False)[0]
    levels = sorted({r.val_acc for r in full})
    cuts = [(a + b) / 2 for a, b in zip(levels, levels[1:], strict=False)]
    specs = [RunSpec(**tiny, stop_val_acc=t, stop_patience=n) for t in cuts for n in (2, 3)]
    checked = 0
    for spec, stopped in zip(specs, train_cohort(specs, progress=False), strict=True):
        t, n = spec.stop_val_acc, spec.stop_patience
        if len(stopped) == len(full):
            continue  # never held for n evaluations: trained the whole budget
        checked += 1
        assert all(r.val_acc > t for r in stopped[-n:])
        assert len(stopped) == n or not stopped[-n - 1].val_acc > t
        assert held_step(stopped, t) == stopped[-n].step
    assert checked >= 2, "choose data where some rules stop a run early"


def test_the_report_shows_held_steps_in_a_table_and_a_figure(tmp_path: Path):
    """Runs that held 99 % get the held table (censored runs starred, counted once in the
    footnote) and the held-steps figure; a run that spiked counts from its recovery."""
    from fake_runs import curve as fake_curve
    from fake_runs import spec as fake_spec
    from fake_runs import write

    import groklab

    runs = [(fake_spec(seed=0, lr_name="a"), fake_curve([0.5, 1.0, 1.0])),     # held from 20
            (fake_spec(seed=1, lr_name="a"), fake_curve([1.0, 0.4, 1.0])),     # held from 30
            (fake_spec(seed=0, lr_name="b", weight_decay=0.1), fake_curve([0.2, 0.5, 0.6]))]
    write(tmp_path, runs)
    files = groklab.report(tmp_path)
    md = files.markdown.read_text()
    table = md.split("Steps to held 99 % validation accuracy")[1].split("\n\n")[1]
    assert "| x_plus_y | 25 ± 5 | 30\\* |" in table  # b never held: counts as its budget, 30
    assert any(p.name.endswith("-held.png") for p in files.figures)
