"""Mid-run checkpoints: a cohort's whole training state, so an interrupted run resumes where
it stopped instead of at step 0 (docs/design.md, decision 13).

A checkpoint is ``CohortState.state_dict()`` (parameters, optimiser and filter state, rate
policy, every run's sampler and noise-stream positions, the step, the train-metric sums)
plus each run's curve so far. It lives in ``<out>/checkpoints/<key>.ckpt``, ``key`` a hash
of the cohort's run ids in order. Invariants:

- Atomic: written to a temporary file, fsynced, then renamed into place; the checkpoint it
  replaces is kept as ``<key>.prev.ckpt`` until the new one is in place.
- Verified: the file starts with a magic line and the SHA-256 of its payload; a truncated or
  corrupt file (or one of other runs) is reported in one line on stderr and skipped, and
  loading falls back to the previous checkpoint, then to step 0. Payloads are read with
  ``torch.load(weights_only=True)``: plain tensors, numbers, strings and containers only.
- Resuming from a checkpoint continues the exact computation (on a CPU the final curve is
  bitwise that of an uninterrupted run: tests/test_checkpoint.py).
- Interrupts (Ctrl-C) during training are deferred to the end of the current step, then a
  checkpoint is written and ``KeyboardInterrupt`` raised; a second Ctrl-C stops at once.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch

from groklab.records import EvalRow
from groklab.spec import RunSpec

CHECKPOINT_DIR = "checkpoints"
MAGIC = b"groklab-checkpoint 1\n"
EVERY_STEPS = 1000  # default: a checkpoint every 1,000 steps ...
EVERY_SECONDS = 300.0  # ... or 5 minutes, whichever comes first


def checkpoint_path(root: str | Path, run_ids: Sequence[str]) -> Path:
    """Where the checkpoint of the cohort of ``run_ids`` (in this order) lives."""
    key = hashlib.sha256(",".join(run_ids).encode()).hexdigest()[:16]
    return Path(root) / CHECKPOINT_DIR / f"{key}.ckpt"


def _key(spec: RunSpec) -> str:
    return hashlib.sha256(repr(spec.cohort_key()).encode()).hexdigest()[:16]


def cohort_checkpoint_path(root: str | Path, spec: RunSpec, owner: str) -> Path:
    """Where process ``owner`` checkpoints the slots of ``spec``'s cohort key (one file per
    key and process: the runs in its slots change as runs end and others join, and two
    processes may train one key side by side)."""
    who = hashlib.sha256(owner.encode()).hexdigest()[:8]
    return Path(root) / CHECKPOINT_DIR / f"cohort-{_key(spec)}-{who}.ckpt"


def cohort_checkpoints(root: str | Path, spec: RunSpec) -> list[Path]:
    """Every process's current checkpoint of ``spec``'s cohort key (not the previous ones,
    which ``Checkpointer.load`` falls back to)."""
    folder = Path(root) / CHECKPOINT_DIR
    return [p for p in folder.glob(f"cohort-{_key(spec)}-*.ckpt")
            if not p.name.endswith(".prev.ckpt")]


def encode_curves(curves: Sequence[Sequence[EvalRow]]) -> list[list[list[Any]]]:
    return [[[r.step, r.train_loss, r.train_acc, r.val_loss, r.val_acc, dict(r.extra)]
             for r in curve] for curve in curves]


def decode_curves(rows: Sequence[Sequence[Sequence[Any]]]) -> list[list[EvalRow]]:
    return [[EvalRow(int(r[0]), *map(float, r[1:5]), extra=dict(r[5])) for r in curve]
            for curve in rows]


@dataclass
class CheckpointPolicy:
    """When a checkpoint is due: every ``every_steps`` updates of the cohort or
    ``every_seconds`` seconds since the last one, whichever comes first (None: never)."""

    every_steps: int | None = EVERY_STEPS
    every_seconds: float | None = EVERY_SECONDS
    _last_t: int = 0
    _last_time: float = field(default_factory=time.monotonic)

    def due(self, t: int) -> bool:
        """Whether a checkpoint is due after update ``t``."""
        if self.every_steps is not None and t - self._last_t >= self.every_steps:
            return True
        return (self.every_seconds is not None
                and time.monotonic() - self._last_time >= self.every_seconds)

    def mark(self, t: int) -> None:
        """A checkpoint was taken after update ``t``."""
        self._last_t = t
        self._last_time = time.monotonic()


class Checkpointer(CheckpointPolicy):
    """Writes, finds and removes one cohort's checkpoints (see the module docstring)."""

    def __init__(self, path: str | Path, every_steps: int | None = EVERY_STEPS,
                 every_seconds: float | None = EVERY_SECONDS):
        super().__init__(every_steps, every_seconds)
        self.path = Path(path)
        self.saves = 0
        self.save_seconds = 0.0  # time spent writing, for the overhead per step

    @property
    def previous(self) -> Path:
        return self.path.with_name(self.path.name.removesuffix(".ckpt") + ".prev.ckpt")

    def save(self, run_ids: Sequence[str], state_dict: dict,
             curves: Sequence[Sequence[EvalRow]], extra: dict | None = None) -> None:
        """Write the state of the runs in ``run_ids`` (in their rows), their curves so far
        and ``extra`` (the queue, the cohort's update count ``clock``)."""
        t0 = time.perf_counter()
        buf = io.BytesIO()
        extra = dict(extra or {})
        torch.save({"run_ids": list(run_ids), "state": state_dict,
                    "curves": encode_curves(curves), **extra}, buf)
        payload = buf.getvalue()
        digest = hashlib.sha256(payload).hexdigest().encode()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with open_in_shared_folder(tmp) as f:
                f.write(MAGIC + digest + b"\n" + payload)
                f.flush()
                os.fsync(f.fileno())
            if self.path.exists():
                os.replace(self.path, self.previous)
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
        self.mark(int(extra.get("clock", state_dict["t"])))
        self.saves += 1
        self.save_seconds += time.perf_counter() - t0

    def load(self, run_ids: Sequence[str] | Callable[[dict], None]) -> dict | None:
        """The newest good checkpoint of exactly these runs (or one that ``run_ids``, a
        check raising ``ValueError``, accepts), or None (start from step 0)."""
        for path in (self.path, self.previous):
            if not path.exists():
                continue
            try:
                saved = read_checkpoint(path)
                if callable(run_ids):
                    run_ids(saved)
                elif saved["run_ids"] != list(run_ids):
                    raise ValueError("it belongs to other runs")
                if saved["state"].get("format") != 2:
                    raise ValueError("written by an older groklab (a cohort state without "
                                     "per-run steps); the runs restart from step 0")
            except (ValueError, OSError, RuntimeError, KeyError, EOFError) as e:
                reason = str(e).splitlines()[0] if str(e) else type(e).__name__
                print(f"groklab: ignoring checkpoint {path}: {reason}", file=sys.stderr)
                continue
            self.mark(int(saved.get("clock", saved["state"]["t"])))
            return saved
        return None

    def drop(self) -> None:
        """Remove this cohort's checkpoints (its runs finished), and the folder if empty."""
        for path in (self.path, self.previous):
            path.unlink(missing_ok=True)
        remove_if_empty(self.path.parent)


def remove_if_empty(folder: Path) -> None:
    """Remove the checkpoint folder ``folder`` if nothing is left in it (other cohorts'
    checkpoints, or another process's file being written, keep it)."""
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty, or already gone


def open_in_shared_folder(path: Path, attempts: int = 8) -> IO[bytes]:
    """``path`` opened for writing, its folder made first. Other processes remove the folder
    when it empties (``remove_if_empty``), which can happen between making it and opening
    the file: then it is made again."""
    for attempt in range(attempts):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return open(path, "wb")
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def read_checkpoint(path: Path) -> dict:
    """A checkpoint's payload after checking its magic line and checksum (``ValueError``)."""
    blob = path.read_bytes()
    if not blob.startswith(MAGIC):
        raise ValueError("not a groklab checkpoint (bad header)")
    digest, sep, payload = blob[len(MAGIC):].partition(b"\n")
    if not sep or hashlib.sha256(payload).hexdigest().encode() != digest:
        raise ValueError("checksum mismatch (truncated or corrupt file)")
    return torch.load(io.BytesIO(payload), weights_only=True)


@dataclass
class InterruptFlag:
    requested: bool = False


@contextmanager
def deferred_interrupt(enabled: bool = True) -> Iterator[InterruptFlag]:
    """While active, Ctrl-C (SIGINT), SIGTERM (``kill``, a scheduler's stop) and SIGHUP (the
    terminal closed) set ``flag.requested`` instead of raising (the training loop
    checkpoints and raises ``KeyboardInterrupt`` at the end of the step, so the runs are
    released as 'interrupted'); a second signal raises at once. Only in the main thread,
    where Python delivers signals."""
    flag = InterruptFlag()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: object) -> None:
        if flag.requested:
            raise KeyboardInterrupt
        flag.requested = True

    signums = [getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)]
    old = {n: signal.signal(n, handler) for n in signums}
    try:
        yield flag
    finally:
        for n, previous in old.items():
            signal.signal(n, previous)
