"""Multivariate modular addition ``(x_1, …, x_K) ↦ (Σ x_k) mod p`` (docs/protocol.md §2).

An example is ``[x_1, +, x_2, +, …, x_K, =]`` (2K tokens) with the binary tasks' vocabulary:
``+`` is the op token 0, ``=`` is 1, element x is token x + 2, class = the sum mod p.

Invariants:
- When ``p^K <= n_examples`` the table is every tuple, in lexicographic order (x_1 slowest),
  and does not depend on the run: with K = 2 it equals ``x_plus_y``'s table exactly.
- Otherwise it is ``n_examples`` distinct tuples drawn without replacement by a generator
  seeded with ``sample_seed`` (the engine derives it from the run's seed, so every run of
  a cohort has its own sample: ``TaskData.seeded``); the same seed gives the same tuples in
  the same order. The run's split then divides this sample by its training fraction.
"""

from __future__ import annotations

import torch

from groklab.tasks.base import EQ_TOKEN, N_SYMBOLS, OP_TOKEN, TaskData, TaskError, register_task

MAX_OPERANDS = 32
MAX_EXAMPLES = 1_000_000
# Up to this many tuples, a sample is a prefix of a random permutation of all of them;
# beyond it, tuples are drawn with replacement and repeats rejected (then n_examples is at
# most a quarter of p^K, so a few rounds suffice).
ENUMERATE_LIMIT = 1 << 22


def digits(codes: torch.Tensor, p: int, k: int) -> torch.Tensor:
    """Codes in 0..p^k-1 -> ``[n, k]`` base-p digits, most significant first."""
    powers = p ** torch.arange(k - 1, -1, -1, dtype=torch.long)
    return (codes.view(-1, 1) // powers) % p


def sample_tuples(p: int, k: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` distinct tuples of ``k`` elements of 0..p-1 (``[n, k]``), drawn without
    replacement from ``generator``, in the order drawn."""
    total = p**k
    if n > total:
        raise TaskError(f"cannot draw {n} distinct tuples from {total}")
    if total <= ENUMERATE_LIMIT:
        return digits(torch.randperm(total, generator=generator)[:n], p, k)
    chosen: dict[tuple[int, ...], None] = {}
    while len(chosen) < n:
        draw = torch.randint(0, p, (2 * (n - len(chosen)), k), generator=generator)
        for row in map(tuple, draw.tolist()):
            chosen.setdefault(row)
            if len(chosen) == n:
                break
    return torch.tensor(list(chosen), dtype=torch.long)


def operand_task(name: str, x: torch.Tensor, c: torch.Tensor, n: int, seeded: bool) -> TaskData:
    """Encode ``[x_1, op, x_2, op, …, x_K, =] -> c`` over ``n`` elements (``x``: ``[N, K]``)."""
    N, K = x.shape
    inputs = torch.full((N, 2 * K), OP_TOKEN, dtype=torch.long)
    inputs[:, 0 : 2 * K : 2] = x.long() + N_SYMBOLS
    inputs[:, -1] = EQ_TOKEN
    return TaskData(name, inputs, c.long(), vocab_size=n + N_SYMBOLS, n_classes=n, seeded=seeded)


@register_task("sum")
def sum_task(p: int = 97, operands: int = 2, n_examples: int = 10_000,
             sample_seed: int | None = None, **_: int) -> TaskData:
    """Every K-tuple when there are at most ``n_examples``, else a seeded sample of that many."""
    if p < 2:
        raise TaskError(f"p must be at least 2, got {p}")
    if not 2 <= operands <= MAX_OPERANDS:
        raise TaskError(f"sum needs 2 <= operands <= {MAX_OPERANDS}, got operands = {operands}")
    if not 2 <= n_examples <= MAX_EXAMPLES:
        raise TaskError(f"sum needs 2 <= n_examples <= {MAX_EXAMPLES}, got {n_examples}")
    total = p**operands
    if total <= n_examples:
        x = digits(torch.arange(total), p, operands)
        return operand_task("sum", x, x.sum(1) % p, p, seeded=False)
    if total > ENUMERATE_LIMIT and 4 * n_examples > total:
        raise TaskError(f"n_examples = {n_examples} is more than a quarter of the {total} "
                        f"tuples; use at most {total // 4}")
    gen = torch.Generator().manual_seed(0 if sample_seed is None else int(sample_seed))
    x = sample_tuples(p, operands, n_examples, gen)
    return operand_task("sum", x, x.sum(1) % p, p, seeded=True)
