"""Executors: where a generation's cohorts train (docs/design.md, decision 11).

The runner (engine/runner.py) plans cohorts and, by default, trains them one by one in its
own process. An ``Executor`` given to ``run_specs`` (``run_study``, ``tune``) takes a
generation's cohorts instead: it claims their runs in the store, has them trained wherever it
likes (groklab/integrations/ray_executor.py: Ray tasks on a cluster), and records each
finished cohort from the driver through the one finishing path (engine/finish.py): only the
driver writes the store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence, Set
from typing import Protocol

from groklab.engine.hooks import Hook
from groklab.spec import RunSpec
from groklab.store import Store


class Executor(Protocol):
    """Trains a generation's cohorts into ``store``; returns how many runs it trained."""

    def train(self, store: Store, cohorts: list[list[RunSpec]], device: str, *,
              compile: bool, hooks: Sequence[Hook], on_done: Callable[[int], None],
              keep_optimizer: Set[str] = frozenset()) -> int:
        """``keep_optimizer``: ids of runs whose final optimiser state must be saved (a child
        carries it: ``init_optimizer = "carried"``)."""
        ...
