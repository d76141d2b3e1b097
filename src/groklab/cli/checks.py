"""What ``groklab run`` and ``groklab study`` check between expanding their runs and opening
the store, so that refused input writes nothing and nothing outgrows the machine:

- the number of runs (``refuse_many``): more than ``MAX_RUNS`` in one command needs ``--yes``;
- the engine's preflight (engine/preflight.py: output path, device, splits, parents);
- memory (engine/limits.py): a run that cannot fit alone is an error naming the flags that
  make it big; runs that do not fit together train in cohorts that do (the ``max_cohort``
  returned), said in one line;
- time: a budget estimated at more than a week needs ``--yes``;
- a training split smaller than the batch or than a handful of examples: a warning line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from groklab.cli.common import fail

if TYPE_CHECKING:
    from groklab.spec import RunSpec

HANDFUL = 8  # a training split of fewer examples than this is worth a warning

# the settings that make each part of a run's memory large, most telling first
DRIVERS: dict[str, tuple[str, ...]] = {
    "parameters and optimiser state": ("d_model", "n_layers", "d_ff", "d_hidden",
                                       "grad_filter", "filter_window"),
    "training batch": ("batch_size", "d_model", "d_ff", "d_hidden", "n_layers", "context"),
    "validation split": ("p", "k", "operands", "n_examples", "train_fraction"),
    "evaluation": ("p", "k", "operands", "n_examples", "train_fraction", "d_model"),
}


def refuse_many(n: int, yes: bool, what: str) -> None:
    """Fail when ``n`` runs (``what`` says where the number comes from) are more than one
    command expands without ``--yes``."""
    from groklab.engine.limits import MAX_RUNS

    if n > MAX_RUNS and not yes:
        fail(f"{what}: {n:,} runs, more than {MAX_RUNS:,} in one command; give --yes to "
             "expand and train them anyway")


def before_store(specs: Sequence[RunSpec], out: Path, device: str,
                 origin: Mapping[str, str], *, yes: bool, local: bool = True) -> int | None:
    """Every check of the module docstring, in order; returns the most runs one cohort may
    hold (None: no limit). ``local``: cohorts train in this process (else memory is another
    machine's and is not checked here)."""
    from groklab.engine.preflight import PreflightError, preflight

    max_cohort = _memory(specs, device, origin) if local else None
    try:
        preflight(specs, out, device)
    except PreflightError as e:
        fail(str(e))
    _time(specs, device, yes)
    _small_splits(specs)
    return max_cohort


def _memory(specs: Sequence[RunSpec], device: str, origin: Mapping[str, str]) -> int | None:
    """Fail when one run cannot fit alone; the cohort size that fits when all cannot."""
    from groklab.engine.limits import (
        SAFETY,
        available_bytes,
        cohorts,
        estimate_cohort_bytes,
        max_runs_per_cohort,
        run_bytes,
        size,
    )

    available = available_bytes(device)
    if available is None:
        return None
    groups = cohorts(specs)
    limit = None
    for cohort in groups:
        heaviest = max(cohort, key=lambda s: run_bytes(s, device).total)
        need = run_bytes(heaviest, device)
        if need.total > SAFETY * available:
            part = need.largest()
            fail(f"one run needs about {size(need.total)} of memory ({part} "
                 f"{size(need.parts[part])}: {_flags(heaviest, part, origin)}), more than "
                 f"the {size(available)} available on {device}; make those smaller")
        k = max_runs_per_cohort(cohort, device, available)
        if k is not None:
            limit = k if limit is None else min(limit, k)
    if limit is not None:
        total = sum(estimate_cohort_bytes(c, device).total for c in groups)
        n = sum(math.ceil(len(c) / limit) for c in groups)
        typer.echo(f"groklab: {sum(len(c) for c in groups)} runs need about {size(total)} "
                   f"together, more than the {size(available)} available on {device}: "
                   f"training them as {n} cohorts of at most {limit} runs", err=True)
    return limit


def _flags(spec: RunSpec, part: str, origin: Mapping[str, str]) -> str:
    """The flags (with the run's values) behind ``part`` of its memory: those given on the
    command line first, at most three."""
    ignored = spec.ignored()
    fields = [f for f in DRIVERS.get(part, ())
              if f not in ignored and getattr(spec, f) is not None]
    fields = sorted(fields, key=lambda f: f not in origin)[:3]
    return ", ".join(f"{origin.get(f, '--' + f.replace('_', '-'))} {getattr(spec, f)}"
                     for f in fields)


def _time(specs: Sequence[RunSpec], device: str, yes: bool) -> None:
    """Fail without ``yes`` when the runs would take more than a week even at the device's
    matmul rate (a lower bound on their time; measured only when it could matter)."""
    from groklab.engine.limits import (
        MAX_SECONDS,
        duration,
        estimate_seconds,
        matmul_rate,
        step_flops,
    )

    cache: dict[tuple, float] = {}

    def flops(s: RunSpec) -> float:
        key = (s.cohort_key(), s.train_fraction)
        if key not in cache:
            cache[key] = step_flops(s)
        return cache[key]

    per_step, steps = [flops(s) for s in specs], [s.steps for s in specs]
    fastest = 1e13 if device.startswith("cpu") else 2e15  # FLOP/s no such device beats
    if yes or estimate_seconds(per_step, steps, fastest) <= MAX_SECONDS:
        return
    rate = matmul_rate(device)
    seconds = estimate_seconds(per_step, steps, rate)
    if seconds > MAX_SECONDS:
        fail(f"these {len(specs)} run(s) would train for at least {duration(seconds)} "
             f"({sum(f * n for f, n in zip(per_step, steps, strict=True)):.3g} FLOPs at the "
             f"{rate / 1e9:.0f} GFLOP/s a matmul reaches on {device}); give --yes to start "
             "anyway, or fewer --steps or --seeds")


def _small_splits(specs: Sequence[RunSpec]) -> None:
    """One warning line when a run's training split holds fewer examples than its batch or
    than a handful: batches then repeat examples."""
    from groklab.tasks import build_task

    small: dict[tuple, str] = {}
    for s in specs:
        key = (s.task, tuple(sorted(s.task_args().items())), s.train_fraction, s.batch_size)
        if key in small:
            continue
        task = build_task(s.task, **s.task_args())
        n = len(task.split[0]) if task.split is not None else int(s.train_fraction * len(task))
        if n < HANDFUL or n < s.batch_size:
            args = ", ".join(f"{k} {v}" for k, v in s.task_args().items())
            why = f"only {n} example(s)" if n < HANDFUL else \
                f"{n} example(s), fewer than the batch size {s.batch_size}"
            small[key] = (f"the training split of task {s.task} ({args}, train_fraction "
                          f"{s.train_fraction:g}) holds {why}: every batch repeats examples")
        else:
            small[key] = ""
    found = [m for m in small.values() if m]
    if found:
        more = f" (and {len(found) - 1} more such configuration(s))" if len(found) > 1 else ""
        typer.echo(f"groklab: warning: {found[0]}{more}", err=True)
