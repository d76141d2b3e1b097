"""How values read as text, in one place: run labels, report tables and notes all use it.

- A setting's value (``setting``): floats with ``:g`` (0.001, 1e-05, 1); sequences in
  parentheses, tables in braces; in a run label (``compact``), comma-joined with no
  brackets and no spaces, so a label stays a list of space-separated ``key=value`` tokens.
- A measured number (``number``): a format spec per quantity: ``ACCURACY`` (three
  decimals: accuracies and losses), ``WHOLE`` for step counts and their means (whole
  steps), seconds and tokens per second; a missing number is ``MISSING``, in every table.
- A cell over seeds (``mean_se``): ``mean ± stderr``, both in the number's format; a single
  seed (stderr undefined: ``stderr`` gives NaN) shows the mean alone, in every table.
- What an invocation did with its runs (``run_counts``): each count says whose work it is.

A leaf module: it imports nothing from groklab.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

MISSING = "—"  # a number that does not exist: no finished run, no seed got there
WHOLE = ".0f"  # step counts and their means, seconds, tokens per second
ACCURACY = ".3f"  # accuracies (and losses in the language-model table)


def setting(value: Any, *, float_format: str = "g", compact: bool = False) -> str:
    """A setting's value as text (see the module docstring); ``float_format`` for floats."""
    if isinstance(value, float):
        return format(value, float_format)
    if isinstance(value, list | tuple):
        parts = [setting(v, float_format=float_format, compact=compact) for v in value]
        return ",".join(parts) if compact else "(" + ", ".join(parts) + ")"
    if isinstance(value, dict):
        parts = [f"{k}={setting(v, float_format=float_format, compact=compact)}"
                 for k, v in value.items()]
        return ",".join(parts) if compact else "{" + ", ".join(parts) + "}"
    return str(value)


def is_missing(value: Any) -> bool:
    """None or NaN (how a store row or a data frame holds an absent number)."""
    if value is None:
        return True
    try:
        return math.isnan(value)
    except TypeError:
        return False


def number(value: Any, fmt: str = ACCURACY) -> str:
    """A measured number with format spec ``fmt``; ``MISSING`` when absent."""
    return MISSING if is_missing(value) else format(float(value), fmt)


def stderr(values: Sequence[float]) -> float:
    """Standard error of the mean: sample standard deviation / √n; NaN below two values."""
    n = len(values)
    if n < 2:
        return math.nan
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def mean_se(mean: Any, se: Any, fmt: str = ACCURACY) -> str:
    """``mean ± se`` with format spec ``fmt``; the mean alone when ``se`` is missing (one
    seed), ``MISSING`` when the mean is."""
    if is_missing(mean):
        return MISSING
    return number(mean, fmt) + ("" if is_missing(se) else f" ± {number(se, fmt)}")


def run_counts(counts: Mapping[str, int]) -> str:
    """What one invocation did with its runs (``engine.run_specs``' counts), in words that
    say whose work each number is: "2 run(s) trained here, 2 left to another process that
    holds them, 1 already finished". Zero counts other than the trained are left out."""
    parts = [f"{counts.get('trained', 0)} run(s) trained here"]
    if counts.get("stopped"):
        parts[0] += f" ({counts['stopped']} halted by a hook: recorded as 'halted_by_hook')"
    for key, words in (("elsewhere", "left to another process that holds them"),
                       ("waiting", "waiting for a parent run (init_from)"),
                       ("skipped", "already finished")):
        if counts.get(key):
            parts.append(f"{counts[key]} {words}")
    return ", ".join(parts)
