"""Tables (SPEC §8): mean ± stderr over seeds by task (rows) and configuration (columns).

stderr = sample standard deviation / √n (undefined for one seed: shown without ±). A run
that never reaches 99 % validation accuracy counts as its step budget and is flagged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# metric -> (title, number format)
METRICS: dict[str, tuple[str, str]] = {
    "final_val_acc": ("Final validation accuracy", "{:.3f}"),
    "step_val_acc_99": ("Steps to 99 % validation accuracy", "{:.0f}"),
    "final_val_loss": ("Final validation loss", "{:.3g}"),
}


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, config) over finished runs: n, ``<metric>_mean``/``_stderr``,
    ``censored`` (runs that never reached 99 %) and ``steps`` (the budget)."""
    columns = ["task", "config", "n", "steps", "censored"]
    columns += [f"{m}_{s}" for m in METRICS for s in ("mean", "stderr")]
    if runs.empty or not (runs["status"] == "finished").any():
        return pd.DataFrame(columns=columns)
    df = runs[runs["status"] == "finished"].copy()
    reached = pd.to_numeric(df["step_val_acc_99"], errors="coerce")
    df["censored"] = reached.isna()
    df["step_val_acc_99"] = reached.fillna(df["steps"]).astype(float)
    g = df.groupby(["task", "config"], sort=False)
    out = g.size().rename("n").to_frame()
    out["steps"] = g["steps"].max()
    out["censored"] = g["censored"].sum().astype(int)
    for m in METRICS:
        out[f"{m}_mean"] = g[m].mean()
        out[f"{m}_stderr"] = g[m].std(ddof=1) / np.sqrt(out["n"])
    return out.reset_index()[columns]


def wide(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The paper's layout for ``metric``: rows = tasks, columns = configurations, text cells."""
    fmt = METRICS[metric][1]
    cells = {}
    for r in summary.itertuples(index=False):
        mean, se = getattr(r, f"{metric}_mean"), getattr(r, f"{metric}_stderr")
        text = fmt.format(mean) + ("" if pd.isna(se) else f" ± {fmt.format(se)}")
        if metric == "step_val_acc_99" and r.censored:
            text += "*"
        cells[(r.task, r.config)] = text
    tasks = list(dict.fromkeys(summary["task"]))
    configs = list(dict.fromkeys(summary["config"]))
    table = pd.DataFrame([[cells.get((t, c), "—") for c in configs] for t in tasks],
                         index=pd.Index(tasks, name="task"), columns=configs)
    return table


def censored_note(summary: pd.DataFrame) -> str | None:
    """The footnote for flagged step cells: how many runs of each never reached 99 %."""
    flagged = summary[summary["censored"] > 0]
    if flagged.empty:
        return None
    cells = "; ".join(f"{r.task} / {r.config}: {r.censored} of {r.n}"
                      for r in flagged.itertuples(index=False))
    return ("* Some runs never reached 99 % validation accuracy and count as the step "
            f"budget ({', '.join(str(s) for s in dict.fromkeys(flagged['steps']))}): {cells}.")
