"""Run a list of specs into a store: skip finished runs, group the rest into cohorts, train."""

from __future__ import annotations

import socket
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from groklab.claims import process_alive
from groklab.engine.checkpoint import (
    CHECKPOINT_DIR,
    EVERY_SECONDS,
    EVERY_STEPS,
    Checkpointer,
    cohort_checkpoint_path,
    cohort_checkpoints,
    decode_curves,
    read_checkpoint,
)
from groklab.engine.executor import Executor
from groklab.engine.finish import Finisher
from groklab.engine.hooks import Hook
from groklab.engine.parents import load_parents
from groklab.engine.preflight import preflight
from groklab.engine.slots import ListQueue, train_slots
from groklab.engine.state import RunEnd
from groklab.progress import bar as progress_bar
from groklab.records import EvalRow
from groklab.spec import RunSpec
from groklab.store import Store
from groklab.store.weights import has_weights

FLUSH_EVERY = 50  # evaluations between writes of live curves to the store ...
FLUSH_SECONDS = 60.0  # ... or seconds, whichever comes first: each write refreshes the runs'
# heartbeat, which keeps another process from claiming them (store.STALE_S)


def default_device() -> str:
    """The best available device: cuda, then mps, then cpu."""
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def plan_cohorts(specs: Sequence[RunSpec]) -> list[list[RunSpec]]:
    """Unique specs grouped by cohort key, largest cohorts first."""
    unique = list({s.run_id: s for s in specs}.values())
    groups: dict[tuple, list[RunSpec]] = defaultdict(list)
    for s in unique:
        groups[s.cohort_key()].append(s)
    return sorted(groups.values(), key=len, reverse=True)


def plan_levels(specs: Sequence[RunSpec]) -> list[list[RunSpec]]:
    """Unique specs by generation: runs whose parent (``init_from``) is not among ``specs``
    first, then their children, and so on; parents always train before their children."""
    unique = {s.run_id: s for s in specs}
    depth: dict[str, int] = {}

    def level(s: RunSpec) -> int:
        if s.run_id not in depth:
            parent = unique.get(s.init_from) if s.init_from else None
            depth[s.run_id] = 0 if parent is None else level(parent) + 1
        return depth[s.run_id]

    out: list[list[RunSpec]] = []
    for s in unique.values():
        d = level(s)
        out += [[] for _ in range(d + 1 - len(out))]
        out[d].append(s)
    return out


def run_specs(
    specs: Sequence[RunSpec],
    out: str | Path,
    *,
    device: str | None = None,
    max_cohort: int | None = None,
    progress: bool = True,
    overall: bool = False,
    compile: bool = False,
    hooks: Sequence[Hook] = (),
    checkpoint_every: int | None = EVERY_STEPS,
    checkpoint_seconds: float | None = EVERY_SECONDS,
    executor: Executor | None = None,
    store: Store | None = None,
    slots: int | None = None,
    feed: Feed | None = None,
) -> dict[str, int]:
    """Train every spec not already finished in ``out``'s store. Returns run counts, each
    about what this call did (``format.run_counts`` words them): ``total`` unique runs;
    ``trained`` here (of which ``stopped`` by an external hook); ``skipped``, finished before;
    ``elsewhere``, left to another live process that holds them; ``waiting`` for a parent.
    At Ctrl-C the current cohort's runs are released as 'interrupted' and
    ``KeyboardInterrupt`` propagates.

    ``overall`` adds a bar over all runs (runs done, current cohort, ETA) above the
    per-cohort bar: what a study of many cohorts shows. ``compile`` and ``hooks``: see
    ``train_cohort``; a run an external hook retires is recorded as ``stopped``, not
    finished (engine/hooks.py). Runs that another live process is training are left to it.

    Parents (``init_from``) train before their children, and a child starts only once its
    parent is finished in this store with its weights saved (else it is counted as
    ``waiting``: run again later). Every finished run's final weights are saved next to the
    store (store/weights.py) before it is marked finished (engine/finish.py). A cohort
    checkpoints every ``checkpoint_every`` steps or ``checkpoint_seconds`` seconds, whichever
    comes first (None: never), and at Ctrl-C; an interrupted cohort resumes from its
    checkpoint, which is removed once its runs are finished (engine/checkpoint.py).
    ``executor`` trains each generation's cohorts elsewhere (engine/executor.py; e.g. Ray
    tasks); None: in this process, the runs of each cohort key as a queue over ``slots``
    slots (engine/slots.py; default: all of them at once, bounded by ``max_cohort``): a run
    is finished in the store the moment it ends and the next queued run takes its slot.
    ``store``: the open store of ``out`` to use (default: open one for this call). ``feed``
    (in process only): where a cohort's queue asks for more runs as its slots free
    (``groklab tune``), told each run's end.
    """
    preflight(specs, out, device, store)  # every check before a store is opened
    if store is None:
        with Store(out) as own:
            return run_specs(specs, out, device=device, max_cohort=max_cohort,
                             progress=progress, overall=overall, compile=compile, hooks=hooks,
                             checkpoint_every=checkpoint_every,
                             checkpoint_seconds=checkpoint_seconds, executor=executor,
                             store=own, slots=slots, feed=feed)
    device = device or default_device()
    root = store.root
    checkpoint_every, checkpoint_seconds = checkpoint_every or None, checkpoint_seconds or None
    # parents whose children carry their optimiser state: it is saved with their weights
    keep_optimizer = {s.init_from for s in specs if s.init_from and s.init_optimizer == "carried"}
    levels = plan_levels(specs)
    total = sum(len(level) for level in levels)
    n_todo = sum(store.status(s.run_id) != "finished" for level in levels for s in level)
    bar = _overall_bar(n_todo, enabled=progress and overall and n_todo > 0)
    done = waiting = trained = elsewhere = stopped = 0
    for level in levels:
        todo = [[s for s in c if store.status(s.run_id) != "finished"]
                for c in plan_cohorts(level)]
        ready = [[s for s in c if s.init_from is None or (
            store.status(s.init_from) == "finished" and has_weights(root, s.init_from))]
            for c in todo]
        waiting += sum(len(c) for c in todo) - sum(len(c) for c in ready)
        todo = [c for c in ready if c]
        if executor is not None:  # it claims, trains and records the cohorts itself
            if max_cohort:
                todo = [c[i: i + max_cohort] for c in todo for i in range(0, len(c), max_cohort)]
            n = executor.train(store, todo, device, compile=compile, hooks=hooks,
                               on_done=lambda n, base=done: _advance(bar, base + n),
                               keep_optimizer=keep_optimizer)
            trained += n
            elsewhere += sum(len(c) for c in todo) - n
            done += n
            _advance(bar, done)
            continue
        for i, planned in enumerate(todo, 1):
            desc = f"[{i}/{len(todo)}] {planned[0].task} ×{len(planned)}"
            bar.set_description_str(f"runs, cohort {desc}")
            known = [s for s in level if s.cohort_key() == planned[0].cohort_key()]
            got = _train_queue(store, planned, known, device, bar, done, desc,
                               checkpoint_every, checkpoint_seconds, keep_optimizer,
                               slots=min(x for x in (slots, max_cohort, len(planned)) if x),
                               progress=progress, compile=compile, hooks=hooks, feed=feed)
            trained += got["trained"]
            stopped += got["stopped"]
            elsewhere += got["elsewhere"]
            done += got["trained"]
            _advance(bar, done)
    bar.close()
    if executor is None:
        sweep_leftovers(store)
    if waiting:
        print(f"groklab: {waiting} run(s) wait for a parent run (init_from) that is not "
              "finished in this store with its weights saved; run again once it is",
              file=sys.stderr)
    return {"total": total, "trained": trained, "skipped": total - n_todo, "waiting": waiting,
            "elsewhere": elsewhere, "stopped": stopped}


class Feed(Protocol):
    """More runs on demand (a search that asks as slots free): ``ask(n, key)`` gives up to
    about ``n`` new runs of cohort key ``key`` (it may keep runs of other keys for a later
    call of ``run_specs``); ``more()`` says whether it may give any; ``ended(run_id)`` is
    told each run's end once the store holds it."""

    def ask(self, n: int, key: tuple) -> list[RunSpec]: ...

    def more(self) -> bool: ...

    def ended(self, run_id: str) -> None: ...


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
        self.started: dict[str, float] = {}
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
            self.started[s.run_id] = time.perf_counter()
            out.append(s)
        return out


def _train_queue(store: Store, todo: list[RunSpec], known: list[RunSpec], device: str,
                 bar: Any, base: float, desc: str, every: int | None, seconds: float | None,
                 keep: set[str], *, slots: int, progress: bool, compile: bool,
                 hooks: Sequence[Hook], feed: Feed | None = None) -> dict[str, int]:
    """Train the runs ``todo`` (one cohort key; ``known``: every run of that key this call
    names, finished or not) in ``slots`` slots into ``store``. Each run is claimed as it
    takes a slot and finished the moment it ends: its weights, then its remaining rows,
    final metrics and status in one transaction, with its own wall time
    (engine/finish.py). The cohort checkpoints (engine/checkpoint.py) and resumes from its
    checkpoint; at Ctrl-C its claimed runs are released as 'interrupted'."""
    by_id = {s.run_id: s for s in known}
    queue = StoreQueue(store, todo, device, feed)
    # this process's checkpoint of the cohort; a resume may start from a gone one's
    checkpointer = Checkpointer(cohort_checkpoint_path(store.root, todo[0], store.owner),
                                every, seconds)
    checkpointing = every is not None or seconds is not None
    resume, adopted = (_adopt(store, todo[0], by_id, device, queue, every, seconds)
                       if checkpointing else (None, None))
    if resume is not None:
        rows = list(resume["run_ids"])
        st = resume["state"]
        at = sorted({int(st["t"]) + int(o) for o in st["offset"]})
        where = f"step {at[0]}" if len(at) == 1 else f"steps {at[0]}–{at[-1]}"
        print(f"groklab: resuming {len(rows)} run(s) from {where} ({adopted.path})",
              file=sys.stderr)
    finisher = Finisher(store, known, device)
    pending: dict[str, list[EvalRow]] = {}
    progress_of: dict[str, float] = {}
    ended = {"trained": 0, "stopped": 0}
    flushed = [time.monotonic(), 0]
    if resume is not None:  # the rows of the curves so far that the store does not hold
        for rid, curve in zip(resume["run_ids"], decode_curves(resume["curves"]),
                              strict=True):
            if rid not in queue.replay:
                pending[rid] = list(curve)

    def on_eval(rows: list[tuple[RunSpec, EvalRow]]) -> None:
        for spec, row in rows:
            if spec.run_id not in queue.replay:
                pending.setdefault(spec.run_id, []).append(row)
            progress_of[spec.run_id] = row.step / spec.steps
        _advance(bar, base + sum(progress_of.values()))
        flushed[1] += 1
        if flushed[1] % FLUSH_EVERY == 0 or time.monotonic() - flushed[0] > FLUSH_SECONDS:
            flushed[0] = time.monotonic()
            store.append({rid: rows for rid, rows in pending.items()})
            for v in pending.values():
                v.clear()

    def on_run_done(spec: RunSpec, end: RunEnd, curve: list[EvalRow]) -> None:
        rid = spec.run_id
        progress_of[rid] = 1.0
        if rid in queue.replay:
            return
        wall = time.perf_counter() - queue.started.get(rid, time.perf_counter())
        finisher.end_run(spec, end, pending.pop(rid, []), curve, wall)
        ended["trained"] += 1
        ended["stopped"] += end.stopped
        if feed is not None:
            feed.ended(rid)

    parents = lambda specs: load_parents(store.root, specs)  # noqa: E731
    try:
        train_slots(queue, slots, device, on_eval=on_eval, on_run_done=on_run_done,
                    parents_for=parents, keep_optimizer=sorted(keep), progress=progress,
                    desc=desc, compile=compile, hooks=hooks,
                    checkpoint=checkpointer if checkpointing else None, resume=resume,
                    known=by_id, total_runs=len(todo))
    except KeyboardInterrupt:
        bar.close()
        left = [rid for rid in queue.claimed if store.status(rid) == "running"]
        store.release(left)
        kept = ("the cohort's last checkpoint is kept in " + str(checkpointer.path.parent)
                if checkpointing and (checkpointer.path.exists() or adopted is not None)
                else "no checkpoint was written: they restart from step 0")
        print(f"groklab: interrupted: {len(left)} run(s) in training are recorded as "
              f"'interrupted' ({kept}); {ended['trained']} run(s) of this cohort finished "
              "before it. Run the same command again to resume.", file=sys.stderr)
        raise
    if finisher.stopped:
        print(f"groklab: {len(finisher.stopped)} run(s) stopped early by a hook outside their "
              "settings: recorded as 'stopped', not finished (set stop_val_acc / "
              "stop_patience to make early stop part of a run)", file=sys.stderr)
    if checkpointing:
        checkpointer.drop()
        if adopted is not None:
            adopted.drop()
    return ended | {"elsewhere": queue.elsewhere}


def sweep_leftovers(store: Store, min_age_s: float = 5.0) -> list[Path]:
    """Remove what killed processes left next to ``store`` and nothing will read: checkpoints
    all of whose runs are finished (a kill between a cohort's last run and the checkpoint's
    removal), and temporary files of checkpoint and weights writes whose process is gone
    (older than ``min_age_s``). Returns the paths removed."""
    removed: list[Path] = []
    now = time.time()
    host = socket.gethostname()
    for folder in (store.root / CHECKPOINT_DIR, store.root / "weights"):
        for tmp in folder.glob(".*.tmp") if folder.is_dir() else []:
            pid = tmp.name.rsplit(".", 2)[-2]
            if pid.isdigit() and now - tmp.stat().st_mtime > min_age_s \
                    and not process_alive(f"{host}:{pid}:gone"):
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    folder = store.root / CHECKPOINT_DIR
    for path in sorted(folder.glob("*.ckpt")) if folder.is_dir() else []:
        if path.name.endswith(".prev.ckpt") or not path.exists():
            continue
        try:
            saved = read_checkpoint(path)
        except (ValueError, OSError, RuntimeError, KeyError, EOFError):
            continue  # not ours to judge: Checkpointer.load reports it when it is read
        ids = [*saved.get("run_ids", []), *saved.get("queue", [])]
        if ids and all(store.status(rid) == "finished" for rid in ids):
            cp = Checkpointer(path)
            removed += [p for p in (cp.path, cp.previous) if p.exists()]
            cp.drop()
    return removed


def _adopt(store: Store, spec: RunSpec, by_id: dict[str, RunSpec], device: str,
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
        now = time.perf_counter()
        queue.started |= {rid: now for rid in rows}
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


def _overall_bar(n_runs: int, *, enabled: bool) -> Any:
    """A bar counting runs (advanced fractionally at every evaluation, so the ETA moves)."""
    return progress_bar(total=n_runs, desc="runs", unit="run", disable=not enabled, position=0,
                        dynamic_ncols=True,
                        bar_format="{desc}: {n:.1f}/{total} |{bar}| {elapsed}<{remaining}")


def _advance(bar: Any, runs_done: float) -> None:
    """Set the overall bar to ``runs_done`` (redrawn at tqdm's own pace)."""
    if not bar.disable:
        bar.n = min(runs_done, bar.total)
        bar.update(0)
