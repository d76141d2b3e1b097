"""``groklab tune``: search run settings with Optuna (the optional extra 'tune', imported only
when the command runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from groklab.cli.common import (
    Address,
    CpusPerCohort,
    Executor,
    GpusPerCohort,
    check_out_dir,
    fail,
    make_executor,
    open_store,
    parse_settings,
)
from groklab.cli.flags import option
from groklab.cli.invocation import record

SPACE = "the space's"  # a setting flag of tune left out: the search space's value, if any


def tune(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: the groklab "
                                      "store, and optuna.sqlite3 unless --storage.")],
    task: option("task", unset=SPACE) = None,
    steps: option("steps", unset=SPACE) = None,
    p: option("p", unset=SPACE) = None,
    space: Annotated[Path | None, typer.Option(
        help="TOML search space: a settings table (fixed) and params.NAME tables "
        "(searched); default: lr_e, lr_l, lr_h log-uniform in 1e-4..1e-2.")] = None,
    trials: Annotated[int, typer.Option(help="Trials the study should hold in all "
                                        "(re-running continues up to this).")] = 32,
    batch: Annotated[int, typer.Option(help="Trials asked at once and trained together "
                                       "(one cohort when only per-run settings vary).")] = 8,
    seeds: Annotated[int, typer.Option(help="Seeds per trial (its value is the mean).")] = 1,
    metric: Annotated[str, typer.Option(
        help="steps_to_99 (censored at the budget, ties by final val loss), a final "
        "metric (final_val_acc, max_val_acc, ...) or a named metric.")] = "steps_to_99",
    direction: Annotated[str | None, typer.Option(
        help="minimize or maximize (default: maximize accuracies, minimize the rest).")
    ] = None,
    storage: Annotated[str | None, typer.Option(
        help="Optuna RDB URL shared by every machine of a search, e.g. "
        "postgresql://user:pw@host/db (default: sqlite:///OUT/optuna.sqlite3).")] = None,
    study_name: Annotated[str | None, typer.Option(
        help="Optuna study name (default: tune-TASK).")] = None,
    sampler: Annotated[str, typer.Option(help="tpe or random.")] = "tpe",
    sampler_seed: Annotated[int | None, typer.Option(help="Seed of the sampler.")] = None,
    early_stop: Annotated[bool | None, typer.Option(
        "--early-stop/--no-early-stop", help="Stop a run once val acc > 0.99 for "
        "--stop-patience evaluations (default: on for steps_to_99).")] = None,
    stop_patience: Annotated[int, typer.Option(help="Evaluations in a row.")] = 3,
    settings: Annotated[list[str] | None, typer.Option(
        "--set", metavar="KEY=VALUE", help="Any run setting, fixed for every trial.")
    ] = None,
    tensorboard: Annotated[Path | None, typer.Option(
        help="Also write live TensorBoard scalars to this folder (extra 'tensorboard').")
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N or mps.")] = None,
    executor: Executor = "local",
    address: Address = None,
    gpus_per_cohort: GpusPerCohort = 0.0,
    cpus_per_cohort: CpusPerCohort = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")
                       ] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Search run settings (layer-wise rates by default) with Optuna, BATCH trials per
    cohort; resumable, and shareable between machines through --storage."""
    from groklab.integrations import MissingExtra
    from groklab.tune import SpaceError, known_metrics, load_space

    for name, value in (("--trials", trials), ("--batch", batch), ("--seeds", seeds),
                        ("--stop-patience", stop_patience)):
        if value < 1:
            fail(f"{name} must be at least 1, got {value}")
    if direction not in (None, "minimize", "maximize"):
        fail(f"--direction {direction!r}: use minimize or maximize")
    if sampler not in ("tpe", "random"):
        fail(f"--sampler {sampler!r}: use tpe or random")
    check_out_dir(out)
    recorded = _recorded_metrics(out)
    if metric not in known_metrics(recorded):
        fail(f"--metric {metric!r}: unknown metric; known: "
             f"{', '.join(known_metrics(recorded))}")
    overrides = {k: v for k, v in (("task", task), ("steps", steps), ("p", p))
                 if v is not None} | parse_settings(settings)
    if early_stop is None:
        early_stop = metric == "steps_to_99"
    try:
        found = load_space(space, overrides)
        if early_stop and "stop_val_acc" not in found.settings:
            found = load_space(space, overrides | {"stop_val_acc": 0.99,
                                                   "stop_patience": stop_patience})
    except SpaceError as e:
        fail(str(e))
    runner = make_executor(executor, address, gpus_per_cohort, cpus_per_cohort)
    try:
        from groklab.tune.search import TuneError, run_search

        hooks = []
        if tensorboard is not None:
            from groklab.integrations.tensorboard import LiveWriter

            hooks.append(LiveWriter(tensorboard))
        with open_store(out) as store:  # its runs: those of study NAME (tune/search.py)
            record(store, "tune", [], device=device, executor=executor, study=study_name
                   or f"tune-{found.settings.get('task', 'x_plus_y')}")
        result = run_search(out, found, trials=trials, batch=batch, seeds=seeds,
                            metric=metric, direction=direction, storage=storage,
                            study_name=study_name, sampler=sampler,
                            sampler_seed=sampler_seed, device=device, progress=progress,
                            executor=runner, hooks=hooks)
    except MissingExtra as e:
        fail(str(e))
    except TuneError as e:
        fail(str(e))
    if as_json:
        typer.echo(json.dumps(result.__dict__, indent=2, default=str))
    else:
        _print(result)
    typer.echo(f"{result.told} trial(s) told, {result.trained} run(s) trained here; study "
               f"{result.study_name} in {result.storage}; next: groklab report {out}",
               err=True)



def _recorded_metrics(out: Path) -> list[str]:
    """Named metrics already in OUT's store (none when there is no store yet)."""
    from groklab.store import STORE_NAME, Store

    if not (out / STORE_NAME).is_file():
        return []
    with Store(out, create=False) as store:
        return store.metric_names()


def _print(result: Any) -> None:
    """The best trials as a small table."""
    if not result.trials:
        typer.echo("no finished trials")
        return
    typer.echo(f"{'trial':>5}  {'value':>10}  params")
    for t in result.trials[:10]:
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in t["params"].items())
        typer.echo(f"{t['number']:>5}  {t['value']:>10.4g}  {params}")
