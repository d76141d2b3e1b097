"""The one error a study raises: which study, which key, and why (``source: key: reason``)."""

from __future__ import annotations


class StudyError(ValueError):
    """A study that cannot run: ``source: key: reason``."""

    def __init__(self, source: str, key: str, reason: str):
        super().__init__(f"{source}: {key}: {reason}")
        self.source, self.key, self.reason = source, key, reason
