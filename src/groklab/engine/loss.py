"""Objectives, the training loss: what a model's outputs are scored against (docs/design.md,
decision 10).

An objective turns outputs and targets into per-example losses and named per-example
metrics; the engine averages them per run (over a batch in training, over the whole
validation split in evaluation, weighting padded examples of ragged splits by zero).

The cross-entropy's normaliser is a run setting (``loss``): softmax, or StableMax (Prieto et
al. 2025, "Grokking at the Edge of Numerical Stability"; docs/protocol.md §4, StableMax).
StableMax replaces ``exp`` by ``s(x) = x + 1`` for x ≥ 0 and ``1/(1 − x)`` for x < 0, so
p_i = s(z_i) / Σ_j s(z_j) and the loss is −log p_target; as the official code
(``utils.stablemax_cross_entropy``) it is computed in float64 with ``s(x) = 1/(1 − x + 1e-30)``
below 0 (float32 on Apple's MPS, which has no float64). ``s`` grows linearly, so large logits
cannot saturate the probabilities the way float32 softmax does. ``s`` is increasing, so
accuracy (the arg-max) is the same under both. A cohort may mix the two: each run's loss
uses its own setting.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import torch
import torch.nn.functional as F

Loss = Literal["softmax", "stablemax"]
STABLEMAX_EPS = 1e-30  # the official code's


class Objective(Protocol):
    """Per-example loss (fp32) and named per-example metrics, each ``[R, B]``."""

    metric_names: tuple[str, ...]

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...


def stablemax_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """StableMax cross-entropy per example: logits ``[..., C]``, targets ``[...]`` -> fp32
    ``[...]`` (computed in float64; see the module docstring)."""
    wide = torch.float32 if logits.device.type == "mps" else torch.float64
    x = logits.to(wide)
    s = torch.where(x < 0, 1 / (1 - x + STABLEMAX_EPS), x + 1)
    log_p = torch.log(s / s.sum(-1, keepdim=True))
    return -log_p.gather(-1, targets.unsqueeze(-1)).squeeze(-1).float()


def softmax_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy per example, in fp32: logits ``[..., C]``, targets ``[...]``."""
    C = logits.shape[-1]
    return F.cross_entropy(logits.float().reshape(-1, C), targets.reshape(-1),
                           reduction="none").view(targets.shape)


class CrossEntropy:
    """Per-run cross-entropy: outputs ``[R, ..., C]``, targets ``[R, ...]`` -> ``[R, ...]``,
    with run r's normaliser ``losses[r]`` (all softmax when None). It holds no state of its
    own."""

    def __init__(self, losses: Sequence[Loss] | None = None):
        self.stablemax = [loss == "stablemax" for loss in losses or ()]
        self._rows: dict[tuple[bool, torch.device], torch.Tensor] = {}

    def rows(self, stablemax: bool, device: torch.device) -> torch.Tensor:
        """The positions of the runs with (or without) StableMax, on ``device``."""
        key = (stablemax, device)
        if key not in self._rows:
            self._rows[key] = torch.tensor(
                [r for r, s in enumerate(self.stablemax) if s == stablemax], device=device)
        return self._rows[key]

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if not any(self.stablemax):
            return softmax_cross_entropy(outputs, targets)
        if all(self.stablemax):
            return stablemax_cross_entropy(outputs, targets)
        out = outputs.new_empty(targets.shape, dtype=torch.float32)
        for flag, fn in ((False, softmax_cross_entropy), (True, stablemax_cross_entropy)):
            rows = self.rows(flag, outputs.device)
            out[rows] = fn(outputs[rows], targets[rows])
        return out


class LastTokenClassification:
    """Cross-entropy over classes of the prediction read at the last position, and accuracy.

    outputs ``[R, B, C]``, targets ``[R, B]`` -> loss ``[R, B]``, ``{"acc": [R, B]}``.
    """

    metric_names = ("acc",)

    def __init__(self, loss: CrossEntropy | None = None):
        self.loss = loss or CrossEntropy()

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = self.loss(outputs, targets)
        correct = (outputs.argmax(-1) == targets).float()
        return loss, {"acc": correct}


class NextTokenPrediction:
    """Cross-entropy of the next token at every position (language modelling), and accuracy.

    outputs ``[R, B, T, V]``, targets ``[R, B, T]`` -> loss ``[R, B]`` (the mean over the
    window's positions, so a batch's mean is the mean over its tokens), ``{"acc": [R, B]}``.
    """

    metric_names = ("acc",)

    def __init__(self, loss: CrossEntropy | None = None):
        self.loss = loss or CrossEntropy()

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = self.loss(outputs, targets).mean(2)
        correct = (outputs.argmax(-1) == targets).float().mean(2)
        return loss, {"acc": correct}


def objective_for(sequence: bool, loss: CrossEntropy | None = None) -> Objective:
    """The objective of a task: next-token prediction for sequence targets, else the class
    at the last position; ``loss`` gives each run's cross-entropy (all softmax when None)."""
    return NextTokenPrediction(loss) if sequence else LastTokenClassification(loss)
