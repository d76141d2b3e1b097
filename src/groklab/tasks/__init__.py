"""Algorithmic tasks: a registry maps task names to builders that return whole tables as tensors.

Adding a task is one function decorated with ``@register_task("name")``; what else it brings
(checks of a run's settings, an output of its finished runs) is a keyword of the same line
(tasks/base.py, docs/design.md: Plug-in doors).
"""

from groklab.tasks import modular, permutation, sum, text  # noqa: F401  (registers the built-in tasks)
from groklab.tasks.base import (
    Outputs,
    TaskData,
    TaskError,
    build_task,
    language_tasks,
    register_task,
    split_indices,
    task_hooks,
    task_names,
)

__all__ = ["Outputs", "TaskData", "TaskError", "build_task", "language_tasks", "register_task",
           "split_indices", "task_hooks", "task_names"]
