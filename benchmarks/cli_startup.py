"""Start-up time of the ``groklab`` command: ``--help``, ``list`` and a bad-flag error, each
as a fresh subprocess (interpreter start-up included), timed N times; prints min and median.

    python benchmarks/cli_startup.py            # 7 timings of each
    python benchmarks/cli_startup.py -n 15 --json

Also times ``python -c pass`` (the interpreter alone) and ``import torch`` for scale. These
commands never train, so the figures measure imports and option parsing only (issue 21:
``--help``, ``list`` and a bad flag should answer in well under a second). On a shared
machine run it with ``OMP_NUM_THREADS=1`` and compare medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

GROKLAB = [sys.executable, "-m", "groklab.cli"]
CASES = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import torch": [sys.executable, "-c", "import torch"],
    "groklab --help": [*GROKLAB, "--help"],
    "groklab run --help": [*GROKLAB, "run", "--help"],
    "groklab list": [*GROKLAB, "list"],
    "groklab run --bad-flag": [*GROKLAB, "run", "--out", "x", "--bad-flag"],
    "groklab --version": [*GROKLAB, "--version"],
}


def time_once(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, capture_output=True, check=False,
                   env=os.environ | {"OMP_NUM_THREADS": "1"})
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=7, help="timings of each command")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    rows = {}
    for name, cmd in CASES.items():
        time_once(cmd)  # warm the file cache
        times = [time_once(cmd) for _ in range(args.n)]
        rows[name] = {"min_s": round(min(times), 3), "median_s": round(statistics.median(times), 3)}
    if args.json:
        print(json.dumps({"n": args.n, "python": sys.version.split()[0], "rows": rows}, indent=2))
        return
    print(f"{'command':<26} {'min s':>7} {'median s':>9}   (n = {args.n})")
    for name, r in rows.items():
        print(f"{name:<26} {r['min_s']:>7.3f} {r['median_s']:>9.3f}")


if __name__ == "__main__":
    main()
