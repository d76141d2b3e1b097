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
from groklab.models import CohortModel, build_model
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
            host = torch.stack(draws, 1)
            if self.device.type == "cuda":  # a copy from pageable memory would sync the stream
                host = host.pin_memory()
            self.buf = host.to(self.device, non_blocking=True)
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


# (params, tokens [R, B, T], targets [R, B]) -> per-run (mean loss, accuracy), each [R]
LossFn = Callable[[dict[str, torch.Tensor], torch.Tensor, torch.Tensor],
                  tuple[torch.Tensor, torch.Tensor]]


def make_loss_fn(model: CohortModel, device: torch.device, precision: str = "fp32",
                 compile: bool = False) -> LossFn:
    """Forward (under autocast for bf16) and the per-run loss, optionally ``torch.compile``d.

    Compiling fuses the element-wise work around the matmuls (bias, GELU, LayerNorm, softmax)
    into a few loops; training and evaluation each compile once per shape, so it pays off on
    long runs, not on short ones (numbers: README, Speed).
    """

    def loss_fn(params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor):  # noqa: ANN202
        with _autocast(device, precision):
            logits = model.forward(params, x)
        return loss_and_correct(logits, y)

    return torch.compile(loss_fn) if compile else loss_fn


def train_cohort(
    specs: Sequence[RunSpec],
    device: str | torch.device = "cpu",
    *,
    on_eval: EvalCallback | None = None,
    progress: bool = True,
    desc: str | None = None,
    compile: bool = False,
) -> list[list[EvalRow]]:
    """Train every spec (all with one cohort key) together; return each run's curve.

    ``compile`` runs the forward and loss through ``torch.compile`` (same results to float
    rounding; worth its compile time on runs of thousands of steps).
    """
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
    loss_fn = make_loss_fn(model, device, s0.precision, compile)

    curves: list[list[EvalRow]] = [[] for _ in specs]
    sum_loss = torch.zeros(R, device=device)
    sum_acc = torch.zeros(R, device=device)
    seen = 0
    bar = tqdm(total=s0.steps, desc=desc or f"{s0.task} ×{R}", disable=not progress,
               unit="step", dynamic_ncols=True, leave=False)
    for step in range(1, s0.steps + 1):
        rows = train_idx.gather(1, stream.next())  # [R, B] indices into the table
        loss, acc = loss_fn(params.views, inputs[rows], targets[rows])
        grads = torch.autograd.grad(loss.sum(), leaves)
        opt.step(params.flatten_grads(grads, grad))
        sum_loss += loss.detach()
        sum_acc += acc
        seen += 1
        if step % s0.eval_every == 0 or step == s0.steps:
            val_loss, val_acc = evaluate(loss_fn, params.views, val_x, val_y, device)
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
# one pass, 97 ms in slices of 512 (the matmuls alone need 53-68 ms at the measured peak).
CPU_EVAL_SEQUENCES = 1024
# On an accelerator one pass is fastest; slices only bound its memory.
GPU_EVAL_SEQUENCES = 1 << 18


def eval_chunk(n_runs: int, device: torch.device) -> int:
    """Examples per run in one evaluation slice."""
    budget = CPU_EVAL_SEQUENCES if device.type == "cpu" else GPU_EVAL_SEQUENCES
    return max(1, budget // n_runs)


@torch.no_grad()
def evaluate(
    loss_fn: LossFn,
    params: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and accuracy of every run on its whole split -> [R], [R].

    The split (``x`` ``[R, n, T]``, ``y`` ``[R, n]``) is taken in slices of ``eval_chunk``
    examples; the means are weighted by slice size, so the result is that of one pass.
    """
    R, n = y.shape
    chunk = eval_chunk(R, device)
    loss = torch.zeros(R, device=y.device)
    acc = torch.zeros(R, device=y.device)
    for i in range(0, n, chunk):
        l_i, a_i = loss_fn(params, x[:, i : i + chunk], y[:, i : i + chunk])
        w = min(chunk, n - i) / n
        loss += l_i * w
        acc += a_i * w
    return loss, acc
