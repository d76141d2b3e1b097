"""Limits before allocation: what a cohort of runs will need in memory, what the machine
has, how many runs fit in one cohort, and roughly how long a budget takes.

The command asks these before it opens a store or allocates anything (``groklab run``,
``groklab study``): a run that cannot fit alone is refused, runs that do not fit together
are split into cohorts that do (``run_specs(max_cohort=...)``), and a budget of more than a
week is refused without ``--yes``.

The memory estimate is deliberately generous (an upper bound, not a prediction), from the
shapes alone (nothing is allocated): for R runs of N parameters each,

- parameters, gradients, the optimiser's moments (Adam 2, Muon 2, SGD with momentum 1),
  the filter's state (Grokfast EMA 1, MA its window) and the chain's temporaries (3), each
  ``[R, N]`` float32;
- a training batch's activations: per example, every matrix's inputs and outputs at every
  position (``T · Σ (rows + cols)``), attention scores (``heads · layers · T²``) and the
  logits, four float32 copies each (saved for backward, their gradients, element-wise
  temporaries), plus the batch's token ids;
- the validation split gathered once per run (token ids, targets, mask), the task table,
  and one evaluation slice's forward activations (``engine.state``'s slice budget: about
  1,024 sequences over the whole cohort on a CPU, 2^18 on an accelerator).

Measured on 2 CPU cores (growth of peak resident memory over training a cohort for 20
steps, against the estimate): the reference Transformer (p 97, batch 512) 112 MiB alone
(estimate 286 MiB) and 499 MiB for 8 runs (1.3 GiB); the MLP, 8 runs, 264 MiB (884 MiB);
the LSTM (p 23, batch 128), 4 runs, 716 MiB (1,016 MiB); Grokfast MA with a window of 50
(p 23), 8 runs, 1.1 GiB (1.9 GiB); a width-16 Transformer at p 5, 64 runs, 465 MiB
(1.1 GiB). tests/test_limits.py keeps one such comparison.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from groklab.engine.state import CPU_EVAL_SEQUENCES, GPU_EVAL_SEQUENCES
from groklab.models import build_model, model_settings
from groklab.spec import RunSpec
from groklab.tasks import build_task

FLOAT = 4  # bytes: parameters, optimiser state and activations are float32 (bf16: autocast)
INDEX = 8  # bytes: token ids and split rows are int64
SAFETY = 0.8  # the share of the available memory a command plans to use
MAX_RUNS = 10_000  # runs one command expands without --yes
MAX_SECONDS = 7 * 24 * 3600.0  # a budget estimated longer than this needs --yes

GiB = float(1 << 30)


@dataclass(frozen=True)
class Shape:
    """What the estimate needs of a run's task and model (one per cohort key)."""

    n_params: int  # parameters of one run
    matrix_sides: int  # Σ over weight matrices of (rows + cols)
    seq_len: int  # tokens per example
    n_classes: int
    heads: int  # attention heads (0: no attention)
    layers: int
    table: int  # examples in the task table
    seeded: bool  # every run has a table of its own (engine/tables.py)
    sequence: bool  # targets at every position (language model)


@dataclass(frozen=True)
class Need:
    """One cohort's estimated memory, by part, in bytes (``parts``) and in total."""

    parts: Mapping[str, int]

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def largest(self) -> str:
        """The part that needs the most memory."""
        return max(self.parts, key=lambda k: self.parts[k])


def shape(spec: RunSpec) -> Shape:
    """The shape facts of ``spec``'s task and model (kept per task and model settings)."""
    reads = sorted(model_settings(spec.model))
    key = (spec.task, tuple(sorted(spec.task_args().items())), spec.model,
           tuple((k, getattr(spec, k, None)) for k in reads))
    if key not in _SHAPES:
        task = build_task(spec.task, **spec.task_args())
        infos = build_model(spec, task).param_info()
        heads = spec.n_heads if "n_heads" in reads else 0
        _SHAPES[key] = Shape(
            n_params=sum(math.prod(i.shape) for i in infos.values()),
            matrix_sides=sum(sum(i.shape) for i in infos.values() if i.kind == "matrix"),
            seq_len=task.seq_len, n_classes=task.n_classes, heads=heads,
            layers=spec.n_layers, table=len(task), seeded=task.seeded, sequence=task.sequence)
    return _SHAPES[key]


_SHAPES: dict[tuple, Shape] = {}


def _states(spec: RunSpec) -> float:
    """``[R, N]`` float32 tensors a run keeps: parameters, gradient, optimiser moments,
    filter state and the chain's temporaries."""
    moments = {"adamw": 2, "adam": 2, "muon": 2, "sgd": 1 if spec.momentum else 0}
    window = {"none": 0, "ema": 1, "ma": spec.filter_window}[spec.grad_filter]
    return 2 + moments.get(spec.optimizer, 2) + window + 3


def _example(s: Shape) -> int:
    """Float32 values one example's forward pass produces (see the module docstring)."""
    outputs = s.n_classes * (s.seq_len if s.sequence else 1)
    return s.seq_len * s.matrix_sides + s.heads * s.layers * s.seq_len ** 2 + outputs


def _n_val(spec: RunSpec, s: Shape) -> int:
    if spec.eval_batches is not None:
        return 2 * spec.eval_batches * spec.batch_size
    return s.table - int(spec.train_fraction * s.table)


def estimate_cohort_bytes(specs: Sequence[RunSpec], device: str | torch.device) -> Need:
    """The memory one cohort of ``specs`` (runs of one cohort key) needs on ``device``, by
    part (an upper bound; see the module docstring)."""
    if not specs:
        return Need({})
    dev = torch.device(device)
    s = shape(specs[0])
    state = sum(FLOAT * s.n_params * _states(r) for r in specs)
    batch = sum(r.batch_size * (4 * FLOAT * _example(s) + 2 * INDEX * s.seq_len)
                for r in specs)
    split = sum(s.table * (s.seq_len + 2) * INDEX for _ in specs)
    table = s.table * (s.seq_len + 1) * INDEX * (len(specs) if s.seeded else 1)
    budget = CPU_EVAL_SEQUENCES if dev.type == "cpu" else GPU_EVAL_SEQUENCES
    sequences = min(budget, sum(_n_val(r, s) for r in specs))
    evaluation = 2 * FLOAT * _example(s) * sequences
    return Need({"parameters and optimiser state": state, "training batch": batch,
                 "validation split": split + table, "evaluation": evaluation})


def run_bytes(spec: RunSpec, device: str | torch.device) -> Need:
    """What one run alone needs (``estimate_cohort_bytes`` of a cohort of one)."""
    return estimate_cohort_bytes([spec], device)


def max_runs_per_cohort(specs: Sequence[RunSpec], device: str | torch.device,
                        available: int | None) -> int | None:
    """How many runs of the cohort ``specs`` fit together into ``SAFETY`` × ``available``
    bytes (None: all of them, or nothing known about the memory; 0: not even one). Each
    run is costed as the most expensive of ``specs``."""
    if available is None or not specs:
        return None
    room = SAFETY * available
    if estimate_cohort_bytes(specs, device).total <= room:
        return None
    heaviest = max(specs, key=lambda r: run_bytes(r, device).total)
    lo, hi = 0, len(specs)  # the largest k whose cohort of k heaviest runs fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if estimate_cohort_bytes([heaviest] * mid, device).total <= room:
            lo = mid
        else:
            hi = mid - 1
    return lo


def cohorts(specs: Sequence[RunSpec]) -> list[list[RunSpec]]:
    """``specs`` (each run once) grouped by cohort key, as the runner groups them."""
    groups: dict[str, list[RunSpec]] = {}
    for r in {r.run_id: r for r in specs}.values():
        groups.setdefault(r.cohort_key(), []).append(r)
    return list(groups.values())


def available_bytes(device: str | torch.device) -> int | None:
    """Memory this process may still allocate on ``device``, in bytes (None: unknown).

    CUDA: the device's free memory (``torch.cuda.mem_get_info``). Otherwise (CPU; MPS
    shares it) the least of: the system's ``MemAvailable`` (/proc/meminfo, else free
    pages), the room left under the cgroup's memory limit, and the room left under this
    process's address-space limit (``RLIMIT_AS``, as ``prlimit --as`` sets it)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(dev)[0])
        except (RuntimeError, AssertionError):
            return None
    found = [v for v in (_meminfo_available(), _cgroup_room(), _address_room())
             if v is not None]
    return min(found) if found else None


def _meminfo_available() -> int | None:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    match = re.search(r"^MemAvailable:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) * 1024 if match else None


def _cgroup_room() -> int | None:
    """The room under this process's cgroup memory limit (v2, else v1), if it has one."""
    for limit, usage in (("memory.max", "memory.current"),
                         ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:
            cap = Path("/sys/fs/cgroup", limit).read_text().strip()
            used = int(Path("/sys/fs/cgroup", usage).read_text().strip())
        except (OSError, ValueError):
            continue
        if cap.isdigit() and int(cap) < 1 << 60:
            return max(0, int(cap) - used)
    return None


def _address_room() -> int | None:
    """The room under ``RLIMIT_AS`` (None without a limit)."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY:
            return None
        text = Path("/proc/self/status").read_text()
    except (ImportError, OSError, ValueError):
        return None
    match = re.search(r"^VmSize:\s+(\d+) kB", text, re.M)
    return max(0, soft - int(match.group(1)) * 1024) if match else None


def matmul_rate(device: str | torch.device, size: int | None = None) -> float:
    """FLOP/s of a dense float32 matmul on ``device``, timed in a few milliseconds (a rough
    speed for ``estimate_seconds``; ``groklab bench`` measures the peak properly)."""
    dev = torch.device(device)
    n = size or (256 if dev.type == "cpu" else 4096)
    a = torch.randn(n, n, device=dev)
    out = torch.empty_like(a)
    best = math.inf
    for _ in range(4):
        _sync(dev)
        t0 = time.perf_counter()
        for _ in range(3):
            torch.mm(a, a, out=out)
        _sync(dev)
        best = min(best, (time.perf_counter() - t0) / 3)
    return 2 * n ** 3 / max(best, 1e-9)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def step_flops(spec: RunSpec) -> float:
    """Model FLOPs of one training step per run, evaluation over the val split amortised."""
    task = build_task(spec.task, **spec.task_args())
    model = build_model(spec, task)
    n_val = (2 * spec.eval_batches * spec.batch_size if spec.eval_batches is not None
             else len(task) - int(spec.train_fraction * len(task)))
    return model.train_step_flops(spec.batch_size) + model.forward_flops(n_val) / spec.eval_every


def estimate_seconds(step_flops: Sequence[float], steps: Sequence[int],
                     flops_per_s: float) -> float:
    """A lower bound on the time of runs with these FLOPs per step and step counts at
    ``flops_per_s`` (training never beats the device's matmul rate)."""
    return sum(f * n for f, n in zip(step_flops, steps, strict=True)) / flops_per_s


def size(n_bytes: float) -> str:
    """Bytes as text: ``37.2 GiB``, ``512 MiB``."""
    if n_bytes >= GiB:
        return f"{n_bytes / GiB:.1f} GiB"
    return f"{n_bytes / (1 << 20):.0f} MiB"


def duration(seconds: float) -> str:
    """Seconds as text in the largest fitting unit: ``3.2 days``, ``12 years``."""
    for unit, span in (("years", 365 * 86400.0), ("days", 86400.0), ("hours", 3600.0)):
        if seconds >= span:
            return f"{seconds / span:.1f} {unit}" if seconds < 10 * span else \
                f"{seconds / span:,.0f} {unit}"
    return f"{seconds / 60:.0f} minutes"
