"""``groklab run`` (train seeds of lr configurations into a store) and ``groklab results``
(list a store's runs)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

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
    describe,
    fail,
    make_executor,
    parse_settings,
)


def run(
    out: Out,
    task: Annotated[str, typer.Option(help="Task name (see `groklab list`).")] = "x_plus_y",
    lr: Annotated[list[str] | None, typer.Option(
        help="Configuration name or rates 'e,l,h'; repeat to train several together.")] = None,
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
    optimizer: Annotated[str, typer.Option(help="adamw, adam or sgd.")] = "adamw",
    momentum: Annotated[float, typer.Option(help="SGD momentum.")] = 0.0,
    nesterov: Annotated[bool, typer.Option(
        "--nesterov", help="Nesterov momentum (SGD with --momentum > 0).")] = False,
    model: Annotated[str, typer.Option(help="transformer, mlp or lstm.")] = "transformer",
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
    settings: Settings = None,
    device: Device = None,
    compile: Compile = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    executor: Executor = "local", address: Address = None,
    gpus_per_cohort: GpusPerCohort = 0.0, cpus_per_cohort: CpusPerCohort = 1.0,
    checkpoint_every: Annotated[int, typer.Option(
        help="Steps between mid-run checkpoints (also every 5 minutes and at Ctrl-C; "
        "0: none). An interrupted run resumes from its last checkpoint.")] = 1000,
) -> None:
    """Train seeds of one or more lr configurations (batched as one cohort) into OUT."""
    from groklab.api import make_specs
    from groklab.engine import run_specs
    from groklab.rates import parse_grad_filter

    for name, value in (("--train-fraction", train_fraction), ("--weight-decay", weight_decay),
                        ("--momentum", momentum), ("--dropout", dropout)):
        if not math.isfinite(value):
            fail(f"{name} must be a finite number, got {value}")
    check_out_dir(out)
    dev = check_device(device)
    extra = parse_settings(settings)
    try:
        named = dict(task=task, steps=steps, p=p, k=k, train_fraction=train_fraction,
                     batch_size=batch_size, weight_decay=weight_decay, warmup=warmup,
                     eval_every=eval_every, precision=precision, optimizer=optimizer,
                     momentum=momentum, nesterov=nesterov, model=model, embedding=embedding,
                     dropout=dropout, operands=operands, n_examples=n_examples,
                     max_len=max_len, embedding_lr=embedding_lr, sampling=sampling,
                     diagnostics=diagnostics) | parse_grad_filter(grad_filter)
        specs = make_specs(lr=lr or ["baseline"], seeds=seeds, seed=seed, **(named | extra))
    except ValidationError as e:
        fail(describe(e))
    except ValueError as e:
        fail(str(e))
    if checkpoint_every < 0:
        fail(f"--checkpoint-every must be 0 or more, got {checkpoint_every}")
    runner = make_executor(executor, address, gpus_per_cohort, cpus_per_cohort)
    counts = run_specs(specs, out, device=dev, progress=progress, compile=compile,
                       executor=runner,
                       checkpoint_every=checkpoint_every or None,
                       checkpoint_seconds=300.0 if checkpoint_every else None)
    typer.echo(f"{counts['trained']} run(s) trained, {counts['skipped']} already finished; "
               f"store: {out}/groklab.sqlite", err=True)


RESULT_COLUMNS = ["id", "task", "model", "label", "seed", "status", "steps", "final_train_acc",
                  "final_val_acc", "max_val_acc", "final_val_loss", "step_train_acc_99",
                  "step_val_acc_99", "grokking_delay"]
STEP_COLUMNS = ("step_train_acc_99", "step_val_acc_99", "grokking_delay")


def results(
    path: Annotated[Path, typer.Argument(help="An output folder of `groklab run`.")],
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print a JSON list of runs, each with its named per-step metrics "
        "under \"metrics\" ({name: [[step, value], ...]}).")] = False,
) -> None:
    """List the runs recorded in PATH with their final metrics."""
    from groklab.store import Store

    try:
        store = Store(path, create=False)
    except FileNotFoundError as e:
        fail(str(e))
    with store:
        runs = store.runs()
        if as_json:
            for r in runs:
                named: dict[str, list] = {}
                for step, name, value in store.metrics(r["id"]):
                    named.setdefault(name, []).append([step, value])
                r["metrics"] = named
    if as_json:
        typer.echo(json.dumps(runs, indent=2))
        return
    if not runs:
        typer.echo("no runs")
        return
    import pandas as pd

    df = pd.DataFrame(runs).reindex(columns=RESULT_COLUMNS)
    for column in STEP_COLUMNS:
        df[column] = df[column].map(lambda v: "—" if pd.isna(v) else int(v))
    typer.echo(df.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
