"""Executors: where the runs of a generation train in their slots (docs/design.md, decisions 11
and 15).

The runner (engine/runner.py) plans a generation's runs by cohort key (``KeyWork``) and gives
them to an executor. Every executor gives each key the same life: a slot life over a queue
(engine/slots.py), its events recorded by one ``Recorder`` (engine/recorder.py) in the
process that holds the store: each run claimed as it takes a slot, finished the moment it
ends, checkpoints written and adopted, Ctrl-C releasing the runs as 'interrupted' with the
checkpoint kept for the next invocation. Executors differ only in where the life runs:

- ``InProcess`` (the default): here, one key after another;
- ``RayExecutor`` (groklab/integrations/ray_executor.py): each key's life is a Ray task
  whose events stream back to this process, all keys at once, a lost task resumed from its
  last checkpoint.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from groklab.engine.hooks import Hook
from groklab.engine.limits import step_flops
from groklab.engine.parents import load_parents
from groklab.engine.recorder import Feed, Recorder, Tally
from groklab.engine.slots import slot_life
from groklab.progress import say
from groklab.spec import RunSpec
from groklab.store import Store


@dataclass
class KeyWork:
    """The runs of one cohort key to train: ``todo`` (not finished, parents ready), in
    ``slots`` slots; ``known``: every run of the key the call names (a checkpoint may hold
    runs that finished since)."""

    todo: list[RunSpec]
    known: list[RunSpec]
    slots: int
    desc: str = ""


# On a CPU, a cohort whose runs each hold at least this much model work (FLOPs per step
# times steps) is compiled unless told otherwise. On the 2-core AVX2 CPU of the README's
# Speed section a cold compile took about 70 s (9 s from Inductor's on-disk cache) and
# saved 18 ms of a 79 ms step of the paper's Transformer at batch 512 (4.4 GFLOP a step):
# 3e13 FLOPs is about 6,800 such steps, where the first compile has repaid itself. Work,
# not steps: a small model's run of a million steps holds less work than the compile
# costs. Not measured on a GPU yet, so not chosen there (pass --compile).
COMPILE_MIN_FLOPS = 3e13


@dataclass
class Options:
    """How to train: compiled or not (None: by the runs' work, ``compiles``), external
    hooks, which runs' final optimiser state to keep (their children carry it), the
    checkpoint policy (both None: none), per-cohort progress bars, and a ``feed`` that
    gives more runs as slots free (in process only)."""

    compile: bool | None = False
    hooks: Sequence[Hook] = ()
    keep_optimizer: set[str] = field(default_factory=set)
    every: int | None = None
    seconds: float | None = None
    progress: bool = True
    feed: Feed | None = None


class Executor(Protocol):
    """Trains ``work`` into ``store`` (claiming, recording and finishing every run through
    a ``Recorder``); returns the counts ``trained``, ``stopped`` and ``elsewhere``."""

    def train(self, store: Store, work: list[KeyWork], device: str, options: Options,
              tally: Tally) -> dict[str, int]: ...


def run_flops(spec: RunSpec) -> float:
    """A run's model work: FLOPs per step (evaluation amortised) times its steps."""
    return step_flops(spec) * spec.steps


def compiles(work: KeyWork, choice: bool | None, device: str) -> bool:
    """Whether the cohort of ``work`` runs compiled (``torch.compile`` of the model and the
    optimiser's element-wise chain): as the caller chose, or with ``choice`` None on a CPU
    when each run holds enough work to repay the compile (``COMPILE_MIN_FLOPS``; every run
    of a key has the same shape and steps), which it then says on stderr. Compiling
    changes results by float rounding only and is not part of any run's identity."""
    if choice is not None:
        return choice
    if torch.device(device).type != "cpu":
        return False
    work_flops = run_flops(work.todo[0])
    if work_flops < COMPILE_MIN_FLOPS:
        return False
    say(f"groklab: compiling cohort {work.desc} ({work_flops:.2g} FLOPs per run; compiled "
        f"by default on a CPU from {COMPILE_MIN_FLOPS:.0e}: --no-compile to skip)")
    return True


def add_counts(total: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    return {k: total.get(k, 0) + more.get(k, 0) for k in {*total, *more}}


class InProcess:
    """Trains each key's slot life in this process, one key after another."""

    def train(self, store: Store, work: list[KeyWork], device: str, options: Options,
              tally: Tally) -> dict[str, int]:
        counts = {"trained": 0, "stopped": 0, "elsewhere": 0}
        for w in work:
            tally.bar.set_description_str(f"runs, cohort {w.desc}")
            compile = compiles(w, options.compile, device)
            rec = Recorder(store, w.todo, w.known, device, tally, every=options.every,
                           seconds=options.seconds, feed=options.feed)
            events = slot_life(
                rec.queue, w.slots, device,
                parents_for=lambda specs: load_parents(store.root, specs),
                keep_optimizer=sorted(options.keep_optimizer), progress=options.progress,
                desc=w.desc, compile=compile, hooks=options.hooks,
                checkpoint=rec.checkpointer if rec.checkpointing else None,
                interruptible=rec.checkpointing, resume=rec.resume, known=rec.by_id,
                total_runs=len(w.todo))
            try:
                for event in events:
                    rec.handle(event)
            except KeyboardInterrupt:
                tally.bar.close()
                print(rec.interrupted(), file=sys.stderr)
                raise
            finally:
                events.close()
            rec.close()
            counts = add_counts(counts, rec.counts())
        return counts
