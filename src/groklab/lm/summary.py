"""The language-model table (docs/protocol.md §7 metrics), from the store only.

Per run: final train loss (the last evaluation's, on ``eval_batches`` training batches in
eval mode), best validation loss over the evaluations, training wall time, training tokens
per second (steps × batch × context / wall time; runs of one cohort share their wall time,
so this is each run's share of the cohort's throughput), generation speed (``gen_tokens_per_s``,
measured when the run finished) and the sample it generated. ``lm_row`` builds a row from
what a run recorded; ``lm_runs`` reads every row of a store (``groklab lm``), the report
builds them from the study data it loaded.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from groklab.format import ACCURACY, WHOLE, mean_se
from groklab.store import Store
from groklab.tasks import language_tasks

COLUMNS = ("final_train_loss", "best_val_loss", "wall_s", "train_tokens_per_s",
           "gen_tokens_per_s")
HEADERS = {"final_train_loss": "final train loss", "best_val_loss": "best val loss",
           "wall_s": "train time (s)", "train_tokens_per_s": "train tokens/s",
           "gen_tokens_per_s": "generated tokens/s"}
FORMATS = {"final_train_loss": ACCURACY, "best_val_loss": ACCURACY, "wall_s": WHOLE,
           "train_tokens_per_s": WHOLE, "gen_tokens_per_s": WHOLE}


def lm_row(run: Mapping[str, Any], label: str, best_val_loss: float,
           gen_tokens_per_s: float | None, sample: str) -> dict[str, Any]:
    """One finished language-model run's row (``run``: its store row): id, label, seed, the
    ``COLUMNS`` and ``sample``."""
    tokens = run["steps"] * run["batch_size"] * run["context"]
    wall = run["wall_s"]
    return {"id": run["id"], "label": label, "seed": run["seed"],
            "final_train_loss": run["final_train_loss"], "best_val_loss": best_val_loss,
            "wall_s": wall, "train_tokens_per_s": tokens / wall if wall else None,
            "gen_tokens_per_s": gen_tokens_per_s, "sample": sample}


def lm_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """``lm_row``'s rows as a frame (the columns even when there are none)."""
    return pd.DataFrame(list(rows), columns=["id", "label", "seed", *COLUMNS, "sample"])


def lm_runs(store: Store) -> pd.DataFrame:
    """One row per finished language-model run of ``store`` (``lm_row``), labelled by its
    study membership (else its own label)."""
    rows = []
    language = language_tasks()
    labels = {rid: label for study in store.studies()
              for rid, label in store.study_members(study["name"])}
    for r in store.runs():
        if r.get("task") not in language or r["status"] != "finished":
            continue
        named = {name: value for _, name, value in store.metrics(r["id"])}
        rows.append(lm_row(r, labels.get(r["id"], r["label"]),
                           min(row.val_loss for row in store.curve(r["id"])),
                           named.get("gen_tokens_per_s"),
                           store.texts(r["id"]).get("sample", "")))
    return lm_frame(rows)


def lm_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard error over seeds of every column, per label (in order of appearance);
    the standard error is NaN for a single seed."""
    out = []
    for label, group in runs.groupby("label", sort=False):
        row: dict[str, object] = {"label": label, "seeds": len(group)}
        for c in COLUMNS:
            values = group[c].astype(float)
            row[c] = values.mean()
            n = values.count()
            row[c + "_se"] = values.std(ddof=1) / n ** 0.5 if n > 1 else math.nan
        out.append(row)
    return pd.DataFrame(out)


def lm_table(summary: pd.DataFrame) -> pd.DataFrame:
    """``lm_summary``'s numbers as ``mean ± stderr`` cells (``groklab.format.mean_se``) under
    readable headers, one row per configuration, with the number of seeds first."""
    table = pd.DataFrame({HEADERS[c]: [mean_se(m, s, FORMATS[c]) for m, s in
                                       zip(summary[c], summary[c + "_se"], strict=True)]
                          for c in COLUMNS}, index=summary["label"])
    table.insert(0, "seeds", summary["seeds"].to_numpy())
    table.index.name = "configuration"
    return table
