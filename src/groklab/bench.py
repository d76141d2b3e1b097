"""Training speed against the device's own measured matmul peak (``groklab bench``).

For the reference configuration (x_div_y, p 97, batch 512, evaluation every 10 steps over the
whole validation split), any model (``--model transformer,mlp,lstm,gpt``; gpt: the character
LM at ``groklab lm``'s CPU size, one batch per split evaluated every 10 steps), training method
(``--method``: AdamW, Muon, ⊥Grad or StableMax, ``METHODS``) and batch size, and each
precision and cohort size: ms per training step with evaluation amortised, the
model FLOPs per step (each model's ``forward_flops``: matmuls counted from the shapes actually
computed), the achieved GFLOP/s, and the dense matmul throughput of the same device and
precision measured in the same process just before, so that the fraction of peak is a ratio
of two measurements taken side by side.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from groklab.engine.cohort import train_cohort
from groklab.engine.limits import step_flops
from groklab.engine.phases import PHASES, PREFIX
from groklab.models import model_hooks
from groklab.progress import bar as progress_bar
from groklab.settings import methods
from groklab.spec import RunSpec

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}

# ``--method``: the run settings each timed training method adds to the reference (AdamW),
# as the settings declare them (``Setting.methods``)
METHODS: dict[str, dict[str, object]] = methods()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def matmul_peak(device: str | torch.device, precision: str, repeats: int = 7) -> float:
    """Dense square matmul throughput in GFLOP/s (median of ``repeats``, after a warm-up).

    The product is written into a preallocated output, so the figure is the arithmetic rate
    alone (on a CPU a fresh 4 MiB output per product costs page faults that would understate
    the peak by up to 20 %, and with it the fraction of peak reached by training).
    """
    device = torch.device(device)
    n = 1024 if device.type == "cpu" else 8192
    a = torch.randn(n, n, device=device).to(DTYPES[precision])
    b = torch.randn(n, n, device=device).to(DTYPES[precision])
    out = torch.empty_like(a)
    inner = 4 if device.type == "cpu" else 20
    times = []
    for i in range(repeats + 1):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(inner):
            torch.mm(a, b, out=out)
        _sync(device)
        if i:  # the first pass is warm-up
            times.append((time.perf_counter() - t0) / inner)
    return 2 * n**3 / statistics.median(times) / 1e9


@dataclass
class BenchRow:
    model: str
    method: str  # a METHODS name
    batch_size: int
    device: str
    precision: str
    compiled: bool
    cohort: int
    ms_per_step: float
    runs_steps_per_s: float
    gflop_per_step: float
    achieved_gflops: float
    peak_gflops: float
    fraction_of_peak: float
    ideal_ms_per_step: float  # model FLOPs / measured peak


def reference_specs(cohort: int, precision: str, steps: int, model: str = "transformer",
                    batch_size: int | None = None, method: str = "adamw") -> list[RunSpec]:
    """The reference configuration (x_div_y, p 97, batch 512, evaluation every 10 steps) for
    ``model``, seeds 0..cohort-1, or the model's own reference run where its registration
    names one (``register_model(reference=...)``; the GPT: the CPU size of ``groklab lm``,
    batch 16, one batch per split evaluated every 10 steps); trained with ``method``
    (``METHODS``)."""
    own = model_hooks(model).reference
    if own is not None:
        base = dict(own)
        base["batch_size"] = batch_size or base["batch_size"]
    else:
        base = dict(task="x_div_y", p=97, batch_size=batch_size or 512, eval_every=10,
                    model=model)
    return [RunSpec(**(base | METHODS[method] | dict(steps=steps, precision=precision, seed=s)))
            for s in range(cohort)]


def bench_training(device: str, precision: str, cohort: int, windows: int = 10,
                   compile: bool = False, model: str = "transformer",
                   batch_size: int | None = None, method: str = "adamw"
                   ) -> BenchRow:
    """Median time of ``windows`` evaluation windows (10 steps + 1 eval), after warm-up ones.

    The warm-up windows hold the compile when ``compile`` is set (the shapes of training,
    evaluation and its last slice are all met in the first window).
    """
    warm = 3 if compile else 2
    specs = reference_specs(cohort, precision, (warm + windows) * 10, model, batch_size,
                            method)
    peak = matmul_peak(device, precision)  # measured just before, in the same process
    stamps: list[float] = []
    train_cohort(specs, device, on_eval=lambda *_: stamps.append(time.perf_counter()),
                 progress=False, compile=compile)
    per_window = [b - a for a, b in zip(stamps[warm - 1 : -1], stamps[warm:], strict=True)]
    ms = statistics.median(per_window) / 10 * 1000
    flops = step_flops(specs[0]) * cohort
    achieved = flops / (ms / 1000) / 1e9
    return BenchRow(model, method, specs[0].batch_size, device, precision, compile, cohort, ms,
                    cohort * 1000 / ms, flops / 1e9, achieved, peak, achieved / peak,
                    flops / peak / 1e6)


def run_bench(device: str, precisions: list[str], cohorts: list[int],
              compile: bool = False, progress: bool = False,
              models: Sequence[str] = ("transformer",), batch_size: int | None = None,
              methods: Sequence[str] = ("adamw",)) -> list[dict]:
    """Every (model, method, precision, cohort); the peak is re-measured next to each
    timing."""
    rows = []
    for m, k, p, r in _combos(models, methods, precisions, cohorts, progress):
        rows.append(asdict(bench_training(device, p, r, compile=compile, model=m,
                                          batch_size=batch_size, method=k)))
    return rows


def run_profiles(device: str, precisions: list[str], cohorts: list[int],
                 compile: bool = False, progress: bool = False,
                 models: Sequence[str] = ("transformer",), batch_size: int | None = None,
                 methods: Sequence[str] = ("adamw",), steps: int = 40) -> list[dict]:
    """``profile_training`` of every (model, method, precision, cohort), as dicts."""
    out = []
    for m, k, p, r in _combos(models, methods, precisions, cohorts, progress):
        wall, phases, ops = profile_training(device, p, r, steps, compile, m, batch_size, k)
        out.append({"model": m, "method": k, "precision": p, "cohort": r,
                    "compiled": compile, "device": device, "ms_per_step": wall,
                    "phases": [asdict(x) for x in phases],
                    "operators": [{"name": n, "ms": ms} for n, ms in ops]})
    return out


def _combos(models: Sequence[str], methods: Sequence[str], precisions: Sequence[str],
            cohorts: Sequence[int], progress: bool) -> Iterator[tuple[str, str, str, int]]:
    """Every (model, method, precision, cohort), under a progress bar."""
    combos = [(m, k, p, r) for m in models for k in methods for p in precisions
              for r in cohorts]
    with progress_bar(combos, desc="bench", unit="config", disable=not progress,
                      leave=False) as bar:
        for m, k, p, r in bar:
            bar.set_postfix_str(f"{m}, {k}, {p}, cohort {r}")
            yield m, k, p, r


# dense products; in a profile, a product over more than 64 [T, dh] blocks is attention's
MATMULS = frozenset({"aten::bmm", "aten::baddbmm", "aten::mm", "aten::addmm"})


@dataclass
class PhaseRow:
    """One phase of a step in a profile: its operators' time per step, matmuls apart."""

    phase: str
    matmul_ms: float
    other_ms: float
    ms: float
    share: float  # of the step's wall time


def _phase_of(event: Any) -> str | None:
    """The engine phase (``engine/phases.py``) an operator ran in, or None."""
    e = event.cpu_parent
    while e is not None:
        if e.name.startswith(PREFIX):
            return e.name.removeprefix(PREFIX)
        e = e.cpu_parent
    return None


def profile_training(device: str, precision: str, cohort: int, steps: int = 40,
                     compile: bool = False, model: str = "transformer",
                     batch_size: int | None = None, method: str = "adamw"
                     ) -> tuple[float, list[PhaseRow], list[tuple[str, float]]]:
    """Where a step of the reference configuration goes: ``(wall ms per step, phases,
    operators)``. ``steps`` steps (evaluations every 10 amortised) run under
    ``torch.profiler`` after a warm-up run; each operator's own time (device time on a GPU)
    goes to the engine phase that ran it (``sample``, ``forward``, ``backward``,
    ``optimizer``, ``train_metrics``, ``evaluate``), matmuls apart, and what no operator
    accounts for (Python, the sampler's bookkeeping, the profiler's own cost) is
    ``untraced``. Operators: the ``(name, ms per step)`` of the costliest 15."""
    gpu = torch.device(device).type == "cuda"
    train_cohort(reference_specs(cohort, precision, 30 if compile else 20, model, batch_size,
                                 method), device, progress=False, compile=compile)
    specs = reference_specs(cohort, precision, steps, model, batch_size, method)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
    with profile(activities=activities) as prof:
        t0 = time.perf_counter()
        train_cohort(specs, device, progress=False, compile=compile)
        _sync(torch.device(device))
        wall_ms = (time.perf_counter() - t0) * 1000 / steps
    matmul: dict[str, float] = dict.fromkeys((*PHASES, "other"), 0.0)
    other = dict(matmul)
    ops: dict[str, float] = {}
    for e in prof.events():
        if e.name.startswith(PREFIX) or e.name.startswith("ProfilerStep"):
            continue
        us = e.self_device_time_total if gpu else e.self_cpu_time_total
        if not us:
            continue
        where = _phase_of(e) or "other"
        (matmul if e.name in MATMULS else other)[where] += us / 1000 / steps
        ops[e.name] = ops.get(e.name, 0.0) + us / 1000 / steps
    rows = [PhaseRow(name, matmul[name], other[name], matmul[name] + other[name],
                     (matmul[name] + other[name]) / wall_ms) for name in (*PHASES, "other")]
    traced = sum(r.ms for r in rows)
    rows.append(PhaseRow("untraced", 0.0, max(0.0, wall_ms - traced),
                         max(0.0, wall_ms - traced), max(0.0, wall_ms - traced) / wall_ms))
    top = sorted(ops.items(), key=lambda kv: -kv[1])[:15]
    return wall_ms, rows, top
