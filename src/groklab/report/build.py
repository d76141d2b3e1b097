"""Assemble a store's report: report.md, a self-contained report.html, figures/, summary.csv.

The entry points (``write_report``, ``summary_table``, ``load_studies``) take one store's
folder or several; each store is opened once, by ``data.load``, and every section reads the
``StudyData`` loaded there. A report of several stores names each study's store, lists each
study's runs with their store, adds a ``store`` column to summary.csv and says once which
run ids are in more than one store (each counted once); a report of one store is as it
always was.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from groklab.format import MISSING, WHOLE, number, setting
from groklab.report.curriculum import curriculum_section, has_curricula
from groklab.report.data import (
    AD_HOC,
    Loaded,
    StudyData,
    ignored_settings,
    is_ad_hoc,
    load,
    shared_note,
)
from groklab.report.document import Block, Code, Heading, Paragraph, Table, to_markdown
from groklab.report.grokking import grokking_section
from groklab.report.html import to_html
from groklab.report.listing import results_rows
from groklab.report.lm import is_language_model_study, lm_section
from groklab.report.measures import has_measures, measures_section
from groklab.report.search import is_search, search_section
from groklab.report.sections import Section, every_study, slug
from groklab.report.tables import summarize
from groklab.spec import RunSpec
from groklab.store import STORE_NAME
from groklab.store.store import EARLIER_KEYS

# Every report section, in report order (report/sections.py: the interface). Adding one is
# a module of report/ and one entry here.
SECTIONS: tuple[Section, ...] = (
    Section("search", is_search, search_section, whole=True, described=False),  # groklab tune
    Section("language model", is_language_model_study, lm_section, whole=True),
    Section("grokking", every_study, grokking_section),  # tables and figures
    Section("curriculum", has_curricula, curriculum_section),
    Section("progress measures", has_measures, measures_section),  # docs/protocol.md §4.1
)


@dataclass(frozen=True)
class ReportFiles:
    """What ``write_report`` wrote."""

    markdown: Path
    html: Path
    csv: Path
    figures: list[Path]
    # run id -> the stores holding it, when several stores share runs (data.Loaded.shared)
    shared: dict[str, list[str]] = field(default_factory=dict)


Paths = str | Path | Sequence[str | Path]  # one store's folder, or several


def _paths(path: Paths) -> list[Path]:
    return [Path(path)] if isinstance(path, str | Path) else [Path(p) for p in path]


def load_studies(path: Paths) -> list[StudyData]:
    """Every study recorded in the store at ``path`` (or, merged, in the stores at several
    paths: ``data.load``, the one place a report opens a store)."""
    return load(_paths(path)).studies


def summary_table(path: Paths) -> pd.DataFrame:
    """Every study's summary (one row per study, task and configuration) from the store at
    ``path`` (several: with a ``store`` column after ``study``)."""
    return _summaries(load(_paths(path)))


def _summaries(loaded: Loaded) -> pd.DataFrame:
    several = len(loaded.stores) > 1
    parts = [summarize(s.runs).assign(study=s.name, **({"store": s.store} if several else {}))
             for s in loaded.studies]
    frame = pd.concat(parts, ignore_index=True)
    first = ["study", "store"] if several else ["study"]
    return frame[[*first, *[c for c in frame.columns if c not in first]]]


def write_report(path: Paths, out: str | Path | None = None) -> ReportFiles:
    """Write the report of every study in the store at ``path`` into ``out`` (default:
    ``path`` itself). The store is only read, so a read-only store reports into another
    folder. ``path`` may name several stores: one report of them all, into ``out`` (then
    required: such a report has no single home)."""
    paths = _paths(path)
    if len(paths) > 1 and out is None:
        raise ValueError("a report of several stores needs out (a folder for it)")
    root = paths[0]
    target = root if out is None else Path(out)
    loaded = load(paths)
    studies = loaded.studies
    (target / "figures").mkdir(parents=True, exist_ok=True)
    cells = ("Cells: mean ± standard error over seeds (sample standard deviation / √n); a "
             f"cell of one seed shows its value alone; {MISSING}: no value.")
    written = time.strftime('%Y-%m-%d %H:%M:%S')
    if len(paths) == 1:
        title = f"groklab report: {root.resolve().name}"
        blocks: list[Block] = [
            Heading(title, 1),
            Paragraph(f"Store `{root / 'groklab.sqlite'}`; written {written}. {cells}")]
    else:
        title = f"groklab report: {', '.join(p.resolve().name for p in paths)}"
        stores = ", ".join(f"`{p / STORE_NAME}`" for p in paths)
        blocks = [Heading(title, 1),
                  Paragraph(f"Stores {stores}; written {written}. Each study comes from one "
                            "store, named under its heading, and lists its runs; a study name "
                            f"found in several stores is followed by its store. {cells}")]
        note = shared_note(loaded.shared)
        if note:
            blocks.append(Paragraph(note + "."))
    pngs: list[Path] = []
    for study in studies:
        section, made = _study_section(study, target)
        blocks += section
        pngs += made
    csv = target / "summary.csv"
    _summaries(loaded).to_csv(csv, index=False)
    md = target / "report.md"
    md.write_text(to_markdown(blocks), encoding="utf-8")
    page = target / "report.html"
    page.write_text(to_html(blocks, target, title), encoding="utf-8")
    return ReportFiles(md, page, csv, pngs, loaded.shared)


def _study_section(study: StudyData, root: Path) -> tuple[list[Block], list[Path]]:
    """The study's heading, description, run counts, its sections (``SECTIONS``) and
    settings."""
    whole = next((s for s in SECTIONS if s.whole and s.applies(study)), None)
    definition = study.definition or {}
    blocks: list[Block] = [Heading(_title(study))]
    if study.store is not None:
        blocks.append(Paragraph(f"From store `{study.store}`."))
    if definition.get("earlier_version_of"):
        blocks.append(Paragraph(
            f"An earlier version of study `{definition['earlier_version_of']}`: its "
            "definition has changed since these runs were recorded, and the runs below that "
            "the current definition does not include appear only here."))
    if definition.get("description") and (whole is None or whole.described):
        blocks.append(Paragraph(definition["description"]))
    if whole is None and definition.get("overrides"):
        changed = "; ".join(f"`{k} = {', '.join(map(setting, v))}`"
                            for k, v in definition["overrides"].items())
        seeds = ", ".join(map(str, definition["seeds"]))
        blocks.append(Paragraph(f"Run with overrides: {changed}; seeds {seeds}."))
    blocks.append(Paragraph(_counts(study)))
    if whole is None and study.finished.empty:
        return blocks + [Paragraph("No finished runs yet.")] + _runs(study), []
    prefix = root / "figures" / slug(study.name)
    made: list[Path] = []
    for section in [whole] if whole else [s for s in SECTIONS if s.applies(study)
                                          and not s.whole]:
        section_blocks, section_made = section.build(study, root, prefix)
        blocks += section_blocks
        made += section_made
    return blocks + _runs(study) + _settings(study), made


def _title(study: StudyData) -> str:
    """A study's heading; the runs of no study are named for the command that made them
    (and, where several stores have such runs, for their store)."""
    if is_ad_hoc(study):
        where = "" if study.name == AD_HOC else f" of store `{study.store}`"  # named apart
        return f"Runs of `groklab run`{where} (in no study)"
    return f"Study `{study.name}`"


def _runs(study: StudyData) -> list[Block]:
    """In a report of several stores: the study's runs, one row each, with their store (the
    columns of ``groklab results A B``); nothing in a report of one store."""
    if study.store is None or study.runs.empty:
        return []
    rows = [{**r, "label": r["config"]} for r in study.runs.to_dict("records")]
    columns, cells = results_rows(rows)
    frame = pd.DataFrame(cells, columns=columns).set_index(columns[0])
    return [Table(frame, "Runs (with the store each was read from)")]


def _counts(study: StudyData) -> str:
    finished = len(study.finished)
    unfinished = len(study.runs) - finished
    text = f"{finished} finished run(s)"
    if unfinished or study.pending:
        again = ("the same command" if study.definition is None else
                 "that version's study" if study.definition.get("earlier_version_of")
                 else "the study")
        text += (f"; {unfinished + study.pending} not finished (run {again} again to "
                 "resume; tables and figures show finished runs only)")
    if study.elsewhere:
        text += (f"; {study.elsewhere} more counted under another store (the same run id, "
                 "counted once)")
    return text + "."


def used_settings(runs: pd.DataFrame) -> list[str]:
    """The run settings (``RunSpec`` fields, not the label) that at least one of ``runs``
    uses: a setting every run ignores (``RunSpec.ignored``: ``p`` for permutation, the MLP's
    width for a Transformer) is left out."""
    keys = list(dict.fromkeys(runs["settings"])) if "settings" in runs.columns else []
    ignored = [ignored_settings(k) for k in keys]
    return [c for c in RunSpec.model_fields if c in runs.columns and c != "lr_name"
            and not (ignored and all(c in i for i in ignored))]


def _settings(study: StudyData) -> list[Block]:
    blocks: list[Block] = [Heading("Settings", 3)]
    fields = used_settings(study.runs)
    cells = study.runs[fields].map(lambda v: json.dumps(v) if isinstance(v, list) else v)
    common = {c: study.runs[c].iloc[0] for c in fields if cells[c].nunique(dropna=False) == 1}
    varying = [c for c in fields if c not in common]
    blocks.append(Paragraph("Common to every run: " + ", ".join(
        f"`{k} = {setting(v)}`" for k, v in common.items()) + "."))
    if varying:
        blocks.append(Paragraph("Varying: " + ", ".join(f"`{k}`" for k in varying) + "."))
    if study.definition:
        definition = {k: v for k, v in study.definition.items() if k not in EARLIER_KEYS}
        blocks += [Paragraph("Study definition as run:"), Code(json.dumps(definition, indent=2))]
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

