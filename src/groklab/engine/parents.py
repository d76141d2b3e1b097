"""Warm starts: what a cohort needs from its runs' parents (``init_from``), read from the
store's folder: final weights, and the final optimiser state where a child carries it
(``init_optimizer = "carried"``; docs/design.md, decision 13). Every executor loads parents
through ``load_parents``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from groklab.spec import RunSpec
from groklab.store.weights import load_optimizer, load_weights, optimizer_path

Tensors = dict[str, torch.Tensor]


def load_parents(root: str | Path, cohort: Sequence[RunSpec]
                 ) -> tuple[dict[str, Tensors], dict[str, Tensors]]:
    """The final weights of every parent of ``cohort`` and the saved optimiser states of
    the parents whose children carry them, both by parent id."""
    parents = {pid: load_weights(root, pid) for pid in {s.init_from for s in cohort} if pid}
    carried = {s.init_from for s in cohort if s.init_from and s.init_optimizer == "carried"}
    optimizers = {pid: load_optimizer(root, pid) for pid in carried
                  if optimizer_path(root, pid).is_file()}
    return parents, optimizers
