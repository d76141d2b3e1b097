"""The model of a stored language-model run, for ``groklab sample``.

What a finished language-model run adds to the store (a generated sample and its speed, the
corpus's alphabet) is the text task's output hook (tasks/text.py, ``sample_outputs``), which
the engine calls through the task registry once the run is finished. ``groklab sample`` then
generates from the stored weights with ``tasks.text.sample``, over the stored alphabet: the
corpus need not be on the machine, so the model is built from the run's record alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from groklab.models.gpt import GPT, build_gpt
from groklab.tasks import TaskData


def gpt_for(settings: Mapping[str, Any], alphabet: str) -> GPT:
    """The model of a language-model run (its spec or stored record) over ``alphabet``:
    ``build_gpt`` on the shape of its task (``context``-long windows of the alphabet's
    characters; no windows, since none are read)."""
    windows = torch.empty(0, int(settings["context"]), dtype=torch.long)
    shape = TaskData(str(settings["task"]), windows, windows, vocab_size=len(alphabet),
                     n_classes=len(alphabet), alphabet=alphabet)
    return build_gpt(shape, n_layers=int(settings["n_layers"]), d_model=int(settings["d_model"]),
                     n_heads=int(settings["n_heads"]))
