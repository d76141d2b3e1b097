"""What a search optimises, read from the groklab store (no Optuna here).

``steps_to_99`` (the default): the first evaluated step with validation accuracy above 0.99,
a run that never gets there counting as its step budget (censored), averaged over the
trial's seeds; ties are broken by the final validation loss L (mean over seeds): the value is
``mean steps + δ · L / (1 + L)`` with ``δ = eval_every / seeds``, less than the smallest
difference of two mean step counts, so the steps decide and the loss only orders equals.
Minimised.

Any other recorded metric: a final metric of the ``runs`` table (``final_val_acc``,
``max_val_acc``, ``final_val_loss``, ``step_val_acc_99``, ``grokking_delay``, ...; a step
never reached counts as the budget) or a named metric of the long ``metrics`` table (its last
recorded value), averaged over seeds. Accuracies are maximised, everything else minimised,
unless a direction is given.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from groklab.records import FINAL_METRICS
from groklab.store import Store

DEFAULT_METRIC = "steps_to_99"
STEP_METRICS = ("step_val_acc_99", "step_train_acc_99", "grokking_delay", "step_val_acc_99_held")
# the named metrics `diagnostics = true` records (docs/protocol.md §6.7)
DIAGNOSTIC_METRICS = ("sigma_max_E", "sigma_max_W", "fro_E", "fro_W", "eta_E_over_eta_W",
                      "token_updates_cv", "token_updates_min_over_mean")


def known_metrics(recorded: Iterable[str] = ()) -> list[str]:
    """Metrics a search can optimise: the default, the final metrics, the diagnostics and
    any named metric already ``recorded`` in the store."""
    return list(dict.fromkeys([DEFAULT_METRIC, *FINAL_METRICS, *DIAGNOSTIC_METRICS,
                               *recorded]))


def default_direction(metric: str) -> str:
    """maximize for accuracies, minimize for steps, losses and everything else."""
    if metric.startswith("step") or metric == "grokking_delay":
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
        values = [_censored(r, metric) if metric in STEP_METRICS else r[metric] for r in runs]
    else:
        values = []
        for r in runs:
            named = [v for _, name, v in store.metrics(r["id"]) if name == metric]
            values.append(named[-1] if named else math.nan)
    return Outcome(sum(values) / len(values), {metric: values})


def _censored(run: dict[str, Any], metric: str) -> float:
    """A step metric, or the run's step budget when it was not reached."""
    value = run[metric]
    return float(run["steps"] if value is None else value)
