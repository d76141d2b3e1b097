"""Run a study into a store: record what it is, then train its unfinished runs by cohort."""

from __future__ import annotations

import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from groklab.engine import default_device, run_specs
from groklab.store import Store
from groklab.studies.study import Study

SOFTWARE = ("groklab", "torch", "numpy", "pandas", "pydantic")


def environment(device: str) -> dict[str, Any]:
    """Where and with what a study ran: device, its name, software versions, platform."""
    import torch

    name = platform.processor() or platform.machine()
    if device.startswith("cuda") and torch.cuda.is_available():
        name = torch.cuda.get_device_name(torch.device(device))
    versions = {"python": sys.version.split()[0]}
    for pkg in SOFTWARE:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return {"device": device, "device_name": name, "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(), "versions": versions}


def run_study(study: Study, out: str | Path, *, device: str | None = None,
              progress: bool = True, compile: bool | None = None, executor: Any = None,
              store: Store | None = None, max_cohort: int | None = None,
              slots: int | None = None) -> dict[str, int]:
    """Train ``study``'s runs into ``out``, skipping finished ones; returns run counts.

    The study's definition and membership are recorded first, so an interrupted study can be
    reported (its finished runs) and resumed by running it again. ``executor``: where
    cohorts train (``run_specs``; None: in this process). ``store``: ``out``'s store, open
    (None: opened here, once, for the whole study). ``max_cohort``: at most this many runs
    train together (``run_specs``; the command computes it from engine/limits.py);
    ``slots``: at most this many runs of a cohort at once, the rest queued (engine/slots.py).
    """
    if store is None:
        with Store(out) as opened:
            return run_study(study, out, device=device, progress=progress, compile=compile,
                             executor=executor, store=opened, max_cohort=max_cohort,
                             slots=slots)
    runs = study.expand()
    device = device or default_device()
    kept = store.record_study(study.name, study.definition(), environment(device),
                              [(r.spec.run_id, r.label) for r in runs])
    if kept is not None:
        print(f"groklab: study {study.name!r} is defined differently than when its runs in "
              f"{store.root} were recorded; the runs of that version stay in the report as "
              f"study {kept!r}", file=sys.stderr)
    t0 = time.perf_counter()
    try:
        return run_specs([r.spec for r in runs], out, device=device, progress=progress,
                         overall=True, compile=compile, executor=executor, store=store,
                         max_cohort=max_cohort, slots=slots)
    finally:
        store.add_study_time(study.name, time.perf_counter() - t0)
