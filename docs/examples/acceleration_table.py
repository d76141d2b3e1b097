"""The acceleration record's table and figure (README, "The acceleration record") from a store
that holds the `acceleration` preset's runs, finished or not.

    python docs/examples/acceleration_table.py runs/acc [--figure docs/figures/acceleration.png]

Each run's held step (records.held_step, docs/protocol.md §4) is read from its stored curve,
so it also covers runs that the early stop has retired inside a cohort that is still
training (the engine marks them finished when their cohort ends). A run counts as held once
it has stayed above 0.99 for the 20 evaluations of the preset's stop rule; a run that is
still going, or was interrupted, without that is reported as not held at its last step.
Cells: mean ± stderr over the seeds that held, and "k of n" when not all did.
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

import pandas as pd

from groklab.format import mean_se, stderr
from groklab.records import held_step
from groklab.store import Store
from groklab.studies import preset

PATIENCE = 20  # the preset's stop_patience


def held_runs(root: Path) -> pd.DataFrame:
    """One row per preset run in the store: task, configuration, seed, status, last step,
    held step (None: not held), best validation accuracy."""
    label = {r.spec.run_id: (r.label, r.spec) for r in preset("acceleration").expand()}
    rows = []
    with Store(root, create=False) as store:
        for run in store.runs():
            if run["id"] not in label:
                continue
            config, spec = label[run["id"]]
            curve = store.curve(run["id"])
            if not curve:
                continue
            held = held_step(curve)
            if held is not None and sum(r.step >= held for r in curve) < PATIENCE \
                    and run["status"] != "finished":
                held = None  # above 0.99 at its last evaluation, but not yet for long enough
            rows.append({"task": spec.task, "config": config, "seed": spec.seed,
                         "status": run["status"], "last_step": curve[-1].step, "held": held,
                         "max_val_acc": max(r.val_acc for r in curve)})
    return pd.DataFrame(rows)


def cell(group: pd.DataFrame) -> str:
    held = [int(v) for v in group["held"].dropna()]
    if not held:
        return f"not held (0 of {len(group)}; last step {group['last_step'].max():,})"
    text = mean_se(statistics.mean(held), stderr(held), ",.0f")
    return text if len(held) == len(group) else f"{text} ({len(held)} of {len(group)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--figure", type=Path, default=None)
    args = parser.parse_args()
    runs = held_runs(args.store)
    order = list(dict.fromkeys(r.label for r in preset("acceleration").expand()))
    tasks = [t for t in dict.fromkeys(r.spec.task for r in preset("acceleration").expand())
             if t in set(runs["task"])]
    table = {}
    for c in order:
        for t in tasks:
            group = runs[(runs.config == c) & (runs.task == t)]
            if not group.empty:
                table.setdefault(c, {})[t] = cell(group)
    print("| method | " + " | ".join(tasks) + " |")
    print("|---|" + "---:|" * len(tasks))
    for config, cells in table.items():
        print(f"| {config} | " + " | ".join(cells.get(t, "—") for t in tasks) + " |")
    if args.figure is not None:
        from groklab.report.figures import colors, steps_figure

        summary = []
        for (task, config), g in runs.groupby(["task", "config"], sort=False):
            held = g["held"].astype(float)
            budget = g["last_step"].max()
            values = held.fillna(budget)
            summary.append({"task": task, "config": config, "n": len(g),
                            "steps": budget, "censored_held": int(held.isna().sum()),
                            "held_mean": values.mean(),
                            "held_stderr": values.std(ddof=1) / math.sqrt(len(g))})
        frame = pd.DataFrame(summary)
        frame["config"] = pd.Categorical(frame["config"], [c for c in order if c in table])
        frame["task"] = pd.Categorical(frame["task"], tasks)
        frame = frame.sort_values(["task", "config"]).astype({"config": str, "task": str})
        steps_figure(frame, "held", "steps to held 99 % validation accuracy", "censored_held",
                     "acceleration: steps to held 99 % (held-out seeds 2-4)", args.figure,
                     colors(list(dict.fromkeys(frame["config"]))))
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
