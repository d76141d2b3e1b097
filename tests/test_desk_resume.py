"""`groklab resume` after a real kill: a `groklab run` killed with SIGKILL mid-training is
continued by `groklab resume OUT` alone (no retyped command) from its last checkpoint, and its
curve and weights are bit for bit those of an uninterrupted run."""

import os
import signal
import sqlite3
import subprocess
import time

import pytest
import torch
from conftest import GROKLAB, flags, groklab, results_json, tiny

from groklab.store.weights import load_weights

# a tiny model: 400 steps take seconds; a checkpoint every 50
ARGS = [*flags(tiny("warmup", steps=400)), "--no-progress"]


def curve(out, run_id):
    db = sqlite3.connect(out / "groklab.sqlite")
    try:
        return db.execute("SELECT step, train_loss, train_acc, val_loss, val_acc FROM curves "
                          "WHERE run_id=? ORDER BY step", (run_id,)).fetchall()
    finally:
        db.close()


@pytest.mark.slow
def test_a_killed_run_resumed_by_resume_alone_equals_an_uninterrupted_one(tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen([*GROKLAB, "run", *ARGS, "--checkpoint-every", "50", "--out",
                             str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    ckpts = out / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and not list(ckpts.glob("*.ckpt")) and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    (run,) = results_json(out)
    assert run["status"] != "finished" and list(ckpts.glob("*.ckpt")), "killed part-way"

    resumed = groklab("resume", str(out), "--no-progress")
    assert "resuming groklab run --task x_plus_y" in resumed.stderr
    assert "(1 of 1 run(s) unfinished)" in resumed.stderr
    assert "resuming 1 run(s) from step" in resumed.stderr  # the checkpoint, not step 0
    start = int(resumed.stderr.split("from step ")[1].split()[0])
    assert 50 <= start < 400 and start % 50 == 0
    assert "1 run(s) trained here" in resumed.stderr
    (run,) = results_json(out)
    assert run["status"] == "finished"
    assert not ckpts.exists() or not any(ckpts.iterdir())

    ref = tmp_path / "straight"
    groklab("run", *ARGS, "--checkpoint-every", "0", "--out", str(ref))
    (ref_run,) = results_json(ref)
    assert ref_run["id"] == run["id"]
    rows = curve(out, run["id"])
    assert [r[0] for r in rows] == list(range(4, 401, 4))  # every evaluation once
    assert rows == curve(ref, run["id"])  # bit for bit: SQLite REALs are the same doubles
    ours, theirs = load_weights(out, run["id"]), load_weights(ref, run["id"])
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[n], theirs[n]) for n in ours)
    assert "nothing to resume" in groklab("resume", str(out)).stderr
