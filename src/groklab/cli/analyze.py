"""``groklab analyze``: the progress measures of finished runs, from their saved final weights
and the measures recorded during training (docs/protocol.md §4.1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from groklab.cli.common import Device, check_device, check_out_dir, fail, read_store

ANALYSIS_DIR = "analysis"


def analyze(
    out: Annotated[Path, typer.Argument(
        metavar="OUT", help="An output folder of `groklab run` or `study`.")],
    run_id: Annotated[str | None, typer.Argument(
        metavar="[RUN_ID]", help="A finished run: its id or a unique prefix of it. Default: "
        "every finished run of the tasks the Fourier measures are defined for (x_plus_y, "
        "x_minus_y, sum with 2 operands).", show_default=False)] = None,
    device: Device = None,
) -> None:
    """For finished runs, from their final weights: the Fourier spectra of the embedding and
    of the logits (OUT/analysis/ID-spectrum.png, key frequencies marked), their key
    frequencies and the restricted and excluded losses (printed, and in OUT/analysis/ID.json);
    where measures were recorded during training (--measures), the progress-measure figure
    (OUT/analysis/ID-measures.png) and the steps of memorisation, circuit formation and
    generalisation."""
    from groklab.measures import MeasureError, fourier_scope
    from groklab.spec import stored_spec
    from groklab.store import UnknownRun

    dev = check_device(device)
    with read_store(out) as store:
        runs = {r["id"]: r for r in store.runs()}
        if run_id is not None:
            try:
                chosen = [store.resolve(run_id)]
            except UnknownRun as e:
                fail(str(e))
            status = runs[chosen[0]]["status"]
            if status != "finished":
                fail(f"run {chosen[0]} is {status}: only a finished run has final weights")
        else:
            chosen = [rid for rid, r in runs.items() if r["status"] == "finished"]
        scoped, skipped = [], {}
        for rid in chosen:
            spec = stored_spec(runs[rid])
            try:
                fourier_scope(spec.task, spec.task_args())
                scoped.append(rid)
            except MeasureError as e:
                skipped.setdefault(spec.task, str(e))
        if run_id is not None and skipped:
            fail(f"run {chosen[0]}: {next(iter(skipped.values()))}")
        if not scoped:
            why = "; ".join(f"{t}: {w}" for t, w in skipped.items())
            fail(f"no finished run to analyse in {out}" + (f" ({why})" if why else ""))
        recorded = {rid: (store.curve(rid), store.metrics(rid)) for rid in scoped}
    check_out_dir(out)
    folder = out / ANALYSIS_DIR
    folder.mkdir(exist_ok=True)
    if skipped:
        typer.echo(f"skipped runs of {', '.join(skipped)}: the Fourier measures are not "
                   "defined for them (docs/protocol.md §4.1)", err=True)
    for rid in scoped:
        curve, metrics = recorded[rid]
        typer.echo(_analyse(out, folder, runs[rid], curve, metrics, dev))


def _analyse(out: Path, folder: Path, row: dict[str, Any], curve: list, metrics: list,
             device: str) -> str:
    """One run's files and its lines of text."""
    import pandas as pd

    from groklab.engine.measures import measure_saved
    from groklab.format import MISSING, number
    from groklab.measures import (
        KEY_SHARE,
        is_spectrum_metric,
        key_frequencies,
        stored_spectrum,
    )
    from groklab.report.measures import phase_steps, progress_figure, spectrum_figure

    rid, label = row["id"], row["label"]
    result = measure_saved(out, rid, device=device)
    values = result.values
    spectra, lines = {}, [f"run {rid} ({row['task']}, {label}, seed {row['seed']}), final "
                          "weights:"]
    names = {"embedding": "embedding", "logit": "logits along cos/sin(w(x ± y))"}
    for which, name in names.items():
        norms = stored_spectrum(values, which)
        assert norms is not None
        keys = key_frequencies(norms)
        spectra[which] = {"norms": norms.tolist(), "key_frequencies": keys}
        lines.append(f"  {name}: key frequencies {', '.join(map(str, keys)) or MISSING} "
                     f"({len(keys)} of {len(norms) - 1} hold {KEY_SHARE:.0%} of the norm²; "
                     f"participation ratio {values[f'{which}_participation']:.1f})")
    title = f"{row['task']} p={result.spec.p}, {label}, seed {row['seed']} ({rid[:8]})"
    files = [spectrum_figure({names[w]: (s["norms"], s["key_frequencies"])
                              for w, s in spectra.items()},
                             f"Fourier spectra: {title}", folder / f"{rid}-spectrum.png")]
    lines.append(f"  on the training pairs: restricted loss "
                 f"{number(values['restricted_loss'], '.4g')}, excluded loss "
                 f"{number(values['excluded_loss'], '.4g')}, loss "
                 f"{number(values['full_loss'], '.4g')} (the logit key frequencies); weight "
                 f"norm {number(values['weight_norm'], '.4g')}")
    summary: dict[str, Any] = {"run_id": rid, "task": row["task"], "label": label,
                               "seed": row["seed"], "p": result.spec.p,
                               "key_share": KEY_SHARE, "spectra": spectra,
                               "final": {k: v for k, v in values.items()
                                         if not is_spectrum_metric(k)}}
    named = pd.DataFrame(metrics, columns=["step", "name", "value"]).assign(config=label)
    if (named["name"] == "weight_norm").any():
        curves = pd.DataFrame([(r.step, r.train_loss, r.train_acc, r.val_loss, r.val_acc)
                               for r in curve], columns=["step", "train_loss", "train_acc",
                                                         "val_loss", "val_acc"]
                              ).assign(config=label)
        files.append(progress_figure(curves, named, f"progress measures: {title}",
                                     folder / f"{rid}-measures.png", [label]))
        phases = phase_steps(curves, named, row)
        summary["phases"] = phases
        lines.append("  recorded: train accuracy 99 % at step "
                     f"{number(phases['memorised'], ',.0f')}; restricted loss below its "
                     f"memorisation level from step {number(phases['restricted_below'], ',.0f')}"
                     f"; excluded loss peak at step {number(phases['excluded_peak'], ',.0f')}; "
                     f"validation accuracy 99 % at step {number(phases['val_acc_99'], ',.0f')}")
    else:
        lines.append("  no measures recorded during training (groklab run --measures fourier)")
    path = folder / f"{rid}.json"
    path.write_text(json.dumps(summary | {"files": [str(f) for f in files]}, indent=2) + "\n")
    lines.append("  files: " + ", ".join(str(f) for f in [*files, path]))
    return "\n".join(lines)
