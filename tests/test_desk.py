"""The researcher's desk (issue 29): `groklab show`, `rm`, `resume`, `studies`, `plot`, and
`results` with filters and several stores; the invocation records they read (store schema
version 5). Stores are written straight from records (tests/fake_runs.py) unless a test
trains, and training is a few steps of a tiny model."""

import json
import os
import socket
import sqlite3
import time
from pathlib import Path

import pytest
import torch
from conftest import groklab
from fake_runs import curve, files, spec, write

from groklab.records import EvalRow
from groklab.store import STORE_NAME, VERSION, Store
from groklab.store.weights import save_weights, weights_path

# a tiny model and task: training takes well under a second a run
TRAIN = dict(p=5, d_model=16, n_heads=2, steps=12, batch_size=8, eval_every=3, warmup=2)


def raw(folder: Path) -> sqlite3.Connection:
    return sqlite3.connect(folder / STORE_NAME)


def table(folder: Path, sql: str, *args) -> list[tuple]:
    db = raw(folder)
    try:
        return [tuple(r) for r in db.execute(sql, args)]
    finally:
        db.close()


def schema(folder: Path) -> dict[str, tuple]:
    db = raw(folder)
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    out = {t: tuple([tuple(r) for r in db.execute(f"PRAGMA {p}({t})")]
                    for p in ("table_info", "index_list", "foreign_key_list")) for t in tables}
    db.close()
    return out


def one_line_error(proc) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("groklab: error: "), proc.stderr
    return lines[0]


# -- the store: migration and invocation records ----------------------------------------------
def test_a_version_4_store_migrates_to_invocation_records(tmp_path):
    Store(tmp_path / "fresh").close()
    old = tmp_path / "old"
    write(old, [(spec(seed=0), curve([0.5, 1.0]))])
    db = raw(old)
    with db:  # back to version 4: no invocation tables
        db.execute("DROP TABLE invocation_specs")
        db.execute("DROP TABLE invocations")
    db.execute("PRAGMA user_version = 4")
    db.close()
    assert VERSION == 6
    with Store(old) as store:
        assert store.invocations() == []
        assert [r["status"] for r in store.runs()] == ["finished"]
        number = store.record_invocation("run", ["run", "--p", "11"], "/here", [spec(seed=3)],
                                         {"device": "cpu"})
        (inv,) = store.invocations()
        assert inv["id"] == number and inv["argv"] == ["run", "--p", "11"]
        assert inv["run_ids"] == [spec(seed=3).run_id] and inv["options"] == {"device": "cpu"}
        assert store.invocation_specs(number) == [spec(seed=3)]
    assert table(old, "PRAGMA user_version") == [(VERSION,)]
    assert schema(old) == schema(tmp_path / "fresh")


def test_run_records_its_command_line_and_expanded_specs(tmp_path):
    out = tmp_path / "o"
    args = ["run", "--out", str(out), "--p", "5", "--d-model", "16", "--n-heads", "2",
            "--steps", "6", "--batch-size", "8", "--eval-every", "3", "--seeds", "2",
            "--no-progress"]
    groklab(*args)
    with Store(out, create=False) as store:
        (inv,) = store.invocations()
        ids = [r["id"] for r in store.runs()]
        specs = store.invocation_specs(inv["id"])
    assert inv["command"] == "run" and inv["argv"] == args and inv["cwd"] == os.getcwd()
    assert sorted(inv["run_ids"]) == sorted(ids) and [s.seed for s in specs] == [0, 1]
    assert inv["options"]["checkpoint_every"] == 1000 and inv["options"]["device"] == "cpu"
    shown = groklab("show", str(out), ids[0][:6]).stdout
    assert "command      groklab run --out" in shown and "--seeds 2" in shown
    # bad input records nothing: no store at all
    bad = groklab("run", "--out", str(tmp_path / "never"), "--p", "1", check=False)
    one_line_error(bad)
    assert not (tmp_path / "never").exists()


# -- show -------------------------------------------------------------------------------------
def test_show_tells_given_settings_from_defaults_and_names_files_and_command(tmp_path):
    a = spec(seed=2, momentum=0.5)  # momentum: ignored by adamw, shown as such
    b = spec(seed=3)
    write(tmp_path, [(a, curve([0.5, 1.0])), (b, None)], study=("s", {}))
    save_weights(tmp_path, a.run_id, {"w": torch.zeros(2)})
    with Store(tmp_path) as store:
        store.record_invocation("study", ["study", "s.toml", "--out", "x"], "/work", [a, b],
                                {"study": "s"})
    info = json.loads(groklab("show", str(tmp_path), a.run_id[:5], "--json").stdout)
    assert info["id"] == a.run_id and info["status"] == "finished" and info["last_step"] == 20
    assert info["set"]["p"] == {"value": 11, "default": 97, "ignored": None}
    assert info["set"]["momentum"]["ignored"] == "ignored by optimizer 'adamw'"
    assert "seed" in info["set"] and "train_fraction" in info["defaults"]
    assert set(info["set"]).isdisjoint(info["defaults"])
    assert info["summary"]["final_val_acc"] == 1.0 and info["studies"] == {"s": "baseline"}
    assert info["weights"] == str(weights_path(tmp_path, a.run_id))
    assert [c["argv"] for c in info["commands"]] == [["study", "s.toml", "--out", "x"]]
    text = groklab("show", str(tmp_path), a.run_id).stdout
    assert "momentum    0.5  (default 0; ignored by optimizer 'adamw')" in text
    assert "command      groklab study s.toml --out x  (in /work," in text
    unfinished = groklab("show", str(tmp_path), b.run_id).stdout
    assert "status       interrupted" in unfinished and "weights      none" in unfinished
    assert "owner        none" in unfinished
    one_line_error(groklab("show", str(tmp_path), "ffffffff", check=False))
    one_line_error(groklab("show", str(tmp_path / "nothing"), "ab", check=False))


# -- rm ---------------------------------------------------------------------------------------
def _desk(root: Path) -> list:
    """Three finished runs of study "s" (a and b one cohort with a checkpoint), weights,
    metrics, a text, an invocation record; returns the specs."""
    from groklab.engine.checkpoint import Checkpointer, checkpoint_path

    a, b, c = spec(seed=0), spec(seed=1), spec(seed=2, p=7)
    named = curve([0.2, 0.9], named={"grad_norm": 1.0})
    write(root, [(a, named), (b, curve([0.3, 0.8])), (c, curve([0.4, 1.0]))],
          study=("s", {"x": 1}))
    with Store(root) as store:
        store.record_outputs(a.run_id, 20, {"bleu": 0.5}, {"sample": "hello"})
        store.record_invocation("run", ["run"], "/", [a, b, c], {})
    for s in (a, b, c):
        save_weights(root, s.run_id, {"w": torch.zeros(2)})
    ids = [a.run_id, b.run_id]
    Checkpointer(checkpoint_path(root, ids)).save(ids, {"t": 3}, [[], []])
    return [a, b, c]


def test_rm_removes_rows_files_and_checkpoints_and_dry_run_removes_nothing(tmp_path):
    a, b, c = _desk(tmp_path)
    before = files(tmp_path)
    dry = groklab("rm", str(tmp_path), a.run_id[:6], "--dry-run").stdout
    assert files(tmp_path) == before  # not a byte changed
    assert f"would remove 1 run(s) (1 finished): {a.run_id}" in dry
    assert "2 curve, 3 metric, 1 text, 1 study membership, 1 recorded spec" in dry
    assert "1 weights/optimiser file(s), 1 checkpoint file(s)" in dry
    assert "nothing removed (--dry-run)" in dry

    done = groklab("rm", str(tmp_path), a.run_id[:6]).stdout
    assert done.startswith(f"removed 1 run(s) (1 finished): {a.run_id}")
    assert not weights_path(tmp_path, a.run_id).exists()
    assert weights_path(tmp_path, b.run_id).exists() and weights_path(tmp_path, c.run_id).exists()
    assert not (tmp_path / "checkpoints").exists()  # a's cohort checkpoint, and the folder
    for t in ("curves", "metrics", "texts", "study_runs", "invocation_specs"):
        assert table(tmp_path, f"SELECT * FROM {t} WHERE run_id=?", a.run_id) == [], t
    assert sorted(r[0] for r in table(tmp_path, "SELECT id FROM runs")) == sorted(
        [b.run_id, c.run_id])
    assert len(table(tmp_path, "SELECT * FROM curves")) == 4  # b's and c's two rows each
    with Store(tmp_path, create=False) as store:
        assert store.study_members("s") == [(b.run_id, "baseline"), (c.run_id, "baseline")]
        assert store.invocations()[0]["run_ids"] == [b.run_id, c.run_id]


def test_rm_by_filters_and_by_study_takes_the_study_and_its_unstarted_runs(tmp_path):
    a, b, c = _desk(tmp_path)
    out = groklab("rm", str(tmp_path), "--where", "p=7").stdout
    assert f"removed 1 run(s) (1 finished): {c.run_id}" in out
    never = spec(seed=9)
    with Store(tmp_path) as store:  # a member never started
        store.record_study("s", {"x": 1}, {}, [(a.run_id, "l"), (b.run_id, "l"),
                                               (never.run_id, "l")])
        store.record_invocation("study", ["study"], "/", [never], {"study": "s"})
    out = groklab("rm", str(tmp_path), "--study", "s").stdout
    assert "removed 3 run(s) (2 finished, 1 never started)" in out
    assert "studies left with no runs (removed too): s" in out
    assert table(tmp_path, "SELECT * FROM runs") == []
    assert table(tmp_path, "SELECT * FROM studies") == []
    assert table(tmp_path, "SELECT * FROM invocations") == []  # nothing left to resume
    assert "no runs match; nothing removed" in groklab("rm", str(tmp_path), "--status",
                                                       "finished").stderr


def test_rm_refuses_a_run_a_live_process_holds_and_removes_nothing(tmp_path):
    a, b, _ = _desk(tmp_path)
    me = f"{socket.gethostname()}:{os.getpid()}:test"  # this very process: alive
    db = raw(tmp_path)
    with db:
        db.execute("UPDATE runs SET status='running', owner=?, heartbeat=? WHERE id=?",
                   (me, time.time(), a.run_id))
    db.close()
    rows = table(tmp_path, "SELECT * FROM curves")
    before = files(tmp_path / "weights")
    line = one_line_error(groklab("rm", str(tmp_path), "--study", "s", check=False))
    assert f"another live process trains: {a.run_id} (owner {me})" in line
    assert "nothing removed" in line
    assert table(tmp_path, "SELECT * FROM curves") == rows and len(rows) == 6
    assert files(tmp_path / "weights") == before and (tmp_path / "checkpoints").exists()
    shown = groklab("show", str(tmp_path), a.run_id).stdout
    assert f"owner        {me}: a live process trains it" in shown
    # the same run, its owner gone: removable
    db = raw(tmp_path)
    with db:
        db.execute("UPDATE runs SET owner=? WHERE id=?", ("elsewhere-host:1:x", a.run_id))
        db.execute("UPDATE runs SET heartbeat=0 WHERE id=?", (a.run_id,))
    db.close()
    assert "removed 1 run(s)" in groklab("rm", str(tmp_path), a.run_id).stdout
    assert b.run_id in [r[0] for r in table(tmp_path, "SELECT id FROM runs")]


@pytest.mark.parametrize("args, says", [
    ([], "say which runs to remove"),
    (["--study", "nope"], "--study 'nope': no such study"),
    (["--status", "finised"], "did you mean 'finished'"),
    (["--where", "pp=3"], "--where pp: unknown run setting (did you mean 'p'?)"),
    (["--where", "p"], "--where 'p': use KEY=VALUE"),
    (["0123abcd"], "no run '0123abcd'"),
])
def test_rm_bad_input_is_one_line_and_removes_nothing(tmp_path, args, says):
    _desk(tmp_path)
    before = files(tmp_path)
    assert says in one_line_error(groklab("rm", str(tmp_path), *args, check=False))
    assert files(tmp_path) == before


# -- results: filters, the study column, several stores; studies ------------------------------
def _studies(root: Path) -> list:
    a, b, c, d = spec(seed=0), spec(seed=1, weight_decay=1.0), spec(seed=2, p=7), spec(seed=3)
    write(root, [(a, curve([1.0])), (b, curve([0.5]))], study=("alpha", {"v": 1}))
    write(root, [(c, curve([0.9]))], study=("beta", {"v": 2}))
    write(root, [(d, None)])
    return [a, b, c, d]


def test_results_filters_and_the_study_column(tmp_path):
    a, b, c, d = _studies(tmp_path)

    def ids(*args):
        return {r["id"] for r in json.loads(groklab("results", str(tmp_path), "--json",
                                                    *args).stdout)}

    assert ids("--study", "alpha") == {a.run_id, b.run_id}
    assert ids("--study", "alpha", "--study", "beta") == {a.run_id, b.run_id, c.run_id}
    assert ids("--status", "interrupted") == {d.run_id}
    assert ids("--where", "p=7") == {c.run_id}
    assert ids("--where", "weight_decay=1") == {b.run_id}  # an int matches the float 1.0
    assert ids("--where", "lr=baseline", "--where", "seed=3") == {d.run_id}
    assert ids("--where", "lr=[1e-3, 1e-3, 1e-3]", "--study", "alpha") == {a.run_id, b.run_id}
    assert ids("--where", "lr=layerwise") == set()
    rows = json.loads(groklab("results", str(tmp_path), "--json").stdout)
    assert {r["id"]: r["study"] for r in rows} == {a.run_id: "alpha", b.run_id: "alpha",
                                                  c.run_id: "beta", d.run_id: None}
    text = groklab("results", str(tmp_path), "--study", "beta").stdout.splitlines()
    assert text[0].split()[:4] == ["id", "task", "model", "study"]
    assert text[1].split()[3] == "beta" and len(text) == 2
    no_study = groklab("results", str(tmp_path), "--status", "interrupted").stdout
    assert "study" not in no_study.splitlines()[0].split()
    line = one_line_error(groklab("results", str(tmp_path), "--where", "seeed=1", check=False))
    assert "(did you mean 'seed'?)" in line
    one_line_error(groklab("results", str(tmp_path), "--where", "p=x", check=False))
    one_line_error(groklab("results", str(tmp_path), "--study", "gamma", check=False))


def test_studies_lists_each_study_with_its_runs_by_status(tmp_path):
    a, *_ = _studies(tmp_path)
    with Store(tmp_path) as store:  # one more member of beta, never started
        store.record_study("beta", {"v": 2}, {}, [(spec(seed=2, p=7).run_id, "x"),
                                                  (spec(seed=8).run_id, "x")])
    lines = groklab("studies", str(tmp_path)).stdout.splitlines()
    assert lines[0].split() == ["study", "runs", "finished", "running", "interrupted",
                                "halted_by_hook", "not", "started", "wall_s"]
    assert lines[1].split()[:7] == ["alpha", "2", "2", "0", "0", "0", "0"]
    assert lines[2].split()[:7] == ["beta", "2", "1", "0", "0", "0", "1"]
    assert lines[3] == "(1 run(s) of no study)"
    listed = json.loads(groklab("studies", str(tmp_path), "--json").stdout)
    assert [(s["name"], s["runs"], s["status"]) for s in listed] == [
        ("alpha", 2, {"finished": 2}), ("beta", 2, {"finished": 1, "not started": 1})]
    one_line_error(groklab("studies", str(tmp_path / "none"), check=False))


def test_results_of_two_stores_keep_their_store_and_say_which_runs_are_shared(tmp_path):
    shared, only_a, only_b = spec(seed=0), spec(seed=1), spec(seed=2)
    write(tmp_path / "a", [(shared, curve([1.0])), (only_a, curve([0.5]))])
    write(tmp_path / "b", [(shared, curve([1.0])), (only_b, None)])
    proc = groklab("results", str(tmp_path / "a"), str(tmp_path / "b"), "--json")
    rows = json.loads(proc.stdout)
    assert sorted((r["id"], Path(r["store"]).name) for r in rows) == sorted([
        (shared.run_id, "a"), (shared.run_id, "b"), (only_a.run_id, "a"), (only_b.run_id, "b")])
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("groklab: 1 run id(s) are in more than one store")
    assert f"{shared.run_id} ({tmp_path / 'a'}, {tmp_path / 'b'})" in line
    table_ = groklab("results", str(tmp_path / "a"), str(tmp_path / "b"), only_b.run_id[:6])
    lines = table_.stdout.splitlines()
    assert lines[0].split()[0] == "store" and len(lines) == 2
    assert lines[1].split()[:2] == [str(tmp_path / "b"), only_b.run_id]
    one_line_error(groklab("results", str(tmp_path / "a"), str(tmp_path / "nope"), check=False))
    one_line_error(groklab("results", str(tmp_path / "a"), str(tmp_path / "b"), "ffff0",
                           check=False))


# -- plot -------------------------------------------------------------------------------------
def test_plot_draws_the_chosen_runs_by_group_as_the_report_does(tmp_path, monkeypatch):
    from groklab.report import figures

    def grow(accs, step=10):
        return [EvalRow(step * (i + 1), 1.0, 1.0, 2.0 - a, a, extra={"norm": 3.0 * a})
                for i, a in enumerate(accs)]

    runs = [(spec(seed=0), grow([0.2, 0.4])), (spec(seed=1), grow([0.4, 0.8])),
            (spec(seed=0, weight_decay=1.0), grow([0.1, 0.1]))]
    write(tmp_path, runs)
    drawn = []
    real = figures.metrics_figure

    def spy(points, title, path, palette):
        drawn.append((points.copy(), title, dict(palette)))
        return real(points, title, path, palette)

    monkeypatch.setattr(figures, "metrics_figure", spy)
    out = groklab("plot", str(tmp_path), "--by", "weight_decay", "--to",
                  str(tmp_path / "f" / "wd.png")).stdout
    assert "3 run(s) in 2 group(s) by weight_decay" in out
    assert (tmp_path / "f" / "wd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    points, title, palette = drawn[-1]
    assert list(palette) == ["weight_decay=0.5", "weight_decay=1"]
    means = figures.band(points, "value")
    half = means[means["config"] == "weight_decay=0.5"]
    assert half["mean"].round(6).tolist() == [0.3, 0.6]  # mean over the two seeds per step
    assert half["se"].round(6).tolist() == [0.1, 0.2]  # their standard error
    groklab("plot", str(tmp_path), runs[0][0].run_id, "--metric", "norm", "--to",
            str(tmp_path / "n.html"))
    points, _, palette = drawn[-1]
    assert list(palette) == ["baseline"] and points["value"].round(6).tolist() == [0.6, 1.2]
    page = (tmp_path / "n.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page


@pytest.mark.parametrize("args, says", [
    ([], "Missing option '--to'"),
    (["--to", "x.jpg"], "give a .png or .html file"),
    (["--metric", "val_ac", "--to", "x.png"], "(did you mean 'val_acc'?)"),
    (["--by", "wieght_decay", "--to", "x.png"], "(did you mean 'weight_decay'?)"),
    (["--study", "none", "--to", "x.png"], "no such study"),
    (["--where", "p=3", "--to", "x.png"], "no runs of"),
])
def test_plot_bad_input_is_one_line_and_writes_nothing(tmp_path, args, says):
    write(tmp_path / "s", [(spec(seed=0), curve([0.5]))])
    assert says in one_line_error(groklab("plot", str(tmp_path / "s"), *args, check=False,
                                          cwd=tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


# -- resume (training a few steps) -------------------------------------------------------------
def test_resume_trains_what_recorded_commands_left_and_runs_no_command_made(tmp_path):
    from groklab.spec import RunSpec

    started, never = RunSpec(**TRAIN, seed=0), RunSpec(**TRAIN, seed=1)
    loose = RunSpec(**TRAIN, seed=2, lr_name="alone")
    write(tmp_path, [(started, None), (loose, None)])  # claimed, then released unfinished
    with Store(tmp_path) as store:
        store.record_study("s", {"x": 1}, {}, [(started.run_id, "a"), (never.run_id, "a")])
        store.record_invocation("study", ["study", "s.toml"], "/", [started, never],
                                {"study": "s", "checkpoint_every": 0})
    proc = groklab("resume", str(tmp_path), "--no-progress")
    assert "resuming groklab study s.toml (2 of 2 run(s) unfinished)" in proc.stderr
    assert "resuming 1 run(s) no recorded command made" in proc.stderr
    assert "3 run(s) trained here" in proc.stderr
    with Store(tmp_path, create=False) as store:
        assert {r["id"]: r["status"] for r in store.runs()} == dict.fromkeys(
            [started.run_id, never.run_id, loose.run_id], "finished")
        assert [len(store.curve(s.run_id)) for s in (started, never, loose)] == [4, 4, 4]
        assert store.studies()[0]["wall_s"] > 0  # the study's time went on
    again = groklab("resume", str(tmp_path))
    assert "nothing to resume: every run" in again.stderr and again.stdout == ""
    one_line_error(groklab("resume", str(tmp_path / "none"), check=False))


def test_lm_and_tune_record_their_command_lines_too(tmp_path):
    pytest.importorskip("optuna")
    corpus = tmp_path / "c.txt"
    corpus.write_text("to be or not to be,\nthat is the question.\n" * 40)
    lm = ["lm", "--out", str(tmp_path / "lm"), "--data", str(corpus), "--steps", "2",
          "--context", "8", "--n-layers", "1", "--n-heads", "2", "--d-model", "16",
          "--batch-size", "2", "--eval-every", "1", "--eval-batches", "1", "--no-progress"]
    groklab(*lm)
    tune = ["tune", "--out", str(tmp_path / "t"), "--steps", "3", "--p", "5", "--trials", "1",
            "--batch", "1", "--no-progress", "--set", "d_model=16", "--set", "n_heads=2",
            "--set", "batch_size=8", "--set", "eval_every=3"]
    groklab(*tune)
    with Store(tmp_path / "lm", create=False) as store:
        (inv,) = store.invocations()
        assert inv["command"] == "lm" and inv["argv"] == lm
        assert inv["run_ids"] == [r["id"] for r in store.runs()]
    with Store(tmp_path / "t", create=False) as store:
        (inv,) = store.invocations()
        assert inv["command"] == "tune" and inv["argv"] == tune and inv["run_ids"] == []
        assert inv["options"]["study"] == "tune-x_plus_y"
        (run,) = store.runs()
    shown = groklab("show", str(tmp_path / "t"), run["id"]).stdout
    assert "command      groklab tune --out" in shown and "studies      tune-x_plus_y" in shown
