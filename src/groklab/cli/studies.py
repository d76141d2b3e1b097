"""``groklab list`` (tasks, lr configurations, built-in studies), ``groklab study`` (run a
study) and ``groklab report`` (write a store's report)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from groklab.cli.checks import before_store, refuse_many
from groklab.cli.common import (
    Address,
    Compile,
    CpusPerCohort,
    Device,
    Executor,
    GpusPerCohort,
    Out,
    Settings,
    Slots,
    Yes,
    check_device,
    check_out_dir,
    fail,
    folder,
    make_executor,
    open_store,
    parse_settings,
    read_store,
)
from groklab.cli.invocation import record
from groklab.cli.settings import given, refuse_ignored, refuse_unknown_parents

if TYPE_CHECKING:
    from groklab.studies import Study


def list_(
    runs: Annotated[bool, typer.Option(
        "--runs", help="Also count each built-in study's runs (expands and checks every "
        "study, which loads the training code: a few seconds).")] = False,
) -> None:
    """List the tasks, models, optimisers, named lr configurations, recipes and built-in
    studies."""
    import tomllib
    from importlib import resources

    from groklab.cli.names import MODELS, OPTIMIZERS, TASKS
    from groklab.rates import LR_CONFIGS
    from groklab.recipes import recipe, recipe_names

    typer.echo("tasks:\n  " + ", ".join(TASKS))
    typer.echo("models:\n  " + ", ".join(MODELS))
    typer.echo("optimizers:\n  " + ", ".join(OPTIMIZERS))
    typer.echo("lr configurations (embedding, lower, higher):")
    for name, rates in LR_CONFIGS.items():
        typer.echo(f"  {name:<10} " + ", ".join(f"{r:g}" for r in rates))
    typer.echo("recipes (groklab run --recipe NAME --out DIR; docs/protocol.md §6.8):")
    for name in recipe_names():
        typer.echo(f"  {name:<18} {recipe(name).description}")
    typer.echo("studies (groklab study NAME --out DIR; or a .toml file of your own):")
    # the preset files themselves (groklab.studies.presets), read without the training code
    files = sorted((f for f in (resources.files("groklab") / "studies" / "presets").iterdir()
                    if f.name.endswith(".toml")), key=lambda f: f.name)
    for f in files:
        name = f.name.removesuffix(".toml")
        description = tomllib.loads(f.read_text(encoding="utf-8")).get("description", "")
        count = ""
        if runs:
            from groklab.studies import preset

            count = f"{len(preset(name).expand()):>3} runs  "
        typer.echo(f"  {name:<15} {count}{description}")


def study(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(
        metavar="STUDY", help="A built-in study (see `groklab list`) or a .toml study file.")],
    out: Out,
    steps: Annotated[int | None, typer.Option(help="Override every run's update steps.")] = None,
    seeds: Annotated[int | None, typer.Option(help="Override the number of seeds.")] = None,
    tasks: Annotated[str | None, typer.Option(
        help="Comma-separated tasks: only the study's runs of these (each a task the study "
        "has).")] = None,
    settings: Settings = None,
    device: Device = None,
    compile: Compile = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    executor: Executor = "local", address: Address = None,
    gpus_per_cohort: GpusPerCohort = 0.0, cpus_per_cohort: CpusPerCohort = 1.0,
    yes: Yes = False,
    slots: Slots = None,
) -> None:
    """Run a study's unfinished runs into OUT, cohort by cohort (resumes where it stopped)."""
    from groklab.engine.limits import MAX_RUNS
    from groklab.format import run_counts
    from groklab.registry import did_you_mean
    from groklab.report.listing import results_table
    from groklab.studies import StudyError, get_study, preset_names, run_study

    task_list = None if tasks is None else [t.strip() for t in tasks.split(",") if t.strip()]
    if task_list == []:
        fail("--tasks: give one or more task names separated by commas")
    extra = parse_settings(settings)
    flags = given(ctx, extra)  # first: a setting given twice is one line, exit 2
    try:
        definition = get_study(name, max_runs=None if yes else MAX_RUNS)
        _refuse_foreign_tasks(definition, task_list)
        if seeds is not None:
            per_seed = definition.count_bound() // len(definition.seeds)
            refuse_many(per_seed * seeds, yes, f"--seeds {seeds} of study {definition.name}")
        if steps is not None or seeds is not None or task_list is not None or extra:
            definition = definition.with_overrides(steps=steps, seeds=seeds, tasks=task_list,
                                                   **extra)
    except StudyError as e:
        typo = "" if name in preset_names() or name.endswith(".toml") or Path(name).exists() \
            else did_you_mean(name, preset_names())
        fail(f"{e}{typo}")
    specs = definition.specs()
    # a --set override applies to every variant; the study's own fixed settings too: an
    # error only when every run ignores it (a grid's variants may legitimately differ)
    origin = flags | {k: f"{definition.source}: settings.{k}"
                      for k in definition.settings if k not in extra}
    refuse_ignored(specs, origin, every=True)
    refuse_unknown_parents(specs, out, origin)
    check_out_dir(out)
    dev = check_device(device)
    runner = make_executor(executor, address, gpus_per_cohort, cpus_per_cohort)
    max_cohort = before_store(specs, out, dev, origin, yes=yes, local=runner is None)
    typer.echo(f"study {definition.name}: {len(specs)} run(s) into {out}", err=True)
    with open_store(out) as store:  # one store for the whole command
        refuse_unknown_parents(specs, out, origin, store)
        record(store, "study", specs, device=dev, compile=compile, executor=executor,
               study=definition.name, slots=slots)
        counts = run_study(definition, out, device=dev, progress=progress, compile=compile,
                           executor=runner, store=store, max_cohort=max_cohort, slots=slots)
        labels = dict(store.study_members(definition.name))
        rows = [{**r, "label": labels[r["id"]]} for r in store.runs() if r["id"] in labels]
    typer.echo(results_table(rows))
    typer.echo(f"{run_counts(counts)}; next: groklab report {out}", err=True)


def _refuse_foreign_tasks(definition: Study, tasks: list[str] | None) -> None:
    """``--tasks`` narrows a study to some of its tasks: a known task the study has no run
    of is an error (an unknown name is the study's own error, with a "did you mean")."""
    from groklab.tasks import task_names

    if tasks is None:
        return
    have = sorted({r.spec.task for r in definition.expand()})
    foreign = [t for t in tasks if t in task_names() and t not in have]
    if foreign:
        fail(f"--tasks {','.join(foreign)}: study {definition.name} has no runs of task "
             f"{foreign[0]!r}; --tasks chooses among its tasks: {', '.join(have)}")


def report(
    paths: Annotated[list[Path], typer.Argument(
        metavar="PATH [PATH]...", help="An output folder of `groklab study` or `run`; several: "
        "one report of them all (needs --out), each run with its store.",
        show_default=False)],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", parser=folder, metavar="<path>", help="Write the report into this "
        "folder instead of PATH (for a store you may not write to; required with several "
        "stores).")] = None,
) -> None:
    """Write report.md, report.html, summary.csv and figures/*.png into PATH (or --out)."""
    from groklab.report import write_report
    from groklab.report.data import same_stores, shared_note
    from groklab.store import writable

    if len(paths) > 1 and out is None:
        fail(f"a report of {len(paths)} stores has no single home: give --out DIR")
    for path in paths:
        read_store(path).close()  # a store to read: else one line, exit 2
    twice = same_stores(paths)
    if twice:
        fail(f"store {twice[1]} given twice (also as {twice[0]}); give each store once")
    path = paths[0]
    target = path if out is None else out
    if out is not None:
        check_out_dir(out)
    elif not writable(path) or any((path / f).exists() and not writable(path / f)
                                   for f in ("report.md", "report.html", "summary.csv",
                                             "figures")):
        fail(f"cannot write the report into {path}: it is read-only; give --out DIR to "
             "write it elsewhere")
    files = write_report(paths if len(paths) > 1 else path, out=target)
    note = shared_note(files.shared, limit=5)
    if note:
        typer.echo(f"groklab: {note}", err=True)
    typer.echo(f"{files.markdown}\n{files.html}\n{files.csv}\n{len(files.figures)} figure(s) "
               f"in {target / 'figures'}")
