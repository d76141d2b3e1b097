"""Ray executor: each cohort key's slot life is one Ray task, placed on any node of a Ray
cluster, whose events stream back to the driver (docs/design.md, decision 15).

``RayExecutor(address, gpus_per_cohort, cpus_per_cohort)`` connects to the cluster at
``address`` (``"auto"``, ``"ray://head:10001"``, ...) or starts a local Ray instance when none
is given (or reuses the one this process already started). For each generation the driver
(the process that runs ``groklab study``, ``run`` or ``tune``) gives every cohort key the life
the in-process executor gives it (engine/executor.py), through the same ``Recorder``
(engine/recorder.py):

1. it claims the key's runs in its store (adopting a gone process's checkpoint of the key,
   as a resume does) and loads the weights of their parents;
2. it submits one Ray generator task per key asking for ``cpus_per_cohort`` CPUs and
   ``gpus_per_cohort`` GPUs (its runs train on CUDA when that is > 0, else on the CPU, with
   that many torch threads); the task trains the key's runs in their slots
   (``slot_life``) and streams its events: evaluations (batched, at most every
   ``LIVE_SECONDS``), each run's end with its final weights, checkpoints;
3. the driver records each event as it arrives: live rows, a run finished the moment it ends
   (while its mates train on), checkpoints written next to the store. Only the driver writes
   the store, so the store stays on the driver's disk.

A task lost mid-way (its worker killed, its node gone) is started again by the driver, up to
``max_retries`` times, from the key's last checkpoint (runs that ended since then train again
in their rows without being recorded twice); the runs stay claimed by the driver, whose
heartbeat it refreshes while it waits. A key that still fails has its runs released and the
error raised after the other keys are recorded. At Ctrl-C the driver cancels the tasks and
releases their runs as 'interrupted', keeping the checkpoints: the next invocation resumes
them, with either executor. Every node needs the same groklab installed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Generator, Sequence
from typing import Any

import torch

from groklab.engine.checkpoint import CheckpointPolicy
from groklab.engine.executor import KeyWork, Options, add_counts, compiles
from groklab.engine.hooks import Hook
from groklab.engine.parents import load_parents
from groklab.engine.recorder import Recorder, Tally
from groklab.engine.slots import Ended, Evaluated, Event, ListQueue, slot_life
from groklab.engine.state import RunEnd
from groklab.integrations import require
from groklab.spec import RunSpec
from groklab.store import Store

HEARTBEAT_S = 60.0  # refresh the claimed runs' heartbeat this often while tasks run
LIVE_SECONDS = 2.0  # a task sends its evaluations at most this often (and before any end)

Tensors = dict[str, torch.Tensor]


def key_life(specs: list[RunSpec], slots: int, device: str, threads: int,
             parents: dict[str, Tensors], parent_optimizers: dict[str, Tensors],
             compile: bool, hooks: Sequence[Hook], keep_optimizer: list[str],
             every: int | None, seconds: float | None, resume: dict | None
             ) -> Generator[Event, None, None]:
    """What a Ray task runs: the slot life of ``specs`` (one cohort key, in this order),
    from ``resume`` when given, its events yielded to the driver with tensors on the CPU."""
    if device == "cpu":
        torch.set_num_threads(threads)
    policy = CheckpointPolicy(every, seconds) if every or seconds else None
    events = slot_life(ListQueue(specs), slots, device,
                       parents_for=lambda fresh: (parents, parent_optimizers),
                       keep_optimizer=keep_optimizer, progress=False, compile=compile,
                       hooks=hooks, checkpoint=policy, resume=resume,
                       known={s.run_id: s for s in specs}, total_runs=len(specs))
    batch: list = []
    sent = time.monotonic()
    for event in events:
        if isinstance(event, Evaluated):
            batch += event.rows
            if time.monotonic() - sent < LIVE_SECONDS:
                continue
        if batch:
            yield Evaluated(batch)
            batch, sent = [], time.monotonic()
        if isinstance(event, Ended):
            yield Ended(event.spec, _cpu_end(event.end), event.curve, event.wall_s)
        elif not isinstance(event, Evaluated):
            yield event
    if batch:
        yield Evaluated(batch)


def _cpu_end(end: RunEnd) -> RunEnd:
    def cpu(t: Tensors | None) -> Tensors | None:
        return None if t is None else {k: v.detach().cpu().clone() for k, v in t.items()}

    return RunEnd(cpu(end.params), cpu(end.optimizer), end.stopped)


class RayExecutor:
    """Train each cohort key's runs as a Ray task (see the module docstring)."""

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
            self._task = ray.remote(key_life)
        return self._task

    @property
    def device(self) -> str:
        return "cuda" if self.gpus > 0 else "cpu"

    def train(self, store: Store, work: list[KeyWork], device: str, options: Options,
              tally: Tally) -> dict[str, int]:
        """Claim, submit and record ``work``; returns the counts of what it trained."""
        ray, task = self.ray, self._connect()
        device = self.device
        lives: dict[Any, tuple[Recorder, KeyWork, list[RunSpec], int]] = {}
        recorders: list[Recorder] = []

        def submit(rec: Recorder, w: KeyWork, specs: list[RunSpec], attempt: int,
                   resume: dict | None) -> None:
            parents, optimizers = load_parents(store.root, specs)
            gen = task.options(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0).remote(
                specs, min(w.slots, len(specs)), device, max(1, int(self.cpus)), parents,
                optimizers, compiled[id(w)], list(options.hooks),
                sorted(options.keep_optimizer), options.every, options.seconds, resume)
            lives[gen] = (rec, w, specs, attempt)

        compiled = {id(w): compiles(w, options.compile, device) for w in work}
        for w in work:
            rec = Recorder(store, w.todo, w.known, device, tally, every=options.every,
                           seconds=options.seconds)
            recorders.append(rec)
            specs = rec.queue.take(len(rec.queue.specs))  # claimed now, trained in order
            if specs:
                submit(rec, w, specs, 0, rec.resume)
        errors: list[str] = []
        beat = time.monotonic()
        try:
            while lives:
                ready, _ = ray.wait(list(lives), num_returns=1, timeout=HEARTBEAT_S)
                if time.monotonic() - beat >= HEARTBEAT_S:  # keep our claims fresh
                    for rec, *_ in lives.values():
                        rec.flush()
                    beat = time.monotonic()
                for gen in ready:
                    rec, w, specs, attempt = lives[gen]
                    try:
                        event = ray.get(next(gen))
                    except StopIteration:
                        del lives[gen]
                        rec.close()
                        continue
                    except Exception as e:  # noqa: BLE001 - a lost task: again, or report
                        del lives[gen]
                        lost = not isinstance(e, ray.exceptions.RayTaskError)  # not a bug
                        if lost and attempt < self.max_retries:
                            submit(rec, w, specs, attempt + 1, rec.restart())
                            continue
                        store.release([s.run_id for s in specs])
                        errors.append(f"{w.todo[0].task} ×{len(specs)}: {type(e).__name__}: "
                                      f"{str(e).splitlines()[0] if str(e) else ''}")
                        continue
                    rec.handle(event)
        except KeyboardInterrupt:
            for gen in lives:
                try:
                    ray.cancel(gen, force=True)
                except Exception:  # noqa: BLE001, S110 - already gone: nothing to stop
                    pass
            tally.bar.close()
            for rec, *_ in lives.values():
                print(rec.interrupted(), file=sys.stderr)
            raise
        if errors:
            raise RuntimeError(f"{len(errors)} cohort(s) failed on Ray (a lost task is tried "
                               f"again up to {self.max_retries} times): " + "; ".join(errors))
        counts = {"trained": 0, "stopped": 0, "elsewhere": 0}
        for rec in recorders:
            counts = add_counts(counts, rec.counts())
        return counts
