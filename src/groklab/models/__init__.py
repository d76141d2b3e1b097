"""Models the cohort engine can train; ``build_model`` picks one from a run's spec.

Adding a model is one file holding it and its builder decorated with
``@register_model("name")`` (models/registry.py), and its import line below.
"""

from groklab.models import gpt, perceptron, recurrent, transformer  # noqa: F401  (registers them)
from groklab.models.base import CohortModel, GroupRules, RunRandom
from groklab.models.gpt import GPT
from groklab.models.perceptron import MLP
from groklab.models.recurrent import LSTM
from groklab.models.registry import (
    build_model,
    model_hooks,
    model_names,
    model_settings,
    register_model,
)
from groklab.models.transformer import Transformer

__all__ = ["CohortModel", "GPT", "GroupRules", "LSTM", "MLP", "RunRandom", "Transformer",
           "build_model", "model_hooks", "model_names", "model_settings", "register_model"]
