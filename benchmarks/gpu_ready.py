"""Is the step ready for a GPU? Sync-free steps per feature, and cohort scaling.

On CUDA, for the default step and for dropout, balanced sampling, ⊥Grad and Muon, it trains
``--steps`` updates and one evaluation's device work under
``torch.cuda.set_sync_debug_mode("error")``: any host-device synchronisation in the hot path
(``.item()``, a copy from pageable memory, a data-dependent shape) raises and names its line.
The evaluation's final read of the metrics to the host is the one synchronisation allowed,
outside that mode. Then it prints cohort scaling: ms per run-step for R = 1 … 256 runs, fp32
and bf16. On a CPU the same code runs in a reduced form (tests/test_gpu_ready.py: a few
steps, R = 1, 2) so it cannot rot unnoticed.

    python benchmarks/gpu_ready.py                  # CUDA: the full check
    python benchmarks/gpu_ready.py --device cpu --steps 3 --sizes 1 2 --small
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator, Sequence

import torch

from groklab.engine.state import CohortState
from groklab.spec import RunSpec

FEATURES = {
    "default": {},
    "dropout": dict(dropout=0.1),
    "balanced sampling": dict(sampling="balanced"),
    "orthograd": dict(grad_ortho=True),
    "muon": dict(optimizer="muon"),
}
BASE = dict(task="x_plus_y", p=97, steps=10_000, eval_every=100)  # the paper's model


@contextlib.contextmanager
def no_sync(device: torch.device) -> Iterator[None]:
    """Host-device synchronisations raise inside (CUDA only; elsewhere nothing to check)."""
    if device.type != "cuda":
        yield
        return
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def sync_free(feature: str, device: torch.device, steps: int, runs: int = 4,
              size: dict | None = None) -> float:
    """Train ``steps`` updates and evaluate once with ``feature`` on; returns the mean
    validation accuracy (read after the checked region)."""
    specs = [RunSpec(**(BASE | (size or {})), **FEATURES[feature], seed=s) for s in range(runs)]
    state = CohortState(specs, device)
    state.step()  # the first step allocates and may warm caches: outside the check
    with no_sync(device):
        for _ in range(steps):
            state.step()
        val = state.validate()
    return float(val["acc"].mean())


def ms_per_run_step(runs: int, precision: str, device: torch.device, steps: int,
                    size: dict | None = None) -> float:
    """Wall ms per run-step of a cohort of ``runs`` default runs."""
    specs = [RunSpec(**(BASE | (size or {})), seed=s, precision=precision)
             for s in range(runs)]
    state = CohortState(specs, device)
    for _ in range(3):
        state.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        state.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - t0) / (steps * runs)


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128, 256])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--small", action="store_true",
                    help="p 11, width 16: the reduced form the test suite runs")
    args = ap.parse_args(argv)
    size = dict(p=11, d_model=16, n_heads=2, batch_size=32) if args.small else None
    device = torch.device(args.device)
    out: dict = {"sync_free": {}, "scaling": {}}
    print(f"device {device}" + (f" ({torch.cuda.get_device_name()})"
                                if device.type == "cuda" else ""))
    for feature in FEATURES:
        acc = sync_free(feature, device, args.steps, size=size)
        out["sync_free"][feature] = acc
        print(f"  {feature:18s} {args.steps} steps + 1 evaluation without a sync "
              f"(val acc {acc:.3f})")
    print("ms per run-step:   R " + " ".join(f"{r:>7d}" for r in args.sizes))
    for precision in args.precisions:
        row = [ms_per_run_step(r, precision, device, max(3, args.steps // 10), size)
               for r in args.sizes]
        out["scaling"][precision] = dict(zip(args.sizes, row, strict=True))
        print(f"  {precision:16s}" + " ".join(f"{v:7.3f}" for v in row))
    return out


if __name__ == "__main__":
    main()
