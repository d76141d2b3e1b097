"""Trials per hour of `groklab tune`: batched (one cohort per batch) vs one trial at a time.

Three ways to run the same number of trials of the same search (fixed work per trial: early
stop off, so every trial trains its whole budget):

- ``batched``: ``--batch B``, each batch of B trials trains as ONE cohort;
- ``sequential``: ``--batch 1`` in one process (a cohort of one per trial);
- ``per-process``: a new ``groklab tune`` process per trial (``--trials 1``, ``2``, ...; each
  continues the study by one trial), the usual trial-per-process loop.

    python benchmarks/tune_throughput.py --trials 8 --batch 8 --steps 200
    python benchmarks/tune_throughput.py --p 23 --set d_model=64 --set batch_size=128
    python benchmarks/tune_throughput.py --device cuda --trials 64 --batch 32 --steps 500

Prints one JSON object: wall and CPU seconds, trials per hour and per CPU-hour for each way,
and the speed-ups (on a shared machine compare CPU time, with ``--threads 1``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def tune_cmd(out: Path, args: argparse.Namespace, trials: int, batch: int) -> list[str]:
    return [sys.executable, "-m", "groklab.cli", "tune", "--out", str(out), "--task", args.task,
            "--steps", str(args.steps), "--p", str(args.p), "--trials", str(trials),
            "--batch", str(batch), "--no-early-stop", "--metric", "final_val_loss",
            "--sampler", "random", "--sampler-seed", "0", "--device", args.device,
            "--no-progress", "--set", f"eval_every={args.eval_every}",
            *[a for kv in args.set for a in ("--set", kv)]]


def timed(cmds: list[list[str]], threads: int) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system of the child processes) of ``cmds``; CPU
    time is what to compare on a machine other jobs share."""
    env = os.environ | ({"OMP_NUM_THREADS": str(threads)} if threads else {})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    for cmd in cmds:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="x_div_y")
    ap.add_argument("--p", type=int, default=97)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--modes", default="batched,sequential,per-process")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a run setting of every trial (repeatable), e.g. d_model=64")
    ap.add_argument("--threads", type=int, default=0,
                    help="OMP_NUM_THREADS of the tune processes (0: torch's default); 1 "
                    "keeps timings sane on a machine other jobs share")
    args = ap.parse_args()
    modes = args.modes.split(",")
    seconds, cpu = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cmds = {"batched": [tune_cmd(root / "b", args, args.trials, args.batch)],
                "sequential": [tune_cmd(root / "s", args, args.trials, 1)],
                "per-process": [tune_cmd(root / "p", args, n, 1)
                                for n in range(1, args.trials + 1)]}
        for mode in modes:
            seconds[mode], cpu[mode] = timed(cmds[mode], args.threads)
    out = {"task": args.task, "p": args.p, "steps": args.steps, "trials": args.trials,
           "batch": args.batch, "device": args.device, "threads": args.threads,
           "settings": args.set,
           "seconds": seconds,
           "cpu_seconds": cpu,
           "trials_per_hour": {k: round(3600 * args.trials / v, 1) for k, v in seconds.items()},
           "trials_per_cpu_hour": {k: round(3600 * args.trials / v, 1) for k, v in cpu.items()}}
    if "batched" in seconds:
        out["speedup_over"] = {k: round(v / seconds["batched"], 2) for k, v in seconds.items()
                               if k != "batched"}
        out["cpu_speedup_over"] = {k: round(v / cpu["batched"], 2) for k, v in cpu.items()
                                   if k != "batched"}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
