"""Per-run state as data, the run axis first: the generic operations on it (a leaf of the engine).

Every per-run component of a cohort (engine/state.py: sampler, noise streams, train sums,
evaluation streams, early stop, embedding monitor, rate policy) exposes its state as one
*tree* through ``rows()``: nested dicts whose leaves are run-axis-first containers that the
component reads and writes in place,

- a tensor ``[R, ...]`` (row r is run r's),
- a list of length R: of ``torch.Generator`` (row r is run r's stream), of tensors (possibly
  of different shapes per run), or of plain numbers;

plus ``None`` for a part that is absent. The operations below are then written once for
every component: ``take`` one run's row (a copy), ``put`` a row into another tree's slot,
``snapshot`` a whole tree (on the CPU, for a checkpoint) and ``restore`` it. A component
whose derived data must follow a changed row (a sampler's drawn chunk) also has
``loaded(j)``, called after row ``j`` was put or restored. No component writes into
another's tree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

Tree = Any  # dict[str, Tree] | torch.Tensor | list | None


def _leaf_take(x: Any) -> Any:
    if isinstance(x, torch.Generator):
        return x.get_state()
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().clone()
    return x


def take(tree: Tree, i: int) -> Tree:
    """Run ``i``'s row of ``tree`` (copies on the CPU; generators as their states)."""
    if tree is None:
        return None
    if isinstance(tree, dict):
        return {k: take(v, i) for k, v in tree.items()}
    if isinstance(tree, torch.Tensor):
        return tree[i].detach().cpu().clone()
    return _leaf_take(tree[i])


def put(tree: Tree, j: int, row: Tree) -> None:
    """Write ``row`` (from ``take``) into slot ``j`` of ``tree``, in place."""
    if tree is None:
        return
    if isinstance(tree, dict):
        for k, v in tree.items():
            put(v, j, row[k])
        return
    if isinstance(tree, torch.Tensor):
        with torch.no_grad():
            tree[j] = row.to(tree.device, tree.dtype)
        return
    old = tree[j]
    if isinstance(old, torch.Generator):
        old.set_state(row)
    elif isinstance(old, torch.Tensor):
        tree[j] = row.to(old.device, old.dtype).clone()
    else:
        tree[j] = type(old)(row) if old is not None else row


def snapshot(tree: Tree) -> Tree:
    """The whole tree as plain CPU data (a checkpoint's part)."""
    if tree is None:
        return None
    if isinstance(tree, dict):
        return {k: snapshot(v) for k, v in tree.items()}
    if isinstance(tree, torch.Tensor):
        return tree.detach().cpu().clone()
    return [_leaf_take(x) for x in tree]


def restore(tree: Tree, saved: Tree) -> None:
    """Set every row of ``tree`` from ``snapshot`` output of a tree of the same runs."""
    if tree is None:
        return
    if isinstance(tree, dict):
        for k, v in tree.items():
            restore(v, saved[k])
        return
    n = tree.shape[0] if isinstance(tree, torch.Tensor) else len(tree)
    if len(saved) != n:
        raise ValueError(f"saved state holds {len(saved)} runs, this cohort {n}")
    if isinstance(tree, torch.Tensor):
        with torch.no_grad():
            tree.copy_(saved.to(tree.device, tree.dtype))
        return
    for j in range(n):
        put(tree, j, saved[j])


def each_row(n: int, loaded: Callable[[int], None] | None) -> None:
    """Call a component's ``loaded`` for rows ``0..n-1`` (after a whole restore)."""
    if loaded is not None:
        for j in range(n):
            loaded(j)
