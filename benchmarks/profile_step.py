"""Where a training step's time goes: torch.profiler over the reference configuration.

    python benchmarks/profile_step.py [--cohort 1] [--precision fp32] [--steps 40] [--device cpu]

A short warm-up run first (allocator, kernels), then a profiled run of ``--steps`` steps
(evaluations every 10 included). Prints the operators by self time per step, matmuls of the
tiny attention products apart from the dense layers. Throughput itself: ``groklab bench``;
per phase (forward, backward, optimiser, evaluation): ``groklab bench --profile``.
"""

from __future__ import annotations

import argparse
from collections import Counter

from torch.profiler import ProfilerActivity, profile

from groklab.bench import MATMULS, reference_specs
from groklab.engine.cohort import train_cohort


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cohort", type=int, default=1)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rows", type=int, default=25)
    args = ap.parse_args()

    gpu = args.device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
    train_cohort(reference_specs(args.cohort, args.precision, 20), args.device, progress=False)
    with profile(activities=activities, record_shapes=True) as prof:
        train_cohort(reference_specs(args.cohort, args.precision, args.steps), args.device,
                     progress=False)
    per_op: Counter[str] = Counter()
    for e in prof.key_averages(group_by_input_shape=True):
        name = e.key
        first = e.input_shapes[0] if e.input_shapes else []
        if name in MATMULS and len(first) == 3 and first[0] > 64:  # [R·B·H, T, dh] products
            name += " (attention)"
        per_op[name] += e.self_device_time_total if gpu else e.self_cpu_time_total
    total = sum(per_op.values())
    print(f"{'operator':<56} {'ms/step':>8} {'share':>6}")
    for name, us in per_op.most_common(args.rows):
        print(f"{name[:56]:<56} {us / 1000 / args.steps:8.2f} {us / total:6.1%}")
    print(f"{'total':<56} {total / 1000 / args.steps:8.2f}")


if __name__ == "__main__":
    main()
