"""Statuses that are true (issue 27, 5): SIGTERM and SIGHUP are handled as Ctrl-C is
(checkpoint, release, 'interrupted'); a run whose owner is gone reads as 'interrupted'
everywhere without a write; an unfinished run shows its last step and validation accuracy."""

import csv
import os
import signal
import socket
import sqlite3
import subprocess
import time

import pytest
from conftest import GROKLAB, groklab, results_json
from fake_runs import curve, files, spec, write

import groklab.api as gl
from groklab.claims import owner_gone
from groklab.engine.checkpoint import deferred_interrupt
from groklab.store import STALE_S, STORE_NAME, Store


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture
def sleeper():
    proc = subprocess.Popen(["sleep", "120"])
    yield proc.pid
    proc.kill()
    proc.wait()


def claimed(tmp_path, owner: str, beat: float):
    """A store with one finished run and one 'running' run claimed by ``owner`` whose last
    write was at ``beat``, with two evaluations recorded."""
    root = tmp_path / "store"
    done, held = spec(seed=0), spec(seed=1)
    write(root, [(done, curve([0.3, 0.9])), (held, None)])
    with Store(root) as store:
        store.begin([held], "cpu")
        store.append({held.run_id: curve([0.25, 0.5])})
        store.db.execute("UPDATE runs SET owner=?, heartbeat=? WHERE id=?",
                         (owner, beat, held.run_id))
        store._claimed = False  # leave the claim as it is on close
    return root, held.run_id


def shown(root, run_id, tmp_path) -> dict[str, str]:
    """The status every reader shows for ``run_id``."""
    rows = {r["id"]: r for r in results_json(root)}
    table = [line for line in groklab("results", str(root)).stdout.splitlines()
             if line.startswith(run_id)]
    groklab("export", "csv", str(root), str(tmp_path / "tables"))
    with open(tmp_path / "tables" / "runs.csv") as f:
        exported = {r["id"]: r["status"] for r in csv.DictReader(f)}
    frame = gl.results(root)
    return {"json": rows[run_id]["status"], "table": table[0].split()[5],
            "export": exported[run_id],
            "api": frame.loc[frame["id"] == run_id, "status"].item()}


@pytest.mark.parametrize("who, expected", [
    ("dead process on this host", "interrupted"),
    # beyond the listed one: another host, heartbeat stale / fresh; a live process here
    ("other host, stale heartbeat", "interrupted"),
    ("other host, fresh heartbeat", "running"),
    ("live process on this host", "running"),
])
def test_a_run_whose_owner_is_gone_reads_as_interrupted_without_a_write(
        tmp_path, sleeper, who, expected):
    host, now = socket.gethostname(), time.time()
    owner, beat = {
        "dead process on this host": (f"{host}:{dead_pid()}:x", now),
        "other host, stale heartbeat": (f"elsewhere-{host}:1:x", now - STALE_S - 5),
        "other host, fresh heartbeat": (f"elsewhere-{host}:1:x", now),
        "live process on this host": (f"{host}:{sleeper}:x", now - STALE_S - 5),
    }[who]
    root, run_id = claimed(tmp_path, owner, beat)
    before = files(root)
    assert set(shown(root, run_id, tmp_path).values()) == {expected}
    assert files(root) == before  # reading wrote nothing
    raw = sqlite3.connect(root / STORE_NAME)
    assert raw.execute("SELECT status FROM runs WHERE id=?", (run_id,)).fetchone()[0] == \
        "running"
    with Store(root, create=False) as store:
        assert store.status(run_id) == expected


def test_an_unfinished_run_shows_its_last_step_and_validation_accuracy(tmp_path):
    root, run_id = claimed(tmp_path, f"{socket.gethostname()}:{dead_pid()}:x", time.time())
    lines = groklab("results", str(root)).stdout.splitlines()
    header = lines[0].split()
    assert header[header.index("steps") + 1: header.index("steps") + 3] == [
        "last_step", "last_val_acc"]
    row = next(line.split() for line in lines if line.startswith(run_id))
    assert row[header.index("last_step")] == "20" and row[header.index("last_val_acc")] == \
        "0.5000"
    done = next(line.split() for line in lines[1:] if not line.startswith(run_id))
    assert done[header.index("last_step")] == "—"  # a finished run has its final columns
    run = next(r for r in results_json(root) if r["id"] == run_id)
    assert (run["last_step"], run["last_val_acc"]) == (20, 0.5)


def test_owner_gone_judges_this_host_by_process_and_others_by_heartbeat(sleeper):
    host, now = socket.gethostname(), time.time()
    assert owner_gone(None, None, 600)
    assert owner_gone(f"{host}:{dead_pid()}:x", now, 600)
    assert not owner_gone(f"{host}:{sleeper}:x", now - 10_000, 600)
    assert owner_gone("far-away:1:x", now - 601, 600, now)
    assert not owner_gone("far-away:1:x", now - 599, 600, now)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_deferred_interrupt_takes_sigterm_and_sighup_as_ctrl_c(signum):
    before = signal.getsignal(signum)
    with deferred_interrupt() as flag:
        os.kill(os.getpid(), signum)
        time.sleep(0.05)
        assert flag.requested  # deferred: the step finishes, then it checkpoints and stops
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signum)  # a second one stops at once
            time.sleep(0.5)
    assert signal.getsignal(signum) is before  # the handler it replaced is back


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_checkpoints_releases_and_leaves_runs_interrupted(tmp_path, signum):
    out = tmp_path / "out"
    args = ["run", "--p", "7", "--steps", "1000000", "--d-model", "16", "--n-heads", "2",
            "--batch-size", "16", "--eval-every", "1", "--checkpoint-every", "100000",
            "--no-compile", "--no-progress", "--out", str(out)]  # long, but not compiled
    proc = subprocess.Popen([*GROKLAB, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline, rows = time.time() + 120, 0
    while time.time() < deadline and rows < 60:  # live rows: it is training
        time.sleep(0.3)
        try:
            rows = sqlite3.connect(out / STORE_NAME).execute(
                "SELECT COUNT(*) FROM curves").fetchone()[0]
        except sqlite3.OperationalError:
            rows = 0
    os.kill(proc.pid, signum)
    _, err = proc.communicate(timeout=120)
    assert rows >= 60, "it should have been training"
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err, err
    (run,) = results_json(out)
    assert run["status"] == "interrupted"
    raw = sqlite3.connect(out / STORE_NAME)
    assert raw.execute("SELECT status, owner FROM runs").fetchall() == [("interrupted", None)]
    assert list((out / "checkpoints").glob("*.ckpt")), "a checkpoint was written at the signal"
