"""Language-model studies in a report (SPEC §7): loss curves, the LM table and samples.

A study whose runs all train the ``text`` task gets, instead of the grokking tables: the
table of ``groklab.lm.summary`` (final train loss, best validation loss, train time, train
and generation tokens per second; mean ± stderr over seeds), a figure of train (dashed) and
validation (solid) loss against steps with ±stderr bands on linear axes (the LM
convention), and the first seed's generated sample of every configuration.
"""

from __future__ import annotations

from pathlib import Path

from groklab.lm.summary import lm_runs, lm_summary, summary_table
from groklab.report.data import StudyData
from groklab.report.document import Block, Code, Figure, Heading, Paragraph, Table

SAMPLE_CHARS = 300


def is_language_model_study(study: StudyData) -> bool:
    return not study.runs.empty and bool((study.runs["task"] == "text").all())


def lm_section(study: StudyData, root: Path, prefix: Path) -> tuple[list[Block], list[Path]]:
    """The blocks and figures of a language-model study (see the module docstring)."""
    runs = lm_runs(root)
    configs = dict(zip(study.finished["id"], study.finished["config"], strict=True))
    runs = runs[runs["id"].isin(configs)].assign(label=lambda d: d["id"].map(configs))
    if runs.empty:
        return [Paragraph("No finished runs yet.")], []
    table = summary_table(lm_summary(runs))
    note = ("Train loss: the last evaluation's, on the evaluation batches of the training "
            "split in eval mode. Runs of one cohort share their wall time, so train tokens/s "
            "is each run's share of the cohort's throughput. Generation: temperature 0.8, "
            "top-k 200, KV cache, one sequence, measured when the run finished.")
    blocks: list[Block] = [Table(table, "Language model (mean ± stderr over seeds)", note)]
    path = _loss_figure(study, prefix.with_name(prefix.name + "-loss.png"))
    blocks += [Heading("Figures", 3), Figure(str(path.relative_to(root)),
                                               "Train (dashed) and validation (solid) loss "
                                               "against steps (mean ± stderr over seeds)"),
               Heading("Samples", 3)]
    for label, group in runs.groupby("label", sort=False):
        first = group.sort_values("seed").iloc[0]
        blocks += [Paragraph(f"`{label}`, seed {first['seed']} (first {SAMPLE_CHARS} "
                             "characters):"), Code(first["sample"][:SAMPLE_CHARS])]
    return blocks, [path]


def _loss_figure(study: StudyData, path: Path) -> Path:
    from groklab.report import figures

    curves = study.curves
    palette = figures.colors(list(dict.fromkeys(study.finished["config"])))
    with figures.plt.rc_context(figures.STYLE):
        fig, ax = figures.plt.subplots(figsize=(8.5, 4.5), layout="constrained")
        figures._plot(ax, curves, "train_loss", palette, "--")
        figures._plot(ax, curves, "val_loss", palette, "-")
        ax.set_xlabel("step")
        ax.set_ylabel("loss (nats per character)")
        fig.suptitle(f"{study.name}: loss")
        figures._legend(fig, palette, styles=True)
        fig.savefig(path, dpi=figures.DPI)
        figures.plt.close(fig)
    return path
