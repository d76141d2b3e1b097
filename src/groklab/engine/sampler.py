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
    ``n_train[r]`` examples, from the run's own generator, ``SAMPLE_CHUNK`` steps at a time."""

    def __init__(self, gens: Sequence[torch.Generator], n_train: Sequence[int], batch: int,
                 device: torch.device):
        self.gens, self.n = list(gens), list(n_train)
        self.batch, self.device = batch, device
        self.buf: torch.Tensor | None = None
        self.pos = SAMPLE_CHUNK
        self.chunk_start: list[torch.Tensor] = []  # generator states before the current chunk

    def next(self) -> torch.Tensor:
        """``[R, B]`` positions into each run's train split."""
        if self.pos == SAMPLE_CHUNK:
            self._draw()
            self.pos = 0
        self.pos += 1
        assert self.buf is not None
        return self.buf[self.pos - 1]

    def _draw(self) -> None:
        self.chunk_start = [g.get_state() for g in self.gens]
        draws = [torch.randint(n, (SAMPLE_CHUNK, self.batch), generator=g)
                 for g, n in zip(self.gens, self.n, strict=True)]
        host = torch.stack(draws, 1)
        if self.device.type == "cuda":  # a copy from pageable memory would sync the stream
            host = host.pin_memory()
        self.buf = host.to(self.device, non_blocking=True)

    def select(self, keep: Sequence[int]) -> None:
        """Keep the runs at positions ``keep``."""
        self.gens = [self.gens[i] for i in keep]
        self.n = [self.n[i] for i in keep]
        self.chunk_start = [self.chunk_start[i] for i in keep] if self.chunk_start else []
        if self.buf is not None:
            self.buf = self.buf[:, list(keep)]

    def state_dict(self) -> dict:
        if self.pos == SAMPLE_CHUNK or not self.chunk_start:
            return {"states": [g.get_state() for g in self.gens], "pos": SAMPLE_CHUNK}
        return {"states": [s.clone() for s in self.chunk_start], "pos": self.pos}

    def load_state_dict(self, sd: dict) -> None:
        for g, s in zip(self.gens, sd["states"], strict=True):
            g.set_state(s)
        self.pos = int(sd["pos"])
        if self.pos < SAMPLE_CHUNK:
            self._draw()  # redraw the current chunk from its start
