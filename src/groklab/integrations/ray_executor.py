"""Ray executor: every cohort is one Ray task, placed on any node of a Ray cluster.

``RayExecutor(address, gpus_per_cohort, cpus_per_cohort)`` connects to the cluster at
``address`` (``"auto"``, ``"ray://head:10001"``, ...) or starts a local Ray instance when none
is given (or reuses the one this process already started). For each generation of cohorts the
driver (the process that runs ``groklab study``, ``run`` or ``tune``):

1. claims the cohort's runs in its store and loads the weights of their parents;
2. submits one task per cohort asking for ``cpus_per_cohort`` CPUs and ``gpus_per_cohort``
   GPUs (its runs train on CUDA when that is > 0, else on the CPU, with that many torch
   threads); the task trains the cohort with ``train_cohort`` and returns its curves and
   final weights, writing nothing;
3. records each cohort as its task returns: weights, then curves and final metrics in one
   transaction. Only the driver writes the store, so the store stays on the driver's disk.

A worker that dies (killed, node lost) makes Ray run its task again from step 0, up to
``max_retries`` times; the runs stay claimed by the driver (whose heartbeat it refreshes while
it waits), so nothing is trained twice into the store and nothing finished is lost. A cohort
that still fails has its runs released and the error raised after the other cohorts are
recorded. Tasks do not checkpoint mid-run. Every node needs the same groklab installed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence, Set
from typing import Any

import torch

from groklab.engine.checkpoint import decode_curves, encode_curves
from groklab.engine.cohort import train_cohort
from groklab.engine.finish import Finisher
from groklab.engine.hooks import Hook
from groklab.engine.parents import load_parents
from groklab.engine.state import RunEnd
from groklab.integrations import require
from groklab.spec import RunSpec
from groklab.store import Store

HEARTBEAT_S = 60.0  # refresh the claimed runs' heartbeat this often while tasks run


def train_task(specs: list[RunSpec], device: str, threads: int,
               parents: dict[str, dict[str, torch.Tensor]], compile: bool,
               hooks: Sequence[Hook], parent_optimizers: dict[str, dict[str, torch.Tensor]],
               keep_optimizer: list[int]) -> dict[str, Any]:
    """What a Ray task runs: train one cohort, return its curves and every run's end (final
    weights, the final optimiser state of the runs at ``keep_optimizer``), on the CPU."""
    if device == "cpu":
        torch.set_num_threads(threads)
    ends: dict[int, RunEnd] = {}

    def keep(pos: int, end: RunEnd) -> None:
        cpu = lambda t: None if t is None else {  # noqa: E731
            k: v.detach().cpu().clone() for k, v in t.items()}
        ends[pos] = RunEnd(cpu(end.params), cpu(end.optimizer), end.stopped)

    t0 = time.perf_counter()
    curves = train_cohort(specs, device, progress=False, compile=compile, hooks=hooks,
                          parents=parents, on_run_done=keep,
                          parent_optimizers=parent_optimizers, keep_optimizer=keep_optimizer)
    return {"curves": encode_curves(curves), "ends": [ends[i] for i in range(len(specs))],
            "wall_s": time.perf_counter() - t0}


class RayExecutor:
    """Train cohorts as Ray tasks (see the module docstring)."""

    def __init__(self, address: str | None = None, *, gpus_per_cohort: float = 0.0,
                 cpus_per_cohort: float = 1.0, max_retries: int = 3):
        self.ray = require("ray", "ray", "--executor ray")
        self.address = address
        self.gpus, self.cpus, self.max_retries = gpus_per_cohort, cpus_per_cohort, max_retries
        self._task: Any = None

    def _connect(self) -> Any:
        ray = self.ray
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        if self._task is None:
            self._task = ray.remote(train_task)
        return self._task

    @property
    def device(self) -> str:
        return "cuda" if self.gpus > 0 else "cpu"

    def train(self, store: Store, cohorts: list[list[RunSpec]], device: str, *,
              compile: bool, hooks: Sequence[Hook], on_done: Callable[[int], None],
              keep_optimizer: Set[str] = frozenset()) -> int:
        """Claim, submit and record ``cohorts``; returns the runs trained."""
        ray, task = self.ray, self._connect()
        device = self.device
        running: dict[Any, list[RunSpec]] = {}
        for cohort in cohorts:
            claimed = store.begin(cohort, device)
            if not claimed:
                continue
            parents, optimizers = load_parents(store.root, claimed)
            keep = [i for i, s in enumerate(claimed) if s.run_id in keep_optimizer]
            ref = task.options(num_cpus=self.cpus, num_gpus=self.gpus,
                               max_retries=self.max_retries, retry_exceptions=False).remote(
                list(claimed), device, max(1, int(self.cpus)), parents, compile, list(hooks),
                optimizers, keep)
            running[ref] = list(claimed)
        trained, errors = 0, []
        beat = time.monotonic()
        while running:
            ready, _ = ray.wait(list(running), num_returns=1, timeout=HEARTBEAT_S)
            if time.monotonic() - beat >= HEARTBEAT_S:  # keep our claims fresh
                store.append({s.run_id: [] for c in running.values() for s in c})
                beat = time.monotonic()
            for ref in ready:
                cohort = running.pop(ref)
                try:
                    out = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - retries are spent: report, go on
                    store.release([s.run_id for s in cohort])
                    errors.append(f"{cohort[0].task} ×{len(cohort)}: {type(e).__name__}: "
                                  f"{str(e).splitlines()[0] if str(e) else ''}")
                    continue
                finisher = Finisher(store, cohort, "cpu")
                for pos, end in enumerate(out["ends"]):
                    finisher.run_done(pos, end)
                curves = {s.run_id: c for s, c in
                          zip(cohort, decode_curves(out["curves"]), strict=True)}
                finisher.finish(curves, curves, out["wall_s"])
                trained += len(cohort)
                on_done(trained)
        if errors:
            raise RuntimeError(f"{len(errors)} cohort(s) failed on Ray after "
                               f"{self.max_retries} retries: " + "; ".join(errors))
        return trained
