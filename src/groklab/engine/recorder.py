"""One recorder for every executor: a cohort key's runs claimed, their events written into the
store, their checkpoints kept, whichever executor trained them in their slots (docs/design.md,
decision 15).

An executor (engine/executor.py) trains the runs of a cohort key as one slot life
(engine/slots.py) and hands its events to a ``Recorder``, in this process or streamed from a
Ray task (integrations/ray_executor.py). The recorder:

- claims each run as it takes a slot (``StoreQueue``), so a queued run is not ``running``
  and another process may take it;
- writes live rows every ``FLUSH_EVERY`` evaluations or ``FLUSH_SECONDS`` seconds (each write
  refreshes the runs' heartbeat), a row once even when a retried life evaluates it again;
- finishes each run the moment it ends: weights, remaining rows, final metrics and status
  in one transaction, with its own wall time (engine/finish.py);
- writes the life's checkpoints (``Snapshot``), adopts a gone process's checkpoint at the
  start (``adopt``), and knows where a life lost mid-way resumes (``restart``): from the last
  checkpoint, the runs ended since then taking their rows again unrecorded (``replay``);
- at Ctrl-C releases its claimed runs as 'interrupted' and says where the checkpoint is.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any, Protocol

from groklab.engine.checkpoint import (
    Checkpointer,
    cohort_checkpoint_path,
    cohort_checkpoints,
    decode_curves,
)
from groklab.engine.finish import Finisher
from groklab.engine.slots import Ended, Evaluated, Event, ListQueue, Snapshot
from groklab.engine.state import RunEnd
from groklab.records import EvalRow
from groklab.spec import RunSpec
from groklab.store import Store

FLUSH_EVERY = 50  # evaluations between writes of live curves to the store ...
FLUSH_SECONDS = 60.0  # ... or seconds, whichever comes first: each write refreshes the runs'
# heartbeat, which keeps another process from claiming them (store.STALE_S)


class Feed(Protocol):
    """More runs on demand (a search that asks as slots free): ``ask(n, key)`` gives up to
    about ``n`` new runs of cohort key ``key`` (it may keep runs of other keys for a later
    call of ``run_specs``); ``more()`` says whether it may give any; ``ended(run_id)`` is
    told each run's end once the store holds it."""

    def ask(self, n: int, key: tuple) -> list[RunSpec]: ...

    def more(self) -> bool: ...

    def ended(self, run_id: str) -> None: ...


class Tally:
    """Progress over all the runs an executor call trains: ``base`` runs done before it plus
    each run's fraction of its steps, shown on ``bar`` (a tqdm bar, possibly disabled)."""

    def __init__(self, bar: Any, base: float = 0.0):
        self.bar, self.base = bar, base
        self.fraction: dict[str, float] = {}

    def advance(self, run_id: str, fraction: float) -> None:
        self.fraction[run_id] = fraction
        if not self.bar.disable:
            self.bar.n = min(self.base + sum(self.fraction.values()), self.bar.total)
            self.bar.update(0)


class StoreQueue(ListQueue):
    """The runs of one cohort key, each claimed in the store as it takes a slot (runs another
    live process holds are left to it and counted in ``elsewhere``). Runs in ``replay``
    ended after the checkpoint a resumed cohort continues from: they take their slot again,
    unclaimed and unrecorded, so every other run continues exactly as it would have."""

    def __init__(self, store: Store, specs: Sequence[RunSpec], device: str,
                 feed: Feed | None = None):
        super().__init__(specs)
        self.store, self.device, self.feed = store, device, feed
        self.key = specs[0].cohort_key()
        self.replay: set[str] = set()
        self.claimed: list[str] = []
        self.elsewhere = 0

    def more(self) -> bool:
        return bool(self.specs) or (self.feed is not None and self.feed.more())

    def take(self, n: int) -> list[RunSpec]:
        out: list[RunSpec] = []
        while len(out) < n and (self.specs or (self.feed is not None and self.feed.more())):
            if not self.specs:
                asked = self.feed.ask(n - len(out), self.key) if self.feed else []
                if not asked:
                    break
                self.specs += asked
                continue
            s = self.specs.pop(0)
            if s.run_id not in self.replay and not self.store.begin([s], self.device):
                self.elsewhere += 1
                continue
            if s.run_id not in self.replay:
                self.claimed.append(s.run_id)
            out.append(s)
        return out


class Recorder:
    """Records the life of the runs ``todo`` of one cohort key into ``store`` (see the module
    docstring). ``known``: every run of that key the call names, finished or not;
    ``every``/``seconds``: the checkpoint policy (both None: no checkpoints); ``owner``: whose
    checkpoint file this is (default: the store's owner; an executor running several lives
    of one key at once gives each its own)."""

    def __init__(self, store: Store, todo: Sequence[RunSpec], known: Sequence[RunSpec],
                 device: str, tally: Tally, *, every: int | None, seconds: float | None,
                 feed: Feed | None = None, owner: str | None = None):
        self.store, self.device, self.tally, self.feed = store, device, tally, feed
        self.by_id = {s.run_id: s for s in known}
        self.queue = StoreQueue(store, todo, device, feed)
        self.checkpointing = every is not None or seconds is not None
        path = cohort_checkpoint_path(store.root, todo[0], owner or store.owner)
        self.checkpointer = Checkpointer(path, every, seconds)
        self.finisher = Finisher(store, known, device)
        self.pending: dict[str, list[EvalRow]] = {}
        self.last_step: dict[str, int] = {}  # the last row of each run the store has or gets
        self.recorded: set[str] = set()  # runs ended and recorded by this recorder
        self.trained = self.stopped = 0
        self._evals, self._flushed = 0, time.monotonic()
        self.resume, self.adopted = (adopt(store, todo[0], self.by_id, device, self.queue,
                                           every, seconds)
                                     if self.checkpointing else (None, None))
        if self.resume is not None:
            st = self.resume["state"]
            at = sorted({int(st["t"]) + int(o) for o in st["offset"]})
            where = f"step {at[0]}" if len(at) == 1 else f"steps {at[0]}–{at[-1]}"
            print(f"groklab: resuming {len(self.resume['run_ids'])} run(s) from {where} "
                  f"({self.adopted.path})", file=sys.stderr)
            self._pending_from(self.resume)

    def _pending_from(self, saved: dict) -> None:
        """The rows of the checkpoint's curves, which the store does not hold."""
        for rid, curve in zip(saved["run_ids"], decode_curves(saved["curves"]), strict=True):
            if rid not in self.queue.replay:
                self.pending[rid] = list(curve)
                self.last_step[rid] = curve[-1].step if curve else -1

    # -- the events of a life ------------------------------------------------------------
    def handle(self, event: Event) -> None:
        if isinstance(event, Evaluated):
            self.on_eval(event.rows)
        elif isinstance(event, Ended):
            self.on_run_done(event.spec, event.end, event.curve, event.wall_s)
        elif isinstance(event, Snapshot):
            self.on_snapshot(event)

    def on_eval(self, rows: list[tuple[RunSpec, EvalRow]]) -> None:
        for spec, row in rows:
            rid = spec.run_id
            if rid not in self.queue.replay and row.step > self.last_step.get(rid, -1):
                self.pending.setdefault(rid, []).append(row)
                self.last_step[rid] = row.step
            self.tally.advance(rid, row.step / spec.steps)
        self._evals += 1
        if self._evals % FLUSH_EVERY == 0 or time.monotonic() - self._flushed > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the live rows (and so refresh the heartbeat of every run in training)."""
        self._flushed = time.monotonic()
        training = {rid: [] for rid in self.queue.claimed if rid not in self.recorded}
        self.store.append(training | {rid: rows for rid, rows in self.pending.items()})
        for rows in self.pending.values():
            rows.clear()

    def on_run_done(self, spec: RunSpec, end: RunEnd, curve: list[EvalRow],
                    wall_s: float) -> None:
        rid = spec.run_id
        self.tally.advance(rid, 1.0)
        if rid in self.queue.replay or rid in self.recorded:
            return
        self.finisher.end_run(spec, end, self.pending.pop(rid, []), curve, wall_s)
        self.recorded.add(rid)
        self.trained += 1
        self.stopped += end.stopped
        if self.feed is not None:
            self.feed.ended(rid)

    def on_snapshot(self, snap: Snapshot) -> None:
        self.checkpointer.save(snap.run_ids, snap.state, snap.curves, snap.extra)

    # -- where a lost life resumes -------------------------------------------------------
    def restart(self) -> dict | None:
        """Set up a new life after one was lost mid-way (a Ray worker died) and return the
        checkpoint it continues from (None: from step 0). Runs that ended since are trained
        again in their rows without being recorded twice, and rows already written are not
        written again."""
        self.queue.replay |= self.recorded
        if self.checkpointer.path.exists():  # written by this life: read back as a resume is
            return self.checkpointer.load(lambda saved: None)
        return self.resume

    # -- the end -------------------------------------------------------------------------
    def interrupted(self) -> str:
        """Ctrl-C: release the claimed runs still training as 'interrupted'; returns the line
        that says so."""
        left = [rid for rid in self.queue.claimed if self.store.status(rid) == "running"]
        self.store.release(left)
        kept = ("the cohort's last checkpoint is kept in " + str(self.checkpointer.path.parent)
                if self.checkpointing and (self.checkpointer.path.exists()
                                           or self.adopted is not None)
                else "no checkpoint was written: they restart from step 0")
        return (f"groklab: interrupted: {len(left)} run(s) in training are recorded as "
                f"'interrupted' ({kept}); {self.trained} run(s) of this cohort finished "
                "before it. Run the same command again to resume.")

    def close(self) -> None:
        """The life ended normally: say which runs a hook stopped, drop the checkpoints."""
        if self.finisher.stopped:
            print(f"groklab: {len(self.finisher.stopped)} run(s) stopped early by a hook "
                  "outside their settings: recorded as 'halted_by_hook', not finished (set "
                  "stop_val_acc / stop_patience to make early stop part of a run)",
                  file=sys.stderr)
        if self.checkpointing:
            self.checkpointer.drop()
            if self.adopted is not None:
                self.adopted.drop()

    def counts(self) -> dict[str, int]:
        return {"trained": self.trained, "stopped": self.stopped,
                "elsewhere": self.queue.elsewhere}


def adopt(store: Store, spec: RunSpec, by_id: dict[str, RunSpec], device: str,
          queue: StoreQueue, every: int | None, seconds: float | None
          ) -> tuple[dict | None, Checkpointer | None]:
    """The newest checkpoint of this cohort key that a gone process left and whose runs this
    call now holds (each process writes its own: ``cohort_checkpoint_path``), set up in
    ``queue``: the runs that were training are claimed (all of them, or the checkpoint is
    left to whoever holds the others), runs that had ended by then or finished since take
    their rows again unrecorded (``replay``), and the checkpoint's queue goes first."""
    found = sorted(cohort_checkpoints(store.root, spec), key=lambda p: p.stat().st_mtime,
                   reverse=True)
    for path in found:
        cp = Checkpointer(path, every, seconds)
        saved = cp.load(lambda saved: _resumable(saved, by_id, store))
        if saved is None:
            continue
        rows, waiting = list(saved["run_ids"]), list(saved.get("queue", []))
        active = {rows[i] for i in saved["state"]["index"]}  # the other rows had ended
        done = {rid for rid in [*rows, *waiting] if store.status(rid) == "finished"}
        replay = {rid for rid in rows if rid not in active} | done
        claim = [by_id[rid] for rid in rows if rid not in replay]
        got = store.begin(claim, device)
        if len(got) < len(claim):  # another live process took some: not ours to continue
            store.release([s.run_id for s in got])
            continue
        queue.replay = replay
        queue.specs += [by_id[rid] for rid in waiting if rid in done and rid in by_id]
        queue.claimed += [s.run_id for s in got]
        return saved, cp
    return None, None


def _resumable(saved: dict, known: dict[str, RunSpec], store: Store) -> None:
    """Accept a cohort checkpoint only if this call names all its runs and no other live
    process holds the unfinished ones (``ValueError`` saying why not)."""
    rows = list(saved["run_ids"])
    if any(rid not in known for rid in rows):
        raise ValueError("it holds runs this command does not train")
    if any(store.held_elsewhere(rid) for rid in rows):
        raise ValueError("another live process trains its runs")
