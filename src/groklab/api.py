"""The Python API: the same operations as the ``groklab`` command, returning plain data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from groklab.engine import run_specs
from groklab.optim.groups import parse_lr
from groklab.spec import RunSpec
from groklab.store import Store


def make_specs(*, lr: str | tuple[float, float, float] = "baseline", seeds: int = 1,
               seed: int = 0, **settings: Any) -> list[RunSpec]:
    """Specs for seeds ``seed .. seed+seeds-1``; ``lr`` is a configuration name or a triple.

    Any other RunSpec field (task, p, steps, weight_decay, ...) may be given as a keyword.
    """
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}")
    if isinstance(lr, str):
        name, rates = parse_lr(lr)
    else:
        name, rates = settings.pop("lr_name", None), tuple(lr)
    return [RunSpec(lr=rates, lr_name=name, seed=s, **settings)
            for s in range(seed, seed + seeds)]


def run(out: str | Path, *, device: str | None = None, progress: bool = True,
        **spec_settings: Any) -> pd.DataFrame:
    """Train the runs ``make_specs(**spec_settings)`` describes into ``out``; return results."""
    specs = make_specs(**spec_settings)
    run_specs(specs, out, device=device, progress=progress)
    return results(out)


def results(out: str | Path) -> pd.DataFrame:
    """One row per run in ``out``'s store: spec fields, status and final metrics."""
    with Store(out, create=False) as store:
        return pd.DataFrame(store.runs())
