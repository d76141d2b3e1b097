"""The names ``--help`` and ``groklab list`` show, held here so that neither imports the
training code (torch) to show them. The registries are the truth: tests/test_cli_start.py
keeps each tuple equal to its registry (a new task, model or optimiser adds its name here).
"""

from __future__ import annotations

TASKS = ("permutation", "sum", "text", "x2_plus_xy_plus_y2", "x2_plus_y2", "x3_plus_xy",
         "x_div_y", "x_minus_y", "x_plus_y")  # groklab.tasks.task_names()
MODELS = ("gpt", "lstm", "mlp", "transformer")  # groklab.models.model_names()
OPTIMIZERS = ("adamw", "adam", "sgd", "muon")  # groklab.spec.OptimizerName


def either(names: tuple[str, ...] | list[str]) -> str:
    """``('a', 'b', 'c')`` -> ``'a, b or c'``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
