"""Samplers: how each run of a cohort draws its training batches (docs/design.md, decision 10).

A run's batch stream comes from its own generator only, so it never depends on its cohort
mates; runs may have train splits of different sizes (ragged splits). The sampler's state
(each generator's state at the start of the current chunk and the position in it) is part
of a cohort checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

# Batch indices are drawn from each run's own generator this many steps at a time.
# Part of the definition of a run's batch stream: changing it changes results.
SAMPLE_CHUNK = 64

STREAMS = ("split", "init", "batch", "noise", "data", "eval")  # data: a sampled task's
# table; eval: the batches a sampled evaluation (RunSpec.eval_batches) draws


def run_generators(seed: int) -> dict[str, torch.Generator]:
    """Independent CPU generators for a run's split, init, batches, noise (dropout) and
    sampled data (``tasks.sum``), all from its seed. Adding a stream at the end leaves the
    earlier ones unchanged."""
    children = np.random.SeedSequence(seed).generate_state(len(STREAMS), dtype=np.uint64)
    return {name: torch.Generator().manual_seed(int(s) & 0x7FFF_FFFF_FFFF_FFFF)
            for name, s in zip(STREAMS, children, strict=True)}


def noise_seed(gen: torch.Generator) -> int:
    """A seed for a run's device-side noise stream, drawn from its CPU ``noise`` generator."""
    return int(torch.randint(0, 2**62, (1,), generator=gen))


class UniformSampler:
    """Per run: ``batch`` positions drawn uniformly with replacement from its train split of
    ``n_train[r]`` examples, from the run's own generator, ``SAMPLE_CHUNK`` steps at a time.

    Every run keeps its own place in its own chunk (``pos``), so runs that joined a cohort at
    different steps each draw exactly the stream they draw alone. Its per-run state
    (``rows()``, engine/rows.py) is each generator's state at the start of the run's current
    chunk and the place in it; ``loaded(j)`` redraws run ``j``'s chunk from there.
    """

    def __init__(self, gens: Sequence[torch.Generator], n_train: Sequence[int], batch: int,
                 device: torch.device):
        self.gens, self.n = list(gens), list(n_train)
        self.batch, self.device = batch, device
        R = len(self.gens)
        self.buf = torch.empty(R, SAMPLE_CHUNK, batch, dtype=torch.long, device=device)
        self.start = [g.get_state() for g in self.gens]  # state before the current chunk
        self.pos = [0] * R  # steps of the current chunk used
        for j in range(R):
            self._draw_rows([j])
        self._ar = torch.arange(R, device=device)

    def rows(self) -> dict:
        return {"start": self.start, "pos": self.pos}

    def loaded(self, j: int) -> None:
        self.gens[j].set_state(self.start[j])
        self._draw_rows([j], keep_start=True)

    def next(self) -> torch.Tensor:
        """``[R, B]`` positions into each run's train split."""
        spent = [j for j, p in enumerate(self.pos) if p == SAMPLE_CHUNK]
        if spent:
            self._draw_rows(spent)
            for j in spent:
                self.pos[j] = 0
        p0 = self.pos[0]
        if all(p == p0 for p in self.pos):
            out = self.buf[:, p0]
        else:
            at = torch.tensor(self.pos, device=self.device)
            out = self.buf[self._ar, at]
        self.pos = [p + 1 for p in self.pos]
        return out

    def _chunk(self, j: int) -> torch.Tensor:
        """Run ``j``'s next chunk, ``[SAMPLE_CHUNK, B]``, from its generator."""
        return torch.randint(self.n[j], (SAMPLE_CHUNK, self.batch), generator=self.gens[j])

    def _draw_rows(self, rows: Sequence[int], keep_start: bool = False) -> None:
        if not keep_start:
            for j in rows:
                self.start[j] = self.gens[j].get_state()
        host = torch.stack([self._chunk(j) for j in rows])
        if self.device.type == "cuda":  # a copy from pageable memory would sync the stream
            host = host.pin_memory()
        if len(rows) == len(self.gens):
            self.buf.copy_(host, non_blocking=True)
        else:
            self.buf[torch.tensor(list(rows), device=self.device)] = host.to(self.device)
