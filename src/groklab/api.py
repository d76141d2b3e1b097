"""The Python API: the same operations as the ``groklab`` command, returning plain data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from groklab.engine import run_specs
from groklab.rates import parse_lr
from groklab.recipes import recipe as get_recipe
from groklab.report import ReportFiles, summary_table, write_report
from groklab.report.tidy import curves_frame, runs_frame
from groklab.spec import RunSpec
from groklab.store import Store
from groklab.store.weights import LoadedRun, load_weights
from groklab.store.weights import load_run as _load_run
from groklab.studies import Study, get_study, run_study
from groklab.studies.labels import label_runs

LrChoice = str | tuple[float, float, float] | dict[str, float]


def make_specs(*, lr: LrChoice | Sequence[LrChoice] | None = None, seeds: int = 1,
               seed: int = 0, recipe: str | None = None, **settings: Any) -> list[RunSpec]:
    """Specs for every lr choice × seeds ``seed .. seed+seeds-1``.

    ``lr`` is a configuration name, a triple (embedding, lower, higher), a dict of rates per
    group (with ``group_rules``), or a list of those (default: the recipe's, else
    ``baseline``). ``recipe`` names a recipe (``groklab.recipes``) whose settings the keywords
    override; its runs are labelled by its name unless ``lr`` is given.
    Any other RunSpec field (task, p, steps, weight_decay, ...) may be given as a keyword.
    """
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}")
    if recipe is not None:
        bundle = dict(get_recipe(recipe).settings)
        recipe_lr = bundle.pop("lr", None)
        settings = bundle | settings
        if lr is None:
            settings.setdefault("lr_name", recipe)
            lr = tuple(recipe_lr) if isinstance(recipe_lr, list) else recipe_lr
    if lr is None:
        lr = "baseline"
    choices = [lr] if isinstance(lr, str | dict) or _is_triple(lr) else list(lr)
    specs = []
    for choice in choices:
        if isinstance(choice, str):
            name, rates = parse_lr(choice)
        else:
            name = settings.get("lr_name")
            rates = dict(choice) if isinstance(choice, dict) else tuple(choice)
        extra = {k: v for k, v in settings.items() if k != "lr_name"}
        specs += [RunSpec(lr=rates, lr_name=name, seed=s, **extra)
                  for s in range(seed, seed + seeds)]
    defined = dict(get_recipe(recipe).settings) if recipe is not None else None
    return label_runs(specs, recipe, defined)


def _is_triple(lr: object) -> bool:
    return isinstance(lr, tuple | list) and len(lr) == 3 and all(
        isinstance(x, int | float) for x in lr)


def run(out: str | Path, *, device: str | None = None, progress: bool = True,
        compile: bool | None = None, executor: Any = None, **spec_settings: Any) -> pd.DataFrame:
    """Train the runs ``make_specs(**spec_settings)`` describes into ``out``; return results.

    ``compile``: run the model and optimiser through ``torch.compile`` (None: when the runs
    hold at least 3e13 FLOPs each, on a CPU; see README, Speed);
    ``executor``: where cohorts train, e.g. ``groklab.integrations.ray_executor.RayExecutor()``
    (None: in this process).
    """
    specs = make_specs(**spec_settings)
    run_specs(specs, out, device=device, progress=progress, compile=compile, executor=executor)
    return results(out)


def results(out: str | Path) -> pd.DataFrame:
    """One row per run in ``out``'s store (read-only stores too), sorted by task, label and
    seed: ``id``, the spec's settings, ``label``, ``status``, timing and final metrics.
    Dtypes are fixed per column (report/tidy.py): metrics float64 with NaN for "not reached"
    or "not finished", whole-number settings Int64, real settings float64."""
    with Store(out, create=False) as store:
        return runs_frame(store.runs())


def curves(out: str | Path) -> pd.DataFrame:
    """Every evaluated step of every run in ``out``'s store, long (tidy) format: ``run_id``,
    ``task``, ``label``, ``seed``, ``step``, ``metric`` (``train_loss``, ``train_acc``,
    ``val_loss``, ``val_acc`` and every named metric recorded) and ``value`` (float64); what
    ``groklab export csv`` writes as ``curves.csv``. One run's curve as records:
    ``groklab.Store(out).curve(run_id)``."""
    with Store(out, create=False) as store:
        return curves_frame(store)


def study(study: str | Path | Study, out: str | Path | None = None, *,
          steps: int | None = None, seeds: int | None = None,
          tasks: Sequence[str] | None = None, device: str | None = None,
          progress: bool = True, compile: bool | None = None, executor: Any = None) -> pd.DataFrame:
    """Run a built-in study (by name), a study file (``.toml``) or a ``Study`` into ``out``
    (default ``runs/<study name>``), resuming what is finished; return its summary table:
    one row per task and configuration with mean and stderr of each metric over seeds.
    """
    definition = study if isinstance(study, Study) else get_study(study)
    if steps is not None or seeds is not None or tasks is not None:
        definition = definition.with_overrides(steps=steps, seeds=seeds, tasks=tasks)
    out = Path(out) if out is not None else Path("runs") / definition.name
    run_study(definition, out, device=device, progress=progress, compile=compile,
              executor=executor)
    table = summary_table(out)
    return table[table["study"] == definition.name].reset_index(drop=True)


def report(path: str | Path, out: str | Path | None = None) -> ReportFiles:
    """Write ``report.md``, ``report.html``, ``summary.csv`` and ``figures/`` of ``path``'s
    store into ``out`` (default: ``path``)."""
    return write_report(path, out)


def load_run(out: str | Path, run_id: str) -> LoadedRun:
    """A finished run of ``out``'s store, by id or a unique prefix of one (``UnknownRun``
    otherwise): its spec, its model and its final weights (``.logits(tokens)`` evaluates it);
    ``load_weights(out, run_id)`` gives the weights alone."""
    with Store(out, create=False) as store:
        run_id = store.resolve(run_id)
    return _load_run(out, run_id)


__all__ = ["LoadedRun", "curves", "load_run", "load_weights", "make_specs", "report", "results",
           "run", "study"]
