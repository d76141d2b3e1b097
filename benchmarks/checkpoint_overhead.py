"""Cost of mid-run checkpoints (engine/checkpoint.py) on the reference configuration.

Times training steps of one cohort and the writing of its checkpoint (state_dict, torch.save,
SHA-256, fsync, rename), and prints the overhead per step at the default interval of 1,000
steps. Usage: ``python benchmarks/checkpoint_overhead.py [--runs R] [--steps N]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from groklab.engine.checkpoint import EVERY_STEPS, Checkpointer, checkpoint_path
from groklab.engine.state import CohortState
from groklab.spec import RunSpec


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--saves", type=int, default=5)
    args = ap.parse_args()
    specs = [RunSpec(seed=s) for s in range(args.runs)]
    state = CohortState(specs)
    state.step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(args.steps):
        state.step()
    step_ms = (time.perf_counter() - t0) / args.steps * 1e3
    ids = [s.run_id for s in specs]
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Checkpointer(checkpoint_path(Path(tmp), ids))
        for _ in range(args.saves):
            ckpt.save(ids, state.state_dict(), [[] for _ in ids])
        save_ms = ckpt.save_seconds / ckpt.saves * 1e3
        size = ckpt.path.stat().st_size
    print(f"cohort of {args.runs}: {step_ms:.1f} ms per step; checkpoint {size / 2**20:.1f} MiB "
          f"written in {save_ms:.1f} ms; overhead at one per {EVERY_STEPS} steps: "
          f"{save_ms / EVERY_STEPS:.3f} ms per step ({save_ms / EVERY_STEPS / step_ms:.2%})")


if __name__ == "__main__":
    main()
