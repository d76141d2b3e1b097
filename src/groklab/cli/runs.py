"""``groklab run`` (train seeds of lr configurations into a store) and ``groklab results``
(list a store's runs).

``run`` takes a flag for every run setting declared with one (groklab.settings, through
cli/flags.py): its own parameters are only what is not a setting, and the settings typed
reach it in ``**flags`` beside those at their defaults."""

from __future__ import annotations

import json
from typing import Annotated, Any

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
    make_executor,
    open_store,
    parse_settings,
    read_store,
)
from groklab.cli.flags import setting_flags, typed_settings
from groklab.cli.invocation import record
from groklab.cli.selection import (
    Statuses,
    Studies,
    Where,
    check_names,
    choose,
    folders_and_ids,
    parse_filters,
)
from groklab.cli.settings import (
    describe,
    drop_repeats,
    refuse_ignored,
    refuse_unknown_parents,
)
from groklab.cli.shape import DFF, Activation, DHidden, DModel, NHeads, NLayers


@setting_flags(shared=dict(n_layers=NLayers, d_model=DModel, n_heads=NHeads, d_ff=DFF,
                           d_hidden=DHidden, activation=Activation))
def run(
    ctx: typer.Context,
    out: Out,
    lr: Annotated[list[str] | None, typer.Option(
        help="Configuration name or rates 'e,l,h'; repeat to train several together.")] = None,
    recipe: Annotated[str | None, typer.Option(
        help="A named recipe (`groklab list`; docs/protocol.md §6.8): its settings, except "
        "those given here by a flag or --set.")] = None,
    seeds: Annotated[int, typer.Option(help="Number of seeds.")] = 1,
    settings: Settings = None,
    device: Device = None,
    compile: Compile = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    executor: Executor = "local", address: Address = None,
    gpus_per_cohort: GpusPerCohort = 0.0, cpus_per_cohort: CpusPerCohort = 1.0,
    checkpoint_every: Annotated[int, typer.Option(
        help="Steps between mid-run checkpoints (also every 5 minutes and at Ctrl-C; "
        "0: none). An interrupted run resumes from its last checkpoint.")] = 1000,
    yes: Yes = False,
    slots: Slots = None,
    **flags: Any,
) -> None:
    """Train seeds of one or more lr configurations (batched as one cohort) into OUT."""
    from pydantic import ValidationError

    from groklab.api import make_specs
    from groklab.engine import run_specs
    from groklab.format import run_counts
    from groklab.rates import LR_CONFIGS, parse_lr
    from groklab.registry import did_you_mean
    from groklab.report.listing import results_table

    check_out_dir(out)
    dev = check_device(device)
    extra = parse_settings(settings)
    if seeds < 1:
        fail(f"--seeds must be at least 1, got {seeds}")
    refuse_many(seeds * max(1, len(lr or [])), yes,
                f"--seeds {seeds}" + (f" × {len(lr)} --lr values" if lr and len(lr) > 1 else ""))
    for text in lr or []:
        try:
            parse_lr(text)
        except ValueError as e:
            fail(f"{e}{did_you_mean(text.strip(), LR_CONFIGS)}")
    seed = flags.pop("seed")
    typed, origin = typed_settings(ctx, flags, extra)
    if recipe is not None:
        from groklab.recipes import recipe as get_recipe
        from groklab.recipes import recipe_names

        try:
            get_recipe(recipe)
        except ValueError as e:
            fail(f"--recipe: {e}{did_you_mean(recipe, recipe_names())}")
    try:  # the settings typed (flags, then --set) over the recipe's, over the defaults
        specs = make_specs(lr=lr or (None if recipe else ["baseline"]), seeds=seeds, seed=seed,
                           recipe=recipe, **(typed | extra))
    except ValidationError as e:
        fail(describe(e, origin))
    except ValueError as e:
        fail(str(e))
    refuse_ignored(specs, origin)
    specs, repeats = drop_repeats(specs)
    # labels: make_specs applies the one rule (studies/labels.py)
    if checkpoint_every < 0:
        fail(f"--checkpoint-every must be 0 or more, got {checkpoint_every}")
    runner = make_executor(executor, address, gpus_per_cohort, cpus_per_cohort)
    refuse_unknown_parents(specs, out, origin)  # before anything is written
    max_cohort = before_store(specs, out, dev, origin, yes=yes, local=runner is None)
    with open_store(out) as store:  # one store for the whole command
        refuse_unknown_parents(specs, out, origin, store)
        record(store, "run", specs, device=dev, compile=compile, executor=executor,
               checkpoint_every=checkpoint_every, slots=slots)
        for note in repeats:
            typer.echo(f"groklab: {note}", err=True)
        counts = run_specs(specs, out, device=dev, progress=progress, compile=compile,
                           executor=runner, store=store, max_cohort=max_cohort,
                           slots=slots, checkpoint_every=checkpoint_every or None,
                           checkpoint_seconds=300.0 if checkpoint_every else None)
        ids = {s.run_id for s in specs}
        rows = [r for r in store.runs() if r["id"] in ids]
    typer.echo(results_table(rows))
    typer.echo(f"{run_counts(counts)}; store: {out}/groklab.sqlite", err=True)


def results(
    paths: Annotated[list[str], typer.Argument(
        metavar="PATH [PATH]... [RUN_ID]...", help="Output folders of `groklab run` or "
        "`study` (several: their runs in one table, each with its store), then, to show only "
        "those, run ids (an id or a unique prefix of one).", show_default=False)],
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print a JSON list of runs, each with its study (null: none) and its "
        "named per-step metrics under \"metrics\" ({name: [[step, value], ...]}).")] = False,
    study: Studies = None,
    status: Statuses = None,
    where: Where = None,
) -> None:
    """List the runs recorded in PATH with their final metrics, sorted by task, label and
    seed, with the columns that apply to them (reads a read-only store too)."""
    from contextlib import ExitStack

    from groklab.report.listing import results_table, sort_runs

    folders, run_ids = folders_and_ids(paths)
    filters = parse_filters(study, status, where)
    runs: list[dict] = []
    with ExitStack() as stack:
        stores = [stack.enter_context(read_store(f)) for f in folders]
        check_names(filters, stores)
        found: dict[str, list[str]] = {}
        wanted = _wanted(stores, run_ids) if run_ids else None
        for i, store in enumerate(stores):
            memberships = store.run_studies()
            chosen = choose(store.runs(), filters, memberships)
            chosen = [r for r in chosen if wanted is None or r["id"] in wanted[i]]
            for r in chosen:
                r["study"] = ", ".join(memberships.get(r["id"], [])) or None
                if len(stores) > 1:
                    r["store"] = str(store.root)
                    found.setdefault(r["id"], []).append(str(store.root))
                if as_json:
                    named: dict[str, list] = {}
                    for step, name, value in store.metrics(r["id"]):
                        named.setdefault(name, []).append([step, value])
                    r["metrics"] = named
            runs += chosen
    runs = list(sort_runs(runs))
    shared = {rid: places for rid, places in found.items() if len(places) > 1}
    if shared:
        shown = ", ".join(f"{rid} ({', '.join(w)})" for rid, w in list(shared.items())[:5])
        more = f" and {len(shared) - 5} more" if len(shared) > 5 else ""
        typer.echo(f"groklab: {len(shared)} run id(s) are in more than one store; an id names "
                   f"one run (the same settings), recorded in each: {shown}{more}", err=True)
    if as_json:
        typer.echo(json.dumps(runs, indent=2))
        return
    typer.echo(results_table(runs))


def _wanted(stores: list, run_ids: list[str]) -> list[set[str]]:
    """Per store, the full ids of ``run_ids`` (ids or unique prefixes) it holds; one line,
    exit 2, for an id ambiguous in a store or in none of them."""
    from groklab.store import UnknownRun

    out: list[set[str]] = [set() for _ in stores]
    for rid in run_ids:
        missing = []
        for ids, store in zip(out, stores, strict=True):
            try:
                ids.add(store.resolve(rid))
            except UnknownRun as e:
                if "ambiguous" in str(e):
                    fail(str(e))
                missing.append(str(e))
        if len(missing) == len(stores):
            fail(missing[0] if len(stores) == 1 else
                 f"no run {rid!r} in {', '.join(str(s.root) for s in stores)}")
    return out
