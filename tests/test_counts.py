"""Honest counts: every count a command prints says what this process did with its runs:
trained here, left to another live process that holds them, already finished, waiting for a
parent (engine/runner.py ``run_specs``, ``format.run_counts``). Another process is faked by
a claim in the store under a live owner token (claims.py)."""

import socket
import sqlite3
import subprocess
import time

import pytest
from conftest import groklab, results_json

from groklab.api import make_specs
from groklab.format import run_counts
from groklab.store import STORE_NAME, Store

# the runs `groklab run` makes from RUN (make_specs with the same settings names them)
RUN = ["--task", "x_plus_y", "--p", "7", "--steps", "20", "--batch-size", "16",
       "--set", "d_model=16", "--set", "n_heads=2", "--no-progress"]
SETTINGS = dict(task="x_plus_y", p=7, steps=20, batch_size=16, d_model=16, n_heads=2)


@pytest.fixture
def other_process():
    """A live process of this host: the owner of a claim another invocation holds."""
    proc = subprocess.Popen(["sleep", "120"])
    yield f"{socket.gethostname()}:{proc.pid}:other"
    proc.kill()
    proc.wait()


def hold(out, run_id: str, owner: str) -> None:
    """Mark run ``run_id`` as being trained right now by ``owner``."""
    with Store(out) as store:  # the run's row, as a claim makes it
        (spec,) = [s for s in make_specs(lr="baseline", seeds=3, **SETTINGS)
                   if s.run_id == run_id]
        store.begin([spec], "cpu")
    with sqlite3.connect(out / STORE_NAME) as db:
        db.execute("UPDATE runs SET owner=?, heartbeat=?, status='running' WHERE id=?",
                   (owner, time.time(), run_id))


def test_two_invocations_on_one_store_each_count_their_own_work(tmp_path, other_process):
    out = tmp_path / "shared"
    specs = make_specs(lr="baseline", seeds=3, **SETTINGS)
    hold(out, specs[1].run_id, other_process)  # the other invocation trains seed 1
    first = groklab("run", *RUN, "--seeds", "3", "--out", str(out))
    assert "2 run(s) trained here, 1 left to another process that holds them" in first.stderr
    runs = {r["seed"]: r for r in results_json(out)}
    assert [runs[s]["status"] for s in (0, 1, 2)] == ["finished", "running", "finished"]
    assert {r["id"] for r in runs.values()} == {s.run_id for s in specs}  # the same runs

    # again: two already finished, the held one still left to its owner, nothing trained
    again = groklab("run", *RUN, "--seeds", "3", "--out", str(out))
    assert ("0 run(s) trained here, 1 left to another process that holds them, "
            "2 already finished") in again.stderr
    # the owner is gone: its run is taken over and trained here
    with sqlite3.connect(out / STORE_NAME) as db:
        db.execute("UPDATE runs SET owner=NULL, status='interrupted' WHERE id=?",
                   (specs[1].run_id,))
    last = groklab("run", *RUN, "--seeds", "3", "--out", str(out))
    assert "1 run(s) trained here, 2 already finished" in last.stderr
    assert "left to another" not in last.stderr


def test_a_study_counts_what_it_left_to_another_process(tmp_path, other_process):
    out = tmp_path / "study"
    study = tmp_path / "two.toml"
    study.write_text('name = "two"\nseeds = 2\n[settings]\ntask = "x_plus_y"\np = 7\n'
                     'steps = 20\nbatch_size = 16\nd_model = 16\nn_heads = 2\n'
                     'lr = "baseline"\n')
    specs = make_specs(lr="baseline", seeds=2, **SETTINGS)
    hold(out, specs[0].run_id, other_process)
    proc = groklab("study", str(study), "--out", str(out), "--no-progress")
    assert "1 run(s) trained here, 1 left to another process that holds them" in proc.stderr
    assert proc.stdout.splitlines()[0].split()[:3] == ["id", "task", "model"]  # the table


def test_run_counts_words_each_count():
    assert run_counts({"trained": 0}) == "0 run(s) trained here"
    assert run_counts({"total": 9, "trained": 3, "stopped": 1, "elsewhere": 2, "waiting": 1,
                       "skipped": 3}) == (
        "3 run(s) trained here (1 halted by a hook: recorded as 'halted_by_hook'), 2 left to "
        "another process that holds them, 1 waiting for a parent run (init_from), 3 already "
        "finished")
