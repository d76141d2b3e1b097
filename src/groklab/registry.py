"""Named registries: tasks, models and optimiser chains each register under a name the run
settings use (a leaf module). Looking up an unknown name raises the registry's error with
the known names and the closest ones (``did_you_mean``), so every "unknown ..." message
reads the same."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Values by name; ``kind`` names what they are in errors (``unknown task 'x'; known
    tasks: ...``), raised as ``error``."""

    def __init__(self, kind: str, error: type[Exception] = ValueError):
        self.kind, self.error = kind, error
        self._values: dict[str, T] = {}

    def add(self, name: str, value: T) -> T:
        self._values[name] = value
        return value

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._values)

    def get(self, name: str) -> T:
        """The value registered as ``name`` (the registry's error for an unknown name)."""
        if name not in self._values:
            raise self.error(f"unknown {self.kind} {name!r}{did_you_mean(name, self.names())}"
                             f"; known {self.kind}s: {', '.join(self.names())}")
        return self._values[name]


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``" (did you mean 'x_plus_y'?)"`` naming the known names closest to a mistyped
    ``name`` (difflib's similarity), or ``""`` when none is close."""
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=2, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
