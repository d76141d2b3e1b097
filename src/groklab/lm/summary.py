"""The language-model table (SPEC §7 metrics), read from the store only.

Per run: final train loss (the last evaluation's, on ``eval_batches`` training batches in
eval mode), best validation loss over the evaluations, training wall time, training tokens
per second (steps × batch × context / wall time; runs of one cohort share their wall time,
so this is each run's share of the cohort's throughput), generation speed (``gen_tokens_per_s``,
measured when the run finished) and the sample it generated.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from groklab.store import Store

COLUMNS = ("final_train_loss", "best_val_loss", "wall_s", "train_tokens_per_s",
           "gen_tokens_per_s")
HEADERS = {"final_train_loss": "final train loss", "best_val_loss": "best val loss",
           "wall_s": "train time (s)", "train_tokens_per_s": "train tokens/s",
           "gen_tokens_per_s": "generated tokens/s"}
DIGITS = {"final_train_loss": 3, "best_val_loss": 3, "wall_s": 0, "train_tokens_per_s": 0,
          "gen_tokens_per_s": 0}


def lm_runs(path: str | Path) -> pd.DataFrame:
    """One row per finished ``text`` run: id, label, seed, the ``COLUMNS`` and ``sample``."""
    rows = []
    with Store(path, create=False) as store:
        labels = {rid: label for study in store.studies()
                  for rid, label in store.study_members(study["name"])}
        for r in store.runs():
            if r.get("task") != "text" or r["status"] != "finished":
                continue
            curve = store.curve(r["id"])
            named = {name: value for _, name, value in store.metrics(r["id"])}
            tokens = r["steps"] * r["batch_size"] * r["context"]
            rows.append({"id": r["id"], "label": labels.get(r["id"], r["label"]),
                         "seed": r["seed"], "final_train_loss": r["final_train_loss"],
                         "best_val_loss": min(row.val_loss for row in curve),
                         "wall_s": r["wall_s"],
                         "train_tokens_per_s": tokens / r["wall_s"] if r["wall_s"] else None,
                         "gen_tokens_per_s": named.get("gen_tokens_per_s"),
                         "sample": store.texts(r["id"]).get("sample", "")})
    return pd.DataFrame(rows, columns=["id", "label", "seed", *COLUMNS, "sample"])


def lm_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard error over seeds of every column, per label (in order of appearance)."""
    out = []
    for label, group in runs.groupby("label", sort=False):
        row: dict[str, object] = {"label": label, "seeds": len(group)}
        for c in COLUMNS:
            values = group[c].astype(float)
            row[c] = values.mean()
            row[c + "_se"] = values.std(ddof=1) / len(values) ** 0.5 if len(values) > 1 else 0.0
        out.append(row)
    return pd.DataFrame(out)


def summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """``lm_summary``'s numbers as ``mean ± stderr`` cells under readable headers, one row
    per configuration, with the number of seeds first."""
    table = pd.DataFrame({HEADERS[c]: [f"{m:.{DIGITS[c]}f} ± {s:.{DIGITS[c]}f}" for m, s in
                                       zip(summary[c], summary[c + "_se"], strict=True)]
                          for c in COLUMNS}, index=summary["label"])
    table.insert(0, "seeds", summary["seeds"].to_numpy())
    table.index.name = "configuration"
    return table
