"""The commands of the optional integrations: ``groklab export tensorboard`` and
``groklab tune``, plus the ``--executor`` options that ``run``, ``study`` and ``tune`` share.

``register(app, fail)`` adds them to the ``groklab`` typer app; ``fail`` is the CLI's one-line
error (exit 2). Nothing here imports an extra at import time: a missing one is reported by
the command that needs it, as one line naming the extra.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

Executor = Annotated[str, typer.Option(
    help="Where cohorts train: 'local' (this process) or 'ray' (Ray tasks on a cluster; "
    "needs the 'ray' extra).")]
Address = Annotated[str | None, typer.Option(
    help="Ray cluster address ('auto', 'ray://host:10001', host:port); default: start a "
    "local Ray instance.")]
GpusPerCohort = Annotated[float, typer.Option(
    help="GPUs a cohort asks Ray for (its runs train on CUDA when > 0).")]
CpusPerCohort = Annotated[float, typer.Option(help="CPUs a cohort asks Ray for.")]


def make_executor(executor: str, address: str | None, gpus: float, cpus: float,
                  fail: Callable[[str], None]) -> Any:
    """The executor an ``--executor`` choice names (None: in-process, no Ray import)."""
    if executor == "local":
        if address is not None or gpus:
            fail("--address and --gpus-per-cohort need --executor ray")
        return None
    if executor != "ray":
        fail(f"--executor {executor!r}: use local or ray")
    if gpus < 0 or cpus <= 0:
        fail("--gpus-per-cohort must be >= 0 and --cpus-per-cohort > 0")
    from groklab.integrations import MissingExtra
    from groklab.integrations.ray_executor import RayExecutor

    try:
        return RayExecutor(address=address, gpus_per_cohort=gpus, cpus_per_cohort=cpus)
    except MissingExtra as e:
        fail(str(e))


def register(app: typer.Typer, fail: Callable[[str], None],
             parse_settings: Callable[[list[str] | None], dict[str, Any]]) -> None:
    """Add ``export tensorboard`` and ``tune`` to ``app``; ``parse_settings`` reads --set."""
    export_app = typer.Typer(no_args_is_help=True,
                             help="Export a store to other tools (tensorboard).")
    app.add_typer(export_app, name="export")

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

    from groklab.tune.command import tune_command

    app.command("tune")(tune_command(fail, parse_settings))
