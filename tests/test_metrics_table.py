"""The one table of summary metrics (groklab.records.SUMMARIES): each definition checked against
arithmetic written out on hand-made curves; the store's columns, the results table, the
report's tables and the search read their facts from it; a store migration back-fills a
metric with its one Python definition, equal to what the SQL of earlier versions wrote; the
status of a run a hook cut short, 'halted_by_hook', and its migration from 'stopped'."""

import shutil
import sqlite3
from pathlib import Path

import pytest
from fake_runs import spec

from groklab.records import (
    DIAGNOSTICS,
    FINAL_METRICS,
    HALTED,
    STATUSES,
    SUMMARIES,
    SUMMARY,
    EvalRow,
    definition,
    final_metrics,
)
from groklab.store import STORE_NAME, VERSION, Store

# (train_acc, val_acc) per evaluation, every 10 steps; losses follow from them
CURVES = {
    "grokked": [(0.2, 0.1), (0.995, 0.3), (1.0, 0.995), (1.0, 1.0)],
    "slingshot": [(0.5, 0.2), (1.0, 0.995), (1.0, 0.4), (1.0, 0.999), (1.0, 1.0)],
    "falls at the end": [(1.0, 1.0), (1.0, 0.98)],
    "exactly 0.99 is not above": [(0.99, 0.99), (1.0, 0.99)],
    "never memorised": [(0.5, 0.995), (0.6, 1.0)],
    "one row": [(1.0, 1.0)],
}


def curve(pairs: list[tuple[float, float]]) -> list[EvalRow]:
    return [EvalRow(10 * (i + 1), 3.0 - t, t, 4.0 - v, v) for i, (t, v) in enumerate(pairs)]


def written_out(pairs: list[tuple[float, float]]) -> dict:
    """Every stored summary metric, by hand: index arithmetic on the lists, no records code."""
    steps = [10 * (i + 1) for i in range(len(pairs))]
    train = [t for t, _ in pairs]
    val = [v for _, v in pairs]
    first_val = [s for s, v in zip(steps, val, strict=True) if v > 0.99]
    first_train = [s for s, t in zip(steps, train, strict=True) if t > 0.99]
    held = [steps[i] for i in range(len(val)) if all(v > 0.99 for v in val[i:])]
    reached = first_val[0] if first_val else None
    memorised = first_train[0] if first_train else None
    return {"final_train_loss": 3.0 - train[-1], "final_train_acc": train[-1],
            "final_val_loss": 4.0 - val[-1], "final_val_acc": val[-1],
            "step_val_acc_99": reached, "max_val_acc": sorted(val)[-1],
            "step_train_acc_99": memorised,
            "grokking_delay": None if reached is None or memorised is None
            else reached - memorised,
            "step_val_acc_99_held": held[0] if held else None}


@pytest.mark.parametrize("name", CURVES)
def test_every_definition_matches_its_arithmetic(name: str):
    assert final_metrics(curve(CURVES[name])) == written_out(CURVES[name])


def test_the_curves_exercise_every_case():
    got = {n: final_metrics(curve(c)) for n, c in CURVES.items()}
    assert got["slingshot"]["step_val_acc_99"] == 20
    assert got["slingshot"]["step_val_acc_99_held"] == 40  # from the recovery on
    assert got["falls at the end"]["step_val_acc_99_held"] is None  # censored
    assert got["exactly 0.99 is not above"]["step_val_acc_99"] is None
    assert got["grokked"]["grokking_delay"] == 10
    assert got["never memorised"]["grokking_delay"] is None  # partial: one of two reached


def test_an_empty_curve_has_no_summary():
    assert final_metrics([]) == dict.fromkeys(FINAL_METRICS)


def test_the_table_is_consistent():
    names = [s.name for s in SUMMARIES]
    assert len(names) == len(set(names)) == len(SUMMARY)
    assert list(final_metrics(curve(CURVES["grokked"]))) == list(FINAL_METRICS)
    for s in SUMMARIES:
        assert s.added is None or 0 <= s.added <= VERSION
        assert not s.stored or s.of is not None, f"{s.name}: stored without a definition"
        assert s.censored is None or (s.whole and s.reached), s.name
        assert s.direction in ("minimize", "maximize")
        assert not (s.censored and s.partial), s.name
    # the stored ones come first, a later column after an earlier one (the store appends)
    added = [s.added for s in SUMMARIES if s.stored]
    assert added == sorted(added)
    assert DIAGNOSTICS == ("sigma_max_E", "sigma_max_W", "fro_E", "fro_W", "eta_E_over_eta_W",
                           "token_updates_cv", "token_updates_min_over_mean")
    with pytest.raises(KeyError, match="recorded by a hook"):
        definition("sigma_max_E")


def test_the_store_columns_are_the_stored_metrics(tmp_path: Path):
    Store(tmp_path).close()
    db = sqlite3.connect(tmp_path / STORE_NAME)
    columns = {r[1]: r[2] for r in db.execute("PRAGMA table_info(runs)")}
    db.close()
    stored = {s.name: s for s in SUMMARIES if s.stored}
    assert [c for c in columns if c in SUMMARY] == list(FINAL_METRICS)
    assert {c: columns[c] for c in stored} == {
        n: "INTEGER" if s.whole else "REAL" for n, s in stored.items()}


def test_the_readers_take_their_facts_from_the_table():
    from groklab.report.listing import GROKKING, LANGUAGE, WHOLE_NUMBERS, cell
    from groklab.report.tables import CENSORED, METRICS, PARTIAL
    from groklab.tune.objective import default_direction, known_metrics

    assert set(GROKKING) == {s.name for s in SUMMARIES if s.stored and "algorithmic" in s.runs}
    assert set(LANGUAGE) == {s.name for s in SUMMARIES if s.stored and "language" in s.runs}
    assert {s.name for s in SUMMARIES if s.whole} <= WHOLE_NUMBERS
    assert cell("step_val_acc_99_held", 40.0) == "40" and cell("max_val_acc", 0.5) == "0.5000"
    assert set(METRICS) == {s.name for s in SUMMARIES if s.stored and s.tabled
                            and "algorithmic" in s.runs}
    assert {m: title for m, (title, _) in METRICS.items()} == {
        m: SUMMARY[m].title for m in METRICS}
    assert CENSORED == {"step_val_acc_99": "censored", "step_train_acc_99": "censored_train",
                        "step_val_acc_99_held": "censored_held"}
    assert PARTIAL == ("grokking_delay",)
    assert known_metrics(["gnorm"]) == ["steps_to_99", *(s.name for s in SUMMARIES), "gnorm"]
    assert {s.name: default_direction(s.name) for s in SUMMARIES} == {
        s.name: s.direction for s in SUMMARIES}
    assert [default_direction(m) for m in ("steps_to_99", "probe_acc", "gnorm")] == [
        "minimize", "maximize", "minimize"]


# -- back-fill by migration -------------------------------------------------------------------
# What versions 2 and 4 computed in SQL, kept here as the reference the Python back-fill meets.
OLD_SQL_1_TO_2 = ["""
    UPDATE runs SET
        max_val_acc = (SELECT MAX(val_acc) FROM curves WHERE run_id = runs.id),
        step_train_acc_99 = (SELECT MIN(step) FROM curves
                             WHERE run_id = runs.id AND train_acc > 0.99)
    WHERE status = 'finished'""",
    "UPDATE runs SET grokking_delay = step_val_acc_99 - step_train_acc_99 "
    "WHERE status = 'finished'"]
OLD_SQL_3_TO_4 = ["""
    UPDATE runs SET step_val_acc_99_held = (
        SELECT MIN(c.step) FROM curves c WHERE c.run_id = runs.id AND c.step > COALESCE(
            (SELECT MAX(d.step) FROM curves d
             WHERE d.run_id = runs.id AND NOT d.val_acc > 0.99), -1))
    WHERE status = 'finished'"""]
LATER = ("max_val_acc", "step_train_acc_99", "grokking_delay", "step_val_acc_99_held")


def a_version_1_store(root: Path) -> list[str]:
    """A store of the curves above (finished), one unfinished and one halted run, taken
    back to version 1: without the summary columns versions 2 and 4 added."""
    specs = [spec(seed=i) for i in range(len(CURVES) + 2)]
    with Store(root) as store:
        for s, pairs in zip(specs, CURVES.values(), strict=False):
            store.begin([s], "cpu")
            store.finish({s.run_id: curve(pairs)}, {s.run_id: curve(pairs)}, 1.0)
        store.begin(specs[-2:], "cpu")
        store.append({s.run_id: curve(CURVES["grokked"]) for s in specs[-2:]})
        store.finish({}, {}, 1.0, stopped=[specs[-1].run_id])
    db = sqlite3.connect(root / STORE_NAME)
    with db:
        for column in LATER:
            db.execute(f"ALTER TABLE runs DROP COLUMN {column}")
        for table in ("texts", "invocation_specs", "invocations"):
            db.execute(f"DROP TABLE {table}")
        db.execute("UPDATE runs SET status='stopped' WHERE status=?", (HALTED,))
        db.execute("PRAGMA user_version = 1")
    db.close()
    return [s.run_id for s in specs]


def test_the_back_fill_runs_the_definition_and_equals_the_old_sql(tmp_path: Path):
    ids = a_version_1_store(tmp_path / "python")
    shutil.copytree(tmp_path / "python", tmp_path / "sql")
    db = sqlite3.connect(tmp_path / "sql" / STORE_NAME)
    with db:  # the old migrations, as they were
        for column in ("max_val_acc REAL", "step_train_acc_99 INTEGER",
                       "grokking_delay INTEGER", "step_val_acc_99_held INTEGER"):
            db.execute(f"ALTER TABLE runs ADD COLUMN {column}")
        for statement in OLD_SQL_1_TO_2 + OLD_SQL_3_TO_4:
            db.execute(statement)
    old = {r[0]: r[1:] for r in db.execute(f"SELECT id, {', '.join(LATER)} FROM runs")}
    db.close()
    with Store(tmp_path / "python", create=False) as store:
        new = {r["id"]: tuple(r[c] for c in LATER) for r in store.runs()}
    assert new == old
    for rid, pairs in zip(ids, CURVES.values(), strict=False):  # and the definitions
        assert new[rid] == tuple(written_out(pairs)[c] for c in LATER)
    assert new[ids[-1]] == new[ids[-2]] == (None,) * len(LATER)  # not finished: no summary
    assert {v for row in new.values() for v in row} > {None, 10, 20, 40}  # cases exercised


# -- the status of a run a hook cut short -----------------------------------------------------
def test_a_halted_run_is_stored_as_halted_by_hook(tmp_path: Path):
    s = spec()
    with Store(tmp_path) as store:
        store.begin([s], "cpu")
        store.append({s.run_id: curve(CURVES["grokked"])[:2]})
        assert store.finish({}, {}, 1.0, stopped=[s.run_id]) == []
        (row,) = store.runs()
    assert row["status"] == HALTED == "halted_by_hook" and HALTED in STATUSES
    assert "stopped" not in STATUSES and row["final_val_acc"] is None


def test_an_older_store_reads_stopped_as_halted_by_hook(tmp_path: Path, monkeypatch):
    from fake_runs import read_only

    ids = a_version_1_store(tmp_path / "old")
    shutil.copytree(tmp_path / "old", tmp_path / "ro")
    with read_only(tmp_path / "ro", monkeypatch), Store(tmp_path / "ro", create=False) as store:
        assert store.read_only and store.status(ids[-1]) == HALTED  # upgraded in memory only
    db = sqlite3.connect(tmp_path / "ro" / STORE_NAME)
    assert db.execute("SELECT status FROM runs WHERE id=?", (ids[-1],)).fetchone() == (
        "stopped",)
    db.close()
    with Store(tmp_path / "old", create=False) as store:
        statuses = {r["id"]: r["status"] for r in store.runs()}
    assert statuses[ids[-1]] == HALTED and statuses[ids[0]] == "finished"
    db = sqlite3.connect(tmp_path / "old" / STORE_NAME)
    assert db.execute("PRAGMA user_version").fetchone() == (VERSION,)
    assert db.execute("SELECT COUNT(*) FROM runs WHERE status='stopped'").fetchone() == (0,)
    db.close()
