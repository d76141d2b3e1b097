"""What the engine needs from a model: shapes, a seeded init and a forward over stacked params."""

from __future__ import annotations

from typing import Protocol

import torch

# (regex over parameter names, group name) pairs; the first match wins.
GroupRules = tuple[tuple[str, str], ...]


class CohortModel(Protocol):
    """A model the cohort engine can train.

    ``init`` draws ONE run's parameters from that run's generator, so a run's initial weights
    never depend on its neighbours; the engine stacks R such dicts along a new leading axis and
    calls ``forward`` once for the whole cohort.
    """

    def init(self, generator: torch.Generator) -> dict[str, torch.Tensor]: ...

    def forward(self, params: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
        """tokens ``[R, B, T]`` -> logits ``[R, B, n_classes]`` at the last position."""
        ...

    def default_groups(self) -> GroupRules:
        """How parameter names map to the learning-rate groups embedding / lower / higher."""
        ...
