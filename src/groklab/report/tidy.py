"""A store's data as tidy data frames with fixed dtypes: what ``groklab export csv|parquet``
writes and the Python API returns (``groklab.results``, ``groklab.curves``).

- ``runs_frame``: one row per run (a run is one observation): ``id``, every setting of its
  spec, ``label``, ``status``, timing and the final metrics (docs/protocol.md §4).
- ``curves_frame``: long format, one row per run, evaluated step and metric: ``run_id``,
  ``task``, ``label``, ``seed``, ``step``, ``metric`` (``train_loss``, ``train_acc``,
  ``val_loss``, ``val_acc`` and every named metric a run recorded) and ``value``.

Dtypes depend on the column, never on the data (``runs_frame``): every metric, time and
other measured number is float64, and NaN means "not reached" or "not measured" (a step
metric the run never reached, a run not finished; never None). Settings keep their type from
``RunSpec``: whole-number settings are pandas' nullable ``Int64`` (``<NA>`` where a setting
is unset, e.g. ``max_len``), real-valued ones float64 (NaN where unset), switches bool,
names strings; settings that hold a list or a table (``lr``, ``group_rules``) are Python
objects here and JSON text in exported files (``flat``). In ``curves_frame`` ``step`` and
``seed`` are int64 and ``value`` float64.
"""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from groklab.integrations import require
from groklab.records import FINAL_METRICS
from groklab.spec import RunSpec
from groklab.store import Store

# measured numbers of a run besides its final metrics (float64, NaN when absent)
MEASURED = ("started", "finished", "wall_s")
CURVE_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc")
CURVE_COLUMNS = ["run_id", "task", "label", "seed", "step", "metric", "value"]


def setting_dtype(name: str) -> str:
    """The dtype of setting ``name`` in a frame: Int64, float64, bool, string or object."""
    field = RunSpec.model_fields.get(name)
    if field is None:
        return "object"
    args = [a for a in typing.get_args(field.annotation) or (field.annotation,)
            if a is not type(None)]
    if typing.get_origin(field.annotation) not in (typing.Union, types.UnionType, None):
        args = [field.annotation]
    if all(a is bool for a in args):
        return "bool"
    if all(a is int for a in args):
        return "Int64"
    if all(a in (int, float) for a in args):
        return "float64"
    if all(a is str or typing.get_origin(a) is Literal for a in args):
        return "string"
    return "object"


def runs_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """``Store.runs()`` rows as a frame with the dtypes of the module docstring, sorted by
    task, label, seed and id."""
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    for column in frame.columns:
        if column in FINAL_METRICS or column in MEASURED:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
        elif column == "semantics":
            frame[column] = frame[column].fillna(1).astype("int64")  # absent: version 1
        elif column in ("id", "label", "status", "device"):
            frame[column] = frame[column].astype("string")
        elif column in RunSpec.model_fields:
            dtype = setting_dtype(column)
            default = RunSpec.model_fields[column].default
            if default is not None and not isinstance(default, tuple | list | dict):
                # a run stored before the setting existed: it had the default
                frame[column] = frame[column].where(frame[column].notna(), default)
            if dtype == "bool":
                frame[column] = frame[column].astype("bool")
            elif dtype == "Int64":
                frame[column] = pd.array(frame[column].where(frame[column].notna(), None),
                                         dtype="Int64")
            elif dtype != "object":
                frame[column] = frame[column].astype(dtype)
    keys = [c for c in ("task", "label", "seed", "id") if c in frame.columns]
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


def curves_frame(store: Store, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every evaluated step of the runs of ``runs`` (default: all of ``store``), long
    format (module docstring), in the order of ``runs`` and by step and metric."""
    runs = runs_frame(store.runs()) if runs is None else runs
    parts = []
    for r in runs.itertuples(index=False):
        curve = store.curve(r.id)
        long = [(row.step, m, getattr(row, m)) for row in curve for m in CURVE_METRICS]
        long += [(step, name, value) for step, name, value in store.metrics(r.id)]
        if long:
            part = pd.DataFrame(long, columns=["step", "metric", "value"])
            parts.append(part.assign(run_id=r.id, task=r.task, label=r.label, seed=r.seed))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
            CURVE_COLUMNS, ["string", "string", "string", "int64", "int64", "string",
                            "float64"], strict=True)})
    frame = pd.concat(parts, ignore_index=True)[CURVE_COLUMNS]
    order = {m: i for i, m in enumerate(CURVE_METRICS)}
    frame["_order"] = [order.get(m, len(order)) for m in frame["metric"]]
    frame["_run"] = frame["run_id"].map({rid: i for i, rid in enumerate(runs["id"])})
    frame = frame.sort_values(["_run", "step", "_order", "metric"], kind="stable")
    frame = frame.drop(columns=["_order", "_run"]).reset_index(drop=True)
    return frame.astype({"run_id": "string", "task": "string", "label": "string",
                         "seed": "int64", "step": "int64", "metric": "string",
                         "value": "float64"})


def flat(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with list and table cells as JSON text (what a CSV or Parquet file holds)."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object:
            out[column] = out[column].map(
                lambda v: json.dumps(v) if isinstance(v, list | tuple | dict) else v)
    return out


FORMATS = ("csv", "parquet")


def export_tables(store: Store, out: str | Path, fmt: str) -> dict[str, Path]:
    """Write ``store``'s runs and curves into folder ``out`` as ``runs.<fmt>`` and
    ``curves.<fmt>`` (``fmt``: csv or parquet; Parquet needs the 'parquet' extra, pyarrow,
    else ``MissingExtra``). CSV: missing values are empty fields; Parquet keeps the dtypes."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use {' or '.join(FORMATS)}")
    if fmt == "parquet":
        require("pyarrow", "parquet", "groklab export parquet")
    runs = runs_frame(store.runs())
    frames = {"runs": flat(runs), "curves": curves_frame(store, runs)}
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, frame in frames.items():
        path = folder / f"{name}.{fmt}"
        if fmt == "csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        written[name] = path
    return written
