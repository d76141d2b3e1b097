"""What the engine needs from a model: shapes, a seeded init and a forward over stacked params."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import torch

if TYPE_CHECKING:
    from groklab.optim.layout import ParamInfo

# (regex over parameter names, group name) pairs; the first match wins.
GroupRules = tuple[tuple[str, str], ...]


class RunRandom:
    """Per-run random streams on the device, for stochastic layers (dropout).

    Run r draws only from its own generator, so its randomness never depends on its cohort
    mates; the streams' states are part of a cohort checkpoint.
    """

    def __init__(self, seeds: Sequence[int], device: torch.device):
        self.device = device
        self.gens = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]

    def uniform(self, *shape: int) -> torch.Tensor:
        """``[R, *shape]`` uniform draws in [0, 1), row r from run r's stream."""
        return torch.stack([torch.rand(shape, generator=g, device=self.device)
                            for g in self.gens])

    def select(self, keep: Sequence[int]) -> None:
        self.gens = [self.gens[i] for i in keep]

    def state_dict(self) -> list[torch.Tensor]:
        return [g.get_state() for g in self.gens]

    def load_state_dict(self, states: Sequence[torch.Tensor]) -> None:
        for g, s in zip(self.gens, states, strict=True):
            g.set_state(s)


class CohortModel(Protocol):
    """A model the cohort engine can train.

    ``init`` draws ONE run's parameters from that run's generator, so a run's initial weights
    never depend on its neighbours; the engine stacks R such dicts along a new leading axis and
    calls ``forward`` once for the whole cohort.
    """

    @property
    def n_blocks(self) -> int:
        """Blocks between the embeddings and the head (depth-decayed rates count these)."""
        ...

    def param_info(self) -> dict[str, ParamInfo]:
        """Every parameter's shape, kind and depth, in the order ``init`` returns them."""
        ...

    def init(self, generator: torch.Generator) -> dict[str, torch.Tensor]: ...

    def forward(self, params: dict[str, torch.Tensor], tokens: torch.Tensor, *,
                train: bool = False, rng: RunRandom | None = None) -> torch.Tensor:
        """tokens ``[R, B, T]`` -> outputs (``[R, B, n_classes]`` at the last position for a
        classifier); ``train`` with per-run ``rng`` switches on stochastic layers."""
        ...

    def default_groups(self) -> GroupRules:
        """How parameter names map to the learning-rate groups embedding / lower / higher."""
        ...
