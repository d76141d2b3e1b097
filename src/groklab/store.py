"""The run store: one SQLite file per output folder, the single source of truth for reports.

Tables: ``runs`` (id = hash of the spec, the spec as JSON, label, status, final metrics) and
``curves`` (one row per run and evaluated step). Every write is one transaction: a killed
process leaves a run either finished or unfinished; an unfinished run's partial curve is
dropped when it is started again, so a resumed run never holds duplicate rows.
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
