"""The run store: migration of a groklab 0.1 store, versions, the claim guard, named metrics.

The fixture tests/data/store-v0/groklab.sqlite was written by groklab 0.1 (tests/data/README.md).
"""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import groklab.store.migrations as store_mod
from groklab.records import FINAL_METRICS, EvalRow, final_metrics
from groklab.spec import RunSpec
from groklab.store import (
    STALE_S,
    STORE_NAME,
    VERSION,
    Store,
    StoreError,
)
from groklab.studies.study import load_file

DATA = Path(__file__).parent / "data"
FIXTURE = DATA / "store-v0" / STORE_NAME

# fixture runs by old id (see tests/data/README.md)
X_PLUS_Y_STUDY = ["a9f9fb4f145241bf", "9babfd028e9a15a4", "21c4ef553361386a", "565eaa59a0352e47"]
PERM_P97, PERM_P59, PERM_P23_RUNNING = "dc33c48d17bf063f", "1e3ce10979e5d9b2", "894e2412e6699e53"
PERM_STUDY_P11, PERM_STUDY_P13 = "a76ac7505127f016", "73cf68af147ce6b1"


@pytest.fixture
def v0(tmp_path: Path) -> Path:
    """A copy of the groklab 0.1 store; returns its folder."""
    (tmp_path / "v0").mkdir()
    shutil.copy(FIXTURE, tmp_path / "v0" / STORE_NAME)
    return tmp_path / "v0"


def raw(folder: Path) -> sqlite3.Connection:
    db = sqlite3.connect(folder / STORE_NAME)
    db.row_factory = sqlite3.Row
    return db


def v1_id(spec_json: str) -> str:
    """The id groklab gives a 0.1 spec read as semantics version 1."""
    d = json.loads(spec_json) | {"semantics": 1}
    d["lr"] = tuple(d["lr"])
    if d["group_rules"] is not None:
        d["group_rules"] = tuple(tuple(r) for r in d["group_rules"])
    return RunSpec(**d).run_id


def old_state(folder: Path) -> dict[str, dict]:
    """Every run of a version-0 store by id: its row and its curve rows."""
    db = raw(folder)
    runs = {r["id"]: dict(r) for r in db.execute("SELECT * FROM runs")}
    for rid, r in runs.items():
        r["curve"] = [tuple(c) for c in db.execute(
            "SELECT step, train_loss, train_acc, val_loss, val_acc FROM curves WHERE run_id=? "
            "ORDER BY step", (rid,))]
    db.close()
    return runs


def schema(folder: Path) -> dict[str, tuple]:
    """Every table's columns, indexes and foreign keys."""
    db = raw(folder)
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    out = {t: tuple([tuple(r) for r in db.execute(f"PRAGMA {pragma}({t})")]
                    for pragma in ("table_info", "index_list", "foreign_key_list"))
           for t in tables}
    db.close()
    return out


def spec(seed: int = 0, **kw) -> RunSpec:
    return RunSpec(**({"p": 11, "d_model": 16, "n_heads": 2, "steps": 20, "seed": seed} | kw))


V0_METRICS = FINAL_METRICS[:5]  # the summary columns groklab 0.1 wrote


def store_rows(curve: list[tuple]) -> list[EvalRow]:
    return [EvalRow(*c) for c in curve]


def row(step: int, **extra: float) -> EvalRow:
    return EvalRow(step, 1.0 / step, 0.5, 2.0 / step, 0.25, extra)


# -- migration --------------------------------------------------------------------------------
def test_fixture_is_a_groklab_0_1_store():
    db = sqlite3.connect(FIXTURE)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 14
    db.close()


def test_migration_reidentifies_runs_and_keeps_their_data(v0: Path):
    old = old_state(v0)
    db = raw(v0)
    old_members = [tuple(r) for r in db.execute(
        "SELECT run_id, label FROM study_runs WHERE study='fixture' ORDER BY pos")]
    db.close()
    with Store(v0, create=False) as store:
        runs = {r["id"]: r for r in store.runs()}
        curves = {rid: [(r.step, r.train_loss, r.train_acc, r.val_loss, r.val_acc)
                        for r in store.curve(rid)] for rid in runs}
        members = {s["name"]: store.study_members(s["name"]) for s in store.studies()}
    db = raw(v0)
    assert db.execute("PRAGMA user_version").fetchone()[0] == VERSION
    mapping = dict(db.execute("SELECT old_id, new_id FROM id_migrations WHERE version=1"))

    # every old run is traced, to the id RunSpec gives its spec with semantics 1
    assert mapping == {rid: v1_id(r["spec"]) for rid, r in old.items()}
    assert set(runs) == set(mapping.values())
    for rid in X_PLUS_Y_STUDY:  # default-only settings: the id is unchanged
        assert mapping[rid] == rid and rid in runs
    assert mapping["75c504b5b97e5014"] != "75c504b5b97e5014"  # d_ff = 4 · d_model given
    # permutation ignores p: p = 97, 59 and an unfinished p = 23 are one run, kept from the
    # finished run finished last (p = 59)
    assert mapping[PERM_P59] == mapping[PERM_P23_RUNNING] == PERM_P97
    assert runs[PERM_P97]["p"] == 59 and runs[PERM_P97]["status"] == "finished"
    assert mapping[PERM_STUDY_P11] == mapping[PERM_STUDY_P13]

    # each new id holds the kept run's spec (semantics 1 added), curve and final metrics
    for new_id, r in runs.items():
        kept = max((o for oid, o in old.items() if mapping[oid] == new_id),
                   key=lambda o: (o["status"] == "finished", o["finished"] or 0))
        assert json.loads(db.execute("SELECT spec FROM runs WHERE id=?", (new_id,))
                          .fetchone()[0]) == json.loads(kept["spec"]) | {"semantics": 1}
        assert r["semantics"] == 1 and r["status"] == kept["status"] == "finished"
        assert curves[new_id] == kept["curve"] and len(curves[new_id]) == 4
        assert {k: r[k] for k in V0_METRICS} == {k: kept[k] for k in V0_METRICS}
        # the summary columns added later are computed from the stored curve
        assert {k: r[k] for k in FINAL_METRICS} == final_metrics(store_rows(kept["curve"]))
    n_curve_rows = db.execute("SELECT count(*) FROM curves").fetchone()[0]
    assert n_curve_rows == sum(len(c) for c in curves.values())

    # memberships follow their runs; the two p values of fixture-perm are one member now
    assert members["fixture"] == [(mapping[rid], label) for rid, label in old_members]
    assert [rid for rid, _ in members["fixture"][:4]] == X_PLUS_Y_STUDY
    assert all(rid in runs for ms in members.values() for rid, _ in ms)
    assert members["fixture-perm"] == [(mapping[PERM_STUDY_P13], "layerwise p=13")]
    db.close()


def test_rerunning_the_fixture_study_with_semantics_1_trains_nothing(v0: Path):
    specs = load_file(DATA / "store-v0-study.toml").with_overrides(semantics=1).specs()
    assert len(specs) == 8
    with Store(v0, create=False) as store:
        assert [store.status(s.run_id) for s in specs] == ["finished"] * 8


def test_store_from_the_future_is_refused_untouched(v0: Path):
    db = raw(v0)
    db.execute("PRAGMA user_version = 99")
    db.close()
    before = (v0 / STORE_NAME).read_bytes()
    with pytest.raises(StoreError, match="version-99 store, newer than this groklab"):
        Store(v0)
    assert (v0 / STORE_NAME).read_bytes() == before
    assert sorted(p.name for p in v0.iterdir()) == [STORE_NAME]


def test_failed_migration_leaves_the_store_unchanged(v0: Path, monkeypatch: pytest.MonkeyPatch):
    before = (v0 / STORE_NAME).read_bytes()
    old_ids = set(old_state(v0))
    real = store_mod._reidentify

    def fail_after_rewriting(*args, **kw):
        real(*args, **kw)  # ids, curves and memberships rewritten, then:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store_mod, "_reidentify", fail_after_rewriting)
    with pytest.raises(RuntimeError, match="disk on fire"):
        Store(v0)
    assert (v0 / STORE_NAME).read_bytes() == before
    db = raw(v0)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 0
    assert {r[0] for r in db.execute("SELECT id FROM runs")} == old_ids
    db.close()
    monkeypatch.undo()
    with Store(v0) as store:  # and it migrates once the failure is gone
        assert len(store.runs()) == 11


def test_fresh_and_migrated_schemas_are_equal(v0: Path, tmp_path: Path):
    Store(tmp_path / "fresh").close()
    Store(v0).close()
    assert schema(tmp_path / "fresh") == schema(v0)
    assert raw(tmp_path / "fresh").execute("PRAGMA user_version").fetchone()[0] == VERSION


# -- claim guard ------------------------------------------------------------------------------
def test_two_stores_do_not_destroy_each_others_runs(tmp_path: Path):
    x, y, z = spec(0), spec(1), spec(2)
    a, b = Store(tmp_path), Store(tmp_path)
    assert a.begin([x, y], "cpu") == [x, y]
    assert a.append({x.run_id: [row(5)]}) == [x.run_id]
    assert b.begin([x, z], "cpu") == [z]  # x is A's: alive and fresh
    assert b.append({x.run_id: [row(10)], z.run_id: [row(5)]}) == [z.run_id]
    assert b.finish({x.run_id: []}, {x.run_id: [row(5), row(10)]}, 1.0) == []
    assert a.curve(x.run_id) == [row(5)] and a.status(x.run_id) == "running"

    db = raw(tmp_path)  # A stops writing: its heartbeat goes stale
    with db:
        db.execute("UPDATE runs SET heartbeat=? WHERE id=?", (time.time() - STALE_S - 1, x.run_id))
    assert b.begin([x], "cpu") == [x]
    assert b.curve(x.run_id) == []  # A's partial curve was dropped
    assert a.append({x.run_id: [row(10)]}) == []
    assert b.append({x.run_id: [row(5)]}) == [x.run_id]
    assert a.finish({}, {x.run_id: [row(5), row(10)]}, 1.0) == []
    assert b.status(x.run_id) == "running"
    assert b.finish({x.run_id: [row(10)]}, {x.run_id: [row(5), row(10)]}, 2.0) == [x.run_id]
    assert b.status(x.run_id) == "finished" and b.curve(x.run_id) == [row(5), row(10)]
    assert a.begin([x, y], "cpu") == [y]  # finished runs are never claimed
    a.close()
    b.close()


def test_a_dead_owners_run_is_claimed_at_once(tmp_path: Path):
    x = spec()
    with Store(tmp_path) as a:
        a.begin([x], "cpu")
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout.strip()
        host = a.owner.split(":")[0]
        with raw(tmp_path) as db:
            db.execute("UPDATE runs SET owner=? WHERE id=?", (f"{host}:{dead}:gone", x.run_id))
        assert a.begin([x], "cpu") == [x]


def test_release_and_close_give_unfinished_runs_back(tmp_path: Path):
    x, y = spec(0), spec(1)
    a, b = Store(tmp_path), Store(tmp_path)
    a.begin([x, y], "cpu")
    a.release([x.run_id])
    assert b.begin([x, y], "cpu") == [x]
    a.close()
    assert b.begin([y], "cpu") == [y]
    b.close()
    assert os.path.isfile(tmp_path / STORE_NAME)


# -- metrics and reads ------------------------------------------------------------------------
def test_named_metrics_round_trip(tmp_path: Path):
    x = spec()
    with Store(tmp_path) as store:
        store.begin([x], "cpu")
        store.append({x.run_id: [row(5, grad_norm=1.5), row(10, grad_norm=0.5, sharpness=3.0)]})
        store.finish({x.run_id: [row(15)]}, {x.run_id: [row(5), row(10), row(15)]}, 1.0)
        assert store.metrics(x.run_id) == [(5, "grad_norm", 1.5), (10, "grad_norm", 0.5),
                                           (10, "sharpness", 3.0)]
        assert store.metric_names() == ["grad_norm", "sharpness"]
        assert store.curve(x.run_id)[1].extra == {"grad_norm": 0.5, "sharpness": 3.0}
        (r,) = store.runs()
        assert r["semantics"] == x.semantics and r["final_val_loss"] == 2.0 / 15
        assert "owner" not in r and "heartbeat" not in r
        store.begin([spec(1)], "cpu")  # a claim drops an earlier attempt's metrics too
        store.append({spec(1).run_id: [row(5, grad_norm=9.0)]})
        with raw(tmp_path) as db:
            db.execute("UPDATE runs SET owner=NULL WHERE id=?", (spec(1).run_id,))
        store.begin([spec(1)], "cpu")
        assert store.metrics(spec(1).run_id) == []


def test_a_study_listing_one_run_twice_records_it_once(tmp_path: Path):
    with Store(tmp_path) as store:
        store.record_study("s", {}, {}, [("a", "p=11"), ("b", "x"), ("a", "p=13")])
        assert store.study_members("s") == [("a", "p=11"), ("b", "x")]


def test_summary_metrics_memorisation_generalisation_and_delay():
    accs = [(0.5, 0.1), (0.995, 0.2), (1.0, 0.6), (1.0, 0.995), (1.0, 0.98)]
    curve = [EvalRow(10 * (i + 1), 0.1, tr, 0.2, va) for i, (tr, va) in enumerate(accs)]
    m = final_metrics(curve)
    assert (m["step_train_acc_99"], m["step_val_acc_99"], m["grokking_delay"]) == (20, 40, 20)
    assert m["max_val_acc"] == 0.995 and m["final_val_acc"] == 0.98
    never = final_metrics(curve[:3])
    assert never["step_val_acc_99"] is None and never["grokking_delay"] is None
    assert never["step_train_acc_99"] == 20 and never["max_val_acc"] == 0.6
