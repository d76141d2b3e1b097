"""The ``groklab`` command. Bad input: one line on stderr, exit code 2, nothing written."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from groklab.commands import Address, CpusPerCohort, Executor, GpusPerCohort, make_executor
from groklab.commands import register as register_integrations
from groklab.lm.command import register as register_lm

# typer >= 0.16 vendors click; its UsageError is BadParameter's base class either way.
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="groklab: grokking experiments with layer-wise learning rates.")


class InputError(Exception):
    """A user error: printed as one line, exit code 2."""


def fail(message: str) -> None:
    raise InputError(message)


def describe(err: ValidationError) -> str:
    """A pydantic error as one line: 'field: reason; field: reason'."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "settings"
        parts.append(f"{loc}: {e['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        fail(f"output path {out} exists and is not a folder")


def check_device(device: str | None) -> str:
    import torch

    from groklab.engine import default_device

    if device is None:
        return default_device()
    kind = device.split(":")[0]
    if kind not in ("cpu", "cuda", "mps"):
        fail(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps")
    if kind == "cuda" and not torch.cuda.is_available():
        fail("device 'cuda' requested but no CUDA GPU is available")
    if kind == "mps" and not torch.backends.mps.is_available():
        fail("device 'mps' requested but MPS is not available")
    return device


def parse_settings(pairs: list[str] | None) -> dict[str, object]:
    """``--set key=value`` pairs -> settings; values are TOML (``1e-3``, ``"cosine"``, ``[1, 2]``)
    and fall back to plain text (``--set lr_schedule=cosine``)."""
    import tomllib

    from groklab.spec import RunSpec

    out: dict[str, object] = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            fail(f"--set {pair!r}: use KEY=VALUE")
        if key not in RunSpec.model_fields or key in ("seed", "lr_name"):
            known = ", ".join(k for k in RunSpec.model_fields if k not in ("seed", "lr_name"))
            fail(f"--set {key}: unknown run setting; known: {known}")
        try:
            out[key] = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = text.strip()
    return out


Settings = Annotated[list[str] | None, typer.Option(
    "--set", metavar="KEY=VALUE", help="Any other run setting, e.g. --set grad_clip=1.0 "
    "--set lr_schedule=cosine --set semantics=1 (repeatable; see README, Settings).")]

Out = Annotated[Path, typer.Option("--out", "-o", help="Output folder (holds groklab.sqlite).")]
Device = Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N or mps (default: best).")]
Compile = Annotated[bool, typer.Option(
    "--compile", help="Run the model through torch.compile: faster steps after a one-off "
    "compile of 40-60 s per cohort shape; worth it for runs of thousands of steps.")]


@app.command()
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
    runner = make_executor(executor, address, gpus_per_cohort, cpus_per_cohort, fail)
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


@app.command()
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


# -- studies and reports --------------------------------------------------------------------


@app.command("list")
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


@app.command()
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
    runner = make_executor(executor, address, gpus_per_cohort, cpus_per_cohort, fail)
    counts = run_study(definition, out, device=dev, progress=progress, compile=compile,
                       executor=runner)
    typer.echo(f"{counts['trained']} run(s) trained, {counts['skipped']} already finished; "
               f"next: groklab report {out}", err=True)


@app.command()
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


# -- end of studies and reports ----------------------------------------------------------------


@app.command()
def bench(
    device: Device = None,
    precision: Annotated[str, typer.Option(help="Comma-separated: fp32,bf16.")] = "fp32,bf16",
    cohorts: Annotated[str, typer.Option(help="Comma-separated cohort sizes.")] = "1,4",
    model: Annotated[str, typer.Option(
        help="Comma-separated models: transformer,mlp,lstm,gpt (gpt: the character LM at "
        "`groklab lm`'s CPU size).")] = "transformer",
    batch_size: Annotated[int | None, typer.Option(
        help="Batch size per run (default: 512; gpt: 16 windows).")] = None,
    compile: Compile = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar (on stderr).")] = True,
) -> None:
    """Time training steps of the reference configuration (any model and batch size) against
    the measured matmul peak."""
    from groklab.bench import DTYPES, run_bench

    dev = check_device(device)
    precisions = [s.strip() for s in precision.split(",") if s.strip()]
    if not precisions or any(p not in DTYPES for p in precisions):
        fail(f"--precision {precision!r}: use fp32, bf16 or fp32,bf16")
    try:
        sizes = [int(s) for s in cohorts.split(",")]
    except ValueError:
        fail(f"--cohorts {cohorts!r}: use comma-separated positive integers")
    if not sizes or min(sizes) < 1:
        fail(f"--cohorts {cohorts!r}: use comma-separated positive integers")
    from groklab.models import MODEL_NAMES

    models = [m.strip() for m in model.split(",") if m.strip()]
    if not models or any(m not in MODEL_NAMES for m in models):
        fail(f"--model {model!r}: use one or more of {', '.join(MODEL_NAMES)}")
    if batch_size is not None and batch_size < 1:
        fail(f"--batch-size must be at least 1, got {batch_size}")
    import torch

    rows = run_bench(dev, precisions, sizes, compile=compile, progress=progress, models=models,
                     batch_size=batch_size)
    if as_json:
        typer.echo(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                               "rows": rows}, indent=2))
        return
    import pandas as pd

    typer.echo(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3g}"))


# `groklab export tensorboard` and `groklab tune` (optional extras: groklab/commands.py)
register_integrations(app, fail, parse_settings)
# `groklab lm` and `groklab sample` (the character language model: groklab/lm/command.py)
register_lm(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point: typer without its multi-line error boxes."""
    try:
        rv = app(args=argv, prog_name="groklab", standalone_mode=False)
    except InputError as e:
        print(f"groklab: error: {e}", file=sys.stderr)
        return 2
    except UsageError as e:
        print(f"groklab: error: {e.format_message()}", file=sys.stderr)  # type: ignore[attr-defined]
        return 2
    except (typer.Abort, typer.Exit) as e:
        return getattr(e, "exit_code", 1)
    except KeyboardInterrupt:
        print("groklab: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return rv if isinstance(rv, int) else 0


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
