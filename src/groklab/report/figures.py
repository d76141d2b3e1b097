"""Figures (docs/protocol.md §8): curves against steps, a line per configuration, ±stderr bands.

Steps are on a log scale, the field's convention for grokking plots (memorisation and the
late rise of validation accuracy both stay visible); train is dashed, validation solid.
A study with a numeric grid axis (such as the training fraction) also gets a figure of its
summary metrics against that axis, and a ``groklab tune`` search its landscape
(report/search.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

DPI = 110
STYLE = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
         "axes.grid": True, "grid.alpha": 0.3}


def colors(configs: list[str]) -> dict[str, tuple]:
    """One stable colour per configuration, in study order (distinct up to 20)."""
    n = 10 if len(configs) <= 10 else 20
    cmap = plt.get_cmap(f"tab{n}")
    return {c: cmap(i % n) for i, c in enumerate(configs)}


def band(curves: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per (config, step): mean and stderr over seeds (stderr 0 for a single seed)."""
    g = curves.groupby(["config", "step"], sort=False)[column]
    out = g.agg(["mean", "std", "count"]).reset_index()
    out["se"] = (out["std"] / np.sqrt(out["count"])).fillna(0.0)
    return out


def plot_mean(ax: plt.Axes, curves: pd.DataFrame, column: str, palette: dict,
              style: str) -> None:
    """``column``'s mean over seeds against steps, a line per configuration in its
    ``palette`` colour and line ``style``, with a ±stderr band."""
    stats = band(curves, column)
    for config, s in stats.groupby("config", sort=False):
        c = palette[config]
        ax.plot(s["step"], s["mean"], style, color=c, lw=1.6)
        ax.fill_between(s["step"], s["mean"] - s["se"], s["mean"] + s["se"], color=c, alpha=0.2,
                        lw=0)


def add_legend(fig: plt.Figure, palette: dict, styles: bool) -> None:
    """One legend right of the panels: a line per configuration (and, with ``styles``,
    what solid and dashed mean)."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, lw=2, label=name) for name, c in palette.items()]
    if styles:
        handles += [Line2D([], [], color="0.3", ls="-", label="validation"),
                    Line2D([], [], color="0.3", ls="--", label="train")]
    fig.legend(handles=handles, loc="outside right center", frameon=False)


def task_figure(curves: pd.DataFrame, title: str, path: Path, palette: dict) -> Path:
    """Train (dashed) and validation (solid) loss (log scale) and accuracy for one task."""
    with plt.rc_context(STYLE):
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
        for ax, metric, name in ((ax_loss, "loss", "loss"), (ax_acc, "acc", "accuracy")):
            plot_mean(ax, curves, f"train_{metric}", palette, "--")
            plot_mean(ax, curves, f"val_{metric}", palette, "-")
            ax.set_xlabel("step")
            ax.set_xscale("log")
            ax.set_ylabel(name)
        ax_loss.set_yscale("log", nonpositive="clip")
        ax_acc.set_ylim(-0.02, 1.02)
        fig.suptitle(title)
        add_legend(fig, palette, styles=True)
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
    return path


def _panels(keys: list, draw: Callable[[plt.Axes, object], None], title: str, path: Path,
            palette: dict | None, max_cols: int, panel: tuple[float, float],
            sharey: bool = False, steps: bool = True,
            finish: Callable[[plt.Figure, list[plt.Axes]], None] | None = None) -> Path:
    """One panel per key (``draw(ax, key)``; x axis: steps on a log scale unless ``steps``
    is False), a shared legend of ``palette`` (if any), then ``finish(fig, axes)`` adds what
    else the panels share (a colour bar, say)."""
    ncols = min(max_cols, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrows, ncols, figsize=(panel[0] * ncols + 1.7, panel[1] * nrows),
                                 squeeze=False, sharey=sharey, layout="constrained")
        for ax, key in zip(axes.flat, keys, strict=False):
            draw(ax, key)
            if steps:
                ax.set_xlabel("step")
                ax.set_xscale("log")
        for ax in list(axes.flat)[len(keys):]:
            ax.set_visible(False)
        fig.suptitle(title)
        if palette is not None:
            add_legend(fig, palette, styles=False)
        if finish is not None:
            finish(fig, list(axes.flat)[:len(keys)])
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
    return path


def grid_figure(curves: pd.DataFrame, title: str, path: Path, palette: dict) -> Path:
    """Validation accuracy against steps, one panel per task."""

    def draw(ax: plt.Axes, task: object) -> None:
        plot_mean(ax, curves[curves["task"] == task], "val_acc", palette, "-")
        ax.set_title(str(task))
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("validation accuracy")

    return _panels(list(dict.fromkeys(curves["task"])), draw, title, path, palette, 2,
                   (5.4, 3.4), sharey=True)


def steps_figure(summary: pd.DataFrame, metric: str, label: str, censored: str, title: str,
                 path: Path, palette: dict) -> Path:
    """A step metric per task (one panel each) and configuration (one bar each): mean ±
    stderr over seeds on a log axis (``summary``: report.tables.summarize's rows). A bar
    whose runs did not all get there counts them as the budget: it is hatched and says how
    many of n did not."""

    def draw(ax: plt.Axes, task: object) -> None:
        rows = summary[summary["task"] == task]
        y = np.arange(len(rows))
        mean = rows[f"{metric}_mean"].to_numpy(float)
        se = rows[f"{metric}_stderr"].fillna(0.0).to_numpy(float)
        for i, r in enumerate(rows.itertuples(index=False)):
            short = getattr(r, censored)
            ax.barh(y[i], mean[i], xerr=se[i], color=palette[r.config], capsize=3,
                    hatch="//" if short else None, edgecolor="white" if short else None)
            note = f"{mean[i]:,.0f}" + (f"  ({short} of {r.n} not reached)" if short else "")
            ax.text(mean[i] + se[i], y[i], "  " + note, va="center", fontsize=8)
        ax.set_yticks(y, list(rows["config"]))
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(left=max(1.0, float(np.nanmin(mean)) / 2),
                    right=float(np.nanmax(mean + se)) * 6)
        ax.set_xlabel(label)
        ax.set_title(str(task))

    return _panels(list(dict.fromkeys(summary["task"])), draw, title, path, None, 2, (6.0, 3.2),
                   steps=False)


def axis_figure(points: pd.DataFrame, axis: str, metrics: dict[str, str], title: str,
                path: Path, palette: dict) -> Path:
    """Summary metrics against a numeric study axis: one panel per metric, one line per
    configuration (``points``: config, the axis, ``<metric>_mean`` and ``_stderr``)."""
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics) + 1.6, 3.8),
                                 squeeze=False, layout="constrained")
        for ax, (metric, name) in zip(axes.flat, metrics.items(), strict=True):
            for config, s in points.groupby("config", sort=False):
                s = s.sort_values(axis)
                mean, se = s[f"{metric}_mean"], s[f"{metric}_stderr"].fillna(0.0)
                ax.errorbar(s[axis], mean, yerr=se, color=palette[config], marker="o", ms=4,
                            lw=1.6, capsize=3)
            ax.set_xlabel(axis)
            ax.set_ylabel(name)
        fig.suptitle(title)
        add_legend(fig, palette, styles=False)
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
    return path


def metrics_figure(metrics: pd.DataFrame, title: str, path: Path, palette: dict) -> Path:
    """Named per-step metrics (one panel each, log-scale steps): mean ± stderr over seeds,
    one line per configuration (``metrics``: config, step, name, value)."""

    def draw(ax: plt.Axes, name: object) -> None:
        part = metrics[metrics["name"] == name].rename(columns={"value": name})
        plot_mean(ax, part, str(name), palette, "-")
        ax.set_title(str(name))

    return _panels(list(dict.fromkeys(metrics["name"])), draw, title, path, palette, 3,
                   (4.6, 3.2))


def landscape_figure(points: pd.DataFrame, dims: dict[str, bool], value: str, best: object,
                     title: str, path: Path, higher_is_better: bool) -> Path:
    """A search's landscape: one panel per pair of searched dimensions (``dims``: name -> log
    axis), one point per trial (``points``: index = trial, a column per dimension and
    ``value``) coloured by ``value``, better brighter, trial ``best`` starred; a single
    dimension is drawn against ``value``."""
    from itertools import combinations

    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    names = list(dims)
    pairs = list(combinations(names, 2)) or [(names[0], value)]
    norm = Normalize(float(points[value].min()), float(points[value].max()))
    cmap = plt.get_cmap("viridis" if higher_is_better else "viridis_r")
    order = points.sort_values(value, ascending=higher_is_better)  # the best drawn last

    def draw(ax: plt.Axes, pair: object) -> None:
        x, y = pair
        ax.scatter(order[x], order[y], c=order[value], cmap=cmap, norm=norm, s=28,
                   edgecolors="0.25", linewidths=0.4)
        ax.scatter([points.at[best, x]], [points.at[best, y]], marker="*", s=320,
                   facecolors="none", edgecolors="red", linewidths=1.6, label=f"best: {best}")
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_xscale("log" if dims.get(x) else "linear")
        ax.set_yscale("log" if dims.get(y) else "linear")
        ax.tick_params(which="minor", labelsize=7)  # a log axis within a decade or so
        ax.tick_params(axis="x", which="both", labelrotation=30)

    def finish(fig: plt.Figure, axes: list[plt.Axes]) -> None:
        fig.colorbar(ScalarMappable(norm, cmap), ax=axes, label=value)
        axes[0].legend(loc="best", frameon=True)

    return _panels(pairs, draw, title, path, None, 3, (4.2, 3.6), steps=False, finish=finish)
