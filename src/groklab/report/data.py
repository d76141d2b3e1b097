"""Read what a report shows from the store alone (ARCHITECTURE decision 6)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from groklab.store import Store

CURVE_COLUMNS = ["step", "train_loss", "train_acc", "val_loss", "val_acc"]


@dataclass(frozen=True)
class StudyData:
    """One study's runs (one row each, ``config`` = its label) and finished runs' curves."""

    name: str
    definition: dict[str, Any] | None
    environment: dict[str, Any] | None
    wall_s: float | None
    runs: pd.DataFrame
    curves: pd.DataFrame
    pending: int  # member runs never started

    @property
    def finished(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] == "finished"]


def load_studies(path: str | Path) -> list[StudyData]:
    """Every study recorded in ``path``'s store; a store without studies is one study 'runs'."""
    with Store(path, create=False) as store:
        runs = {r["id"]: r for r in store.runs()}
        recorded = store.studies()
        if not recorded:
            members = [(rid, r["label"]) for rid, r in runs.items()]
            return [_study(store, runs, "runs", members, None)]
        return [_study(store, runs, s["name"], store.study_members(s["name"]), s)
                for s in recorded]


def _study(store: Store, runs: dict[str, dict], name: str, members: list[tuple[str, str]],
           row: dict[str, Any] | None) -> StudyData:
    present = [{**runs[rid], "config": label} for rid, label in members if rid in runs]
    frame = pd.DataFrame(present)
    parts = [pd.DataFrame(store.curve(r["id"]), columns=CURVE_COLUMNS).assign(
                 run_id=r["id"], config=r["config"], task=r["task"], seed=r["seed"])
             for r in present if r["status"] == "finished"]
    curves = (pd.concat(parts, ignore_index=True) if parts
              else pd.DataFrame(columns=[*CURVE_COLUMNS, "run_id", "config", "task", "seed"]))
    return StudyData(name=name, definition=row and row["definition"],
                     environment=row and row["environment"], wall_s=row and row["wall_s"],
                     runs=frame, curves=curves, pending=len(members) - len(present))
