"""``groklab bench``: time training steps against the measured matmul peak."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from groklab.cli.common import Device, check_device, fail


def bench(
    device: Device = None,
    precision: Annotated[str, typer.Option(help="Comma-separated: fp32,bf16.")] = "fp32,bf16",
    cohorts: Annotated[str, typer.Option(help="Comma-separated cohort sizes.")] = "1,4",
    model: Annotated[str, typer.Option(
        help="Comma-separated models: transformer,mlp,lstm,gpt (gpt: the character LM at "
        "`groklab lm`'s CPU size).")] = "transformer",
    batch_size: Annotated[int | None, typer.Option(
        help="Batch size per run (default: 512; gpt: 16 windows).")] = None,
    method: Annotated[str, typer.Option(
        help="Comma-separated training methods: adamw (the reference), muon (--optimizer "
        "muon), orthograd (--grad-ortho), stablemax (--loss stablemax).")] = "adamw",
    compile: Annotated[bool, typer.Option(
        "--compile", help="Time the model and the optimiser's chain through torch.compile "
        "(the compile itself, about a minute per shape on a CPU, is left out of the "
        "timing).")] = False,
    profile: Annotated[bool, typer.Option(
        "--profile", help="Instead of timing: where a step's time goes, per phase (sample, "
        "forward, backward, optimizer, train metrics, evaluation, untraced Python), matmuls "
        "apart, under torch.profiler (40 steps after a warm-up).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar (on stderr).")] = True,
) -> None:
    """Time training steps of the reference configuration (any model and batch size) against
    the measured matmul peak."""
    from groklab.bench import DTYPES, METHODS, run_bench, run_profiles

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
    from groklab.models import model_names

    models = [m.strip() for m in model.split(",") if m.strip()]
    if not models or any(m not in model_names() for m in models):
        fail(f"--model {model!r}: use one or more of {', '.join(model_names())}")
    methods = [m.strip() for m in method.split(",") if m.strip()]
    if not methods or any(m not in METHODS for m in methods):
        fail(f"--method {method!r}: use one or more of {', '.join(METHODS)}")
    if batch_size is not None and batch_size < 1:
        fail(f"--batch-size must be at least 1, got {batch_size}")
    import torch

    measure = run_profiles if profile else run_bench
    rows = measure(dev, precisions, sizes, compile=compile, progress=progress, models=models,
                   batch_size=batch_size, methods=methods)
    if as_json:
        typer.echo(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                               "rows": rows}, indent=2))
        return
    import pandas as pd

    if not profile:
        typer.echo(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        return
    for r in rows:
        typer.echo(f"\n{r['model']}, {r['method']}, {r['precision']}, cohort {r['cohort']}"
                   f"{', compiled' if r['compiled'] else ''} on {r['device']}: "
                   f"{r['ms_per_step']:.1f} ms per step (under the profiler)")
        typer.echo(pd.DataFrame(r["phases"]).to_string(
            index=False, formatters={"share": lambda v: f"{v:.1%}"},
            float_format=lambda v: f"{v:.2f}"))
        typer.echo("costliest operators (ms per step): " + ", ".join(
            f"{o['name'].removeprefix('aten::')} {o['ms']:.2f}" for o in r["operators"][:8]))
