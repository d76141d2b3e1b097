"""Aggregation over seeds against hand-computed numbers, censored runs included."""

import math

import pandas as pd
import pytest

from groklab.report import censored_note, summarize, wide


def run(task, config, seed, acc, step99, loss, steps=500, status="finished"):
    return {"task": task, "config": config, "seed": seed, "steps": steps, "status": status,
            "final_val_acc": acc, "step_val_acc_99": step99, "final_val_loss": loss}


RUNS = pd.DataFrame([
    run("x_plus_y", "baseline", 0, 0.90, 100, 0.1),
    run("x_plus_y", "baseline", 1, 1.00, None, 0.2),  # never reached 99 %: counts as 500
    run("x_plus_y", "baseline", 2, 0.95, 300, 0.3),
    run("x_plus_y", "layerwise", 0, 0.99, 50, 0.05),  # a single seed: no stderr
    run("x_plus_y", "layerwise", 1, 0.10, None, 9.0, status="running"),  # not counted
    run("permutation", "baseline", 0, 0.5, None, 2.0),
    run("permutation", "baseline", 1, 0.7, None, 1.0),
])


def test_mean_and_stderr_over_seeds_with_censored_runs():
    s = summarize(RUNS).set_index(["task", "config"])
    b = s.loc[("x_plus_y", "baseline")]
    assert (b["n"], b["censored"], b["steps"]) == (3, 1, 500)
    assert b["final_val_acc_mean"] == pytest.approx(0.95)
    assert b["final_val_acc_stderr"] == pytest.approx(0.05 / math.sqrt(3))  # std 0.05
    assert b["step_val_acc_99_mean"] == pytest.approx(300.0)  # (100 + 500 + 300) / 3
    assert b["step_val_acc_99_stderr"] == pytest.approx(200 / math.sqrt(3))  # std 200
    assert b["final_val_loss_mean"] == pytest.approx(0.2)
    assert b["final_val_loss_stderr"] == pytest.approx(0.1 / math.sqrt(3))
    lw = s.loc[("x_plus_y", "layerwise")]
    assert (lw["n"], lw["censored"], lw["final_val_acc_mean"]) == (1, 0, 0.99)
    assert math.isnan(lw["final_val_acc_stderr"])
    p = s.loc[("permutation", "baseline")]
    assert (p["n"], p["censored"], p["step_val_acc_99_mean"], p["step_val_acc_99_stderr"]) == (
        2, 2, 500.0, 0.0)
    assert p["final_val_acc_stderr"] == pytest.approx(math.sqrt(0.02) / math.sqrt(2))


def test_paper_layout_rows_tasks_columns_configurations_flags_censored():
    summary = summarize(RUNS)
    acc = wide(summary, "final_val_acc")
    assert list(acc.index) == ["x_plus_y", "permutation"]
    assert list(acc.columns) == ["baseline", "layerwise"]
    assert acc.loc["x_plus_y", "baseline"] == "0.950 ± 0.029"
    assert acc.loc["x_plus_y", "layerwise"] == "0.990"
    assert acc.loc["permutation", "layerwise"] == "—"
    steps = wide(summary, "step_val_acc_99")
    assert steps.loc["x_plus_y", "baseline"] == "300 ± 115*"
    assert steps.loc["x_plus_y", "layerwise"] == "50"
    assert steps.loc["permutation", "baseline"] == "500 ± 0*"
    assert wide(summary, "final_val_loss").loc["permutation", "baseline"] == "1.5 ± 0.5"
    note = censored_note(summary)
    assert note.startswith("* ") and "(500)" in note
    assert "x_plus_y / baseline: 1 of 3" in note and "permutation / baseline: 2 of 2" in note
    assert "layerwise" not in note


def test_no_censoring_no_note_and_empty_input():
    done = RUNS[RUNS["step_val_acc_99"].notna() & (RUNS["status"] == "finished")]
    assert censored_note(summarize(done)) is None
    assert summarize(RUNS.iloc[:0]).empty
    assert summarize(RUNS[RUNS["status"] == "running"]).empty
