"""Throughput of slots over a queue vs fixed cohorts, on a study whose runs end at very
different times (docs/design.md, decision 15).

The workload: ``--runs`` runs of x_plus_y at ``--p`` with the acceleration-fast recipe (Muon,
StableMax, Grokfast EMA) and one stop rule (val acc > 0.99 for ``--patience`` evaluations);
even seeds at the recipe's rates (they grok and stop early: about step 360 at p 59, width
64), odd seeds at a tenth of them (they train to the budget). All share one cohort key.

- ``cohorts`` (how groklab trained before slots): the runs in fixed cohorts of ``--slots``,
  one after another; a cohort ends when its slowest run does.
- ``slots``: one queue over ``--slots`` slots; a run that ends frees its slot for the next.

Each mode trains into its own fresh store; the script prints wall time, runs finished per
hour, their ratio, and the largest difference between the two modes' per-run curves (the same
runs, trained beside other mates: float rounding only).

    OMP_NUM_THREADS=2 python benchmarks/slots_throughput.py --runs 16 --slots 4 --p 59
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch

from groklab.engine import run_specs
from groklab.engine.state import CohortState
from groklab.recipes import recipe
from groklab.spec import RunSpec
from groklab.store import Store

UPDATES = [0]  # cohort updates (CohortState.step calls), counted per mode


def workload(args: argparse.Namespace) -> list[RunSpec]:
    settings = dict(recipe("acceleration-fast").settings)
    lr = tuple(settings.pop("lr"))
    base = dict(task="x_plus_y", p=args.p, steps=args.steps, eval_every=args.eval_every,
                stop_val_acc=0.99, stop_patience=args.patience, d_model=args.d_model,
                **settings)
    return [RunSpec(**base, seed=s, lr=lr if s % 2 == 0 else tuple(x / 10 for x in lr),
                    lr_name="fast" if s % 2 == 0 else "slow") for s in range(args.runs)]


def train(specs: list[RunSpec], out: Path, mode: str, slots: int, device: str) -> float:
    t0 = time.perf_counter()
    if mode == "slots":
        run_specs(specs, out, device=device, progress=False, slots=slots,
                  checkpoint_every=None, checkpoint_seconds=None)
    else:
        for i in range(0, len(specs), slots):
            run_specs(specs[i:i + slots], out, device=device, progress=False,
                      checkpoint_every=None, checkpoint_seconds=None)
    return time.perf_counter() - t0


def curves(out: Path) -> dict[str, torch.Tensor]:
    with Store(out, create=False) as store:
        return {r["id"]: torch.tensor([[x.val_loss, x.val_acc] for x in store.curve(r["id"])])
                for r in store.runs()}


def _counting(step):  # noqa: ANN001, ANN202
    def counted(self):  # noqa: ANN001, ANN202
        UPDATES[0] += 1
        return step(self)

    return counted


def main() -> None:
    CohortState.step = _counting(CohortState.step)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=16)
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--p", type=int, default=59)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--eval-every", type=int, default=20)
    ap.add_argument("--patience", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
    args = ap.parse_args()
    specs = workload(args)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {len(specs)} runs, p {args.p}, d_model "
          f"{args.d_model}, budget {args.steps} steps, {args.slots} slots")
    walls, got = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("cohorts", "slots"):
            out = Path(tmp) / mode
            UPDATES[0] = 0
            walls[mode] = train(specs, out, mode, args.slots, args.device)
            updates = UPDATES[0]
            got[mode] = curves(out)
            ends = sorted(len(c) * args.eval_every for c in got[mode].values())
            print(f"{mode:8s} {walls[mode]:8.1f} s  {3600 * len(specs) / walls[mode]:8.1f} "
                  f"runs/h  {updates} cohort updates  (runs ended at steps "
                  f"{ends[0]}..{ends[-1]}, median {ends[len(ends) // 2]})")
    diff = max(float((got["slots"][k] - got["cohorts"][k]).abs().max()) for k in got["slots"])
    same_len = all(len(got["slots"][k]) == len(got["cohorts"][k]) for k in got["slots"])
    print(f"throughput ratio slots/cohorts: {walls['cohorts'] / walls['slots']:.2f}x; "
          f"per-run curves: same lengths {same_len}, largest difference {diff:.2e}")


if __name__ == "__main__":
    main()
