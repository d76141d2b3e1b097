"""The run store: one SQLite file per output folder, the single source of truth for reports.

Tables: ``runs`` (id = hash of the spec, the spec as JSON, label, status, final metrics),
``curves`` (one row per run and evaluated step), ``studies`` (a study's definition, the
environment it ran in, its accumulated wall time) and ``study_runs`` (which runs belong to a
study, under which configuration label: the same run can serve two studies under two labels).
Every write is one transaction: a killed process leaves a run either finished or
unfinished; an unfinished run's partial curve is dropped when it is started again, so a
resumed run never holds duplicate rows.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from groklab.engine.cohort import EvalRow
from groklab.spec import RunSpec

STORE_NAME = "groklab.sqlite"
FINAL_METRICS = ("final_train_loss", "final_train_acc", "final_val_loss", "final_val_acc",
                 "step_val_acc_99")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    label TEXT NOT NULL,
    status TEXT NOT NULL,              -- 'running' or 'finished'
    device TEXT,
    started REAL,
    finished REAL,
    wall_s REAL,
    final_train_loss REAL, final_train_acc REAL, final_val_loss REAL, final_val_acc REAL,
    step_val_acc_99 INTEGER
);
CREATE TABLE IF NOT EXISTS curves (
    run_id TEXT NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    train_loss REAL, train_acc REAL, val_loss REAL, val_acc REAL,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS studies (
    name TEXT PRIMARY KEY,
    definition TEXT NOT NULL,          -- JSON: settings, grid, variants, seeds, overrides
    environment TEXT NOT NULL,         -- JSON: device, software versions of the last invocation
    wall_s REAL NOT NULL DEFAULT 0,    -- summed over invocations (a resumed study adds up)
    created REAL,
    updated REAL
);
CREATE TABLE IF NOT EXISTS study_runs (
    study TEXT NOT NULL REFERENCES studies(name),
    pos INTEGER NOT NULL,              -- the run's place in the study's expansion order
    run_id TEXT NOT NULL,
    label TEXT NOT NULL,               -- the configuration, as the report's columns show it
    PRIMARY KEY (study, run_id)
);
"""


def final_metrics(curve: Sequence[EvalRow], threshold: float = 0.99) -> dict[str, Any]:
    """Final train/val loss and accuracy, and the first evaluated step with val acc > 0.99."""
    last = curve[-1]
    reached = next((r.step for r in curve if r.val_acc > threshold), None)
    return {"final_train_loss": last.train_loss, "final_train_acc": last.train_acc,
            "final_val_loss": last.val_loss, "final_val_acc": last.val_acc,
            "step_val_acc_99": reached}


class Store:
    """A run store in folder ``root`` (created on first write, never on read)."""

    def __init__(self, root: str | Path, *, create: bool = True):
        self.root = Path(root)
        self.path = self.root / STORE_NAME
        if not create and not self.path.is_file():
            raise FileNotFoundError(f"no groklab store in {self.root} (expected {self.path})")
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes (one transaction each) ------------------------------------------------------
    def begin(self, specs: Iterable[RunSpec], device: str) -> None:
        """Mark runs as started: (re)insert them as 'running' and drop any partial curve."""
        now = time.time()
        with self.db:
            for s in specs:
                self.db.execute("DELETE FROM curves WHERE run_id = ?", (s.run_id,))
                self.db.execute(
                    "INSERT OR REPLACE INTO runs (id, spec, label, status, device, started) "
                    "VALUES (?, ?, ?, 'running', ?, ?)",
                    (s.run_id, json.dumps(s.model_dump(mode="json")), s.label, device, now),
                )

    def append(self, rows: dict[str, Sequence[EvalRow]]) -> None:
        """Append curve rows of unfinished runs (progress that a report can show live)."""
        with self.db:
            self._insert_rows(rows)

    def finish(self, rows: dict[str, Sequence[EvalRow]], curves: dict[str, Sequence[EvalRow]],
               wall_s: float) -> None:
        """Write the remaining rows and final metrics and mark the runs finished, atomically."""
        now = time.time()
        with self.db:
            self._insert_rows(rows)
            for run_id, curve in curves.items():
                m = final_metrics(curve)
                self.db.execute(
                    "UPDATE runs SET status='finished', finished=?, wall_s=?, "
                    + ", ".join(f"{k}=?" for k in FINAL_METRICS) + " WHERE id=?",
                    (now, wall_s, *(m[k] for k in FINAL_METRICS), run_id),
                )

    def record_study(self, name: str, definition: dict[str, Any], environment: dict[str, Any],
                     members: Sequence[tuple[str, str]]) -> None:
        """Create or update study ``name`` with its (run id, label) members, atomically."""
        now = time.time()
        with self.db:
            self.db.execute(
                "INSERT INTO studies (name, definition, environment, created, updated) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                "definition=excluded.definition, environment=excluded.environment, "
                "updated=excluded.updated",
                (name, json.dumps(definition), json.dumps(environment), now, now),
            )
            self.db.execute("DELETE FROM study_runs WHERE study=?", (name,))
            self.db.executemany("INSERT INTO study_runs VALUES (?, ?, ?, ?)",
                                [(name, i, rid, label) for i, (rid, label) in enumerate(members)])

    def add_study_time(self, name: str, wall_s: float) -> None:
        """Add an invocation's wall time to study ``name``."""
        with self.db:
            self.db.execute("UPDATE studies SET wall_s = wall_s + ?, updated = ? WHERE name=?",
                            (wall_s, time.time(), name))

    def _insert_rows(self, rows: dict[str, Sequence[EvalRow]]) -> None:
        self.db.executemany(
            "INSERT INTO curves VALUES (?, ?, ?, ?, ?, ?)",
            [(rid, r.step, r.train_loss, r.train_acc, r.val_loss, r.val_acc)
             for rid, rs in rows.items() for r in rs],
        )

    # -- reads ------------------------------------------------------------------------------
    def status(self, run_id: str) -> str | None:
        row = self.db.execute("SELECT status FROM runs WHERE id=?", (run_id,)).fetchone()
        return None if row is None else row["status"]

    def runs(self) -> list[dict[str, Any]]:
        """Every run: id, label, status, the spec's fields, timing and final metrics."""
        out = []
        for row in self.db.execute("SELECT * FROM runs ORDER BY started, id"):
            d = dict(row)
            spec = json.loads(d.pop("spec"))
            out.append({"id": d.pop("id"), **spec, **d})
        return out

    def curve(self, run_id: str) -> list[EvalRow]:
        rows = self.db.execute(
            "SELECT step, train_loss, train_acc, val_loss, val_acc FROM curves "
            "WHERE run_id=? ORDER BY step", (run_id,))
        return [EvalRow(*r) for r in rows]

    def studies(self) -> list[dict[str, Any]]:
        """Every recorded study: name, definition, environment, wall time, in creation order."""
        rows = self.db.execute("SELECT * FROM studies ORDER BY created, name").fetchall()
        return [{**dict(r), "definition": json.loads(r["definition"]),
                 "environment": json.loads(r["environment"])} for r in rows]

    def study_members(self, name: str) -> list[tuple[str, str]]:
        """(run id, configuration label) of study ``name``'s runs, in expansion order."""
        rows = self.db.execute("SELECT run_id, label FROM study_runs WHERE study=? ORDER BY pos",
                               (name,))
        return [(r["run_id"], r["label"]) for r in rows]
