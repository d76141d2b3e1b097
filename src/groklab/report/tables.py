"""Tables (docs/protocol.md §8): mean ± stderr over seeds by task (rows) and configuration.

stderr = sample standard deviation / √n (undefined for one seed: shown without ±). A run
that never reaches 99 % validation accuracy counts as its step budget and is flagged.
Only runs with one settings key (every setting but the seed equal) are averaged together;
a column whose rows hold differing settings says so in a note.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from groklab.format import ACCURACY, MISSING, WHOLE, mean_se, setting
from groklab.records import SUMMARIES, SUMMARY, ordered
from groklab.report.data import setting_values, settings_key

# the order of the report's tables: the tabled summary metrics of algorithmic runs
# (groklab.records.SUMMARIES), these first; any other follows in the table's order
ORDER = ("final_val_acc", "step_val_acc_99", "step_val_acc_99_held", "final_val_loss",
         "max_val_acc", "step_train_acc_99", "grokking_delay")
# metric -> (title, number format: a format spec, see groklab.format)
METRICS: dict[str, tuple[str, str]] = {
    m: (SUMMARY[m].title, WHOLE if SUMMARY[m].whole else ACCURACY) for m in ordered(
        [s.name for s in SUMMARIES if s.stored and s.tabled and "algorithmic" in s.runs],
        ORDER)}
# step metrics a run may never reach: counted as the step budget and flagged (censored)
CENSORED: dict[str, str] = {s.name: s.censored for s in SUMMARIES
                            if s.censored is not None and s.name in METRICS}
# averaged over the runs that have them only; the cell names how many
PARTIAL = tuple(m for m in METRICS if SUMMARY[m].partial)


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, config, settings key) over finished runs: n, ``<metric>_mean`` /
    ``_stderr``, ``censored`` (runs that never reached 99 %), ``steps`` (the budget) and
    ``settings``. Runs without a ``settings`` column get their keys here; labels are left
    as given (``data.label_runs`` tells differing settings apart), so two settings under
    one label are an error rather than an average."""
    columns = ["task", "config", "n", "steps", *CENSORED.values()]
    columns += [f"{m}_{s}" for m in METRICS for s in ("mean", "stderr")]
    columns += [f"{m}_n" for m in PARTIAL] + ["settings"]
    if runs.empty or not (runs["status"] == "finished").any():
        return pd.DataFrame(columns=columns)
    if "settings" not in runs.columns:
        runs = runs.assign(settings=[settings_key(r) for r in runs.to_dict("records")])
    df = runs[runs["status"] == "finished"].copy()
    for m in METRICS:
        df[m] = pd.to_numeric(df[m], errors="coerce") if m in df else np.nan
    for m, flag in CENSORED.items():
        df[flag] = df[m].isna()
        df[m] = df[m].fillna(df["steps"]).astype(float)
    g = df.groupby(["task", "config", "settings"], sort=False)
    out = g.size().rename("n").to_frame()
    out["steps"] = g["steps"].max()
    for flag in CENSORED.values():
        out[flag] = g[flag].sum().astype(int)
    for m in METRICS:
        out[f"{m}_mean"] = g[m].mean()
        out[f"{m}_stderr"] = g[m].std(ddof=1) / np.sqrt(g[m].count())
    for m in PARTIAL:
        out[f"{m}_n"] = g[m].count()
    return _one_key_per_cell(out.reset_index()[columns])


def _one_key_per_cell(summary: pd.DataFrame) -> pd.DataFrame:
    """``summary``, after checking that no (task, config) cell holds two settings keys."""
    clash = summary[summary.duplicated(["task", "config"], keep=False)]
    if not clash.empty:
        cells = ", ".join(sorted({f"{r.task} / {r.config}" for r in clash.itertuples()}))
        raise ValueError(f"runs with different settings share a label ({cells}); label them "
                         "with groklab.report.data.label_runs before summarising")
    return summary


def wide(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The paper's layout for ``metric``: rows = tasks, columns = configurations, text cells."""
    fmt = METRICS[metric][1]
    cells = {}
    for r in summary.itertuples(index=False):
        text = mean_se(getattr(r, f"{metric}_mean"), getattr(r, f"{metric}_stderr"), fmt)
        if metric in CENSORED and getattr(r, CENSORED[metric]):
            text += "*"
        if metric in PARTIAL and 0 < getattr(r, f"{metric}_n") < r.n:
            text += f" (n={getattr(r, f'{metric}_n')})"
        cells[(r.task, r.config)] = text
    tasks = list(dict.fromkeys(summary["task"]))
    configs = list(dict.fromkeys(summary["config"]))
    table = pd.DataFrame([[cells.get((t, c), MISSING) for c in configs] for t in tasks],
                         index=pd.Index(tasks, name="task"), columns=configs)
    return table


def censored_note(summary: pd.DataFrame, metric: str = "step_val_acc_99") -> str | None:
    """The footnote for flagged step cells: how many runs of each never reached 99 %."""
    flag = CENSORED[metric]
    flagged = summary[summary[flag] > 0]
    if flagged.empty:
        return None
    cells = "; ".join(f"{r.task} / {r.config}: {getattr(r, flag)} of {r.n}"
                      for r in flagged.itertuples(index=False))
    return (f"* Some runs never {SUMMARY[metric].reached} and count as the step "
            f"budget ({', '.join(str(s) for s in dict.fromkeys(flagged['steps']))}): {cells}.")


def partial_note(metric: str) -> str | None:
    """The note under a metric defined only for some runs (the grokking delay)."""
    runs = SUMMARY[metric].partial if metric in SUMMARY else None
    if runs is None:
        return None
    return (f"Mean over the runs that {runs}; (n=k) marks a cell where only k seeds did, — "
            "one where none did.")


def settings_note(summary: pd.DataFrame) -> str | None:
    """The note for columns whose rows (tasks) hold differing settings (other than the task
    and settings a task ignores): per such column, the settings and their values."""
    parts = []
    for config, rows in summary.groupby("config", sort=False):
        values = setting_values(list(dict.fromkeys(rows["settings"])), ("task", "semantics"))
        differing = [f"{name} ({', '.join(map(setting, _ordered(v)))})"
                     for name, v in values.items() if len(v) > 1]
        if differing:
            parts.append(f"Column `{config}` holds differing settings across tasks: "
                         f"{'; '.join(differing)}.")
    return " ".join(parts) or None


def _ordered(values: list) -> list:
    """``values`` sorted where they compare (numbers, text), else as given."""
    try:
        return sorted(values)
    except TypeError:
        return values
