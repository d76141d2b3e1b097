"""``groklab export tensorboard``: a store's curves and named metrics as TensorBoard scalars
(the optional extra 'tensorboard', imported only when the command runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from groklab.cli.common import fail

export_app = typer.Typer(no_args_is_help=True, help="Export a store to other tools (tensorboard).")


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
