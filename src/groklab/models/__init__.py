"""Models the cohort engine can train; ``build_model`` picks one from a run's spec."""

from __future__ import annotations

from typing import TYPE_CHECKING

from groklab.models.base import CohortModel, GroupRules, RunRandom
from groklab.models.gpt import GPT
from groklab.models.perceptron import MLP
from groklab.models.recurrent import LSTM
from groklab.models.transformer import Transformer

if TYPE_CHECKING:
    from groklab.spec import RunSpec
    from groklab.tasks import TaskData

MODEL_NAMES = ("transformer", "mlp", "lstm", "gpt")


def build_model(spec: RunSpec, task: TaskData) -> CohortModel:
    """The model named by ``spec.model``, sized for ``task``."""
    if spec.model == "transformer":
        return Transformer(
            vocab_size=task.vocab_size,
            n_classes=task.n_classes,
            seq_len=task.seq_len,
            n_layers=spec.n_layers,
            d_model=spec.d_model,
            n_heads=spec.n_heads,
            d_ff=spec.d_ff or 4 * spec.d_model,
            legacy_init=spec.semantics == 1,
            max_len=spec.max_len,
        )
    if spec.model == "mlp":
        return MLP(vocab_size=task.vocab_size, n_classes=task.n_classes, seq_len=task.seq_len,
                   n_layers=spec.n_layers, d_model=spec.d_model, d_hidden=spec.d_hidden,
                   activation=spec.activation, embedding=spec.embedding)
    if spec.model == "lstm":
        return LSTM(vocab_size=task.vocab_size, n_classes=task.n_classes, seq_len=task.seq_len,
                    n_layers=spec.n_layers, d_model=spec.d_model, d_hidden=spec.d_hidden)
    if spec.model == "gpt":
        return GPT(vocab_size=task.vocab_size, seq_len=task.seq_len, n_layers=spec.n_layers,
                   d_model=spec.d_model, n_heads=spec.n_heads)
    raise ValueError(f"unknown model {spec.model!r}; known: {', '.join(MODEL_NAMES)}")


__all__ = ["CohortModel", "GPT", "GroupRules", "LSTM", "MLP", "MODEL_NAMES", "RunRandom",
           "Transformer", "build_model"]
