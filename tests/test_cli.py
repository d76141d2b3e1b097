"""The `groklab` command end to end: real training, the store, resume and bad input."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import GROKLAB, groklab, results_json

# A small modular task that groks within a few hundred steps on a CPU (p = 23, α = 0.8).
SMALL = ["--task", "x_plus_y", "--p", "23", "--train-fraction", "0.8", "--batch-size", "128",
         "--no-progress"]


@pytest.mark.slow
def test_small_task_groks_and_second_invocation_runs_nothing(tmp_path):
    out = tmp_path / "demo"
    args = ["run", *SMALL, "--lr", "3e-3", "--weight-decay", "1.0", "--steps", "1000",
            "--seeds", "1", "--out", str(out)]
    first = groklab(*args)
    assert "1 run(s) trained" in first.stderr
    (run,) = results_json(out)
    assert run["status"] == "finished" and run["task"] == "x_plus_y" and run["seed"] == 0
    assert run["lr"] == [3e-3, 3e-3, 3e-3]
    # It memorises, then groks: train and then validation accuracy pass 99 % and the store
    # records both steps. Small tasks at this rate can spike after grokking (a sudden drop
    # and recovery, whose timing differs between CPU models), so final values are not the
    # criterion.
    memorised, reached = run["step_train_acc_99"], run["step_val_acc_99"]
    assert memorised is not None and reached is not None and memorised <= reached <= 1000
    assert run["max_val_acc"] > 0.99
    db = sqlite3.connect(out / "groklab.sqlite")
    curve = dict(db.execute("SELECT step, val_acc FROM curves WHERE run_id=?", (run["id"],)))
    assert sorted(curve) == list(range(10, 1001, 10))
    assert curve[reached] > 0.99 and all(curve[s] <= 0.99 for s in curve if s < reached)
    assert curve[10] < 0.5  # it did not start out generalising
    again = groklab(*args)
    assert "0 run(s) trained here, 1 already finished" in again.stderr
    assert results_json(out) == [run]
    table = groklab("results", str(out)).stdout
    assert run["id"] in table and "finished" in table


@pytest.mark.slow
def test_killed_run_resumes_without_duplicate_rows(tmp_path):
    out = tmp_path / "killed"
    # a narrow model: what is proved (resumed rows, none twice) does not depend on its width
    args = ["run", *SMALL, "--steps", "600", "--eval-every", "1", "--d-model", "32",
            "--n-heads", "2", "--out", str(out)]
    proc = subprocess.Popen([*GROKLAB, *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    db_path = out / "groklab.sqlite"
    deadline = time.time() + 120
    rows = 0
    while time.time() < deadline and rows < 100:  # live curve rows are flushed as it trains
        time.sleep(0.5)
        if db_path.exists():
            try:
                rows = sqlite3.connect(db_path).execute("SELECT COUNT(*) FROM curves").fetchone()[0]
            except sqlite3.OperationalError:
                rows = 0
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 100 <= rows < 600, "the run should have been killed part-way"
    (run,) = results_json(out)
    assert run["status"] == "interrupted" and run["final_val_acc"] is None  # owner gone

    groklab(*args)
    (run,) = results_json(out)
    assert run["status"] == "finished"
    db = sqlite3.connect(db_path)
    steps = [s for (s,) in db.execute("SELECT step FROM curves WHERE run_id=? ORDER BY step",
                                      (run["id"],))]
    assert steps == list(range(1, 601))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task", "x_times_y"], "unknown task"),
        (["--lr", "fast"], "neither a configuration"),
        (["--lr", "1e-3,0,1e-3"], "positive"),
        (["--steps", "ten"], "--steps"),
        (["--steps", "-5"], "steps"),
        (["--task", "x_div_y", "--p", "91"], "prime"),
        (["--task", "permutation", "--k", "1"], "k"),
        (["--train-fraction", "1.0"], "--train-fraction must be in (0, 1)"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--seeds", "0"], "seeds"),
        (["--device", "tpu"], "unknown device"),
        (["--precision", "fp8"], "precision"),
        (["--model", "gru"], "model"),
        (["--grad-filter", "ema:fast"], "--grad-filter"),
        (["--grad-filter", "lowpass:3"], "--grad-filter"),
        (["--grad-filter", "ma:100:5:1"], "--grad-filter"),
        (["--grad-filter", "ema:1.5"], "ALPHA must be in [0, 1)"),
        (["--dropout", "1.0"], "dropout"),
        (["--dropout", "-0.1"], "dropout"),
        (["--dropout", "nan"], "--dropout"),
        (["--optimizer", "sgd", "--nesterov"], "nesterov"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, args, message):
    out = tmp_path / "never"
    proc = groklab("run", "--out", str(out), *args, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("groklab: error:") and message in lines[0]
    assert not out.exists()


def test_output_path_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("keep me")
    proc = groklab("run", "--out", str(f), check=False)
    assert proc.returncode == 2 and "not a folder" in proc.stderr
    assert f.read_text() == "keep me"


def test_results_of_missing_store_is_an_error(tmp_path):
    proc = groklab("results", str(tmp_path / "nothing"), check=False)
    assert proc.returncode == 2 and "no groklab store" in proc.stderr
    assert not (tmp_path / "nothing").exists()


def test_set_passes_any_run_setting_and_rejects_unknown_ones(tmp_path):
    out = tmp_path / "set"
    groklab("run", "--task", "x_plus_y", "--p", "11", "--steps", "5", "--batch-size", "16",
            "--no-progress", "--set", "grad_clip=0.5", "--set", "lr_schedule=cosine",
            "--set", "semantics=1", "--out", str(out))
    (run,) = results_json(out)
    assert run["grad_clip"] == 0.5 and run["lr_schedule"] == "cosine" and run["semantics"] == 1
    for bad, message in ((["--set", "nope=1"], "unknown run setting"),
                         (["--set", "grad_clip"], "KEY=VALUE"),
                         (["--set", "grad_clip=-1"], "grad_clip")):
        proc = groklab("run", "--out", str(tmp_path / "never"), *bad, check=False)
        assert proc.returncode == 2 and message in proc.stderr
        assert not (tmp_path / "never").exists()


@pytest.mark.slow
def test_the_console_entry_points_run():
    """`python -m groklab.cli` and the installed `groklab` script are the same command."""
    from conftest import groklab_process

    assert "Usage" in groklab_process("--help").stdout
    script = Path(sys.executable).parent / "groklab"
    proc = subprocess.run([str(script), "list"], capture_output=True, text=True)
    assert proc.returncode == 0 and "x_plus_y" in proc.stdout
