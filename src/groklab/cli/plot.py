"""``groklab plot``: chosen runs' curves of one metric, drawn as the report draws them
(report/figures.py: mean ± stderr per group over its runs, log step axis, one colour per
group, one panel per task), into a PNG file or an HTML page that embeds it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from groklab.cli.common import check_out_dir, fail, read_store
from groklab.cli.selection import (
    Statuses,
    Studies,
    Where,
    check_names,
    choose,
    parse_filters,
    resolve_ids,
)
from groklab.registry import did_you_mean

CURVE = ("val_acc", "train_acc", "val_loss", "train_loss")  # the curve's own columns
SUFFIXES = (".png", ".html")


def plot(
    path: Annotated[Path, typer.Argument(help="An output folder of `groklab run` or `study`.")],
    to: Annotated[Path, typer.Option(
        "--to", metavar="FILE", help="The figure: FILE.png, or FILE.html (one page with the "
        "figure in it).", show_default=False)],
    run_ids: Annotated[list[str] | None, typer.Argument(
        metavar="[RUN_ID]...", help="Only these runs (an id or a unique prefix of one); "
        "default: every run the filters let through.", show_default=False)] = None,
    metric: Annotated[str, typer.Option(
        help="val_acc, train_acc, val_loss, train_loss or a named per-step metric the runs "
        "recorded (groklab results --json lists them).")] = "val_acc",
    by: Annotated[str, typer.Option(
        help="Group runs (one line each: mean ± stderr over its runs) by label, seed or any "
        "run setting (e.g. weight_decay).")] = "label",
    study: Studies = None,
    status: Statuses = None,
    where: Where = None,
) -> None:
    """Draw chosen runs' curves of one metric into a PNG or HTML file: a line per group with
    a ±stderr band, steps on a log axis, one panel per task."""
    from groklab.spec import RunSpec

    if to.suffix.lower() not in SUFFIXES:
        fail(f"--to {to}: give a .png or .html file")
    if to.is_dir():
        fail(f"--to {to} is a folder; give a .png or .html file")
    check_out_dir(to.absolute().parent)
    if by not in ("label", "seed", *RunSpec.model_fields):
        choices = ["label", "seed", *RunSpec.model_fields]
        fail(f"--by {by!r}: use label, seed or a run setting{did_you_mean(by, choices)}")
    filters = parse_filters(study, status, where)
    with read_store(path) as store:
        check_names(filters, [store])
        ids = resolve_ids(store, run_ids or [])
        runs = [r for r in choose(store.runs(), filters, store.run_studies())
                if not run_ids or r["id"] in ids]
        if not runs:
            fail(f"no runs of {path} match; nothing drawn")
        known = [*CURVE, *store.metric_names()]
        if metric not in known:
            fail(f"--metric {metric!r}: no such metric in {path}{did_you_mean(metric, known)}; "
                 f"known: {', '.join(known)}")
        points = _points(store, runs, metric, by)
    if points.empty:
        fail(f"none of the {len(runs)} chosen run(s) recorded {metric}; nothing drawn")
    drawn = points["run_id"].nunique()
    if drawn < len(runs):
        typer.echo(f"groklab: {len(runs) - drawn} of {len(runs)} run(s) have no {metric} "
                   "values yet: left out", err=True)
    groups = list(dict.fromkeys(points["config"]))
    title = f"{metric} by {by}: {drawn} run(s) of {path}"
    _draw(points, title, to, groups)
    typer.echo(f"{to}: {drawn} run(s) in {len(groups)} group(s) by {by}")


def _group(row: dict[str, Any], by: str) -> str:
    from groklab.format import setting
    from groklab.spec import stored_spec

    if by == "label":
        return str(row["label"])
    value = getattr(stored_spec(row), by)
    return f"{by}={setting(value)}"


def _points(store: Any, runs: list[dict[str, Any]], metric: str, by: str) -> Any:
    """The chosen runs' values of ``metric``, long: run_id, task, config (the group), step,
    name (the panel: the metric, or task and metric when the runs span tasks), value."""
    import pandas as pd

    from groklab.report.listing import sort_runs

    runs = _in_group_order(sort_runs(runs), by)
    several = len({r["task"] for r in runs}) > 1
    parts = []
    for r in runs:
        if metric in CURVE:
            pairs = [(e.step, getattr(e, metric)) for e in store.curve(r["id"])]
        else:
            pairs = [(step, v) for step, name, v in store.metrics(r["id"]) if name == metric]
        name = f"{r['task']}: {metric}" if several else metric
        parts += [{"run_id": r["id"], "task": r["task"], "config": _group(r, by), "step": step,
                   "name": name, "value": float(v)} for step, v in pairs if v is not None]
    return pd.DataFrame(parts, columns=["run_id", "task", "config", "step", "name", "value"])


def _in_group_order(runs: list[Any], by: str) -> list[Any]:
    """``runs`` with groups in a reader's order: by the setting's value when it is a number
    (seed 0, 1, 2; weight_decay 0.1, 1), else as sorted (task, label, seed)."""
    if by == "label":
        return list(runs)

    def number(r: Any) -> float | None:
        value = r.get(by)
        return float(value) if isinstance(value, int | float) else None

    if all(number(r) is not None for r in runs):
        return sorted(runs, key=lambda r: number(r))
    return list(runs)


def _draw(points: Any, title: str, to: Path, groups: list[str]) -> None:
    """The figure into ``to``: report/figures.py's named-metric figure (panels of mean ±
    stderr per group on a log step axis); an HTML page embeds it (report/html.py)."""
    import tempfile

    from groklab.report.figures import colors, metrics_figure

    to.absolute().parent.mkdir(parents=True, exist_ok=True)
    palette = colors(groups)
    if to.suffix.lower() == ".png":
        metrics_figure(points, title, to, palette)
        return
    from groklab.report.document import Figure, Heading
    from groklab.report.html import to_html

    with tempfile.TemporaryDirectory() as tmp:
        metrics_figure(points, title, Path(tmp) / "plot.png", palette)
        page = to_html([Heading(title, 1), Figure("plot.png", title)], Path(tmp), title)
    to.write_text(page, encoding="utf-8")
