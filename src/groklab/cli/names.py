"""The names ``--help`` and ``groklab list`` show, held here so that neither imports the
training code (torch) to show them. The registries are the truth for tasks and models:
tests/test_cli_start.py keeps each tuple equal to its registry (a new task or model adds its
name here). The optimisers' names are declared with the ``optimizer`` setting
(``groklab.settings``), which the chains' registry matches (tests/test_optim.py).
"""

from __future__ import annotations

from groklab.settings import choices, either

TASKS = ("permutation", "sum", "text", "x2_plus_xy_plus_y2", "x2_plus_y2", "x3_plus_xy",
         "x_div_y", "x_minus_y", "x_plus_y")  # groklab.tasks.task_names()
MODELS = ("gpt", "lstm", "mlp", "transformer")  # groklab.models.model_names()
OPTIMIZERS: tuple[str, ...] = choices("optimizer")

# the names a setting that is not a fixed choice takes, for its flag's help
NAMES = {"task": TASKS, "model": MODELS}

__all__ = ["MODELS", "NAMES", "OPTIMIZERS", "TASKS", "either"]
