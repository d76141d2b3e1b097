"""Algorithmic tasks: a registry maps task names to builders that return whole tables as tensors.

Adding a task is one function decorated with ``@register_task("name")``.
"""

from groklab.tasks import modular, permutation, sum, text  # noqa: F401  (registers the built-in tasks)
from groklab.tasks.base import (
    TaskData,
    TaskError,
    build_task,
    register_task,
    split_indices,
    task_names,
)

__all__ = ["TaskData", "TaskError", "build_task", "register_task", "split_indices", "task_names"]
