"""Curricula in a report: runs that continue other runs (``init_from``, studies/stages.py).

For every configuration whose finished runs start from another run of the study, the
report shows (docs/protocol.md §8):

- one figure per configuration: the whole curriculum on one step axis (each stage's steps
  after the previous stages' budgets, a dashed line at every stage boundary), and the last
  stage alone on its own steps, with any configuration of the study that trains the same
  last stage from scratch (same settings but ``init_from``) drawn beside it;
- a table of the last stage's final and best validation accuracy and its first step above
  99 % (mean ± stderr over seeds), for the curricula and those from-scratch runs.

Everything comes from the store (``StudyData``); a chain whose parent is not a finished run
of the study is left out. "The same last stage" is the same settings key
(``RunSpec.settings_key``: every setting but the seed and ``init_from``), the key
``StudyData.runs`` holds per run in column ``settings``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from groklab.format import ACCURACY, MISSING, WHOLE, mean_se, stderr
from groklab.report.data import StudyData
from groklab.report.document import Block, Figure, Heading, Paragraph, Table
from groklab.report.sections import slug


def chains(study: StudyData) -> dict[str, list[list[str]]]:
    """Configuration -> its runs' chains of run ids, first stage first (finished only)."""
    runs = study.finished
    if runs.empty or "init_from" not in runs.columns:
        return {}
    parent = {rid: p for rid, p in zip(runs["id"], runs["init_from"], strict=True)
              if isinstance(p, str)}
    parents = set(parent.values())
    out: dict[str, list[list[str]]] = {}
    for rid, config in zip(runs["id"], runs["config"], strict=True):
        if rid not in parent or rid in parents:
            continue
        chain = [rid]
        while chain[0] in parent:
            if parent[chain[0]] not in set(runs["id"]):
                break
            chain.insert(0, parent[chain[0]])
        if len(chain) > 1 and chain[0] not in parent:
            out.setdefault(config, []).append(chain)
    return out


def from_scratch(study: StudyData, last_ids: list[str]) -> list[str]:
    """Configurations of the study that train the last stage of ``last_ids`` from scratch:
    runs without ``init_from`` whose settings key equals one of theirs."""
    runs = study.finished
    wanted = set(runs.loc[runs["id"].isin(last_ids), "settings"])
    out: list[str] = []
    for config, parent, key in zip(runs["config"], runs["init_from"], runs["settings"],
                                   strict=True):
        if not isinstance(parent, str) and key in wanted and config not in out:
            out.append(config)
    return out


def joined_curves(study: StudyData, chain: list[str]) -> tuple[pd.DataFrame, list[int]]:
    """A chain's curves on one step axis, and the stage boundaries (global steps)."""
    steps = study.finished.set_index("id")["steps"]
    parts, offset, bounds = [], 0, []
    for rid in chain:
        part = study.curves[study.curves["run_id"] == rid].copy()
        part["step"] = part["step"] + offset
        parts.append(part)
        offset += int(steps[rid])
        bounds.append(offset)
    return pd.concat(parts, ignore_index=True), bounds[:-1]


def _cell(values: Sequence[float], fmt: str = ACCURACY) -> str:
    """``mean ± stderr`` over seeds in format ``fmt`` (``format.mean_se``: one seed shows its
    value alone, as in every table)."""
    if not values:
        return MISSING
    return mean_se(sum(values) / len(values), stderr(values), fmt)


def last_stage_table(study: StudyData, configs: list[str]) -> pd.DataFrame:
    """Per configuration: the last stage's final and max validation accuracy, step > 99 %."""
    runs = study.finished
    rows = []
    for config in configs:
        ids = list(runs[runs["config"] == config]["id"])
        curves = [study.curves[study.curves["run_id"] == r] for r in ids]
        final = [float(c["val_acc"].iloc[-1]) for c in curves if len(c)]
        best = [float(c["val_acc"].max()) for c in curves if len(c)]
        reached = [c.loc[c["val_acc"] > 0.99, "step"] for c in curves]
        hit = [int(r.iloc[0]) for r in reached if len(r)]
        steps = (f"{_cell(hit, WHOLE)} ({len(hit)}/{len(ids)} reached)" if hit
                 else f"not reached (0/{len(ids)})")
        rows.append({"configuration": config, "seeds": len(ids), "final val acc": _cell(final),
                     "max val acc": _cell(best), "step val acc > 99 %": steps})
    return pd.DataFrame(rows).set_index("configuration")


def has_curricula(study: StudyData) -> bool:
    """Whether a finished run of ``study`` continues another (the section applies)."""
    return bool(chains(study))


def curriculum_section(study: StudyData, root: Path,
                       prefix: Path) -> tuple[list[Block], list[Path]]:
    """The report blocks and figures of the study's curricula (none: nothing); figures are
    written to ``prefix``-curriculum-*.png under ``root``."""
    found = chains(study)
    if not found:
        return [], []
    from groklab.report import figures

    blocks: list[Block] = [Heading("Curricula", 3)]
    made: list[Path] = []
    compared: list[str] = []
    for config, config_chains in found.items():
        scratch = from_scratch(study, [c[-1] for c in config_chains])
        compared += [config, *[s for s in scratch if s not in compared]]
        path = prefix.with_name(f"{prefix.name}-curriculum-{slug(config)}.png")
        joined = [joined_curves(study, c) for c in config_chains]
        with figures.plt.rc_context(figures.STYLE):
            fig, (ax_all, ax_last) = figures.plt.subplots(1, 2, figsize=(11, 4.2),
                                                          layout="constrained")
            whole = pd.concat([c.assign(config=config) for c, _ in joined])
            _draw(ax_all, whole, "C0")
            for b in joined[0][1]:
                ax_all.axvline(b, color="0.3", ls=":", lw=1.2)
            ax_all.set_title(f"{config}: all stages (dotted: stage boundary)")
            last = study.curves[study.curves["run_id"].isin([c[-1] for c in config_chains])]
            _draw(ax_last, last.assign(config=config), "C0", label=config)
            for i, name in enumerate(scratch, 1):
                part = study.curves[study.curves["config"] == name]
                _draw(ax_last, part, f"C{i}", label=name)
            ax_last.set_title("last stage alone")
            ax_last.legend(loc="lower right", frameon=False)
            for ax in (ax_all, ax_last):
                ax.set_xlabel("step")
                ax.set_ylabel("accuracy (solid: validation, dashed: train)")
                ax.set_ylim(-0.02, 1.02)
            fig.savefig(path, dpi=figures.DPI)
            figures.plt.close(fig)
        made.append(path)
        blocks.append(Figure(str(path.relative_to(root)), f"{config}: accuracy across stages "
                             "(mean ± stderr over seeds), then the last stage alone"))
    blocks.insert(1, Table(last_stage_table(study, compared), "Last stage: validation accuracy",
                           "Mean ± stderr over seeds; steps count within the last stage."))
    blocks.insert(1, Paragraph("Runs that continue other runs (`init_from`): the last stage "
                               "compared with the same stage trained from scratch."))
    return blocks, made


def _draw(ax: Any, curves: pd.DataFrame, color: str, label: str | None = None) -> None:
    from groklab.report.figures import band

    for column, style in (("val_acc", "-"), ("train_acc", "--")):
        s = band(curves, column)
        ax.plot(s["step"], s["mean"], style, color=color, lw=1.5,
                label=label if style == "-" else None)
        ax.fill_between(s["step"], s["mean"] - s["se"], s["mean"] + s["se"], color=color,
                        alpha=0.2, lw=0)
