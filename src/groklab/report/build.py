"""Assemble a store's report: report.md, a self-contained report.html, figures/, summary.csv.

The entry points (``write_report``, ``summary_table``, ``load_studies``) open the store once,
in ``load_studies``; every section reads the ``StudyData`` loaded there.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from groklab.format import WHOLE, number, setting
from groklab.report.curriculum import curriculum_section
from groklab.report.data import StudyData, read_studies
from groklab.report.document import Block, Code, Figure, Heading, Paragraph, Table, to_markdown
from groklab.report.html import to_html
from groklab.report.lm import is_language_model_study, lm_section
from groklab.report.search import is_search, search_section
from groklab.report.tables import (
    CENSORED,
    METRICS,
    censored_note,
    partial_note,
    settings_note,
    summarize,
    wide,
)
from groklab.spec import RunSpec
from groklab.store import Store


@dataclass(frozen=True)
class ReportFiles:
    """What ``write_report`` wrote."""

    markdown: Path
    html: Path
    csv: Path
    figures: list[Path]


def load_studies(path: str | Path) -> list[StudyData]:
    """Every study recorded in ``path``'s store (``data.read_studies``); the one place a
    report opens the store."""
    with Store(path, create=False) as store:
        return read_studies(store)


def summary_table(path: str | Path) -> pd.DataFrame:
    """Every study's summary (one row per study, task and configuration) from ``path``'s store."""
    return _summaries(load_studies(path))


def _summaries(studies: list[StudyData]) -> pd.DataFrame:
    parts = [summarize(s.runs).assign(study=s.name) for s in studies]
    frame = pd.concat(parts, ignore_index=True)
    return frame[["study", *[c for c in frame.columns if c != "study"]]]


def write_report(path: str | Path) -> ReportFiles:
    """Write the report of every study in ``path``'s store into ``path``."""
    root = Path(path)
    studies = load_studies(root)
    (root / "figures").mkdir(exist_ok=True)
    blocks: list[Block] = [
        Heading(f"groklab report: {root.resolve().name}", 1),
        Paragraph(f"Store `{root / 'groklab.sqlite'}`; written "
                  f"{time.strftime('%Y-%m-%d %H:%M:%S')}. Cells: mean ± standard error over "
                  "seeds (sample standard deviation / √n)."),
    ]
    pngs: list[Path] = []
    for study in studies:
        section, made = _study_section(study, root)
        blocks += section
        pngs += made
    csv = root / "summary.csv"
    _summaries(studies).to_csv(csv, index=False)
    md = root / "report.md"
    md.write_text(to_markdown(blocks), encoding="utf-8")
    page = root / "report.html"
    page.write_text(to_html(blocks, root, f"groklab report: {root.name}"), encoding="utf-8")
    return ReportFiles(md, page, csv, pngs)


def _study_section(study: StudyData, root: Path) -> tuple[list[Block], list[Path]]:
    blocks: list[Block] = [Heading(f"Study `{study.name}`")]
    if is_search(study):  # groklab tune: the best trials, not a column per trial
        section, made = search_section(study, root, root / "figures" / _slug(study.name))
        return blocks + [Paragraph(_counts(study)), *section, *_settings(study)], made
    definition = study.definition or {}
    if definition.get("description"):
        blocks.append(Paragraph(definition["description"]))
    if is_language_model_study(study):  # report/lm.py: loss, speed and samples
        section, made = lm_section(study, root, root / "figures" / _slug(study.name))
        return blocks + [Paragraph(_counts(study)), *section, *_settings(study)], made
    if definition.get("overrides"):
        changed = "; ".join(f"`{k} = {', '.join(map(setting, v))}`"
                            for k, v in definition["overrides"].items())
        seeds = ", ".join(map(str, definition["seeds"]))
        blocks.append(Paragraph(f"Run with overrides: {changed}; seeds {seeds}."))
    blocks.append(Paragraph(_counts(study)))
    summary = summarize(study.runs)
    if summary.empty:
        return blocks + [Paragraph("No finished runs yet.")], []
    for metric, (title, _) in METRICS.items():
        blocks.append(Table(wide(summary, metric), title, _table_note(summary, metric)))
    made = _figures(study, root)
    blocks.append(Heading("Figures", 3))
    blocks += [Figure(str(p.relative_to(root)), caption) for p, caption in made]
    curriculum, curriculum_pngs = curriculum_section(study, root)  # report/curriculum.py
    blocks += curriculum + _settings(study)
    return blocks, [p for p, _ in made] + curriculum_pngs


def _table_note(summary: pd.DataFrame, metric: str) -> str | None:
    """The notes under ``metric``'s table (paragraphs): censored runs, differing settings."""
    notes = [censored_note(summary, metric) if metric in CENSORED else None,
             partial_note(metric), settings_note(summary)]
    return "\n\n".join(n for n in notes if n) or None


def _counts(study: StudyData) -> str:
    finished = len(study.finished)
    unfinished = len(study.runs) - finished
    text = f"{finished} finished run(s)"
    if unfinished or study.pending:
        text += (f"; {unfinished + study.pending} not finished (run the study again to "
                 "resume; tables and figures show finished runs only)")
    return text + "."


def _figures(study: StudyData, root: Path) -> list[tuple[Path, str]]:
    import groklab.report.figures as figures  # matplotlib loads only when figures are drawn

    curves = study.curves
    palette = figures.colors(list(dict.fromkeys(study.finished["config"])))
    slug = _slug(study.name)
    made = [(figures.grid_figure(curves, f"{study.name}: validation accuracy",
                                 root / "figures" / f"{slug}-val_acc.png", palette),
             "Validation accuracy against steps, every task (mean ± stderr over seeds)")]
    for task, part in curves.groupby("task", sort=False):
        path = root / "figures" / f"{slug}-{_slug(str(task))}.png"
        made.append((figures.task_figure(part, f"{study.name}: {task}", path, palette),
                     f"{task}: train (dashed) and validation (solid) loss and accuracy"))
    for task, part in study.metrics.groupby("task", sort=False):
        path = root / "figures" / f"{slug}-{_slug(str(task))}-metrics.png"
        made.append((figures.metrics_figure(part, f"{study.name}: {task}, recorded metrics",
                                            path, palette),
                     f"{task}: named metrics recorded at every evaluation (mean ± stderr over "
                     "seeds)"))
    for axis in numeric_axes(study):
        points = axis_points(study.finished, axis)
        axis_palette = figures.colors(list(dict.fromkeys(points["config"])))
        for task, part in points.groupby("task", sort=False):
            path = root / "figures" / f"{slug}-{_slug(str(task))}-by-{_slug(axis)}.png"
            made.append((figures.axis_figure(part, axis, AXIS_METRICS,
                                             f"{study.name}: {task} against {axis}", path,
                                             axis_palette),
                         f"{task}: maximum validation accuracy and steps to 99 % against "
                         f"{axis} (mean ± stderr over seeds; a run that never reached 99 % "
                         "counts as the step budget)"))
    return made


AXIS_METRICS = {"max_val_acc": "max validation accuracy",
                "step_val_acc_99": "steps to 99 % validation accuracy"}


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


def _settings(study: StudyData) -> list[Block]:
    blocks: list[Block] = [Heading("Settings", 3)]
    fields = [c for c in RunSpec.model_fields if c in study.runs.columns and c != "lr_name"]
    cells = study.runs[fields].map(lambda v: json.dumps(v) if isinstance(v, list) else v)
    common = {c: study.runs[c].iloc[0] for c in fields if cells[c].nunique(dropna=False) == 1}
    varying = [c for c in fields if c not in common]
    blocks.append(Paragraph("Common to every run: " + ", ".join(
        f"`{k} = {setting(v)}`" for k, v in common.items()) + "."))
    if varying:
        blocks.append(Paragraph("Varying: " + ", ".join(f"`{k}`" for k in varying) + "."))
    if study.definition:
        blocks += [Paragraph("Study definition as run:"),
                   Code(json.dumps(study.definition, indent=2))]
    env = study.environment
    if env:
        versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
        blocks.append(Paragraph(f"Device: `{env['device']}` ({env['device_name']}, "
                                f"{env['torch_threads']} torch threads), {env['platform']}. "
                                f"Software: {versions}."))
    train_s = _training_seconds(study.finished)
    wall = (f"wall time {number(study.wall_s, WHOLE)} s over all invocations; "
            if study.wall_s else "")
    blocks.append(Paragraph(f"Time: {wall}training time {number(train_s, WHOLE)} s (sum over "
                            "cohorts)."))
    return blocks


def _training_seconds(runs: pd.DataFrame) -> float:
    """Runs of one cohort share start time and wall time: count each cohort once."""
    if runs.empty:
        return 0.0
    return float(runs.drop_duplicates(["started", "wall_s"])["wall_s"].sum())


def _slug(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text)
