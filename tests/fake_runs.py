"""Stores written straight from records (no training), for tests of what reads a store:
results, reports, exports, read-only opening. ``curve`` builds a run's evaluated steps from
its validation accuracies; ``write`` claims and finishes (or leaves unfinished) runs."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import tiny

from groklab.records import EvalRow
from groklab.spec import RunSpec
from groklab.store import Store

# TINY's model, 30 steps evaluated every 10 (warm-up at its default): runs nobody trains
BASE = tiny("task", "warmup", steps=30, eval_every=10)


def spec(task: str = "x_plus_y", **settings) -> RunSpec:
    return RunSpec(**{"task": task, **BASE, "lr_name": "baseline", **settings})


def curve(val_accs: Sequence[float], every: int = 10,
          named: dict[str, float] | None = None) -> list[EvalRow]:
    """Evaluations at every ``every`` steps: train acc 1, losses from the accuracies."""
    return [EvalRow(every * (i + 1), 1.0 - a / 2, 1.0, 2.0 - a, a, extra=dict(named or {}))
            for i, a in enumerate(val_accs)]


def write(root: Path, runs: Sequence[tuple[RunSpec, list[EvalRow] | None]],
          study: tuple[str, dict] | None = None) -> list[RunSpec]:
    """Record ``runs`` (spec, curve: finished; spec, None: claimed and left unfinished, its
    claim released) in the store at ``root``; optionally as study (name, definition)."""
    with Store(root) as store:
        for s, c in runs:
            store.begin([s], "cpu")
            if c is not None:
                store.finish({s.run_id: c}, {s.run_id: c}, 1.0)
        if study is not None:
            store.record_study(study[0], study[1], {}, [(s.run_id, s.label) for s, _ in runs])
    return [s for s, _ in runs]


def files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@contextmanager
def read_only(folder: Path, monkeypatch: pytest.MonkeyPatch, *,
              only_file: str | None = None) -> Iterator[None]:
    """Make ``folder`` (or only the file ``only_file`` in it) read-only. As root, where
    chmod does not stop writes, groklab is told so instead (``store.writable`` answers False
    for those paths), so the store takes the same read-only path (SQLite ``immutable=1``)."""
    import groklab.store as store_pkg
    import groklab.store.store as store_mod

    targets = [folder / only_file] if only_file else [folder, *folder.iterdir()]
    real = store_mod.writable
    locked = {p.absolute() for p in targets}

    def writable(path) -> bool:
        return Path(path).absolute() not in locked and real(path)

    modes = {p: p.stat().st_mode for p in targets}
    if os.geteuid() == 0:
        monkeypatch.setattr(store_mod, "writable", writable)
        monkeypatch.setattr(store_pkg, "writable", writable)
    for p in sorted(targets, key=lambda p: -len(p.parts)):  # files first, then the folder
        p.chmod(stat.S_IMODE(modes[p]) & ~0o222)
    try:
        yield
    finally:
        for p, mode in modes.items():
            p.chmod(stat.S_IMODE(mode))
