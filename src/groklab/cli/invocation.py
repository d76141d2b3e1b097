"""Invocation records: every ``run``, ``study``, ``tune`` and ``lm`` command keeps its command
line, the folder it ran in, how it trains and the specs it expanded in the store, once its
input is checked and before it trains (``Store.record_invocation``), so ``groklab resume``
can continue what it left unfinished and ``groklab show`` can say what made a run."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

_argv: list[str] | None = None  # this process's command line, as main() was given it


def remember(argv: Sequence[str] | None) -> None:
    """Keep the command line ``main`` runs (None: the process's own, ``sys.argv[1:]``)."""
    global _argv
    _argv = list(sys.argv[1:] if argv is None else argv)


def command_line() -> list[str]:
    """The words after ``groklab`` of the command being run."""
    return list(sys.argv[1:] if _argv is None else _argv)


def record(store: Any, command: str, specs: Sequence[Any], **options: Any) -> int:
    """Record this invocation of ``command`` in ``store`` (open to write) with its expanded
    ``specs`` and ``options`` (JSON-able: device, checkpoint interval, study name...);
    returns its number."""
    return store.record_invocation(command, command_line(), os.getcwd(), specs, options)


def quoted(argv: Sequence[str]) -> str:
    """A recorded command line as one shell line: ``groklab run --p 11 ...``."""
    import shlex

    return shlex.join(["groklab", *argv])
