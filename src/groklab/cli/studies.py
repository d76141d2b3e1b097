"""``groklab list`` (tasks, lr configurations, built-in studies), ``groklab study`` (run a
study) and ``groklab report`` (write a store's report)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from groklab.cli.common import (
    Address,
    Compile,
    CpusPerCohort,
    Device,
    Executor,
    GpusPerCohort,
    Out,
    Settings,
    check_device,
    check_out_dir,
    fail,
    make_executor,
    parse_settings,
)


def list_() -> None:
    """List the tasks, the named lr configurations and the built-in studies."""
    from groklab.rates import LR_CONFIGS
    from groklab.studies import preset, preset_names
    from groklab.tasks import task_names

    typer.echo("tasks:\n  " + ", ".join(task_names()))
    typer.echo("lr configurations (embedding, lower, higher):")
    for name, rates in LR_CONFIGS.items():
        typer.echo(f"  {name:<10} " + ", ".join(f"{r:g}" for r in rates))
    typer.echo("studies (groklab study NAME --out DIR; or a .toml file of your own):")
    for name in preset_names():
        s = preset(name)
        typer.echo(f"  {name:<15} {len(s.expand()):>3} runs  {s.description}")


def study(
    name: Annotated[str, typer.Argument(
        metavar="STUDY", help="A built-in study (see `groklab list`) or a .toml study file.")],
    out: Out,
    steps: Annotated[int | None, typer.Option(help="Override every run's update steps.")] = None,
    seeds: Annotated[int | None, typer.Option(help="Override the number of seeds.")] = None,
    tasks: Annotated[str | None, typer.Option(
        help="Comma-separated tasks that replace the study's.")] = None,
    settings: Settings = None,
    device: Device = None,
    compile: Compile = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    executor: Executor = "local", address: Address = None,
    gpus_per_cohort: GpusPerCohort = 0.0, cpus_per_cohort: CpusPerCohort = 1.0,
) -> None:
    """Run a study's unfinished runs into OUT, cohort by cohort (resumes where it stopped)."""
    from groklab.studies import StudyError, get_study, run_study

    task_list = None if tasks is None else [t.strip() for t in tasks.split(",") if t.strip()]
    if task_list == []:
        fail("--tasks: give one or more task names separated by commas")
    extra = parse_settings(settings)
    try:
        definition = get_study(name)
        if steps is not None or seeds is not None or task_list is not None or extra:
            definition = definition.with_overrides(steps=steps, seeds=seeds, tasks=task_list,
                                                   **extra)
    except StudyError as e:
        fail(str(e))
    check_out_dir(out)
    dev = check_device(device)
    n = len(definition.expand())
    typer.echo(f"study {definition.name}: {n} run(s) into {out}", err=True)
    runner = make_executor(executor, address, gpus_per_cohort, cpus_per_cohort)
    counts = run_study(definition, out, device=dev, progress=progress, compile=compile,
                       executor=runner)
    typer.echo(f"{counts['trained']} run(s) trained, {counts['skipped']} already finished; "
               f"next: groklab report {out}", err=True)


def report(
    path: Annotated[Path, typer.Argument(help="An output folder of `groklab study` or `run`.")],
) -> None:
    """Write PATH/report.md, PATH/report.html, PATH/summary.csv and PATH/figures/*.png."""
    from groklab.report import write_report

    if not (path / "groklab.sqlite").is_file():
        fail(f"no groklab store in {path} (expected {path / 'groklab.sqlite'})")
    files = write_report(path)
    typer.echo(f"{files.markdown}\n{files.html}\n{files.csv}\n{len(files.figures)} figure(s) "
               f"in {path / 'figures'}")
