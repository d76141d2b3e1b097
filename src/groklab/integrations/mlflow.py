"""MLflow: export a store's runs into an MLflow tracking store (a local ``sqlite:///PATH``
database, a ``file:PATH`` folder, or any tracking server MLflow reaches).

``export(store_dir, uri, experiment)`` logs every run of the store as one MLflow run of the
experiment (created if need be; default: the store folder's name), named ``<label>
seed<seed>``:

- params: every run setting (``RunSpec`` field), strings as they are, other values as JSON
  (``0.001``, ``true``, ``null``, ``[0.001, 0.002, 0.003]``);
- metrics: ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc`` at every evaluated step
  and every named metric of the store's long ``metrics`` table, at its steps, as float64
  (they read back exactly); timestamps spread the run's wall time over its steps;
- tags: ``study`` (the studies it belongs to, joined by ", "; ``_runs`` for none),
  ``label`` (its label in its first study, else its own), ``status`` (groklab's: finished,
  interrupted, running, halted_by_hook), ``task``, ``seed`` and ``groklab.run_id``. A finished run
  ends FINISHED, any other KILLED (its ``status`` tag says which).

Metrics go in batches (``log_batch``, at most 1,000 values a call). Exporting again replaces
a run: its earlier MLflow run (same ``groklab.run_id`` in the experiment) is deleted first.
Needs the ``mlflow`` extra (mlflow-skinny; SQLAlchemy and Alembic for ``sqlite:`` stores),
imported only here.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from groklab.integrations import require

CURVE_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc")
NO_STUDY = "_runs"  # the study tag of runs in no study (TensorBoard's folder for them)
RUN_ID_TAG = "groklab.run_id"
BATCH = 1000  # MLflow's limit on values per log_batch call
PARAMS_PER_BATCH = 100  # and on params per call


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    if uri.startswith("file:"):
        # MLflow 3 keeps the folder store in maintenance mode and refuses it unless asked:
        # the user asked, by giving a file: URI
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    local = local_path(uri)
    if local is not None:
        (local if uri.startswith("file:") else local.parent).mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri)


def local_path(uri: str) -> Path | None:
    """The file (``sqlite:///PATH``) or folder (``file:PATH``) a local tracking URI names;
    None for any other URI."""
    if uri.startswith("sqlite:///"):
        return Path(unquote(uri[len("sqlite:///"):]))
    if uri.startswith("file:"):
        return Path(unquote(urlparse(uri).path))
    return None


def param_value(value: Any) -> str:
    """A setting as an MLflow param: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def metric_name(name: str) -> str:
    """A named metric's name as MLflow takes it (letters, digits, ``_-./ :``)."""
    return re.sub(r"[^\w.\-/ :]", "_", name) or "_"


@contextmanager
def _quiet() -> Iterator[None]:
    """MLflow's and Alembic's INFO lines (creating tables, migrations) kept off stderr."""
    loggers = [logging.getLogger(n) for n in ("mlflow", "alembic")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def export(store_dir: str | Path, uri: str, experiment: str | None = None) -> dict[str, Any]:
    """Log every run of the store in ``store_dir`` into the MLflow tracking store at ``uri``,
    experiment ``experiment`` (default: the store folder's name); returns the experiment's
    name and counts (``runs``, ``metrics``: values logged, ``replaced``: earlier exports
    deleted)."""
    from groklab.spec import RunSpec
    from groklab.store import Store

    require("mlflow", "mlflow", "MLflow export")  # first: importing it sets its log levels
    name = experiment or Path(store_dir).resolve().name
    counts: dict[str, Any] = {"experiment": name, "runs": 0, "metrics": 0, "replaced": 0}
    with _quiet(), Store(store_dir, create=False) as store:
        client = _client(uri)
        found = client.get_experiment_by_name(name)
        exp_id = found.experiment_id if found else client.create_experiment(name)
        earlier = _exported(client, exp_id)
        members: dict[str, list[tuple[str, str]]] = {}
        for study in store.studies():
            for rid, label in store.study_members(study["name"]):
                members.setdefault(rid, []).append((study["name"], label))
        for run in store.runs():
            for old in earlier.get(run["id"], []):
                client.delete_run(old)
                counts["replaced"] += 1
            params = {k: param_value(run[k]) for k in RunSpec.model_fields if k in run}
            counts["metrics"] += _log_run(client, exp_id, run, members.get(run["id"], []),
                                          params, store.curve(run["id"]))
            counts["runs"] += 1
    return counts


def _exported(client: Any, exp_id: str) -> dict[str, list[str]]:
    """groklab run id -> the experiment's active MLflow runs exported from it."""
    out: dict[str, list[str]] = {}
    token = None
    while True:
        page = client.search_runs([exp_id], max_results=1000, page_token=token)
        for r in page:
            rid = r.data.tags.get(RUN_ID_TAG)
            if rid:
                out.setdefault(rid, []).append(r.info.run_id)
        token = page.token
        if not token:
            return out


def _log_run(client: Any, exp_id: str, run: dict[str, Any], memberships: list[tuple[str, str]],
             params: dict[str, str], curve: Sequence[Any]) -> int:
    """One MLflow run for groklab run ``run``; returns the metric values logged."""
    from mlflow.entities import Metric, Param

    label = memberships[0][1] if memberships else run["label"]
    studies = ", ".join(dict.fromkeys(s for s, _ in memberships)) or NO_STUDY
    tags = {"study": studies, "label": label, "status": run["status"], "task": run["task"],
            "seed": str(run.get("seed")), RUN_ID_TAG: run["id"]}
    start = run.get("started") or time.time()
    wall, steps = run.get("wall_s") or 0.0, run.get("steps")
    created = client.create_run(exp_id, start_time=int(start * 1000), tags=tags,
                                run_name=f"{label} seed{run.get('seed')}")
    mlflow_id = created.info.run_id
    items = [Param(k, v) for k, v in params.items()]
    for i in range(0, len(items), PARAMS_PER_BATCH):
        client.log_batch(mlflow_id, params=items[i:i + PARAMS_PER_BATCH])
    metrics = []
    for row in curve:
        at = int(1000 * (start + (wall * row.step / steps if steps else 0.0)))
        metrics += [Metric(k, float(getattr(row, k)), at, row.step) for k in CURVE_METRICS]
        metrics += [Metric(metric_name(k), float(v), at, row.step)
                    for k, v in row.extra.items()]
    for i in range(0, len(metrics), BATCH):
        client.log_batch(mlflow_id, metrics=metrics[i:i + BATCH])
    client.set_terminated(mlflow_id, "FINISHED" if run["status"] == "finished" else "KILLED",
                          end_time=int(1000 * (start + wall)))
    return len(metrics)
