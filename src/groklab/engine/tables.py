"""The task tables of a cohort's runs, and each run's split into them (decisions 2 and 4).

Most tasks have one table for every run: the cohort shares it. A *seeded* task (one whose
table is a sample, ``TaskData.seeded``, e.g. ``sum`` with p^K > n_examples) draws each run's
table from that run's own ``data`` stream; the cohort then holds the runs' tables one after
another in one ``[M, T]`` tensor and every run's split indices point into its own block.
A task with a fixed split (``TaskData.split``: text) gives every run that split.
Either way a batch or an evaluation is one index gather, and a run sees exactly the
examples it would see alone: its table and its split depend on its seed only.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from groklab.engine.sampler import noise_seed
from groklab.spec import RunSpec
from groklab.tasks import TaskData, build_task, split_indices
from groklab.tasks.base import task_builder


@dataclass(frozen=True)
class CohortTables:
    task: TaskData  # the first run's table: vocabulary, classes and sequence length
    inputs: torch.Tensor  # [M, T]: the shared table, or every run's table in turn
    targets: torch.Tensor  # [M]
    train: list[torch.Tensor]  # per run: rows of ``inputs`` in its training split
    val: list[torch.Tensor]  # per run: rows of ``inputs`` in its validation split


def run_table(spec: RunSpec, data_gen: torch.Generator) -> TaskData:
    """The table ``spec`` trains on; a task that takes a ``sample_seed`` gets one drawn from
    the run's ``data`` stream (the other tasks' tables are shared and cached)."""
    if "sample_seed" not in inspect.signature(task_builder(spec.task)).parameters:
        return build_task(spec.task, **spec.task_args())
    return build_task(spec.task, sample_seed=noise_seed(data_gen), **spec.task_args())


def cohort_tables(specs: Sequence[RunSpec], gens: Sequence[dict[str, torch.Generator]]
                  ) -> CohortTables:
    """Every run's table and split (see the module docstring)."""
    first = run_table(specs[0], gens[0]["data"])
    if first.seeded:
        tables = [first] + [run_table(s, g["data"])
                            for s, g in zip(specs[1:], gens[1:], strict=True)]
        offsets = [sum(len(t) for t in tables[:r]) for r in range(len(tables))]
        inputs = torch.cat([t.inputs for t in tables])
        targets = torch.cat([t.targets for t in tables])
    else:
        tables, offsets = [first] * len(specs), [0] * len(specs)
        inputs, targets = first.inputs, first.targets
    train, val = [], []
    for s, g, t, off in zip(specs, gens, tables, offsets, strict=True):
        if t.split is not None:  # a fixed split (text: first 90 % / last 10 %)
            tr, va = t.split
        else:
            tr, va = split_indices(len(t), s.train_fraction, g["split"])
        train.append(tr + off)
        val.append(va + off)
    return CohortTables(first, inputs, targets, train, val)
