"""The grokking section of a study: one table per summary metric (mean ± stderr over seeds,
a column per configuration) and the figures (validation accuracy of every task, each task's
loss and accuracy, recorded named metrics, and the summary metrics against every numeric
grid axis)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from groklab.report.data import StudyData
from groklab.report.document import Block, Figure, Heading, Paragraph, Table
from groklab.report.measures import generic_metrics
from groklab.report.sections import slug
from groklab.report.tables import (
    CENSORED,
    METRICS,
    partial_note,
    settings_note,
    summarize,
    wide,
)

AXIS_METRICS = {"max_val_acc": "max validation accuracy",
                "step_val_acc_99": "steps to 99 % validation accuracy"}


def grokking_section(study: StudyData, root: Path,
                     prefix: Path) -> tuple[list[Block], list[Path]]:
    """The tables and figures of the study's finished runs."""
    summary = summarize(study.runs)
    if summary.empty:
        return [Paragraph("No finished runs yet.")], []
    blocks: list[Block] = []
    shared = [_censoring_note(summary), settings_note(summary)]  # said once, where first due
    for metric, (title, _) in METRICS.items():
        notes = [partial_note(metric)]
        if shared[0] and metric in CENSORED and (summary[CENSORED[metric]] > 0).any():
            notes, shared[0] = [shared[0], *notes], None
        if shared[1]:
            notes, shared[1] = [*notes, shared[1]], None
        blocks.append(Table(wide(summary, metric), title,
                            "\n\n".join(n for n in notes if n) or None))
    made = _figures(study, prefix, summary)
    blocks.append(Heading("Figures", 3))
    blocks += [Figure(str(p.relative_to(root)), caption, plot) for p, caption, plot in made]
    return blocks, [p for p, _, _ in made]


def _censoring_note(summary: pd.DataFrame) -> str | None:
    """The one footnote for every starred cell of the study's tables: runs that never reached
    a step metric's threshold count as the step budget; how many, per table and cell."""
    parts = []
    for metric, flag in CENSORED.items():
        flagged = summary[summary[flag] > 0]
        if not flagged.empty:
            cells = ", ".join(f"{r.task} / {r.config} {getattr(r, flag)} of {r.n}"
                              for r in flagged.itertuples(index=False))
            parts.append(f"{METRICS[metric][0].split(' (')[0].lower()}: {cells}")
    if not parts:
        return None
    budgets = ", ".join(str(s) for s in dict.fromkeys(summary["steps"]))
    return ("* In a starred cell, runs that never got there count as the step budget "
            f"({budgets}): the mean is a lower bound. Such runs, by table: "
            + "; ".join(parts) + ".")


def _figures(study: StudyData, prefix: Path,
             summary: pd.DataFrame) -> list[tuple[Path, str, dict[str, Any] | None]]:
    """(PNG, caption, interactive twin or None) of every figure of the section."""
    # matplotlib loads only when figures are drawn
    from groklab.report import interactive
    from groklab.report.figures import (
        axis_figure,
        colors,
        grid_figure,
        metrics_figure,
        steps_figure,
        task_figure,
    )

    def png(name: str) -> Path:
        return prefix.with_name(f"{prefix.name}-{name}.png")

    curves = study.curves
    palette = colors(list(dict.fromkeys(study.finished["config"])))
    title = f"{study.name}: validation accuracy"
    made: list[tuple[Path, str, dict[str, Any] | None]] = [
        (grid_figure(curves, title, png("val_acc"), palette),
         "Validation accuracy against steps, every task (mean ± stderr over seeds)",
         interactive.grid_plot(curves, title, palette))]
    held = "step_val_acc_99_held"
    if (summary[CENSORED[held]] < summary["n"]).any():  # some run held 99 %
        made.append((steps_figure(summary, held, "steps to held 99 % validation accuracy",
                                  CENSORED[held], f"{study.name}: steps to held 99 %",
                                  png("held"), palette),
                     "Steps to held 99 % validation accuracy (above 0.99 from there to the end "
                     "of the run), mean ± stderr over seeds; hatched: some runs never held it "
                     "and count as the step budget", None))
    for task, part in curves.groupby("task", sort=False):
        title = f"{study.name}: {task}"
        made.append((task_figure(part, title, png(slug(str(task))), palette),
                     f"{task}: train (dashed) and validation (solid) loss and accuracy",
                     interactive.task_plot(part, title, palette)))
    for task, part in generic_metrics(study.metrics).groupby("task", sort=False):
        title = f"{study.name}: {task}, recorded metrics"
        made.append((metrics_figure(part, title, png(f"{slug(str(task))}-metrics"), palette),
                     f"{task}: named metrics recorded at every evaluation (mean ± stderr over "
                     "seeds)", interactive.metrics_plot(part, title, palette)))
    for axis in numeric_axes(study):
        points = axis_points(study.finished, axis)
        axis_palette = colors(list(dict.fromkeys(points["config"])))
        for task, part in points.groupby("task", sort=False):
            path = png(f"{slug(str(task))}-by-{slug(axis)}")
            made.append((axis_figure(part, axis, AXIS_METRICS,
                                     f"{study.name}: {task} against {axis}", path,
                                     axis_palette),
                         f"{task}: maximum validation accuracy and steps to 99 % against "
                         f"{axis} (mean ± stderr over seeds; a run that never reached 99 % "
                         "counts as the step budget)", None))
    return made


def numeric_axes(study: StudyData) -> list[str]:
    """The study's grid axes (after overrides) with several numeric values, ``task`` aside."""
    definition = study.definition or {}
    grid = dict(definition.get("grid") or {})
    grid |= {k: v for k, v in (definition.get("overrides") or {}).items() if len(v) > 1}
    return [k for k, values in grid.items() if k not in ("task", "seed") and len(values) > 1
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
            and k in study.finished.columns]


def axis_points(runs: pd.DataFrame, axis: str) -> pd.DataFrame:
    """Per task, configuration (its label without ``axis=value``) and axis value: the
    summary metrics over seeds."""
    token = re.compile(rf"(^|\s){re.escape(axis)}=\S+")
    base = runs.assign(config=[token.sub("", c).strip() or "all runs" for c in runs["config"]])
    parts = []
    for value, part in base.groupby(axis, sort=True):
        parts.append(summarize(part.drop(columns=["settings"], errors="ignore")
                               .assign(settings=part["config"])).assign(**{axis: value}))
    return pd.concat(parts, ignore_index=True)
