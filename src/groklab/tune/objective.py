"""What a search optimises, read from the groklab store (no Optuna here).

``steps_to_99`` (the default): the first evaluated step with validation accuracy above 0.99,
a run that never gets there counting as its step budget (censored), averaged over the
trial's seeds; ties are broken by the final validation loss L (mean over seeds): the value is
``mean steps + δ · L / (1 + L)`` with ``δ = eval_every / seeds``, less than the smallest
difference of two mean step counts, so the steps decide and the loss only orders equals.
Minimised.

Any other summary metric (``groklab.records.SUMMARIES``): a stored one of the ``runs`` table
(``final_val_acc``, ``max_val_acc``, ``final_val_loss``, ``step_val_acc_99``,
``grokking_delay``, ...; a step count never reached counts as the budget), or a named metric
of the long ``metrics`` table (the diagnostics, any other recorded name: its last recorded
value), averaged over seeds. A summary metric goes its own way (``Summary.direction``), any
other accuracy is maximised and everything else minimised, unless a direction is given.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from groklab.records import FINAL_METRICS, SUMMARIES, SUMMARY
from groklab.store import Store

DEFAULT_METRIC = "steps_to_99"


def known_metrics(recorded: Iterable[str] = ()) -> list[str]:
    """Metrics a search can optimise: the default, every summary metric and any named
    metric already ``recorded`` in the store."""
    return list(dict.fromkeys([DEFAULT_METRIC, *(s.name for s in SUMMARIES), *recorded]))


def default_direction(metric: str) -> str:
    """A summary metric's own direction (``Summary.direction``); for any other name, minimize
    for steps (the default too), maximize for accuracies, minimize for everything else."""
    if metric in SUMMARY:
        return SUMMARY[metric].direction
    if metric.startswith("step"):
        return "minimize"
    return "maximize" if metric.endswith("acc") else "minimize"


@dataclass(frozen=True)
class Outcome:
    """A trial's value and the per-seed numbers it came from."""

    value: float
    details: dict[str, Any] = field(default_factory=dict)


def outcome(store: Store, run_ids: Sequence[str], metric: str) -> Outcome | None:
    """The trial's value from its finished runs; None while any of them is not finished."""
    rows = {r["id"]: r for r in store.runs() if r["id"] in set(run_ids)}
    if len(rows) < len(set(run_ids)) or any(r["status"] != "finished" for r in rows.values()):
        return None
    runs = [rows[rid] for rid in run_ids]
    if metric == DEFAULT_METRIC:
        steps = [_censored(r, "step_val_acc_99") for r in runs]
        losses = [r["final_val_loss"] for r in runs]
        loss = sum(losses) / len(losses)
        delta = min(r["eval_every"] for r in runs) / len(runs)
        tie = loss / (1.0 + loss) if math.isfinite(loss) else 1.0
        value = sum(steps) / len(steps) + delta * tie
        return Outcome(value, {"steps_to_99": steps, "final_val_loss": losses,
                               "censored": sum(r["step_val_acc_99"] is None for r in runs)})
    if metric in FINAL_METRICS:
        values = [_censored(r, metric) if SUMMARY[metric].whole else r[metric] for r in runs]
    else:
        values = []
        for r in runs:
            named = [v for _, name, v in store.metrics(r["id"]) if name == metric]
            values.append(named[-1] if named else math.nan)
    return Outcome(sum(values) / len(values), {metric: values})


def _censored(run: dict[str, Any], metric: str) -> float:
    """A step count (a whole-number summary metric), or the run's step budget when the run
    did not reach it."""
    value = run[metric]
    return float(run["steps"] if value is None else value)
