"""Data out: ``groklab export csv|parquet STORE OUT`` (runs.* one row per run, curves.* long)
and the same as DataFrames (``groklab.results``, ``groklab.curves``) with dtypes fixed per
column: NaN for "not reached" and "not finished", never None (report/tidy.py). Checked
against the store's own tables, read with sqlite3."""

import math
import sqlite3
import sys

import pandas as pd
import pytest
from conftest import groklab
from fake_runs import curve, spec, write

import groklab.api as gl
from groklab.records import FINAL_METRICS
from groklab.store import STORE_NAME


@pytest.fixture
def store(tmp_path):
    """Four runs: one reaches 99 % (with named metrics), one never does, one stopped
    unfinished, one permutation run (p ignored) with max_len set."""
    root = tmp_path / "store"
    write(root, [(spec(seed=0), curve([0.2, 0.995, 1.0], named={"grad_norm": 1.5})),
                 (spec(seed=1), curve([0.1, 0.3])),
                 (spec(seed=2), None),
                 (spec("permutation", k=3, max_len=6), curve([0.5, 0.6, 0.7]))])
    return root


def reference_curves(root):
    """(run_id, step, metric, value) of every curve value and named metric, from SQLite."""
    db = sqlite3.connect(root / STORE_NAME)
    out = set(db.execute("SELECT run_id, step, name, value FROM metrics"))
    for m in ("train_loss", "train_acc", "val_loss", "val_acc"):
        out |= set(db.execute(f"SELECT run_id, step, '{m}', {m} FROM curves"))
    db.close()
    return out


def test_results_frame_has_one_dtype_per_column_and_nan_for_missing(store):
    frame = gl.results(store)
    assert list(zip(frame["task"], frame["seed"], strict=True)) == [
        ("permutation", 0), ("x_plus_y", 0), ("x_plus_y", 1), ("x_plus_y", 2)]
    for m in FINAL_METRICS:
        assert frame[m].dtype == "float64", m
    reached = dict(zip(frame["seed"].where(frame["task"] == "x_plus_y"),
                       frame["step_val_acc_99"], strict=True))
    assert reached[0] == 20.0 and math.isnan(reached[1]) and math.isnan(reached[2])
    assert list(frame["status"]) == ["finished", "finished", "finished", "interrupted"]
    assert frame["seed"].dtype == "Int64" and frame["steps"].dtype == "Int64"
    assert frame["max_len"].dtype == "Int64" and frame["max_len"].isna().sum() == 3
    assert frame["grad_clip"].dtype == "float64" and frame["grad_clip"].isna().all()
    assert frame["nesterov"].dtype == bool and frame["lr"].dtype == object
    for column in frame.columns:  # no column mixes None with numbers
        values = [v for v in frame[column] if v is None]
        assert not values or frame[column].dtype == object, column


def test_curves_frame_is_long_and_equals_the_store(store):
    frame = gl.curves(store)
    assert list(frame.columns) == ["run_id", "task", "label", "seed", "step", "metric", "value"]
    assert dict(frame.dtypes.astype(str)) == {"run_id": "string", "task": "string",
                                               "label": "string", "seed": "int64",
                                               "step": "int64", "metric": "string",
                                               "value": "float64"}
    got = set(zip(frame["run_id"], frame["step"], frame["metric"], frame["value"], strict=True))
    assert got == reference_curves(store) and len(frame) == len(got)
    first = frame[frame["run_id"] == frame["run_id"].iloc[0]]
    assert list(first["metric"].iloc[:4]) == ["train_loss", "train_acc", "val_loss", "val_acc"]


def test_export_csv_writes_the_two_tables(store, tmp_path):
    out = tmp_path / "csv"
    proc = groklab("export", "csv", str(store), str(out))
    assert proc.stdout.split() == [str(out / "runs.csv"), str(out / "curves.csv")]
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 4 and runs["step_val_acc_99"].isna().sum() == 3
    assert runs.loc[runs["seed"] == 0, "lr"].iloc[0] == "[0.001, 0.001, 0.001]"  # JSON text
    curves = pd.read_csv(out / "curves.csv")
    assert set(zip(curves["run_id"], curves["step"], curves["metric"], curves["value"],
                   strict=True)) == reference_curves(store)


def test_export_parquet_keeps_the_dtypes(store, tmp_path):
    pytest.importorskip("pyarrow")
    out = tmp_path / "pq"
    groklab("export", "parquet", str(store), str(out))
    runs, curves = pd.read_parquet(out / "runs.parquet"), pd.read_parquet(out / "curves.parquet")
    frame = gl.results(store)
    for column in ("final_val_acc", "step_val_acc_99", "seed", "max_len", "nesterov"):
        assert runs[column].dtype == frame[column].dtype, column
        pd.testing.assert_series_equal(runs[column], frame[column])
    pd.testing.assert_frame_equal(curves, gl.curves(store), check_dtype=False)
    assert curves["value"].dtype == "float64" and curves["step"].dtype == "int64"


def test_parquet_without_pyarrow_is_one_line_naming_the_extra(store, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow fails
    proc = groklab("export", "parquet", str(store), str(tmp_path / "pq"), check=False)
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert "pip install 'groklab[parquet]'" in line
    assert not (tmp_path / "pq" / "runs.parquet").exists()


def test_export_of_a_folder_without_a_store_is_one_line(tmp_path):
    proc = groklab("export", "csv", str(tmp_path), str(tmp_path / "out"), check=False)
    assert proc.returncode == 2 and "no groklab store" in proc.stderr


def test_settings_a_run_was_stored_without_read_as_their_defaults(tmp_path):
    """A run recorded before a setting existed (its stored spec lacks the key) reads as that
    setting's default, never as a missing value cast to True or <NA>."""
    old, new = spec(seed=0), spec(seed=1, grad_ortho=True, loss="stablemax")
    write(tmp_path, [(old, curve([0.5])), (new, curve([0.5]))])
    db = sqlite3.connect(tmp_path / STORE_NAME)
    with db:
        row = db.execute("SELECT spec FROM runs WHERE id=?", (old.run_id,)).fetchone()
        import json

        stored = {k: v for k, v in json.loads(row[0]).items()
                  if k not in ("grad_ortho", "loss", "embedding")}
        db.execute("UPDATE runs SET spec=? WHERE id=?", (json.dumps(stored), old.run_id))
    db.close()
    df = gl.results(tmp_path).set_index("seed")
    assert df.loc[0, "grad_ortho"] == False and df.loc[1, "grad_ortho"] == True  # noqa: E712
    assert df.loc[0, "loss"] == "softmax" and df.loc[1, "loss"] == "stablemax"
    assert df.loc[0, "embedding"] == True  # noqa: E712
