"""Progress measures in a report, and the figures of ``groklab analyze`` (docs/protocol.md
§4.1).

A study whose finished runs recorded measures (``measures`` "norms" or "fourier") gets, per
task, one figure on a shared step axis (log scale): validation accuracy, restricted loss,
excluded loss (the loss of all logits on the same training pairs dashed, for comparison) and
the weight norm, one line per configuration (mean ± stderr over seeds), so the phases can be
read off: memorisation (train loss falls, restricted loss does not), circuit formation
(restricted loss falls, excluded loss rises) and cleanup (weight norm falls, validation
accuracy jumps). And a table, one row per run, of the key frequencies of its last measured
spectra (embedding and logits) with the steps of those phases (``phase_steps``). Everything
comes from the loaded ``StudyData``: the store's curves and long metrics table.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from groklab.format import MISSING, WHOLE, is_missing, number
from groklab.measures import (
    KEY_SHARE,
    SPECTRA,
    is_spectrum_metric,
    key_frequencies,
    stored_spectrum,
)
from groklab.report.data import StudyData
from groklab.report.document import Block, Figure, Heading, Paragraph, Table
from groklab.report.sections import slug

# the panels of the progress figure: (metric, title, log y); val_acc comes from the curves
PANELS = (("val_acc", "validation accuracy", False), ("restricted_loss", "restricted loss", True),
          ("excluded_loss", "excluded loss", True), ("weight_norm", "weight norm (L2)", False))


def has_measures(study: StudyData) -> bool:
    """Whether any finished run of the study recorded measures."""
    return bool((study.metrics["name"] == "weight_norm").any())


def generic_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    """``metrics`` without the per-frequency norms (this section's table summarises them;
    one panel per frequency would swamp a figure of named metrics)."""
    return metrics.loc[~_spectral(metrics)]


def phase_steps(curve: pd.DataFrame, metrics: pd.DataFrame, run: Mapping[str, Any]
                ) -> dict[str, float | None]:
    """One run's phase steps from its curve and its long metrics (step, name, value):

    - ``memorised``: the first step with train accuracy > 0.99 (``step_train_acc_99``);
    - ``restricted_below``: the first measured step after memorisation from which the
      restricted loss stays below its value at memorisation (the first measured step at or
      after ``memorised``) at every later measured step;
    - ``excluded_peak``: the measured step of the largest excluded loss;
    - ``val_acc_99``: the first step with validation accuracy > 0.99 (``step_val_acc_99``).
    """
    def series(name: str) -> pd.Series:
        part = metrics[metrics["name"] == name]
        return part.set_index("step")["value"].sort_index()

    memorised = _step(run.get("step_train_acc_99"))
    restricted, excluded = series("restricted_loss"), series("excluded_loss")
    below = None
    if memorised is not None and not restricted.empty:
        after = restricted[restricted.index >= memorised]
        if len(after) > 1:
            level = after.iloc[0]
            later = after.iloc[1:]
            above = later[later >= level]
            rest = later[later.index > above.index.max()] if not above.empty else later
            below = _step(rest.index.min()) if not rest.empty else None
    peak = _step(excluded.idxmax()) if not excluded.empty else None
    return {"memorised": memorised, "restricted_below": below, "excluded_peak": peak,
            "val_acc_99": _step(run.get("step_val_acc_99"))}


def key_table(study: StudyData) -> pd.DataFrame:
    """One row per finished run with recorded spectra: the key frequencies of its embedding
    and of its logits at its last measured step, the participation ratios, the losses there
    and the phase steps (``phase_steps``)."""
    rows = []
    metrics = study.metrics
    for run in study.finished.to_dict("records"):
        mine = metrics[metrics["run_id"] == run["id"]]
        spectra = mine.loc[_spectral(mine)]
        if spectra.empty:
            continue
        last = int(spectra["step"].max())
        at_last = mine[mine["step"] == last].set_index("name")["value"].to_dict()
        phases = phase_steps(study.curves[study.curves["run_id"] == run["id"]], mine, run)
        row = {"run": run["id"][:8], "configuration": run["config"], "task": run["task"],
               "seed": run["seed"], "step": last}
        for which in SPECTRA:
            norms = stored_spectrum(at_last, which)
            row[f"{which} key frequencies"] = (MISSING if norms is None
                                               else key_text(key_frequencies(norms), norms))
            row[f"{which} participation"] = number(at_last.get(f"{which}_participation"), ".1f")
        row |= {"restricted loss": number(at_last.get("restricted_loss"), ".3g"),
                "excluded loss": number(at_last.get("excluded_loss"), ".3g"),
                **{label: number(phases[k], WHOLE) for k, label in PHASE_COLUMNS.items()}}
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.set_index("run") if not frame.empty else frame


def key_text(keys: list[int], norms: Any, listed: int = 10) -> str:
    """Key frequencies as text: listed up to ``listed`` of them, else "n of K"."""
    if not keys:
        return MISSING
    if len(keys) > listed:
        return f"{len(keys)} of {len(norms) - 1}"
    return ", ".join(map(str, keys))


PHASE_COLUMNS = {"memorised": "train acc 99 %", "restricted_below": "restricted < memorised",
                 "excluded_peak": "excluded peak", "val_acc_99": "val acc 99 %"}


def measures_section(study: StudyData, root: Path,
                     prefix: Path) -> tuple[list[Block], list[Path]]:
    """The progress-measure figures (one per task) and the key-frequency table."""
    palette_order = list(dict.fromkeys(study.finished["config"]))
    blocks: list[Block] = [Heading("Progress measures", 3), Paragraph(
        "Recorded during training (docs/protocol.md §4.1): restricted loss keeps only the "
        "key frequencies' cos/sin(w(x ± y)) components of the logits (and their constant), "
        "excluded loss removes them; both on each run's training pairs, with the loss of "
        "all logits on the same pairs dashed. Key frequencies: the fewest holding "
        f"{KEY_SHARE:.0%} of the norm² of a non-constant Fourier spectrum, of the logits "
        "along cos/sin(w(x ± y)) (those the losses use) or of the embedding.")]
    made: list[Path] = []
    for task, part in study.metrics.groupby("task", sort=False):
        path = prefix.with_name(f"{prefix.name}-{slug(str(task))}-measures.png")
        curves = study.curves[study.curves["task"] == task]
        title = f"{study.name}: {task}, progress measures"
        progress_figure(curves, part, title, path, palette_order)
        made.append(path)
        blocks.append(Figure(str(path.relative_to(root)),
                             f"{task}: validation accuracy, restricted and excluded loss and "
                             "weight norm against steps (mean ± stderr over seeds)",
                             progress_plot(curves, part, title, palette_order)))
    table = key_table(study)
    if not table.empty:
        blocks.append(Table(table, "Key frequencies per run (at its last measured step)",
                            PHASE_NOTE))
    return blocks, made


PHASE_NOTE = ("Participation: the effective number of frequencies of the spectrum, "
              "(Σ e_k)² / Σ e_k² (1: one frequency; ⌊p/2⌋: all equal). Phase steps: train acc "
              "99 % (memorisation); restricted < memorised, the first measured step after "
              "memorisation from which the restricted loss stays below its value at "
              "memorisation; excluded peak, the measured step of the largest excluded loss; "
              "val acc 99 %. " + MISSING + ": not reached or not measured.")


# -- figures (matplotlib loads only here) ----------------------------------------------------
def progress_figure(curves: pd.DataFrame, metrics: pd.DataFrame, title: str, path: Path,
                    configs: list[str]) -> Path:
    """Validation accuracy, restricted loss, excluded loss and weight norm against steps
    (shared log axis; the panels whose metric was recorded), a line per configuration."""
    from groklab.report import figures

    wide = {name: metrics[metrics["name"] == name].rename(columns={"value": name})
            for name in ("restricted_loss", "excluded_loss", "full_loss", "weight_norm")}
    panels = [(m, t, log) for m, t, log in PANELS if m == "val_acc" or not wide[m].empty]
    shown = [c for c in configs if c in set(curves["config"]) | set(metrics["config"])]
    palette = figures.colors(shown)
    with figures.plt.rc_context(figures.STYLE):
        fig, axes = figures.plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 1.7, 3.6),
                                         sharex=True, squeeze=False, layout="constrained")
        for ax, (metric, name, log) in zip(axes.flat, panels, strict=True):
            if metric == "val_acc":
                figures.plot_mean(ax, curves, "val_acc", palette, "-")
                ax.set_ylim(-0.02, 1.02)
            else:
                figures.plot_mean(ax, wide[metric], metric, palette, "-")
                if metric != "weight_norm" and not wide["full_loss"].empty:
                    figures.plot_mean(ax, wide["full_loss"], "full_loss", palette, "--")
            if log:
                ax.set_yscale("log", nonpositive="clip")
            ax.set_title(name)
            ax.set_xlabel("step")
            ax.set_xscale("log")
        fig.suptitle(title)
        figures.add_legend(fig, palette, styles=False)
        fig.savefig(path, dpi=figures.DPI)
        figures.plt.close(fig)
    return path


def progress_plot(curves: pd.DataFrame, metrics: pd.DataFrame, title: str,
                  configs: list[str]) -> dict[str, Any]:
    """``progress_figure``'s interactive twin (report/interactive.py), the same panels."""
    from groklab.report import figures
    from groklab.report.interactive import Line, Panel, curves_plot

    wide = {name: metrics[metrics["name"] == name] for name in
            ("restricted_loss", "excluded_loss", "full_loss", "weight_norm")}
    panels = []
    for metric, name, log in PANELS:
        if metric == "val_acc":
            lines = [Line(curves, "val_acc", name)]
        elif wide[metric].empty:
            continue
        else:
            lines = [Line(wide[metric], "value", name)]
            if metric != "weight_norm" and not wide["full_loss"].empty:
                lines.append(Line(wide["full_loss"], "value", "loss of all logits", dashed=True))
        panels.append(Panel(name, lines, name, log_y=log))
    shown = [c for c in configs if c in set(curves["config"]) | set(metrics["config"])]
    return curves_plot(title, panels, figures.colors(shown))


def spectrum_figure(spectra: dict[str, tuple[list[float], list[int]]], title: str,
                    path: Path) -> Path:
    """One panel per spectrum (name -> per-frequency norms k = 0 … ⌊p/2⌋ and key
    frequencies): a bar per frequency, the key frequencies highlighted and labelled, the
    constant (k = 0) grey."""
    from groklab.report import figures

    with figures.plt.rc_context(figures.STYLE):
        width = max(6.0, 0.14 * max(len(n) for n, _ in spectra.values()) + 2.5)
        fig, axes = figures.plt.subplots(1, len(spectra), figsize=(width * len(spectra), 3.6),
                                         squeeze=False, layout="constrained")
        for ax, (name, (norms, keys)) in zip(axes.flat, spectra.items(), strict=True):
            ks = list(range(len(norms)))
            color = ["0.7" if k == 0 else ("tab:red" if k in keys else "tab:blue") for k in ks]
            ax.bar(ks, norms, color=color, width=0.8)
            for k in keys:
                ax.annotate(str(k), (k, norms[k]), xytext=(0, 2), textcoords="offset points",
                            ha="center", fontsize=8, color="tab:red")
            top = max(norms, default=0.0)
            ax.set_ylim(0, top * 1.12 if top > 0 else 1.0)
            ax.set_xlabel("frequency k (0: constant)")
            ax.set_ylabel("norm of the component")
            ax.set_title(f"{name}: {len(keys)} key frequencies (red) of {len(norms) - 1}")
        fig.suptitle(title)
        fig.savefig(path, dpi=figures.DPI)
        figures.plt.close(fig)
    return path


def _spectral(metrics: pd.DataFrame) -> pd.Series:
    """Bool per row: a per-frequency norm (also for an empty frame)."""
    return metrics["name"].map(is_spectrum_metric).astype(bool)


def _step(value: Any) -> int | None:
    return None if is_missing(value) else int(value)
