"""Mid-run checkpoints: atomic, verified, resumed bit for bit, removed once runs finish; a
real `groklab run` killed with SIGKILL resumes from its last checkpoint."""

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import GROKLAB, groklab, results_json, tiny

from groklab.engine import CohortState, HookResult, train_cohort
from groklab.engine.checkpoint import Checkpointer, checkpoint_path
from groklab.spec import RunSpec
from groklab.store.weights import load_weights

BASE = tiny(steps=40, eval_every=3, grad_filter="ema", dropout=0.1)


def specs():
    return [RunSpec(**BASE, seed=0), RunSpec(**BASE, seed=1, weight_decay=0.1)]


def interrupt_at(step, how):
    def hook(state, t, metrics):
        if t == step:
            if how == "sigint":
                os.kill(os.getpid(), signal.SIGINT)  # deferred to the end of the step
            else:
                raise KeyboardInterrupt
        return HookResult()
    return hook


@pytest.mark.parametrize("how", ["sigint", "crash"])
def test_resumed_cohort_equals_uninterrupted_bit_for_bit(tmp_path, how):
    straight = train_cohort(specs(), progress=False)
    ids = [s.run_id for s in specs()]
    ckpt = Checkpointer(checkpoint_path(tmp_path, ids), every_steps=7, every_seconds=None)
    with pytest.raises(KeyboardInterrupt):
        train_cohort(specs(), progress=False, checkpoint=ckpt, hooks=[interrupt_at(21, how)])
    saved = Checkpointer(ckpt.path).load(ids)
    # Ctrl-C checkpoints the step it stopped at; a crash leaves the last periodic one
    assert saved["state"]["t"] == (21 if how == "sigint" else 14)
    resumed = train_cohort(specs(), progress=False, resume=saved)
    assert resumed == straight  # every row, every float, equal
    ckpt.drop()
    assert not ckpt.path.parent.exists()


def test_corrupt_or_truncated_checkpoints_are_reported_and_skipped(tmp_path, capsys):
    ids = [s.run_id for s in specs()]
    state = CohortState(specs())
    ckpt = Checkpointer(checkpoint_path(tmp_path, ids))
    state.step()
    ckpt.save(ids, state.state_dict(), [[], []])
    state.step()
    ckpt.save(ids, state.state_dict(), [[], []])
    assert Checkpointer(ckpt.path).load(ids)["state"]["t"] == 2
    blob = bytearray(ckpt.path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # one flipped byte
    ckpt.path.write_bytes(bytes(blob))
    assert Checkpointer(ckpt.path).load(ids)["state"]["t"] == 1  # the previous good one
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checksum mismatch" in err[0] and str(ckpt.path) in err[0]
    ckpt.previous.write_bytes(ckpt.previous.read_bytes()[:-100])  # truncated
    assert Checkpointer(ckpt.path).load(ids) is None  # from step 0
    assert len(capsys.readouterr().err.strip().splitlines()) == 2
    ckpt.path.write_bytes(b"garbage")
    ckpt.previous.unlink()
    assert Checkpointer(ckpt.path).load(ids) is None
    assert "bad header" in capsys.readouterr().err
    state.step()
    ckpt.save(ids, state.state_dict(), [[], []])
    assert Checkpointer(ckpt.path).load(list(reversed(ids))) is None  # other runs: not theirs
    assert "other runs" in capsys.readouterr().err


def test_save_survives_another_process_removing_the_emptied_folder(tmp_path, monkeypatch):
    """Another process's finished cohort drops its checkpoint and removes the folder once it
    is empty: when that lands between this save making the folder and opening its file, the
    folder is made again (a 6-process fault campaign hit exactly this window)."""
    ids = [s.run_id for s in specs()]
    state = CohortState(specs())
    state.step()
    ckpt = Checkpointer(checkpoint_path(tmp_path, ids))
    make = Path.mkdir
    removed = []

    def mkdir_then_lose_it(self, *args, **kwargs):
        make(self, *args, **kwargs)
        if len(removed) < 2:  # the other process wins the race twice
            os.rmdir(self)
            removed.append(self)

    monkeypatch.setattr(Path, "mkdir", mkdir_then_lose_it)
    ckpt.save(ids, state.state_dict(), [[], []])
    monkeypatch.undo()
    assert removed == [ckpt.path.parent] * 2
    assert Checkpointer(ckpt.path).load(ids)["state"]["t"] == 1
    assert [p.name for p in ckpt.path.parent.iterdir()] == [ckpt.path.name]  # no .tmp left


# a small model, so three invocations take seconds; evaluated at every step
SMALL = ["--task", "x_plus_y", "--p", "23", "--train-fraction", "0.8", "--batch-size", "128",
         "--no-progress", "--steps", "600", "--eval-every", "1", "--set", "d_model=32",
         "--set", "n_heads=2"]


def curve(out):
    (run,) = results_json(out)
    db = sqlite3.connect(out / "groklab.sqlite")
    rows = db.execute("SELECT step, train_loss, train_acc, val_loss, val_acc FROM curves "
                      "WHERE run_id=? ORDER BY step", (run["id"],)).fetchall()
    return run, rows


@pytest.mark.slow
def test_killed_run_resumes_from_its_checkpoint_bit_for_bit(tmp_path):
    out = tmp_path / "killed"
    args = ["run", *SMALL, "--checkpoint-every", "100", "--out", str(out)]
    proc = subprocess.Popen([*GROKLAB, *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    db_path, ckpts = out / "groklab.sqlite", out / "checkpoints"
    deadline, rows = time.time() + 300, 0
    while time.time() < deadline and (rows < 250 or not list(ckpts.glob("*.ckpt"))):
        time.sleep(0.2)
        try:  # rows flushed after the checkpoint must not survive as duplicates
            rows = sqlite3.connect(db_path).execute("SELECT COUNT(*) FROM curves").fetchone()[0]
        except sqlite3.OperationalError:
            rows = 0
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(ckpts.glob("*.ckpt")) and 250 <= rows < 600, "kill it part-way, checkpointed"
    (run,) = results_json(out)
    assert run["status"] == "interrupted"  # its owner is gone

    again = groklab(*args)
    assert "resuming 1 run(s) from step" in again.stderr
    resumed_from = int(again.stderr.split("from step ")[1].split()[0])
    assert 200 <= resumed_from < 600 and resumed_from % 100 == 0
    run, rows = curve(out)
    assert run["status"] == "finished"
    assert [r[0] for r in rows] == list(range(1, 601))  # every step once
    assert not ckpts.exists() or not any(ckpts.iterdir())  # no checkpoint left over

    ref_out = tmp_path / "straight"
    groklab("run", *SMALL, "--checkpoint-every", "0", "--out", str(ref_out))
    ref_run, ref_rows = curve(ref_out)
    assert ref_run["id"] == run["id"]
    assert rows == ref_rows  # bit for bit: SQLite REALs are the same doubles
    ours, ref = load_weights(out, run["id"]), load_weights(ref_out, run["id"])
    assert ours.keys() == ref.keys() and all(torch.equal(ours[n], ref[n]) for n in ours)
