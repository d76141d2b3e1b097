"""Composition in the symmetric group S_k."""

from __future__ import annotations

import itertools

import torch

from groklab.tasks.base import TaskData, TaskError, binary_task, register_task


def permutations(k: int) -> torch.Tensor:
    """All permutations of range(k) in lexicographic order, shape [k!, k]."""
    return torch.tensor(list(itertools.permutations(range(k))), dtype=torch.long)


@register_task("permutation")
def permutation(k: int = 5, **_: int) -> TaskData:
    """Pairs (σ, τ) of S_k with target σ∘τ, where (σ∘τ)[i] = σ[τ[i]]."""
    if k < 2:
        raise TaskError(f"permutation needs k >= 2, got k = {k}")
    if k > 6:
        raise TaskError(f"permutation with k = {k} has {_fact(k) ** 2} pairs; use k <= 6")
    perms = permutations(k)
    n = perms.shape[0]
    a = torch.arange(n).repeat_interleave(n)
    b = torch.arange(n).repeat(n)
    composed = torch.gather(perms[a], 1, perms[b])  # row i: σ_a[τ_b[i]]
    code = (composed * (k ** torch.arange(k - 1, -1, -1))).sum(1)
    index_of = torch.full((k**k,), -1, dtype=torch.long)
    index_of[(perms * (k ** torch.arange(k - 1, -1, -1))).sum(1)] = torch.arange(n)
    return binary_task("permutation", a, b, index_of[code], n=n)


def _fact(k: int) -> int:
    out = 1
    for i in range(2, k + 1):
        out *= i
    return out
