"""TensorBoard: export a store's curves as event files, or write them live during training.

``export(store_dir, logdir)`` writes one TensorBoard *run* (a folder of event files) per
study membership of every run, ``LOGDIR/<study>/<label>/seed<seed>-<run id>`` (runs in no
study: ``LOGDIR/_runs/<label>/...``), so TensorBoard's run selector groups runs by study and
configuration label. Scalars: ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc`` at
every evaluated step, and ``metrics/<name>`` for every named metric of the store's long
``metrics`` table; the run's settings go in as a text summary ``spec``. TensorBoard keeps
scalars as float32, so a read-back value is the store's value rounded to float32.
Exporting again replaces a run's event files rather than adding to them.

``LiveWriter(logdir)`` is an evaluation hook (``run_specs(..., hooks=[LiveWriter(dir)])``,
``groklab tune --tensorboard DIR``) that writes the same scalars as training goes, under
``LOGDIR/<label>/<run id>``. Needs the ``tensorboard`` extra.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from groklab.engine.hooks import CohortView
from groklab.integrations import require

CURVE_TAGS = {"train_loss": "train/loss", "train_acc": "train/acc", "val_loss": "val/loss",
              "val_acc": "val/acc"}
NO_STUDY = "_runs"


def _writer_class() -> Any:
    require("tensorboard", "tensorboard", "TensorBoard export")
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter


def safe_name(text: str) -> str:
    """A label as one path component (TensorBoard shows it as the run's name)."""
    name = re.sub(r"[^\w.,=+-]+", "_", text.strip()).strip(".")
    return name or "_"


def run_dirs(logdir: Path, run: dict[str, Any], memberships: list[tuple[str, str]]) -> list[Path]:
    """Where run ``run`` (a ``Store.runs()`` row) goes: one folder per (study, label)."""
    leaf = f"seed{run.get('seed', 0)}-{run['id']}"
    places = memberships or [(NO_STUDY, run["label"])]
    return [logdir / safe_name(study) / safe_name(label) / leaf for study, label in places]


def export(store_dir: str | Path, logdir: str | Path) -> dict[str, int]:
    """Write every run of the store in ``store_dir`` to ``logdir``; returns counts
    (``runs``, ``folders``, ``scalars``)."""
    from groklab.store import Store

    writer_cls = _writer_class()
    logdir = Path(logdir)
    counts = {"runs": 0, "folders": 0, "scalars": 0}
    with Store(store_dir, create=False) as store:
        members: dict[str, list[tuple[str, str]]] = {}
        for study in store.studies():
            for rid, label in store.study_members(study["name"]):
                members.setdefault(rid, []).append((study["name"], label))
        for run in store.runs():
            curve = store.curve(run["id"])
            spec = {k: v for k, v in run.items() if k not in ("started", "finished")}
            counts["runs"] += 1
            for folder in run_dirs(logdir, run, members.get(run["id"], [])):
                folder.mkdir(parents=True, exist_ok=True)
                for old in folder.glob("events.out.tfevents.*"):
                    old.unlink()
                writer = writer_cls(str(folder))
                try:
                    writer.add_text("spec", f"```\n{json.dumps(spec, indent=1)}\n```", 0)
                    counts["scalars"] += _write_curve(writer, curve, run)
                finally:
                    writer.close()
                counts["folders"] += 1
    return counts


def _write_curve(writer: Any, curve: list, run: dict[str, Any]) -> int:
    """Write a curve's scalars; wall times spread the run's wall time over its steps."""
    start, wall, steps = run.get("started") or 0.0, run.get("wall_s") or 0.0, run.get("steps")
    n = 0
    for row in curve:
        at = start + wall * row.step / steps if steps else start
        for field, tag in CURVE_TAGS.items():
            writer.add_scalar(tag, getattr(row, field), row.step, walltime=at)
            n += 1
        for name, value in row.extra.items():
            writer.add_scalar(f"metrics/{name}", value, row.step, walltime=at)
            n += 1
    return n


class LiveWriter:
    """An evaluation hook writing every run's scalars to ``logdir/<label>/<run id>``."""

    def __init__(self, logdir: str | Path):
        self.logdir = Path(logdir)
        self._cls = _writer_class()
        self.writers: dict[str, Any] = {}

    def __call__(self, state: CohortView, step: int, metrics: dict[str, torch.Tensor]) -> None:
        values = {k: v.detach().flatten().tolist() for k, v in metrics.items()}
        for i, pos in enumerate(state.index):
            spec = state.specs[pos]
            rid = spec.run_id
            if rid not in self.writers:
                path = self.logdir / safe_name(spec.label) / rid
                self.writers[rid] = self._cls(str(path))
            writer = self.writers[rid]
            for name, vals in values.items():
                writer.add_scalar(CURVE_TAGS.get(name, f"metrics/{name}"), vals[i], step)
            writer.flush()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()
