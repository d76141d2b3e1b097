"""Final weights of finished runs, stored next to the run store (docs/design.md, decision 6).

Layout: ``<out>/weights/<run id>.safetensors``, one file per run: one tensor per parameter
name (one run's shapes, no run axis) and metadata ``run_id``, ``spec`` (the spec as JSON)
and ``format``. Invariants:

- A file is written to a temporary name and renamed into place (``os.replace``), so a reader
  sees a whole file or none; the runner writes it *before* the store marks the run finished,
  so every finished run has its weights (a crash in between leaves an unfinished run that
  is trained again and overwrites the file with the same weights).
- safetensors holds tensors and strings only: loading a file runs no code (nothing here
  calls ``torch.load``).
- A file gets the store file's permission bits (read and write; a group-shared store
  shares its weights), not only what the umask leaves. A failed write (a full disk) raises
  ``OSError`` and leaves no file behind: neither the temporary one nor a partial final one.
"""

from __future__ import annotations

import errno
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from groklab.store.store import STORE_NAME

if TYPE_CHECKING:
    from groklab.models import CohortModel
    from groklab.spec import RunSpec

WEIGHTS_DIR = "weights"
FORMAT = "1"


def weights_path(root: str | Path, run_id: str) -> Path:
    return Path(root) / WEIGHTS_DIR / f"{run_id}.safetensors"


def optimizer_path(root: str | Path, run_id: str) -> Path:
    """A run's final optimiser state (``Chain.run_state``), saved when a warm start in the
    same invocation carries it (``init_optimizer = "carried"``)."""
    return Path(root) / WEIGHTS_DIR / f"{run_id}.optimizer.safetensors"


def save_weights(root: str | Path, run_id: str, params: Mapping[str, torch.Tensor],
                 spec: Mapping[str, Any] | None = None, *, optimizer: bool = False) -> Path:
    """Write one run's parameters (name -> tensor) atomically, or with ``optimizer`` its
    optimiser state; returns the file's path."""
    path = (optimizer_path if optimizer else weights_path)(root, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {n: t.detach().to("cpu").contiguous().clone() for n, t in params.items()}
    meta = {"run_id": run_id, "format": FORMAT, "spec": json.dumps(dict(spec or {}))}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        try:
            save_file(tensors, tmp, metadata=meta)
        except SafetensorError as e:  # its I/O errors (a full disk) as the OSError they are
            code = re.search(r"os error (\d+)", str(e))
            number = int(code.group(1)) if code else errno.EIO
            raise OSError(number, os.strerror(number), str(path)) from None
        store_file = Path(root) / STORE_NAME
        if store_file.is_file():  # the store's readers may read its weights too
            os.chmod(tmp, store_file.stat().st_mode & 0o666)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_weights(root: str | Path, run_id: str) -> dict[str, torch.Tensor]:
    """One run's final parameters, by name (``FileNotFoundError`` if it has none saved)."""
    path = weights_path(root, run_id)
    if not path.is_file():
        raise FileNotFoundError(f"no saved weights for run {run_id} (expected {path}); only "
                                "runs finished by this version of groklab have them")
    try:
        return load_file(path)
    except (SafetensorError, OSError) as e:
        raise ValueError(f"weights of run {run_id} in {path} are unreadable: {e}") from None


def load_optimizer(root: str | Path, run_id: str) -> dict[str, torch.Tensor]:
    """One run's saved final optimiser state (``FileNotFoundError`` if none was saved)."""
    path = optimizer_path(root, run_id)
    if not path.is_file():
        raise FileNotFoundError(f"no saved optimiser state for run {run_id} (expected {path})")
    try:
        return load_file(path)
    except (SafetensorError, OSError) as e:
        raise ValueError(f"optimiser state of run {run_id} in {path} is unreadable: {e}") \
            from None


def has_weights(root: str | Path, run_id: str) -> bool:
    return weights_path(root, run_id).is_file()


def weight_files(root: str | Path, run_id: str) -> list[Path]:
    """The run's files next to the store that exist: its weights and its optimiser state."""
    return [p for p in (weights_path(root, run_id), optimizer_path(root, run_id)) if p.is_file()]


def remove_weights(root: str | Path, run_id: str) -> list[Path]:
    """Delete the run's weights and optimiser state (``groklab rm``); returns the files
    removed."""
    found = weight_files(root, run_id)
    for path in found:
        path.unlink(missing_ok=True)
    return found


@dataclass(frozen=True)
class LoadedRun:
    """A finished run's spec, model and final parameters (one run's shapes, no run axis)."""

    spec: RunSpec
    model: CohortModel
    params: dict[str, torch.Tensor]

    @torch.no_grad()
    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` token ids -> ``[B, n_classes]`` logits at the last position."""
        stacked = {n: t[None] for n, t in self.params.items()}
        return self.model.forward(stacked, tokens[None])[0]


def load_run(root: str | Path, run_id: str) -> LoadedRun:
    """The model of run ``run_id`` of the store in ``root``, with its final weights."""
    from groklab.models import build_model
    from groklab.spec import stored_spec
    from groklab.store import Store
    from groklab.tasks import build_task

    with Store(root, create=False) as store:
        row = next((r for r in store.runs() if r["id"] == run_id), None)
    if row is None:
        raise KeyError(f"no run {run_id} in the store in {root}")
    spec = stored_spec(row)
    model = build_model(spec, build_task(spec.task, **spec.task_args()))
    return LoadedRun(spec, model, load_weights(root, run_id))
