"""Per-run data a cohort reads at every step and evaluation, as cohort components
(``engine.state.Component``): the runs' train/validation index rows and the sums of the
train metrics between two evaluations."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def pad_stack(rows: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Ragged 1-d index tensors -> ``[R, max]`` (padded with each row's first index) and the
    ``[R, max]`` float mask of real entries."""
    width = max(len(r) for r in rows)
    out = torch.stack([torch.cat([r, r[:1].expand(width - len(r))]) for r in rows])
    mask = torch.stack([torch.arange(width) < len(r) for r in rows]).float()
    return out, mask


class Splits:
    """Every run's train rows and validation split (ragged sizes allowed in one cohort;
    docs/design.md, decision 3). With ``eval_batches`` None the whole validation split is
    gathered once (``val_x``, ``val_y``, ``val_mask``); else evaluation draws ``eval_batches``
    batches of each split from every run's own ``eval`` stream (``eval_gens``, part of the
    state)."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor,
                 train: Sequence[torch.Tensor], val: Sequence[torch.Tensor],
                 eval_gens: Sequence[torch.Generator] | None, device: torch.device):
        train_idx, _ = pad_stack(train)
        val_idx, val_mask = pad_stack(val)
        self.device = device
        self.train_idx = train_idx.to(device)  # [R, max n_train] rows of ``inputs``
        self.eval_gens = None if eval_gens is None else list(eval_gens)
        if self.eval_gens is None:  # the whole split, gathered once
            self.val_x = inputs[val_idx.to(device)]
            self.val_y = targets[val_idx.to(device)]
            self.val_mask = val_mask.to(device)
        else:
            self.val_idx = val_idx.to(device)
            self.n_split = {"train": [len(t) for t in train], "val": [len(v) for v in val]}

    def rows(self) -> dict | None:
        """The per-run state: every run's ``eval`` stream (sampled evaluation only)."""
        return None if self.eval_gens is None else {"eval": self.eval_gens}


class TrainSums:
    """Per-run sums of the loss and metrics over the batches since each run's last evaluation
    (runs of one cohort may be evaluated at different steps: ``reset`` takes the rows)."""

    def __init__(self, names: Sequence[str], n_runs: int, device: torch.device):
        self.names, self.device = tuple(names), device
        self.sums = {n: torch.zeros(n_runs, device=device) for n in self.names}
        self.seen = torch.zeros(n_runs, device=device)

    def reset(self, rows: Sequence[int] | None = None) -> None:
        """Start the sums again for ``rows`` (None: every run)."""
        if rows is None:
            for v in self.sums.values():
                v.zero_()
            self.seen.zero_()
            return
        k = torch.tensor(list(rows), dtype=torch.long, device=self.device)
        for v in self.sums.values():
            v[k] = 0.0
        self.seen[k] = 0.0

    def add(self, loss: torch.Tensor, metrics: dict[str, torch.Tensor]) -> None:
        """Add one batch: ``loss`` ``[R]``, metrics ``[R, B]`` (averaged over the batch)."""
        self.sums["loss"] += loss.detach()
        for n, v in metrics.items():
            self.sums[n] += v.mean(1)
        self.seen += 1

    def means(self) -> dict[str, torch.Tensor]:
        """``train_<name>``: the mean over the batches seen (a run that saw none: the sum)."""
        seen = self.seen.clamp(min=1)
        return {f"train_{n}": v / seen for n, v in self.sums.items()}

    def rows(self) -> dict:
        return {"sums": self.sums, "seen": self.seen}
