"""Train a cohort of R runs that share task and model shape as ONE stacked computation.

Each run owns its seed (split, init, batch stream), its optimiser state and its per-group
rates; nothing a run computes depends on which other runs share its cohort
(ARCHITECTURE decisions 2-4). Batches are index gathers on the device; evaluation is one
forward pass over every run's whole validation split.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from groklab.engine.host import keep_freed_memory
from groklab.engine.params import FlatParams
from groklab.models import build_model
from groklab.optim import assign_groups, make_optimizer
from groklab.optim.groups import GROUPS
from groklab.spec import RunSpec
from groklab.tasks import build_task, split_indices

# Batch indices are drawn from each run's own generator this many steps at a time.
# Part of the definition of a run's batch stream: changing it changes results.
SAMPLE_CHUNK = 64


@dataclass(frozen=True)
class EvalRow:
    step: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float


EvalCallback = Callable[[int, list[EvalRow]], None]


def run_generators(seed: int) -> dict[str, torch.Generator]:
    """Independent CPU generators for a run's split, init and batches, all from its seed."""
    children = np.random.SeedSequence(seed).generate_state(3, dtype=np.uint64)
    return {
        name: torch.Generator().manual_seed(int(s) & 0x7FFF_FFFF_FFFF_FFFF)
        for name, s in zip(("split", "init", "batch"), children, strict=True)
    }


class BatchStream:
    """Per-run streams of training indices, drawn on the CPU in chunks and moved at once."""

    def __init__(self, gens: Sequence[torch.Generator], n: int, batch: int, device: torch.device):
        self.gens, self.n, self.batch, self.device = gens, n, batch, device
        self.buf: torch.Tensor | None = None
        self.pos = SAMPLE_CHUNK

    def next(self) -> torch.Tensor:
        """[R, B] positions into each run's train split."""
        if self.pos == SAMPLE_CHUNK:
            draws = [torch.randint(self.n, (SAMPLE_CHUNK, self.batch), generator=g)
                     for g in self.gens]
            self.buf = torch.stack(draws, 1).to(self.device, non_blocking=True)
            self.pos = 0
        self.pos += 1
        return self.buf[self.pos - 1]


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def loss_and_correct(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-run mean cross-entropy (fp32) and accuracy: logits [R, B, C], y [R, B] -> [R], [R]."""
    R, B, C = logits.shape
    loss = F.cross_entropy(logits.float().reshape(R * B, C), y.reshape(-1), reduction="none")
    acc = (logits.argmax(-1) == y).float().mean(1)
    return loss.view(R, B).mean(1), acc


def train_cohort(
    specs: Sequence[RunSpec],
    device: str | torch.device = "cpu",
    *,
    on_eval: EvalCallback | None = None,
    progress: bool = True,
    desc: str | None = None,
) -> list[list[EvalRow]]:
    """Train every spec (all with one cohort key) together; return each run's curve."""
    if not specs:
        return []
    s0 = specs[0]
    if any(s.cohort_key() != s0.cohort_key() for s in specs):
        raise ValueError("a cohort's runs must share task, model shape and schedule length")
    device = torch.device(device)
    if device.type == "cpu":
        keep_freed_memory()
    R, B = len(specs), s0.batch_size

    task = build_task(s0.task, p=s0.p, k=s0.k)
    model = build_model(s0, task)
    gens = [run_generators(s.seed) for s in specs]
    splits = [split_indices(len(task), s0.train_fraction, g["split"]) for g in gens]
    train_idx = torch.stack([t for t, _ in splits]).to(device)  # [R, n_train]
    val_idx = torch.stack([v for _, v in splits]).to(device)  # [R, n_val]
    inputs, targets = task.inputs.to(device), task.targets.to(device)
    val_x, val_y = inputs[val_idx], targets[val_idx]

    params = FlatParams.stack([model.init(g["init"]) for g in gens], device)
    names = list(params.views)
    leaves = [params.views[n] for n in names]
    group_of = assign_groups(names, s0.group_rules or model.default_groups())
    rates = torch.tensor([s.lr for s in specs], dtype=torch.float64)  # [R, 3]
    base_lr = params.per_column({n: rates[:, GROUPS.index(group_of[n])] for n in names})
    opt = make_optimizer(s0.optimizer, params.flat, base_lr, specs)
    grad = torch.empty_like(params.flat)
    stream = BatchStream([g["batch"] for g in gens], train_idx.shape[1], B, device)
    autocast = _autocast(device, s0.precision)

    curves: list[list[EvalRow]] = [[] for _ in specs]
    sum_loss = torch.zeros(R, device=device)
    sum_acc = torch.zeros(R, device=device)
    seen = 0
    bar = tqdm(total=s0.steps, desc=desc or f"{s0.task} ×{R}", disable=not progress,
               unit="step", dynamic_ncols=True, leave=False)
    for step in range(1, s0.steps + 1):
        rows = train_idx.gather(1, stream.next())  # [R, B] indices into the table
        with autocast:
            logits = model.forward(params.views, inputs[rows])
        loss, acc = loss_and_correct(logits, targets[rows])
        grads = torch.autograd.grad(loss.sum(), leaves)
        opt.step(params.flatten_grads(grads, grad))
        sum_loss += loss.detach()
        sum_acc += acc
        seen += 1
        if step % s0.eval_every == 0 or step == s0.steps:
            val_loss, val_acc = evaluate(model, params.views, val_x, val_y, device, s0.precision)
            stats = torch.stack([sum_loss / seen, sum_acc / seen, val_loss, val_acc], 1).tolist()
            new = [EvalRow(step, *row) for row in stats]
            for curve, row in zip(curves, new, strict=True):
                curve.append(row)
            sum_loss.zero_()
            sum_acc.zero_()
            seen = 0
            va = [r.val_acc for r in new]
            bar.set_postfix_str(f"val acc {min(va):.3f}–{max(va):.3f}", refresh=False)
            if on_eval is not None:
                on_eval(step, new)
        bar.update(1)
    bar.close()
    return curves


# On a CPU, evaluation goes through the split in slices of about this many sequences (summed
# over the cohort): activations then stay a few MiB, so the allocator reuses warm memory. One
# pass over a 4,656-example split allocates 38 MiB per FFN activation, which glibc serves
# with fresh pages every time; measured on 2 cores, x_div_y p=97: 211 ms per evaluation in
# one pass, 97 ms in slices of 512 (the matmuls alone need 68 ms at the measured peak).
CPU_EVAL_SEQUENCES = 1024
# On an accelerator one pass is fastest; slices only bound its memory.
GPU_EVAL_SEQUENCES = 1 << 18


def eval_chunk(n_runs: int, device: torch.device) -> int:
    """Examples per run in one evaluation slice."""
    budget = CPU_EVAL_SEQUENCES if device.type == "cpu" else GPU_EVAL_SEQUENCES
    return max(1, budget // n_runs)


@torch.no_grad()
def evaluate(
    model: object,
    views: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    device: torch.device,
    precision: str = "fp32",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and accuracy of every run on its whole split -> [R], [R].

    The split (``x`` ``[R, n, T]``, ``y`` ``[R, n]``) is taken in slices of ``eval_chunk``
    examples; the means are weighted by slice size, so the result is that of one pass.
    """
    R, n = y.shape
    chunk = eval_chunk(R, device)
    loss = torch.zeros(R, device=y.device)
    acc = torch.zeros(R, device=y.device)
    with _autocast(device, precision):
        for i in range(0, n, chunk):
            logits = model.forward(views, x[:, i : i + chunk])  # type: ignore[attr-defined]
            l_i, a_i = loss_and_correct(logits, y[:, i : i + chunk])
            w = logits.shape[1] / n
            loss += l_i * w
            acc += a_i * w
    return loss, acc
