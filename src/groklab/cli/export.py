"""``groklab export csv|parquet`` (a store's runs and curves as tidy tables: report/tidy.py)
and ``groklab export tensorboard`` (its curves and named metrics as TensorBoard scalars).
Parquet and TensorBoard need optional extras ('parquet', 'tensorboard'), imported only when
the command runs. Every export reads the store only, so a read-only store exports too."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from groklab.cli.common import check_out_dir, fail, read_store

export_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,  # help as written
                         help="Export a store's data: csv or parquet tables, or tensorboard "
                         "scalars.")

Store_ = Annotated[Path, typer.Argument(metavar="STORE", help="An output folder holding "
                                        "groklab.sqlite.")]
Folder = Annotated[Path, typer.Argument(metavar="OUT", help="Folder to write runs.* and "
                                        "curves.* into (created if need be).")]


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
    logdir: Annotated[Path, typer.Option(help="TensorBoard log folder to write.")],
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
