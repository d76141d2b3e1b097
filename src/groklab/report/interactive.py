"""The HTML page's interactive curve figures: plotly figure specifications (plain dicts).

Each interactive figure mirrors a PNG of report/figures.py panel for panel, but draws every
run's own curve (thin; hover: run id, label, seed, its store in a report of several stores,
step and value) beside the mean over its configuration's seeds (thick), in the
configuration's PNG colour. Legend entries are configurations: a click hides or shows the
whole group. Buttons switch the step axis and the value axes between log and linear.
report/html.py embeds the specifications with plotly.js (inline, once per page); the PNGs
stay for report.md and README.

Arrays travel as plotly's typed-array objects (``{"dtype", "bdata"}``: base64 of
little-endian float32 values, or of int32 steps), and evenly spaced steps as ``x0``/``dx``,
which keeps a 100-run page to a few megabytes beside plotly.js itself.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

ROW_PX = 330  # height of one row of panels
ROW_GAP_PX = 100  # between rows: the upper row's step-axis title, the lower row's titles
GAP = 0.08  # between columns, as a share of the figure's width
MARGIN = {"t": 110, "b": 60, "r": 10}  # the top: the title and the axis buttons


@dataclass(frozen=True)
class Line:
    """One kind of line in a panel: ``column`` of ``frame`` (rows: run_id, config, seed,
    step and the column) per run, dashed or solid; ``name`` says in the hover what it is."""

    frame: pd.DataFrame
    column: str
    name: str
    dashed: bool = False


@dataclass(frozen=True)
class Panel:
    """One panel: its title, value-axis title and scale, and its lines."""

    title: str
    lines: Sequence[Line]
    y_title: str = ""
    log_y: bool = False


def typed(values: Any, dtype: str = "f4") -> dict[str, str]:
    """``values`` as a plotly typed array: base64 of little-endian ``dtype`` ("f4", "i4")."""
    array = np.asarray(values, dtype=np.dtype(dtype).newbyteorder("<"))
    return {"dtype": dtype, "bdata": base64.b64encode(array.tobytes()).decode("ascii")}


def _steps(steps: np.ndarray) -> dict[str, Any]:
    """A trace's x: ``x0``/``dx`` where the steps are evenly spaced, else the steps."""
    if len(steps) > 1:
        gaps = np.diff(steps)
        if (gaps == gaps[0]).all() and gaps[0] > 0:
            return {"x0": int(steps[0]), "dx": int(gaps[0])}
    if len(steps) and np.all(steps == np.round(steps)) and np.abs(steps).max() < 2**31:
        return {"x": typed(steps, "i4")}
    return {"x": typed(steps, "f8")}


def _hex(color: Any) -> str:
    from matplotlib.colors import to_hex

    return to_hex(color)


def _text(value: Any) -> str:
    """Text for a hover template: HTML-escaped, plotly's ``%{`` placeholders disarmed."""
    return html.escape(str(value)).replace("%{", "%&#123;")


def _traces(line: Line, axes: tuple[str, str], palette: dict, shown: set[str]) -> list[dict]:
    """Every run's trace and each configuration's mean trace of ``line`` on ``axes``; the
    first trace of a configuration (``shown`` tracks them) carries its legend entry."""
    frame = line.frame.dropna(subset=[line.column])
    out: list[dict] = []
    dash = "dash" if line.dashed else "solid"
    for config, runs in frame.groupby("config", sort=False):
        config = str(config)
        color = _hex(palette[config])
        ordered = runs.sort_values(["seed", "run_id", "step"])
        for run_id, run in ordered.groupby("run_id", sort=False):
            store = (f"<br>store {_text(run['store'].iloc[0])}" if "store" in run.columns
                     else "")  # a report of several stores
            hover = (f"run {_text(run_id)}<br>{_text(config)}<br>seed {_text(run['seed'].iloc[0])}"
                     f"{store}<br>step %{{x}}<br>{_text(line.name)}: %{{y:.4g}}<extra></extra>")
            out.append({"type": "scatter", "mode": "lines", "name": config,
                        "legendgroup": config, "showlegend": False, "xaxis": axes[0],
                        "yaxis": axes[1], "line": {"color": color, "width": 1, "dash": dash},
                        "opacity": 0.45, "hovertemplate": hover,
                        **_steps(run["step"].to_numpy()), "y": typed(run[line.column])})
        mean = runs.groupby("step", sort=True)[line.column].agg(["mean", "count"])
        hover = (f"{_text(config)}: mean of %{{customdata}} run(s)<br>step %{{x}}<br>"
                 f"{_text(line.name)}: %{{y:.4g}}<extra></extra>")
        out.append({"type": "scatter", "mode": "lines", "name": config, "legendgroup": config,
                    "showlegend": config not in shown, "xaxis": axes[0], "yaxis": axes[1],
                    "line": {"color": color, "width": 2.5, "dash": dash},
                    "hovertemplate": hover, "customdata": typed(mean["count"], "i4"),
                    **_steps(mean.index.to_numpy()), "y": typed(mean["mean"])})
        shown.add(config)
    return out


def _domains(n: int, cols: int) -> list[tuple[list[float], list[float]]]:
    """(x domain, y domain) of ``n`` panels in rows of ``cols``, top row first: columns
    ``GAP`` apart, rows ``ROW_PX`` high and ``ROW_GAP_PX`` apart."""
    rows = math.ceil(n / cols)
    width = (1 - GAP * (cols - 1)) / cols
    area = rows * ROW_PX + (rows - 1) * ROW_GAP_PX  # the plotting area's height in pixels
    out = []
    for i in range(n):
        r, c = divmod(i, cols)
        x0, top = c * (width + GAP), 1 - r * (ROW_PX + ROW_GAP_PX) / area
        out.append(([round(x0, 4), round(x0 + width, 4)],
                    [round(top - ROW_PX / area, 4), round(top, 4)]))
    return out


def curves_plot(title: str, panels: Sequence[Panel], palette: dict, columns: int = 2,
                log_x: bool = True) -> dict[str, Any]:
    """A plotly figure (``{"data", "layout"}``) of ``panels``, ``columns`` to a row, steps
    on a log axis unless ``log_x`` is False; ``palette``: configuration -> colour (any
    matplotlib colour, report.figures.colors gives them)."""
    cols = max(1, min(columns, len(panels)))
    rows = math.ceil(len(panels) / cols)
    data: list[dict] = []
    layout: dict[str, Any] = {
        "title": {"text": _text(title), "x": 0.01, "xanchor": "left", "y": 1,
                  "yref": "container", "yanchor": "top", "pad": {"t": 12}},
        "height": rows * ROW_PX + (rows - 1) * ROW_GAP_PX + MARGIN["t"] + MARGIN["b"],
        "hovermode": "closest", "margin": MARGIN,
        "legend": {"title": {"text": "configuration<br>(click: hide/show)"},
                   "groupclick": "togglegroup"},
        "annotations": [], "plot_bgcolor": "#fafafa"}
    shown: set[str] = set()
    x_names, y_names = [], []
    for i, (panel, (dx, dy)) in enumerate(zip(panels, _domains(len(panels), cols),
                                              strict=True), 1):
        suffix = "" if i == 1 else str(i)
        x_names.append(f"xaxis{suffix}")
        y_names.append(f"yaxis{suffix}")
        layout[f"xaxis{suffix}"] = {"domain": dx, "anchor": f"y{suffix}", "title": {
            "text": "step"}, "type": "log" if log_x else "linear", "showgrid": True}
        layout[f"yaxis{suffix}"] = {"domain": dy, "anchor": f"x{suffix}", "title": {
            "text": _text(panel.y_title)}, "type": "log" if panel.log_y else "linear",
            "showgrid": True, "exponentformat": "power"}
        layout["annotations"].append({"text": f"<b>{_text(panel.title)}</b>", "x": sum(dx) / 2,
                                      "y": dy[1], "xref": "paper", "yref": "paper",
                                      "xanchor": "center", "yanchor": "bottom",
                                      "showarrow": False})
        for line in panel.lines:
            data += _traces(line, (f"x{suffix}", f"y{suffix}"), palette, shown)

    def scale(names: list[str], types: list[str]) -> dict[str, Any]:
        args: dict[str, Any] = {}
        for name, kind in zip(names, types, strict=True):
            args[f"{name}.type"] = kind
            args[f"{name}.autorange"] = True
        return args

    drawn = ["log" if p.log_y else "linear" for p in panels]
    button = {"method": "relayout"}
    layout["updatemenus"] = [
        {"type": "buttons", "direction": "right", "x": 0.0, "y": 1.0, "yanchor": "bottom",
         "xanchor": "left", "pad": {"b": 28}, "showactive": True, "active": 0 if log_x else 1,
         "buttons": [{**button, "label": f"step: {k}", "args": [scale(x_names, [k] * len(
             x_names))]} for k in ("log", "linear")]},
        {"type": "buttons", "direction": "right", "x": 0.3, "y": 1.0, "yanchor": "bottom",
         "xanchor": "left", "pad": {"b": 28}, "showactive": True, "active": 0,
         "buttons": [{**button, "label": "values: as drawn", "args": [scale(y_names, drawn)]},
                     *[{**button, "label": f"values: {k}",
                        "args": [scale(y_names, [k] * len(y_names))]}
                       for k in ("linear", "log")]]},
    ]
    return {"data": data, "layout": layout}


NOTE = ("Interactive: thin lines are single runs, thick lines the mean over seeds; hover for "
        "run id, label, seed, step and value; click a configuration in the legend to hide or "
        "show it (double-click: it alone); the buttons switch the axes between log and "
        "linear; drag to zoom, double-click to reset.")


# -- the interactive twins of report/figures.py's curve figures -----------------------------
def grid_plot(curves: pd.DataFrame, title: str, palette: dict) -> dict[str, Any]:
    """``figures.grid_figure``'s twin: validation accuracy against steps, a panel per task."""
    tasks = list(dict.fromkeys(curves["task"]))
    return curves_plot(title, [Panel(str(t), [Line(curves[curves["task"] == t], "val_acc",
                                                   "validation accuracy")],
                                     "validation accuracy") for t in tasks], palette)


def task_plot(curves: pd.DataFrame, title: str, palette: dict) -> dict[str, Any]:
    """``figures.task_figure``'s twin: train (dashed) and validation (solid) loss (log
    scale) and accuracy of one task."""
    panels = [Panel(name, [Line(curves, f"train_{m}", f"train {name}", dashed=True),
                           Line(curves, f"val_{m}", f"validation {name}")], name, log_y=m == "loss")
              for m, name in (("loss", "loss"), ("acc", "accuracy"))]
    return curves_plot(title, panels, palette)


def metrics_plot(metrics: pd.DataFrame, title: str, palette: dict) -> dict[str, Any]:
    """``figures.metrics_figure``'s twin: named per-step metrics (``metrics``: run_id,
    config, seed, step, name, value), a panel each."""
    names = list(dict.fromkeys(metrics["name"]))
    return curves_plot(title, [Panel(str(n), [Line(metrics[metrics["name"] == n], "value",
                                                   str(n))]) for n in names], palette, 3)
