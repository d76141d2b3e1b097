"""A ``groklab tune`` search in a report: its best trials, their curves and the landscape.

A study whose recorded definition has ``"kind": "tune"`` (tune/search.py) holds one label per
trial (``t0000``, ``t0001``, ...), far too many columns for the per-configuration tables. Its
section shows instead, read from the groklab store alone (never from Optuna's storage):

- the best ``TOP_TABLE`` trials: the objective as the search computes it
  (``groklab.tune.objective.outcome`` with the recorded metric and direction) and the
  searched values as the runs' settings hold them (the rate triple ``lr`` gives ``lr_e``,
  ``lr_l`` and ``lr_h``);
- validation accuracy of the best ``TOP_CURVES`` trials against steps (mean ± stderr over
  seeds);
- the landscape: every pair of searched numeric dimensions, one point per finished trial
  coloured by its value, the best trial starred, log axes for log-uniform dimensions.

Searched values show with three significant digits, objective values with six.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from groklab.format import is_missing, number, setting
from groklab.report.data import StudyData
from groklab.report.document import Block, Figure, Paragraph, Table
from groklab.tune.objective import DEFAULT_METRIC, outcome
from groklab.tune.space import RATE_DIMS

VALUE = ".6g"  # an objective value
SEARCHED = ".3g"  # a searched (float) setting

TOP_TABLE = 10
TOP_CURVES = 5


def is_search(study: StudyData) -> bool:
    """Whether ``study`` was recorded by ``groklab tune``."""
    return (study.definition or {}).get("kind") == "tune"


class _StudyReader:
    """The study's loaded runs and named metrics, read the way ``outcome`` reads a store
    (``runs()``, ``metrics(run_id)``; absent numbers as None, as the store gives them)."""

    def __init__(self, study: StudyData):
        self.rows = [{k: None if is_missing(v) else v for k, v in r.items()}
                     for r in study.runs.to_dict("records")]
        named = study.metrics
        self.named = {rid: list(zip(part["step"], part["name"], part["value"], strict=True))
                      for rid, part in named.groupby("run_id", sort=False)}

    def runs(self) -> list[dict[str, Any]]:
        return self.rows

    def metrics(self, run_id: str) -> list[tuple[int, str, float]]:
        return self.named.get(run_id, [])


def trials(study: StudyData) -> pd.DataFrame:
    """One row per trial (index: its label), best first: ``config`` (its runs' label in
    ``study``), ``seeds``, ``value`` (NaN while any of its runs is unfinished or when they
    did not record the metric), ``censored`` (steps_to_99: seeds that never reached 99 %)
    and one column per searched dimension."""
    definition = study.definition or {}
    metric = definition.get("metric", DEFAULT_METRIC)
    dims = list((definition.get("space") or {}).get("params") or {})
    rows = []
    reader = _StudyReader(study)
    for label, part in study.runs.groupby("label_base", sort=False):
        got = outcome(reader, list(part["id"]), metric)  # type: ignore[arg-type]
        first = part.iloc[0]
        rows.append({"trial": label, "config": first["config"], "seeds": len(part),
                     "value": math.nan if got is None else got.value,
                     "censored": None if got is None else got.details.get("censored"),
                     **{d: searched_value(first, d) for d in dims}})
    frame = pd.DataFrame(rows, columns=["trial", "config", "seeds", "value", "censored", *dims])
    ascending = definition.get("direction", "minimize") == "minimize"
    frame = frame.sort_values(["value", "trial"], ascending=[ascending, True],
                              na_position="last", kind="stable")
    return frame.set_index("trial")


def searched_value(run: pd.Series, name: str) -> Any:
    """Dimension ``name`` of a run as its settings hold it: a rate dimension is its element
    of the rate triple ``lr`` (every element, for a single rate)."""
    if name in RATE_DIMS:
        lr = run["lr"]
        return float(lr[RATE_DIMS.index(name)] if isinstance(lr, list | tuple) else lr)
    return run.get(name)


def search_section(study: StudyData, root: Path, prefix: Path) -> tuple[list[Block], list[Path]]:
    """The report blocks of a search; figures are written to ``prefix``-*.png under
    ``root``."""
    definition = study.definition or {}
    metric = definition.get("metric", DEFAULT_METRIC)
    direction = definition.get("direction", "minimize")
    params = (definition.get("space") or {}).get("params") or {}
    found = trials(study)
    done = found[found["value"].notna()]
    left = len(found) - len(done)
    searched = ", ".join(f"`{d}`" for d in params) or "nothing"
    intro = (f"`groklab tune` search: {direction} `{metric}` over {searched}, "
             f"{definition.get('seeds', 1)} seed(s) per trial; {len(done)} trial(s) with a "
             "value" + (f", {left} without (unfinished, or the metric not recorded)"
                        if left else "") + ".")
    if done.empty:
        return [Paragraph(intro)], []
    best = done.index[0]
    intro += f" Best: `{best}`, {metric} = {number(done.at[best, 'value'], VALUE)}" + (
        f" ({_values(done.loc[best], params)})." if params else ".")
    blocks: list[Block] = [Paragraph(intro),
                           Table(_best_table(done.head(TOP_TABLE), metric, direction, params),
                                 f"Best {min(TOP_TABLE, len(done))} of {len(done)} trials",
                                 _note(metric))]
    made = _figures(study, done, params, metric, direction, prefix)
    blocks += [Figure(str(p.relative_to(root)), caption) for p, caption in made]
    return blocks, [p for p, _ in made]


def _values(row: pd.Series, params: dict[str, Any]) -> str:
    return ", ".join(f"{d} = {setting(row[d], float_format=SEARCHED)}" for d in params)


def _best_table(done: pd.DataFrame, metric: str, direction: str,
                params: dict[str, Any]) -> pd.DataFrame:
    table = pd.DataFrame(index=done.index)
    table[f"{metric} ({direction}d)"] = [number(v, VALUE) for v in done["value"]]
    if metric == DEFAULT_METRIC:
        pairs = zip(done["seeds"], done["censored"], strict=True)
        table["reached 99 %"] = [f"{n - int(c)}/{n}" for n, c in pairs]
    for d in params:
        table[d] = [setting(v, float_format=SEARCHED) for v in done[d]]
    return table


def _note(metric: str) -> str:
    if metric == DEFAULT_METRIC:
        return ("Value as `groklab tune` computes it from the store: mean over seeds of the "
                "first evaluated step above 99 % validation accuracy, a run that never got "
                "there counting as the step budget, plus a tie-break by the final validation "
                "loss smaller than one evaluation interval.")
    return f"Value: `{metric}`, mean over seeds, as `groklab tune` computes it from the store."


def _figures(study: StudyData, done: pd.DataFrame, params: dict[str, Any], metric: str,
             direction: str, prefix: Path) -> list[tuple[Path, str]]:
    from groklab.report import figures  # matplotlib loads only when figures are drawn

    top = done.head(TOP_CURVES)
    names = {c: f"{t} (#{i})" for i, (t, c) in enumerate(zip(top.index, top["config"],
                                                             strict=True), 1)}
    curves = study.curves[study.curves["config"].isin(names)]
    curves = curves.assign(config=curves["config"].map(names))
    made: list[tuple[Path, str]] = []
    if not curves.empty:
        path = prefix.with_name(f"{prefix.name}-best-val_acc.png")
        made.append((figures.grid_figure(curves, f"{study.name}: the {len(top)} best trials",
                                         path, figures.colors(list(names.values()))),
                     f"Validation accuracy of the {len(top)} best trials (#1 = best) against "
                     "steps (mean ± stderr over seeds)"))
    numeric = {d: bool(p.get("log")) for d, p in params.items() if "low" in p}
    if numeric:
        points = done[[*numeric, "value"]].astype(float)
        path = prefix.with_name(f"{prefix.name}-landscape.png")
        figures.landscape_figure(points.rename(columns={"value": metric}), numeric, metric,
                                 done.index[0], f"{study.name}: {metric} of every trial",
                                 path, direction == "maximize")
        made.append((path, f"The landscape: every finished trial's {metric} (colour; brighter "
                     "is better) against the searched values, the best trial starred"))
    return made
