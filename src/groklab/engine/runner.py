"""Run a list of specs into a store: skip finished runs, group the rest into cohorts, train."""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from groklab.engine.checkpoint import (
    EVERY_SECONDS,
    EVERY_STEPS,
    Checkpointer,
    checkpoint_path,
    decode_curves,
)
from groklab.engine.cohort import train_cohort
from groklab.engine.executor import Executor
from groklab.engine.finish import Finisher
from groklab.engine.hooks import Hook
from groklab.engine.parents import load_parents
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
    tasks); None: one by one in this process. ``store``: the open store of ``out`` to use
    (default: open one for this call).
    """
    if store is None:
        with Store(out) as own:
            return run_specs(specs, out, device=device, max_cohort=max_cohort,
                             progress=progress, overall=overall, compile=compile, hooks=hooks,
                             checkpoint_every=checkpoint_every,
                             checkpoint_seconds=checkpoint_seconds, executor=executor,
                             store=own)
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
        if max_cohort:
            todo = [c[i : i + max_cohort] for c in todo for i in range(0, len(c), max_cohort)]
        if executor is not None:  # it claims, trains and records the cohorts itself
            n = executor.train(store, todo, device, compile=compile, hooks=hooks,
                               on_done=lambda n, base=done: _advance(bar, base + n),
                               keep_optimizer=keep_optimizer)
            trained += n
            elsewhere += sum(len(c) for c in todo) - n
            done += n
            _advance(bar, done)
            continue
        for i, planned in enumerate(todo, 1):
            cohort = store.begin(planned, device)  # runs another live process trains: its own
            elsewhere += len(planned) - len(cohort)
            if not cohort:
                continue
            desc = f"[{i}/{len(todo)}] {cohort[0].task} ×{len(cohort)}"
            bar.set_description_str(f"runs, cohort {desc}")
            checkpointer = Checkpointer(checkpoint_path(root, [s.run_id for s in cohort]),
                                        checkpoint_every, checkpoint_seconds)
            checkpointing = checkpoint_every is not None or checkpoint_seconds is not None
            try:
                stopped += _train_claimed(store, cohort, device, bar, done, desc,
                                          checkpointer if checkpointing else None,
                                          keep_optimizer, progress=progress, compile=compile,
                                          hooks=hooks)
            except KeyboardInterrupt:
                bar.close()
                _interrupted(store, cohort, checkpointer if checkpointing else None, trained)
                raise
            trained += len(cohort)
            done += len(cohort)
            _advance(bar, done)
    bar.close()
    if waiting:
        print(f"groklab: {waiting} run(s) wait for a parent run (init_from) that is not "
              "finished in this store with its weights saved; run again once it is",
              file=sys.stderr)
    return {"total": total, "trained": trained, "skipped": total - n_todo, "waiting": waiting,
            "elsewhere": elsewhere, "stopped": stopped}


def _interrupted(store: Store, cohort: list[RunSpec], checkpointer: Checkpointer | None,
                 trained: int) -> None:
    """Ctrl-C during ``cohort``: give its runs back as 'interrupted' and say what is kept
    and how to go on."""
    store.release([s.run_id for s in cohort])
    kept = ("the cohort's last checkpoint is kept in " + str(checkpointer.path.parent)
            if checkpointer is not None and checkpointer.path.exists()
            else "no checkpoint was written: they restart from step 0")
    before = f"; {trained} run(s) finished before it" if trained else ""
    print(f"groklab: interrupted: {len(cohort)} run(s) of the current cohort are recorded as "
          f"'interrupted' ({kept}){before}. Run the same command again to resume.",
          file=sys.stderr)


def _train_claimed(store: Store, cohort: list[RunSpec], device: str, bar: Any, base: float,
                   desc: str, checkpointer: Checkpointer | None, keep: set[str],
                   **train: Any) -> int:
    """Train one claimed cohort into ``store``: resume it from its checkpoint if it has a
    good one, flush live rows now and then, finish it (engine/finish.py: weights, and the
    final optimiser state of runs in ``keep``, parents whose children carry it; then the
    runs marked finished) and drop the checkpoint. Returns how many runs an external hook
    stopped early."""
    ids = [s.run_id for s in cohort]
    resume = checkpointer.load(ids) if checkpointer is not None else None
    if resume is not None:
        print(f"groklab: resuming {len(ids)} run(s) from step {resume['state']['t']} "
              f"({checkpointer.path})", file=sys.stderr)
    restored = decode_curves(resume["curves"]) if resume else [[] for _ in ids]
    pending: dict[str, list[EvalRow]] = dict(zip(ids, restored, strict=True))
    evals = 0
    flushed = time.monotonic()

    def on_eval(step: int, rows: list[EvalRow | None]) -> None:
        nonlocal evals, flushed
        for rid, row in zip(ids, rows, strict=True):
            if row is not None:
                pending[rid].append(row)
        evals += 1
        _advance(bar, base + len(ids) * step / cohort[0].steps)
        if evals % FLUSH_EVERY == 0 or time.monotonic() - flushed > FLUSH_SECONDS:
            flushed = time.monotonic()
            store.append(pending)
            for v in pending.values():
                v.clear()

    finisher = Finisher(store, cohort, device)
    parents, parent_optimizers = load_parents(store.root, cohort)
    t0 = time.perf_counter()
    curves = train_cohort(cohort, device, on_eval=on_eval, desc=desc, parents=parents,
                          checkpoint=checkpointer, resume=resume, on_run_done=finisher.run_done,
                          parent_optimizers=parent_optimizers,
                          keep_optimizer=[i for i, rid in enumerate(ids) if rid in keep],
                          **train)
    finisher.finish(pending, dict(zip(ids, curves, strict=True)), time.perf_counter() - t0)
    if finisher.stopped:
        print(f"groklab: {len(finisher.stopped)} run(s) stopped early by a hook outside their "
              "settings: recorded as 'stopped', not finished (set stop_val_acc / "
              "stop_patience to make early stop part of a run)", file=sys.stderr)
    if checkpointer is not None:
        checkpointer.drop()
    return len(finisher.stopped)


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
