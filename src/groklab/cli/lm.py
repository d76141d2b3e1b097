"""``groklab lm`` (train character language models) and ``groklab sample`` (generate text
from a trained one)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from groklab.cli.common import (
    Address,
    CpusPerCohort,
    Executor,
    GpusPerCohort,
    check_device,
    check_out_dir,
    fail,
    make_executor,
    parse_settings,
    read_store,
)
from groklab.cli.invocation import record
from groklab.cli.settings import describe, given, refuse_ignored, refuse_unknown_parents
from groklab.cli.shape import DModel, NHeads, NLayers


def lm(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (holds groklab.sqlite).")],
    data: Annotated[str, typer.Option(
        help="Corpus: a UTF-8 text file, or tinyshakespeare (shipped with groklab).")
    ] = "tinyshakespeare",
    size: Annotated[str, typer.Option(
        help="cpu (4 layers, 4 heads, width 128, context 64, 1,200 steps of 16 windows) or "
        "paper (6 layers, 6 heads, width 384, context 256, dropout 0.2, 5,000 steps of 64; "
        "for a GPU). Every setting below overrides it.")] = "cpu",
    lr_decay: Annotated[list[str] | None, typer.Option(
        help="Depth-decay strategy: none, exp:GAMMA, linear:FLOOR or cosine:FLOOR; repeat to "
        "train several together (one cohort).")] = None,
    lr: Annotated[float | None, typer.Option(help="Base rate η_0 (default 1e-3).")] = None,
    seeds: Annotated[int, typer.Option(help="Seeds per strategy.")] = 1,
    seed: Annotated[int, typer.Option(help="First seed.")] = 0,
    steps: Annotated[int | None, typer.Option(help="Iterations.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Windows per batch.")] = None,
    context: Annotated[int | None, typer.Option(help="Characters per window.")] = None,
    n_layers: NLayers = None,
    n_heads: NHeads = None,
    d_model: DModel = None,
    dropout: Annotated[float | None, typer.Option(help="Dropout in [0, 1).")] = None,
    warmup: Annotated[int | None, typer.Option(help="Linear warm-up iterations.")] = None,
    eval_every: Annotated[int | None, typer.Option(help="Iterations between evaluations.")
                          ] = None,
    eval_batches: Annotated[int | None, typer.Option(
        help="Batches per split at every evaluation.")] = None,
    settings: Annotated[list[str] | None, typer.Option(
        "--set", metavar="KEY=VALUE", help="Any other run setting (README, Settings).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N or mps.")] = None,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the model.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    executor: Executor = "local", address: Address = None,
    gpus_per_cohort: GpusPerCohort = 0.0, cpus_per_cohort: CpusPerCohort = 1.0,
) -> None:
    """Train nanoGPT-style character models with depth-decayed rates into OUT (docs/protocol.md §7);
    prints final train loss, best val loss, time and speeds per run."""
    from pydantic import ValidationError

    from groklab.engine import run_specs
    from groklab.format import run_counts
    from groklab.lm.settings import SIZES, lm_settings, parse_lr_decay
    from groklab.lm.summary import lm_runs
    from groklab.registry import did_you_mean
    from groklab.spec import RunSpec
    from groklab.store import Store

    if seeds < 1:
        fail(f"--seeds must be at least 1, got {seeds}")
    if size not in SIZES:
        fail(f"--size {size!r}{did_you_mean(size, SIZES)}: use {' or '.join(SIZES)}")
    check_out_dir(out)
    dev = check_device(device)
    flags = dict(steps=steps, batch_size=batch_size, context=context, n_layers=n_layers,
                 n_heads=n_heads, d_model=d_model, dropout=dropout, warmup=warmup,
                 eval_every=eval_every, eval_batches=eval_batches)
    extra = parse_settings(settings)
    try:
        strategies = [parse_lr_decay(t) for t in (lr_decay or ["none"])]
    except ValueError as e:
        fail(str(e))
    decays = {k for _, decay in strategies for k in decay}
    origin = given(ctx, extra, sets={"data": ("corpus",), "lr_decay": decays})
    try:
        base = lm_settings(size) | {"corpus": data}
        base |= {k: v for k, v in flags.items() if v is not None}
        if lr is not None:
            base["lr"] = (lr,) * 3
        base |= extra
        specs = [RunSpec(**(base | decay), lr_name=label, seed=s)
                 for label, decay in strategies for s in range(seed, seed + seeds)]
    except ValidationError as e:
        fail(describe(e, origin))
    except ValueError as e:
        fail(str(e))
    # each --lr-decay strategy sets what it uses; the others' settings are not its own
    refuse_ignored(specs, {f: flag for f, flag in origin.items() if flag != "--lr-decay"})
    refuse_unknown_parents(specs, out, origin)
    runner = make_executor(executor, address, gpus_per_cohort, cpus_per_cohort)
    with Store(out) as store:  # one store for the whole command
        refuse_unknown_parents(specs, out, origin, store)
        record(store, "lm", specs, device=dev, compile=compile, executor=executor)
        counts = run_specs(specs, out, device=dev, progress=progress, compile=compile,
                           executor=runner, store=store)
        table = lm_runs(store)
    ids = {s.run_id for s in specs}
    table = table[table["id"].isin(ids)].drop(columns=["sample"])
    typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    typer.echo(f"{run_counts(counts)}; next: groklab sample {out} RUN_ID, groklab report "
               f"{out}", err=True)


def sample(
    path: Annotated[Path, typer.Argument(help="An output folder of `groklab lm` or `study`.")],
    run_id: Annotated[str, typer.Argument(help="The run (see `groklab results PATH`).")],
    prompt: Annotated[str, typer.Option(
        help="Text to continue.", show_default="a newline")] = "\n",
    tokens: Annotated[int, typer.Option(help="Characters to generate.")] = 500,
    temperature: Annotated[float, typer.Option(help="Sampling temperature > 0.")] = 0.8,
    top_k: Annotated[int, typer.Option(help="Sample among the k most likely (0: all).")] = 200,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N or mps.")] = None,
) -> None:
    """Generate text from a finished language-model run's final weights (KV cache); the
    speed goes to stderr."""
    import math

    from groklab.lm.outputs import gpt_for
    from groklab.store import UnknownRun
    from groklab.store.weights import has_weights, load_weights
    from groklab.tasks import language_tasks
    from groklab.tasks.text import sample as generate

    if tokens < 1:
        fail(f"--tokens must be at least 1, got {tokens}")
    if not (math.isfinite(temperature) and temperature > 0):
        fail(f"--temperature must be a positive number, got {temperature}")
    if top_k < 0:
        fail(f"--top-k must be 0 (all) or more, got {top_k}")
    if not (path / "groklab.sqlite").is_file():
        fail(f"no groklab store in {path} (expected {path / 'groklab.sqlite'})")
    dev = check_device(device)
    with read_store(path) as store:
        try:
            run_id = store.resolve(run_id)  # an id or a unique prefix
        except UnknownRun as e:
            fail(str(e))
        record = next((r for r in store.runs() if r["id"] == run_id), None)
        texts = store.texts(run_id)
    if record.get("task") not in language_tasks():
        fail(f"run {run_id} is a {record.get('task')} run, not a language model")
    if record["status"] != "finished" or not has_weights(path, run_id) or "alphabet" not in texts:
        fail(f"run {run_id} has not finished (no final weights yet)")
    alphabet = texts["alphabet"]
    try:
        text, speed = generate(gpt_for(record, alphabet), alphabet, load_weights(path, run_id),
                             prompt=prompt, tokens=tokens, temperature=temperature,
                             top_k=top_k or None, seed=seed, device=dev)
    except ValueError as e:
        fail(f"--prompt: {e}")
    typer.echo(prompt + text)
    typer.echo(f"{tokens} tokens at {speed:.0f} tokens/s on {dev}", err=True)
