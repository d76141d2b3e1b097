"""Every check of a list of runs that can fail before training, made before a store is opened
or anything is allocated (``run_specs`` calls ``preflight`` first; the command calls it before
it opens its store, so refused input writes nothing).

- The output folder: not a file, no file on its path, writable (``OutputError``).
- The device: a known kind that this machine has (``DeviceError``).
- The splits: every run's training fraction leaves at least one example on each side of its
  task table (``SplitError``), computed from the table's size without training.
- Parents (``init_from``): a parent found among the runs or in the store must have the
  child's parameter shapes (``ParentError``, naming the settings that differ).
- Memory: one run alone must fit in what this process may allocate (``TooBigError``; how
  many fit together is the command's business: engine/limits.py).

Each error is a ``PreflightError`` (a ``ValueError``) with a one-line message.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from groklab.engine.limits import SAFETY, available_bytes, cohorts, run_bytes, size
from groklab.models import build_model
from groklab.spec import MODEL_FIELDS, TASK_FIELDS, RunSpec
from groklab.store import STORE_NAME, Store, writable
from groklab.tasks import build_task


class PreflightError(ValueError):
    """Runs that cannot train as given: one line saying why."""


class OutputError(PreflightError):
    """An output folder that cannot be one (a file on its path, read-only, empty text)."""


class DeviceError(PreflightError):
    """A device this machine does not have."""


class SplitError(PreflightError):
    """A training fraction that leaves one side of a task's table empty."""


class ParentError(PreflightError):
    """A warm start (``init_from``) from a run of another shape."""


class TooBigError(PreflightError):
    """A run that cannot fit in memory alone."""


def preflight(specs: Sequence[RunSpec], out: str | Path, device: str | None = None,
              store: Store | None = None) -> None:
    """Raise a ``PreflightError`` for the first check ``specs`` fail (module docstring);
    ``store``: ``out``'s store when it is open (else read, when it exists, for parents)."""
    check_output(out)
    check_device(device)
    check_splits(specs)
    check_memory(specs, device)
    check_parents(specs, out, store)


def check_output(out: str | Path) -> None:
    """``out`` can be a folder this process writes into (it need not exist yet)."""
    if not str(out).strip():
        raise OutputError("the output folder is empty text; give a folder")
    path = Path(out)
    for above in [path, *path.parents]:
        if above.exists():
            if not above.is_dir():
                what = "exists and is not a folder" if above == path else \
                    f"is on its path and {above} is a file, not a folder"
                raise OutputError(f"output path {path} {what}")
            break
    if not writable(path) or ((path / STORE_NAME).exists() and not writable(path / STORE_NAME)):
        raise OutputError(f"cannot write to {path}: it is read-only")


def check_device(device: str | None) -> None:
    """``device`` (None: the best available) names a device this machine has."""
    if device is None:
        return
    kind, _, index = str(device).partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and not index.isdigit()):
        raise DeviceError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {device!r} requested but no CUDA GPU is available")
        if index and int(index) >= torch.cuda.device_count():
            raise DeviceError(f"device {device!r} requested but this machine has "
                              f"{torch.cuda.device_count()} CUDA GPU(s)")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device {device!r} requested but MPS is not available")


def check_splits(specs: Sequence[RunSpec]) -> None:
    """Every run's split has at least one training and one validation example."""
    seen: set[tuple[Any, ...]] = set()
    for s in specs:
        key = (s.task, tuple(sorted(s.task_args().items())), s.train_fraction)
        if key in seen:
            continue
        seen.add(key)
        task = build_task(s.task, **s.task_args())
        if task.split is not None:  # a fixed split (text)
            continue
        n = len(task)
        n_train = int(s.train_fraction * n)
        if n_train < 1 or n_train >= n:
            side = "training" if n_train < 1 else "validation"
            args = ", ".join(f"{k} {v}" for k, v in s.task_args().items())
            raise SplitError(f"train_fraction {s.train_fraction:g} leaves the {side} split "
                             f"empty: task {s.task} ({args}) has {n} example(s), "
                             f"{n_train} for training")


def check_memory(specs: Sequence[RunSpec], device: str | None) -> None:
    """The heaviest run of every cohort fits alone in this process's memory."""
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    available = available_bytes(dev)
    if available is None:
        return
    for cohort in cohorts(specs):
        need = max((run_bytes(s, dev) for s in cohort), key=lambda n: n.total)
        if need.total > SAFETY * available:
            part = need.largest()
            raise TooBigError(f"one run of task {cohort[0].task} needs about "
                              f"{size(need.total)} ({part}: {size(need.parts[part])}), more "
                              f"than the {size(available)} this process may allocate on "
                              f"{dev}")


def check_parents(specs: Sequence[RunSpec], out: str | Path, store: Store | None) -> None:
    """A parent among ``specs`` or in the store has its children's parameter shapes."""
    wanted = {s.init_from for s in specs if s.init_from}
    if not wanted:
        return
    parents = {s.run_id: s for s in specs if s.run_id in wanted}
    if wanted - set(parents):
        parents |= _stored(wanted - set(parents), out, store)
    for child in specs:
        parent = parents.get(child.init_from or "")
        if parent is not None:
            _same_shapes(child, parent)


def _stored(ids: set[str], out: str | Path, store: Store | None) -> dict[str, RunSpec]:
    """The specs of the runs ``ids`` that ``out``'s store holds (read; none when no store)."""
    from groklab.spec import stored_spec

    if store is None:
        if not (Path(out) / STORE_NAME).is_file():
            return {}
        with Store(out, create=False) as opened:
            return _stored(ids, out, opened)
    return {r["id"]: stored_spec(r) for r in store.runs() if r["id"] in ids}


def _same_shapes(child: RunSpec, parent: RunSpec) -> None:
    """``ParentError`` naming the settings that differ when the parameter shapes do."""
    def shapes(s: RunSpec) -> dict[str, tuple[int, ...]]:
        task = build_task(s.task, **s.task_args())
        return {n: tuple(i.shape) for n, i in build_model(s, task).param_info().items()}

    if shapes(child) == shapes(parent):
        return
    mine, theirs = child.identity(), parent.identity()
    differ = [f"{k} {mine.get(k)!r} (parent: {theirs.get(k)!r})"
              for k in ("task", "model", *TASK_FIELDS, *MODEL_FIELDS)
              if mine.get(k) != theirs.get(k)]
    raise ParentError(f"init_from {parent.run_id}: the parent has other parameter shapes "
                      f"than run {child.run_id}: "
                      + (", ".join(differ) if differ else "its model differs"))
