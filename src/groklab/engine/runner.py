"""Run a list of specs into a store: skip finished runs, group the rest into cohorts, train."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from groklab.engine.cohort import train_cohort
from groklab.engine.records import EvalRow
from groklab.engine.state import Hook
from groklab.spec import RunSpec

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
) -> dict[str, int]:
    """Train every spec not already finished in ``out``'s store. Returns run counts.

    ``overall`` adds a bar over all runs (runs done, current cohort, ETA) above the
    per-cohort bar: what a study of many cohorts shows. ``compile`` and ``hooks``: see
    ``train_cohort``. Runs that another live process is training are left to it.
    """
    from groklab.store import Store  # the store reads EvalRow from the engine

    device = device or default_device()
    with Store(out) as store:
        cohorts = plan_cohorts(specs)
        todo = [[s for s in c if store.status(s.run_id) != "finished"] for c in cohorts]
        todo = [c for c in todo if c]
        if max_cohort:
            todo = [c[i : i + max_cohort] for c in todo for i in range(0, len(c), max_cohort)]
        total = sum(len(c) for c in cohorts)
        n_todo = sum(len(c) for c in todo)
        bar = _overall_bar(n_todo, enabled=progress and overall and n_todo > 0)
        done = 0
        for i, cohort in enumerate(todo, 1):
            claimed = store.begin(cohort, device)
            if claimed is not None:  # runs another live process trains are left to it
                cohort = list(claimed)
            if not cohort:
                continue
            ids = [s.run_id for s in cohort]
            pending: dict[str, list[EvalRow]] = {rid: [] for rid in ids}
            evals = 0
            flushed = time.monotonic()

            def on_eval(step: int, rows: list[EvalRow | None], ids=ids, pending=pending,
                        base=done, steps=cohort[0].steps) -> None:
                nonlocal evals, flushed
                for rid, row in zip(ids, rows, strict=True):
                    if row is not None:
                        pending[rid].append(row)
                evals += 1
                _advance(bar, base + len(ids) * step / steps)
                if evals % FLUSH_EVERY == 0 or time.monotonic() - flushed > FLUSH_SECONDS:
                    flushed = time.monotonic()
                    store.append(pending)
                    for v in pending.values():
                        v.clear()

            t0 = time.perf_counter()
            desc = f"[{i}/{len(todo)}] {cohort[0].task} ×{len(cohort)}"
            bar.set_description_str(f"runs, cohort {desc}")
            curves = train_cohort(cohort, device, on_eval=on_eval, progress=progress, desc=desc,
                                  compile=compile, hooks=hooks)
            store.finish(pending, dict(zip(ids, curves, strict=True)), time.perf_counter() - t0)
            done += len(cohort)
            _advance(bar, done)
        bar.close()
    return {"total": total, "trained": n_todo, "skipped": total - n_todo}


def _overall_bar(n_runs: int, *, enabled: bool) -> tqdm:
    """A bar counting runs (advanced fractionally at every evaluation, so the ETA moves)."""
    return tqdm(total=n_runs, desc="runs", unit="run", disable=not enabled, position=0,
                dynamic_ncols=True,
                bar_format="{desc}: {n:.1f}/{total} |{bar}| {elapsed}<{remaining}")


def _advance(bar: tqdm, runs_done: float) -> None:
    """Set the overall bar to ``runs_done`` (redrawn at tqdm's own pace)."""
    if not bar.disable:
        bar.n = min(runs_done, bar.total)
        bar.update(0)
