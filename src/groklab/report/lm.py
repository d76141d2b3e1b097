"""Language-model studies in a report (docs/protocol.md §7): loss curves, the LM table and
samples.

A study whose runs all train a language-model task (``register_task(language_model=True)``:
the ``text`` task) gets, instead of the grokking tables: the table of ``groklab.lm.summary``
(final train loss, best validation loss, train time, train and generation tokens per
second; mean ± stderr over seeds), a figure of train (dashed) and
validation (solid) loss against steps with ±stderr bands on linear axes (the LM
convention), and the first seed's generated sample of every configuration. Everything
comes from the loaded ``StudyData`` (runs, curves, named metrics and texts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from groklab.lm.summary import lm_frame, lm_row, lm_summary, lm_table
from groklab.report.data import StudyData
from groklab.report.document import Block, Code, Figure, Heading, Paragraph, Table
from groklab.tasks import language_tasks

SAMPLE_CHARS = 300


def is_language_model_study(study: StudyData) -> bool:
    return not study.runs.empty and bool(study.runs["task"].isin(language_tasks()).all())


def lm_section(study: StudyData, root: Path, prefix: Path) -> tuple[list[Block], list[Path]]:
    """The blocks and figures of a language-model study (see the module docstring)."""
    runs = _lm_rows(study)
    if runs.empty:
        return [Paragraph("No finished runs yet.")], []
    table = lm_table(lm_summary(runs))
    note = ("Train loss: the last evaluation's, on the evaluation batches of the training "
            "split in eval mode. Runs of one cohort share their wall time, so train tokens/s "
            "is each run's share of the cohort's throughput. Generation: temperature 0.8, "
            "top-k 200, KV cache, one sequence, measured when the run finished.")
    blocks: list[Block] = [Table(table, "Language model (mean ± stderr over seeds)", note)]
    path = _loss_figure(study, prefix.with_name(prefix.name + "-loss.png"))
    blocks += [Heading("Figures", 3), Figure(str(path.relative_to(root)),
                                               "Train (dashed) and validation (solid) loss "
                                               "against steps (mean ± stderr over seeds)",
                                               _loss_plot(study)),
               Heading("Samples", 3)]
    for label, group in runs.groupby("label", sort=False):
        first = group.sort_values("seed").iloc[0]
        blocks += [Paragraph(f"`{label}`, seed {first['seed']} (first {SAMPLE_CHARS} "
                             "characters):"), Code(first["sample"][:SAMPLE_CHARS])]
    return blocks, [path]


def _lm_rows(study: StudyData) -> pd.DataFrame:
    """``groklab.lm.summary``'s rows of the study's finished language-model runs, labelled
    by their configuration, in the study's order."""
    finished = study.finished[study.finished["task"].isin(language_tasks())]
    best = study.curves.groupby("run_id")["val_loss"].min()
    metrics = study.metrics
    gen = metrics[metrics["name"] == "gen_tokens_per_s"].groupby("run_id")["value"].last()
    return lm_frame(lm_row(r, r["config"], best.get(r["id"]), gen.get(r["id"]),
                           study.texts.get(r["id"], {}).get("sample", ""))
                    for r in finished.to_dict("records"))


def _loss_figure(study: StudyData, path: Path) -> Path:
    from groklab.report import figures

    curves = study.curves
    palette = figures.colors(list(dict.fromkeys(study.finished["config"])))
    with figures.plt.rc_context(figures.STYLE):
        fig, ax = figures.plt.subplots(figsize=(8.5, 4.5), layout="constrained")
        figures.plot_mean(ax, curves, "train_loss", palette, "--")
        figures.plot_mean(ax, curves, "val_loss", palette, "-")
        ax.set_xlabel("step")
        ax.set_ylabel("loss (nats per character)")
        fig.suptitle(f"{study.name}: loss")
        figures.add_legend(fig, palette, styles=True)
        fig.savefig(path, dpi=figures.DPI)
        figures.plt.close(fig)
    return path


def _loss_plot(study: StudyData) -> dict[str, Any]:
    """``_loss_figure``'s interactive twin (report/interactive.py)."""
    from groklab.report import figures
    from groklab.report.interactive import Line, Panel, curves_plot

    curves = study.curves
    palette = figures.colors(list(dict.fromkeys(study.finished["config"])))
    panel = Panel("loss", [Line(curves, "train_loss", "train loss", dashed=True),
                           Line(curves, "val_loss", "validation loss")],
                  "loss (nats per character)")
    return curves_plot(f"{study.name}: loss", [panel], palette, log_x=False)
