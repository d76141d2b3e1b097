"""Objectives: what a model's outputs are scored against (docs/design.md, decision 10).

An objective turns outputs and targets into per-example losses and named per-example
metrics; the engine averages them per run (over a batch in training, over the whole
validation split in evaluation, weighting padded examples of ragged splits by zero).
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F


class Objective(Protocol):
    """Per-example loss (fp32) and named per-example metrics, each ``[R, B]``."""

    metric_names: tuple[str, ...]

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...


class LastTokenClassification:
    """Cross-entropy over classes of the prediction read at the last position, and accuracy.

    outputs ``[R, B, C]``, targets ``[R, B]`` -> loss ``[R, B]``, ``{"acc": [R, B]}``.
    """

    metric_names = ("acc",)

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        R, B, C = outputs.shape
        loss = F.cross_entropy(outputs.float().reshape(R * B, C), targets.reshape(-1),
                               reduction="none").view(R, B)
        correct = (outputs.argmax(-1) == targets).float()
        return loss, {"acc": correct}


class NextTokenPrediction:
    """Cross-entropy of the next token at every position (language modelling), and accuracy.

    outputs ``[R, B, T, V]``, targets ``[R, B, T]`` -> loss ``[R, B]`` (the mean over the
    window's positions, so a batch's mean is the mean over its tokens), ``{"acc": [R, B]}``.
    """

    metric_names = ("acc",)

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        R, B, T, V = outputs.shape
        loss = F.cross_entropy(outputs.float().reshape(-1, V), targets.reshape(-1),
                               reduction="none").view(R, B, T).mean(2)
        correct = (outputs.argmax(-1) == targets).float().mean(2)
        return loss, {"acc": correct}


def objective_for(sequence: bool) -> Objective:
    """The objective of a task: next-token prediction for sequence targets, else the class
    at the last position."""
    return NextTokenPrediction() if sequence else LastTokenClassification()
