"""Run a list of specs into a store: skip finished runs, group the rest into cohorts, train."""

from __future__ import annotations

import socket
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from groklab.claims import process_alive
from groklab.engine.checkpoint import (
    CHECKPOINT_DIR,
    EVERY_SECONDS,
    EVERY_STEPS,
    Checkpointer,
    read_checkpoint,
)
from groklab.engine.executor import Executor, InProcess, KeyWork, Options, add_counts
from groklab.engine.hooks import Hook
from groklab.engine.preflight import preflight
from groklab.engine.recorder import Feed, Tally
from groklab.progress import bar as progress_bar
from groklab.spec import RunSpec
from groklab.store import Store
from groklab.store.weights import has_weights


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
    compile: bool | None = None,
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
    per-cohort bar: what a study of many cohorts shows. ``compile``: see ``train_cohort``;
    None compiles the cohorts whose runs are long enough to repay it (engine/executor.py,
    ``compiles``), saying so on stderr. ``hooks``: see ``train_cohort``; a run an external
    hook retires is recorded as ``halted_by_hook``, not finished (engine/hooks.py). Runs
    that another live process is training are left to it.

    Parents (``init_from``) train before their children, and a child starts only once its
    parent is finished in this store with its weights saved (else it is counted as
    ``waiting``: run again later). Every finished run's final weights are saved next to the
    store (store/weights.py) before it is marked finished (engine/finish.py). A cohort
    checkpoints every ``checkpoint_every`` steps or ``checkpoint_seconds`` seconds, whichever
    comes first (None: never), and at Ctrl-C; an interrupted cohort resumes from its
    checkpoint, which is removed once its runs are finished (engine/checkpoint.py).
    The runs of each cohort key train as a queue over ``slots`` slots (engine/slots.py;
    default: all of them at once, bounded by ``max_cohort``): a run is finished in the
    store the moment it ends and the next queued run takes its slot. ``executor``: where
    (engine/executor.py): None, in this process; e.g. ``RayExecutor``, Ray tasks.
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
    options = Options(compile=compile, hooks=hooks, progress=progress, feed=feed,
                      every=checkpoint_every or None, seconds=checkpoint_seconds or None,
                      # parents whose children carry their optimiser state: saved with them
                      keep_optimizer={s.init_from for s in specs
                                      if s.init_from and s.init_optimizer == "carried"})
    executor = executor if executor is not None else InProcess()
    levels = plan_levels(specs)
    total = sum(len(level) for level in levels)
    n_todo = sum(store.status(s.run_id) != "finished" for level in levels for s in level)
    tally = Tally(_overall_bar(n_todo, enabled=progress and overall and n_todo > 0))
    waiting = 0
    counts = {"trained": 0, "stopped": 0, "elsewhere": 0}
    for level in levels:
        todo = [[s for s in c if store.status(s.run_id) != "finished"]
                for c in plan_cohorts(level)]
        ready = [[s for s in c if s.init_from is None or (
            store.status(s.init_from) == "finished" and has_weights(root, s.init_from))]
            for c in todo]
        waiting += sum(len(c) for c in todo) - sum(len(c) for c in ready)
        todo = [c for c in ready if c]
        work = [KeyWork(c, [s for s in level if s.cohort_key() == c[0].cohort_key()],
                        slots=min(x for x in (slots, max_cohort, len(c)) if x),
                        desc=f"[{i}/{len(todo)}] {c[0].task} ×{len(c)}")
                for i, c in enumerate(todo, 1)]
        counts = add_counts(counts, executor.train(store, work, device, options, tally))
        tally.base, tally.fraction = counts["trained"], {}
    tally.bar.close()
    sweep_leftovers(store)
    if waiting:
        print(f"groklab: {waiting} run(s) wait for a parent run (init_from) that is not "
              "finished in this store with its weights saved; run again once it is",
              file=sys.stderr)
    return {"total": total, "trained": counts["trained"], "skipped": total - n_todo,
            "waiting": waiting, "elsewhere": counts["elsewhere"], "stopped": counts["stopped"]}


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


def _overall_bar(n_runs: int, *, enabled: bool) -> Any:
    """A bar counting runs (advanced fractionally at every evaluation, so the ETA moves)."""
    return progress_bar(total=n_runs, desc="runs", unit="run", disable=not enabled, position=0,
                        dynamic_ncols=True,
                        bar_format="{desc}: {n:.1f}/{total} |{bar}| {elapsed}<{remaining}")
