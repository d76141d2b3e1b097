"""``groklab export csv|parquet`` (a store's runs and curves as tidy tables: report/tidy.py),
``groklab export tensorboard`` (its curves and named metrics as TensorBoard scalars) and
``groklab export mlflow`` (its runs as MLflow runs: settings, curves, tags).
Parquet, TensorBoard and MLflow need optional extras ('parquet', 'tensorboard', 'mlflow'),
imported only when the command runs. Every export reads the store only, so a read-only
store exports too."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from groklab.cli.common import check_out_dir, fail, folder, read_store

export_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,  # help as written
                         help="Export a store's data: csv or parquet tables, tensorboard "
                         "scalars or mlflow runs.")

Store_ = Annotated[Path, typer.Argument(metavar="STORE", help="An output folder holding "
                                        "groklab.sqlite.")]
Folder = Annotated[Path, typer.Argument(metavar="OUT", parser=folder, help="Folder to write "
                                        "runs.* and curves.* into (created if need be).")]


def _tables(store: Path, out: Path, fmt: str) -> None:
    """Write STORE's runs and curves into OUT as ``fmt`` files; one line per file."""
    from groklab.integrations import MissingExtra
    from groklab.report.tidy import export_tables

    check_out_dir(out)
    with read_store(store) as opened:
        try:
            written = export_tables(opened, out, fmt)
        except MissingExtra as e:
            fail(str(e))
    for path in written.values():
        typer.echo(str(path))


@export_app.command("csv")
def export_csv(store: Store_, out: Folder) -> None:
    """Write OUT/runs.csv (one row per run: id, settings, status, final metrics; lists and
    tables as JSON text) and OUT/curves.csv (long: run_id, task, label, seed, step, metric,
    value: every evaluated step and named metric). Missing numbers are empty fields."""
    _tables(store, out, "csv")


@export_app.command("parquet")
def export_parquet(store: Store_, out: Folder) -> None:
    """The tables of `export csv` as OUT/runs.parquet and OUT/curves.parquet, with their
    dtypes (metrics float64, NaN when not reached); needs the 'parquet' extra (pyarrow)."""
    _tables(store, out, "parquet")


@export_app.command("tensorboard")
def export_tensorboard(
    store: Annotated[Path, typer.Argument(help="An output folder holding groklab.sqlite.")],
    logdir: Annotated[Path, typer.Option(parser=folder, metavar="<path>",
                                         help="TensorBoard log folder to write.")],
) -> None:
    """Write every run's curves and named metrics as TensorBoard scalars, one TensorBoard
    run per study and label: LOGDIR/<study>/<label>/seed<S>-<id>."""
    from groklab.integrations import MissingExtra

    if not (store / "groklab.sqlite").is_file():
        fail(f"no groklab store in {store} (expected {store / 'groklab.sqlite'})")
    if logdir.exists() and not logdir.is_dir():
        fail(f"--logdir {logdir} exists and is not a folder")
    try:
        from groklab.integrations.tensorboard import export

        counts = export(store, logdir)
    except MissingExtra as e:
        fail(str(e))
    typer.echo(f"{counts['runs']} run(s), {counts['scalars']} scalars in "
               f"{counts['folders']} folder(s); next: tensorboard --logdir {logdir}",
               err=True)


@export_app.command("mlflow")
def export_mlflow(
    store: Store_,
    uri: Annotated[str, typer.Option(help="MLflow tracking URI to write: sqlite:///PATH (a "
                                     "database file, created if need be), file:PATH (a "
                                     "folder) or a tracking server's address.")],
    experiment: Annotated[str | None, typer.Option(
        help="MLflow experiment (created if need be); default: the store folder's name.")] = None,
) -> None:
    """Log every run as an MLflow run: params = its settings, metrics = its curves and named
    metrics at their steps, tags = study, label, status (and task, seed, groklab.run_id).
    Exporting again replaces each run's earlier MLflow run. Needs the 'mlflow' extra."""
    from groklab.integrations import MissingExtra

    if not (store / "groklab.sqlite").is_file():
        fail(f"no groklab store in {store} (expected {store / 'groklab.sqlite'})")
    try:
        from groklab.integrations.mlflow import export

        counts = export(store, uri, experiment)
    except MissingExtra as e:
        fail(str(e))
    except Exception as e:  # noqa: BLE001 - MLflow's own errors (a bad URI, a server): one line
        if type(e).__module__.split(".")[0] not in ("mlflow", "sqlalchemy", "alembic"):
            raise
        fail(f"MLflow export to {uri} failed: {str(e).splitlines()[0] if str(e) else e!r}")
    replaced = f", {counts['replaced']} earlier export(s) replaced" if counts["replaced"] else ""
    typer.echo(f"{counts['runs']} run(s), {counts['metrics']} metric values in experiment "
               f"{counts['experiment']!r} at {uri}{replaced}; next: mlflow ui "
               f"--backend-store-uri {uri}", err=True)
