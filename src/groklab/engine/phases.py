"""The phases of a training step, labelled for the profiler (``groklab bench --profile``).

``phase(name)`` marks a stretch of engine work with ``torch.profiler.record_function`` while
a profiler records, and costs nothing otherwise; ``groklab.bench.profile_training`` sorts
every operator's time into the phase that ran it, matmuls apart.
"""

from __future__ import annotations

import contextlib

import torch
from torch.profiler import record_function

PREFIX = "groklab."
# in the order a step runs them; "evaluate" is the amortised evaluation
PHASES = ("sample", "forward", "backward", "optimizer", "train_metrics", "evaluate")


def phase(name: str) -> contextlib.AbstractContextManager:
    """A profiler range ``groklab.<name>`` while a profiler records; else nothing."""
    if torch.autograd._profiler_enabled():
        return record_function(PREFIX + name)
    return contextlib.nullcontext()
