"""Frequency-aware ("balanced") batch sampling (docs/protocol.md §6.7).

Uniform sampling draws training examples with equal probability, so an operand token that
is rare in a run's training split is in few batches and its embedding row is rarely
updated. Balanced sampling makes every operand token the *key* of equally many batch slots:

- A run's operand tokens are the non-symbol input tokens (id ≥ 2) of its training split.
- Its key stream runs through those tokens in a random order, then through a fresh random
  order, and so on: over any stretch of the stream every token is a key ⌊n/|T|⌋ or
  ⌈n/|T|⌉ times.
- Tasks whose examples hold two operands (the binary operations) also give every slot a
  *partner* from a second, independent stream of the same kind; the slot takes an example
  whose two operands are its key and its partner (in either order) when the training
  split has one, drawn uniformly among those.
- Otherwise (no such example, or tasks with another number of operands) a slot with key t
  draws one occurrence of t uniformly among all (example, position) occurrences of t in
  the training split and takes its example.

So each token appears in a batch as a key equally often (up to one) and, for most slots of
a binary task, also as a partner equally often; the spread of per-batch token counts is
well below uniform sampling's (tests/test_embedding.py measures it). Every training example
contains an operand token, so every one is reachable; only training examples are drawn.
Each run draws from its own generator, ``SAMPLE_CHUNK`` steps at a time, like
``UniformSampler``; a run set to uniform sampling draws exactly what ``UniformSampler``
draws, so one cohort can mix the two.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from groklab.engine.sampler import SAMPLE_CHUNK, UniformSampler
from groklab.tasks.base import N_SYMBOLS


class TokenIndex:
    """The occurrences of each operand token in one run's training split."""

    def __init__(self, train_tokens: torch.Tensor):
        """``train_tokens``: ``[n_train, T]`` input tokens of the run's training examples."""
        n, T = train_tokens.shape
        flat = train_tokens.reshape(-1)
        operand = flat >= N_SYMBOLS
        example = torch.arange(n).repeat_interleave(T)[operand]
        token = flat[operand]
        order = torch.argsort(token, stable=True)
        self.example = example[order]  # occurrences grouped by token
        self.tokens, counts = torch.unique_consecutive(token[order], return_counts=True)
        self.count = counts
        self.start = torch.cumsum(counts, 0) - counts
        # pairs (binary tasks): examples by (key, partner) code, both orders
        ops = train_tokens[train_tokens >= N_SYMBOLS]
        self.pairs = None
        if (train_tokens >= N_SYMBOLS).sum(1).eq(2).all() and len(ops):
            k = len(self.tokens)
            rank = torch.full((int(self.tokens.max()) + 1,), -1, dtype=torch.long)
            rank[self.tokens] = torch.arange(k)
            a, b = rank[ops.view(n, 2)[:, 0]], rank[ops.view(n, 2)[:, 1]]
            codes = torch.cat([a * k + b, b * k + a])
            ex = torch.arange(n).repeat(2)
            keep = torch.cat([torch.ones(n, dtype=torch.bool), a != b])  # (t, t) once
            codes, ex = codes[keep], ex[keep]
            order = torch.argsort(codes, stable=True)
            pair_count = torch.bincount(codes, minlength=k * k)
            self.pairs = (ex[order], pair_count, torch.cumsum(pair_count, 0) - pair_count)

    def draw(self, gen: torch.Generator, n: int, carry: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` example positions; ``carry`` is the rest of the current key order (token
        slots not yet used), returned updated."""
        k = len(self.tokens)
        parts, have = [carry], len(carry)
        while have < n:
            perm = torch.randperm(k, generator=gen)
            parts.append(perm)
            have += k
        keys = torch.cat(parts)
        use, rest = keys[:n], keys[n:]
        u = torch.rand(n, generator=gen, dtype=torch.float64)
        pick = self.start[use] + (u * self.count[use]).long().clamp(max=self.count[use] - 1)
        out = self.example[pick]
        if self.pairs is not None:
            examples, count, start = self.pairs
            partner = torch.cat([torch.randperm(k, generator=gen) for _ in range(-(-n // k))])
            code = use * k + partner[:n]
            c = count[code]
            v = torch.rand(n, generator=gen, dtype=torch.float64)
            at = start[code] + (v * c).long().clamp(max=(c - 1).clamp(min=0))
            out = torch.where(c > 0, examples[at.clamp(max=len(examples) - 1)], out)
        return out, rest.clone()


class MixedSampler(UniformSampler):
    """Per run, balanced or uniform draws of ``batch`` positions into its train split (the
    interface of ``UniformSampler``; a uniform run draws exactly what it draws there). A
    balanced run's state also holds its key order at the start of its chunk (``carry``)."""

    def __init__(self, gens: Sequence[torch.Generator], train_tokens: Sequence[torch.Tensor],
                 balanced: Sequence[bool], batch: int, device: torch.device):
        self.index = [TokenIndex(t) if b else None
                      for t, b in zip(train_tokens, balanced, strict=True)]
        self.carry = [torch.empty(0, dtype=torch.long) for _ in gens]
        self.carry_start = [c.clone() for c in self.carry]  # key orders before the chunk
        super().__init__(gens, [len(t) for t in train_tokens], batch, device)

    def rows(self) -> dict:
        return super().rows() | {"carry": self.carry_start}

    def loaded(self, j: int) -> None:
        self.carry[j] = self.carry_start[j].clone()
        super().loaded(j)

    def _draw_rows(self, rows: Sequence[int], keep_start: bool = False) -> None:
        if not keep_start:
            for j in rows:
                self.carry_start[j] = self.carry[j].clone()
        super()._draw_rows(rows, keep_start)

    def _chunk(self, j: int) -> torch.Tensor:
        idx = self.index[j]
        if idx is None:
            return super()._chunk(j)
        pos, self.carry[j] = idx.draw(self.gens[j], SAMPLE_CHUNK * self.batch, self.carry[j])
        return pos.view(SAMPLE_CHUNK, self.batch)


def build_sampler(specs: Sequence, gens: Sequence[torch.Generator], inputs: torch.Tensor,
                  train_rows: Sequence[torch.Tensor], batch: int, device: torch.device
                  ) -> UniformSampler | MixedSampler:
    """The cohort's sampler: ``UniformSampler`` unless a run asks for balanced batches."""
    sizes = [len(t) for t in train_rows]
    if all(s.sampling == "uniform" for s in specs):
        return UniformSampler(gens, sizes, batch, device)
    tokens = [inputs.cpu()[t.cpu()] for t in train_rows]
    return MixedSampler(gens, tokens, [s.sampling == "balanced" for s in specs], batch, device)
