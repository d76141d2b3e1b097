"""``groklab run`` (train seeds of lr configurations into a store) and ``groklab results``
(list a store's runs)."""

from __future__ import annotations

import json
import math
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
    make_executor,
    open_store,
    parse_settings,
    read_store,
)
from groklab.cli.invocation import record
from groklab.cli.names import MODELS, either
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
    given,
    refuse_ignored,
    refuse_unknown_parents,
)
from groklab.cli.shape import DFF, Activation, DHidden, DModel, NHeads, NLayers, shape_settings

if TYPE_CHECKING:
    pass


def run(
    ctx: typer.Context,
    out: Out,
    task: Annotated[str, typer.Option(help="Task name (see `groklab list`).")] = "x_plus_y",
    lr: Annotated[list[str] | None, typer.Option(
        help="Configuration name or rates 'e,l,h'; repeat to train several together.")] = None,
    recipe: Annotated[str | None, typer.Option(
        help="A named recipe (`groklab list`; docs/protocol.md §6.8): its settings, except "
        "those given here by a flag or --set.")] = None,
    seeds: Annotated[int, typer.Option(help="Number of seeds.")] = 1,
    seed: Annotated[int, typer.Option(help="First seed; runs use seed..seed+seeds-1.")] = 0,
    steps: Annotated[int, typer.Option(help="Update steps.")] = 7500,
    p: Annotated[int, typer.Option("--p", help="Modulus for modular tasks.")] = 97,
    k: Annotated[int, typer.Option("--k", help="k of S_k for permutation.")] = 5,
    operands: Annotated[int, typer.Option(help="K, the operands of task sum.")] = 2,
    n_examples: Annotated[int, typer.Option(
        help="sum: examples drawn from the run's seed when p^K is larger.")] = 10_000,
    max_len: Annotated[int | None, typer.Option(
        help="Transformer positions (default: the task's length); set it to the longest "
        "sequence a model will see, e.g. 12 to continue a K=2 model on K=6.")] = None,
    train_fraction: Annotated[float, typer.Option(help="Training fraction in (0, 1).")] = 0.5,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 512,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.5,
    warmup: Annotated[int, typer.Option(help="Linear warm-up steps.")] = 50,
    eval_every: Annotated[int, typer.Option(help="Steps between evaluations.")] = 10,
    precision: Annotated[str, typer.Option(help="fp32 or bf16.")] = "fp32",
    optimizer: Annotated[str, typer.Option(
        help="adamw, adam, sgd, or muon (Muon on the hidden matrices, AdamW on the "
        "rest).")] = "adamw",
    momentum: Annotated[float, typer.Option(help="SGD momentum.")] = 0.0,
    nesterov: Annotated[bool, typer.Option(
        "--nesterov", help="Nesterov momentum (SGD with --momentum > 0).")] = False,
    muon_lr_ratio: Annotated[float | None, typer.Option(
        help="Muon: the hidden matrices' rate as a multiple of the rate their group has "
        "(default 20: 0.02 beside 1e-3). Momentum, Nesterov and shape factor: --set "
        "muon_momentum=0.95, muon_nesterov=true, muon_adjust_lr=original.")] = None,
    grad_ortho: Annotated[bool, typer.Option(
        "--grad-ortho", help="⊥Grad: remove from each weight tensor's gradient its component "
        "along the tensor, keeping the gradient's norm (docs/protocol.md §4).")] = False,
    loss: Annotated[str, typer.Option(
        help="softmax, or stablemax: cross-entropy with s(x) = x + 1 (x ≥ 0), 1/(1 − x) "
        "(x < 0) in place of exp (docs/protocol.md §4).")] = "softmax",
    model: Annotated[str, typer.Option(
        help=f"{either(MODELS)} (gpt trains the text task: see groklab lm).")] = "transformer",
    n_layers: NLayers = None, d_model: DModel = None, n_heads: NHeads = None, d_ff: DFF = None,
    d_hidden: DHidden = None, activation: Activation = None,
    embedding: Annotated[bool, typer.Option(
        "--embedding/--no-embedding", help="MLP input: learned token embeddings (default) or "
        "one-hot vectors with no embedding table.")] = True,
    dropout: Annotated[float, typer.Option(
        help="Dropout probability in [0, 1), training only (Transformer: attention "
        "probabilities and residual branches; MLP and LSTM: between layers).")] = 0.0,
    grad_filter: Annotated[str, typer.Option(
        help="Grokfast gradient filter: none, ema:ALPHA:LAMBDA (e.g. ema:0.98:2) or "
        "ma:WINDOW:LAMBDA (e.g. ma:100:5). MA keeps the last WINDOW gradients of every run: "
        "WINDOW × 4 bytes × the model's parameters per run (ma:100 on the 0.42 M-parameter "
        "Transformer: 170 MB per run); EMA keeps one.")] = "none",
    embedding_lr: Annotated[str, typer.Option(
        help="fixed, or adaptive: every N steps η_E = η_W·c·(σ_max(E)/σ_max(W))·(f_W/f_E) "
        "(docs/protocol.md §5; c and N: --set embedding_lr_c=1 --set "
        "embedding_lr_every=100).")] = "fixed",
    sampling: Annotated[str, typer.Option(
        help="uniform, or balanced: batches in which every operand token appears about "
        "equally often (docs/protocol.md §6.7).")] = "uniform",
    diagnostics: Annotated[bool, typer.Option(
        "--diagnostics", help="Record σ_max and norms of the embedding and the next matrix, "
        "η_E/η_W and token update spread at every evaluation.")] = False,
    measures: Annotated[str, typer.Option(
        help="Progress measures (docs/protocol.md §4.1): none; norms (weight norm in total and "
        "per rate group); fourier (also the Fourier spectra of the embedding and the logits, "
        "key frequencies, restricted and excluded loss; x_plus_y, x_minus_y, sum with 2 "
        "operands). Recorded at "
        "the first, every --measures-every-th and the last evaluation. Cost of a Fourier "
        "measurement: one forward over all p² pairs, 1.5-2.5 times an evaluation at training "
        "fraction 0.5 (measured on 2 shared CPU cores, p 97: Transformer 0.5-0.8 s per run "
        "against 0.3 s per evaluation, one-hot MLP 0.1-0.15 s against 0.04-0.07 s), so every "
        "10 evaluations adds about a fifth to the evaluation time; norms: under 2 ms.")] = "none",
    measures_every: Annotated[int, typer.Option(
        help="Measure every N evaluations (with --measures).")] = 10,
    settings: Settings = None,
    device: Device = None,
    compile: Compile = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    executor: Executor = "local", address: Address = None,
    gpus_per_cohort: GpusPerCohort = 0.0, cpus_per_cohort: CpusPerCohort = 1.0,
    checkpoint_every: Annotated[int, typer.Option(
        help="Steps between mid-run checkpoints (also every 5 minutes and at Ctrl-C; "
        "0: none). An interrupted run resumes from its last checkpoint.")] = 1000,
    yes: Yes = False,
    slots: Slots = None,
) -> None:
    """Train seeds of one or more lr configurations (batched as one cohort) into OUT."""
    from pydantic import ValidationError

    from groklab.api import make_specs
    from groklab.engine import run_specs
    from groklab.format import run_counts
    from groklab.rates import LR_CONFIGS, parse_grad_filter, parse_lr
    from groklab.registry import did_you_mean
    from groklab.report.listing import results_table

    for name, value in (("--train-fraction", train_fraction), ("--weight-decay", weight_decay),
                        ("--momentum", momentum), ("--dropout", dropout)):
        if not math.isfinite(value):
            fail(f"{name} must be a finite number, got {value}")
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
    try:
        filter_settings = parse_grad_filter(grad_filter)
    except ValueError as e:
        fail(str(e))
    origin = given(ctx, extra, sets={"grad_filter": filter_settings})
    if recipe is not None:
        from groklab.recipes import recipe as get_recipe
        from groklab.recipes import recipe_names

        try:
            bundle = get_recipe(recipe).settings
        except ValueError as e:
            fail(f"--recipe: {e}{did_you_mean(recipe, recipe_names())}")
    try:
        named = dict(task=task, steps=steps, p=p, k=k, train_fraction=train_fraction,
                     batch_size=batch_size, weight_decay=weight_decay, warmup=warmup,
                     eval_every=eval_every, precision=precision, optimizer=optimizer,
                     momentum=momentum, nesterov=nesterov, model=model, embedding=embedding,
                     dropout=dropout, operands=operands, n_examples=n_examples,
                     max_len=max_len, embedding_lr=embedding_lr, sampling=sampling,
                     diagnostics=diagnostics, grad_ortho=grad_ortho, loss=loss
                     ) | filter_settings
        named |= dict(measures=measures, measures_every=measures_every)
        named |= shape_settings(n_layers=n_layers, d_model=d_model, n_heads=n_heads, d_ff=d_ff,
                                d_hidden=d_hidden, activation=activation)
        if muon_lr_ratio is not None:
            named["muon_lr_ratio"] = muon_lr_ratio
        if recipe is not None:  # the recipe's settings, where no flag was typed
            named = {k: v for k, v in named.items() if k in origin or k not in bundle}
        specs = make_specs(lr=lr or (None if recipe else ["baseline"]), seeds=seeds, seed=seed,
                           recipe=recipe, **(named | extra))
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
