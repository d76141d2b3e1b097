"""Step time of the adaptive embedding rate against a fixed one (docs/protocol.md §5).

    python benchmarks/embedding_lr_overhead.py [--cohort 1,4] [--steps 300] [--repeats 3]
                                               [--model transformer] [--device cpu]

The reference configuration (x_div_y, p 97, batch 512, evaluation every 10 steps) trained
with ``embedding_lr = fixed`` and ``adaptive`` (c = 1, every 100 steps), interleaved
fixed/adaptive ``--repeats`` times; prints ms per step (median and range) and the overhead.
The adaptive rate costs a batched power iteration every 100 steps and a token count per
step; the target is within 5 % of fixed.
"""

from __future__ import annotations

import argparse
import statistics
import time

from groklab.bench import reference_specs
from groklab.engine.cohort import train_cohort


def ms_per_step(cohort: int, adaptive: bool, steps: int, model: str, device: str) -> float:
    specs = [s.model_copy(update={"embedding_lr": "adaptive" if adaptive else "fixed",
                                  "model": model})
             for s in reference_specs(cohort, "fp32", steps)]
    t0 = time.perf_counter()
    train_cohort(specs, device, progress=False)
    return (time.perf_counter() - t0) / steps * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cohort", default="1,4")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="transformer")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    for cohort in (int(c) for c in args.cohort.split(",")):
        ms_per_step(cohort, False, 20, args.model, args.device)  # warm-up
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.repeats):
            for adaptive in (False, True):
                times[adaptive].append(ms_per_step(cohort, adaptive, args.steps, args.model,
                                                   args.device))
        fixed, adapt = statistics.median(times[False]), statistics.median(times[True])
        print(f"cohort {cohort}: fixed {fixed:.1f} ms/step ({min(times[False]):.1f}-"
              f"{max(times[False]):.1f}), adaptive {adapt:.1f} ms/step "
              f"({min(times[True]):.1f}-{max(times[True]):.1f}), overhead "
              f"{100 * (adapt / fixed - 1):+.1f} %")


if __name__ == "__main__":
    main()
