"""The training state of one cohort: R runs that share task and model shape, stepped as ONE
stacked computation (docs/design.md, decisions 2-4 and 11).

``CohortState`` owns everything a cohort's training needs: per-run splits (ragged sizes
allowed), the flat ``[R, N]`` parameters and their layout, the optimiser chain and its rate
policy, the sampler, per-run noise streams and the objective. ``step`` does one update of
every run; ``evaluate`` returns each run's named metrics and runs the evaluation hooks,
which may add metrics and retire runs (early stop, pruning); ``state_dict`` /
``load_state_dict`` save and restore all of it. Nothing a run computes depends on its
cohort mates: table, split, init, batches and noise come from its own seed, or, for a warm
start (``init_from``), its initial weights from its parent's final ones (``parents``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from groklab.engine.balanced import build_sampler
from groklab.engine.early_stop import early_stop
from groklab.engine.embedding import embedding_monitor
from groklab.engine.hooks import Hook
from groklab.engine.host import keep_freed_memory
from groklab.engine.measures import progress_measures
from groklab.engine.objective import CrossEntropy, Objective, objective_for
from groklab.engine.params import FlatParams
from groklab.engine.sampler import noise_seed, run_generators
from groklab.engine.splits import Splits, TrainSums
from groklab.engine.tables import cohort_tables
from groklab.models import CohortModel, RunRandom, build_model
from groklab.models.layout import ParamLayout
from groklab.optim import build_optimizer
from groklab.records import EvalRow
from groklab.spec import RunSpec
from groklab.tasks import TaskData

# On a CPU, evaluation goes through the split in slices of about this many sequences (summed
# over the cohort): activations then stay a few MiB, so the allocator reuses warm memory. One
# pass over a 4,656-example split allocates 38 MiB per FFN activation, which glibc serves
# with fresh pages every time; measured on 2 cores, x_div_y p=97: 211 ms per evaluation in
# one pass, 97 ms in slices of 512 (the matmuls alone need 53-68 ms at the measured peak).
CPU_EVAL_SEQUENCES = 1024
# On an accelerator one pass is fastest; slices only bound its memory.
GPU_EVAL_SEQUENCES = 1 << 18

# (params, tokens [R, B, T], targets [R, B], train, rng) -> per-example loss, metrics [R, B]
ExampleFn = Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]]


class Component(Protocol):
    """Per-run state a cohort holds beside its parameters (optimiser chain, rate policy,
    sampler, noise streams, evaluation streams, train-metric sums, monitors). ``CohortState``
    keeps every one in ``components``: retiring runs, ``state_dict`` and ``load_state_dict``
    go through all of them, so a new component cannot be forgotten in one of the three."""

    def select(self, keep: Sequence[int]) -> None:
        """Keep only the runs at positions ``keep`` (of the runs still training)."""
        ...

    def state_dict(self) -> Any: ...

    def load_state_dict(self, sd: Any) -> None: ...


def eval_chunk(n_runs: int, device: torch.device) -> int:
    """Examples per run in one evaluation slice."""
    budget = CPU_EVAL_SEQUENCES if device.type == "cpu" else GPU_EVAL_SEQUENCES
    return max(1, budget // n_runs)


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_example_fn(model: CohortModel, objective: Objective, device: torch.device,
                    precision: str = "fp32", compile: bool = False) -> ExampleFn:
    """Forward (under autocast for bf16) and the objective's per-example loss and metrics,
    optionally ``torch.compile``d (fuses the element-wise work around the matmuls; compiles
    once per shape, so it pays off on long runs, not short ones: README, Speed)."""

    def fn(params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
           train: bool = False, rng: RunRandom | None = None):  # noqa: ANN202
        with _autocast(device, precision):
            out = model.forward(params, x, train=train, rng=rng)
        return objective(out, y)

    return torch.compile(fn) if compile else fn


def check_vocabulary(task: TaskData) -> None:
    """Every token id of the table must lie in the vocabulary (else: ``IndexError``)."""
    lo, hi = int(task.inputs.min()), int(task.inputs.max())
    if lo < 0 or hi >= task.vocab_size:
        raise IndexError(f"task {task.name}: token ids {lo}..{hi} fall outside its vocabulary "
                         f"0..{task.vocab_size - 1}")


@dataclass
class RunEnd:
    """A run that left the cohort: its final parameters, its final optimiser state when it
    was asked for (``keep_optimizer``: a child carries it), and whether an external hook
    stopped it (then it did not train what its id describes: engine/hooks.py)."""

    params: dict[str, torch.Tensor]
    optimizer: dict[str, torch.Tensor] | None = None
    stopped: bool = False


class CohortState:
    """R runs with one cohort key, trained together (see the module docstring)."""

    def __init__(self, specs: Sequence[RunSpec], device: str | torch.device = "cpu", *,
                 compile: bool = False, hooks: Sequence[Hook] = (),
                 parents: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
                 parent_optimizers: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
                 keep_optimizer: Sequence[int] = ()):
        if not specs:
            raise ValueError("a cohort needs at least one run")
        s0 = specs[0]
        if any(s.cohort_key() != s0.cohort_key() for s in specs):
            raise ValueError("a cohort's runs must share every setting but the per-run ones "
                             "(RunSpec.cohort_key)")
        self.device = device = torch.device(device)
        if device.type == "cpu":
            keep_freed_memory()
        self.specs = list(specs)
        self.index = list(range(len(specs)))  # position in ``specs`` of each run still here
        self.steps, self.batch, self.eval_every = s0.steps, s0.batch_size, s0.eval_every

        gens = [run_generators(s.seed) for s in specs]
        tables = cohort_tables(specs, gens)  # per-run tables and splits (engine/tables.py)
        task = tables.task
        check_vocabulary(task)
        self.model = build_model(s0, task)
        self.inputs, self.targets = _to_device(tables.inputs, device), _to_device(
            tables.targets, device)
        self.eval_batches = s0.eval_batches
        self.data = Splits(self.inputs, self.targets, tables.train, tables.val,
                           None if self.eval_batches is None else [g["eval"] for g in gens],
                           device)

        inits = [self.model.init(g["init"]) for g in gens]  # every run draws its init stream
        inits = [warm_start(s, init, parents) for s, init in zip(specs, inits, strict=True)]
        self.params = FlatParams.stack(inits, device)
        self.layout = ParamLayout.build(self.model.param_info(),
                                        s0.group_rules or self.model.default_groups(),
                                        self.model.n_blocks)
        if list(self.layout.offsets.items()) != list(self.params.offsets.items()):
            raise RuntimeError("the model's param_info disagrees with its init")
        self.opt, self.policy = build_optimizer(specs, self.layout, self.params.flat)
        for i, s in enumerate(specs):  # warm starts that carry their parent's optimiser
            if s.init_from is not None and s.init_optimizer == "carried":
                if parent_optimizers is None or s.init_from not in parent_optimizers:
                    raise ValueError(f"run {s.run_id} carries the optimiser state of run "
                                     f"{s.init_from}, which was not saved (train parent and "
                                     "child in one invocation: groklab saves it for them)")
                self.opt.load_run_state(i, dict(parent_optimizers[s.init_from]))
        self.keep_optimizer = set(keep_optimizer)  # positions whose final state is kept
        self.ended: dict[int, RunEnd] = {}  # retired since last read: position -> its end
        self.grad = torch.empty_like(self.params.flat)
        self.sampler = build_sampler(specs, [g["batch"] for g in gens], tables.inputs,
                                     tables.train, self.batch, device)
        self.embedding = embedding_monitor(specs, self.model, self.policy, task.vocab_size,
                                           device)  # adaptive embedding rate, diagnostics
        self.early_stop = early_stop(specs)  # per-run stop rule (engine/early_stop.py)
        # hooks the runs' own settings ask for (their effects are part of the runs' ids) ...
        self.own_hooks: list[Hook] = []
        if s0.diagnostics and self.embedding is not None:
            self.own_hooks.append(self.embedding.diagnostics_hook)
        measures = progress_measures(specs, self.model, dict(self.layout.groups), tables.inputs,
                                     tables.train, device, lambda n: eval_chunk(n, device))
        if measures is not None:  # progress measures (engine/measures.py)
            self.own_hooks.append(measures)
        if self.early_stop is not None:
            self.own_hooks.append(self.early_stop)
        self.hooks = list(hooks)  # ... and the caller's: a run they retire is "stopped"
        self.rng = RunRandom([noise_seed(g["noise"]) for g in gens], device,
                             dropout=[s.dropout for s in specs])
        self.loss = CrossEntropy([s.loss for s in specs])  # each run's softmax or StableMax
        self.objective: Objective = objective_for(task.sequence, self.loss)
        self.fn = make_example_fn(self.model, self.objective, device, s0.precision, compile)
        self.sums = TrainSums(("loss", *self.objective.metric_names), len(specs), device)
        self.t = 0  # updates done
        # every per-run component, by its name in ``state_dict``
        self.components: dict[str, Component] = {
            "opt": self.opt, "policy": self.policy, "sampler": self.sampler, "rng": self.rng,
            "sums": self.sums, "eval": self.data}
        if self.embedding is not None:
            self.components["embedding"] = self.embedding
        if self.early_stop is not None:
            self.components["early_stop"] = self.early_stop
        if any(s.loss != "softmax" for s in specs):
            self.components["loss"] = self.loss

    # -- properties -------------------------------------------------------------------------
    @property
    def n_runs(self) -> int:
        return len(self.index)

    @property
    def done(self) -> bool:
        return self.t >= self.steps or not self.index

    # -- training ---------------------------------------------------------------------------
    def train_rows(self) -> torch.Tensor:
        """The next batch: ``[R, B]`` indices into the task table (from the train splits)."""
        return self.data.train_idx.gather(1, self.sampler.next())

    def step(self) -> None:
        """One update of every run."""
        rows = self.train_rows()
        if self.embedding is not None:
            self.embedding.observe(self.inputs[rows])
            self.embedding.before_update(self.t, self.params)
        loss, metrics = self.fn(self.params.views, self.inputs[rows], self.targets[rows],
                                True, self.rng)
        loss = loss.mean(1)
        leaves = list(self.params.views.values())
        grads = torch.autograd.grad(loss.sum(), leaves)
        self.opt.step(self.params.flatten_grads(grads, self.grad))
        with torch.no_grad():
            self.sums.add(loss, metrics)
        self.t += 1

    # -- evaluation -------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict[str, torch.Tensor]:
        """Every run's mean loss and metrics over its whole validation split -> name: ``[R]``
        (with ``eval_batches``: over that many random batches of it; see ``estimate``).

        The split is taken in slices of ``eval_chunk`` examples; padding (ragged splits)
        has weight zero, so the result is that of one pass over the run's own split.
        """
        if self.eval_batches is not None:
            return self.estimate()["val"]
        d = self.data
        return self._mean_over(lambda a, b: (d.val_x[:, a:b], d.val_y[:, a:b],
                                             d.val_mask[:, a:b]), d.val_y.shape[1])

    @torch.no_grad()
    def estimate(self) -> dict[str, dict[str, torch.Tensor]]:
        """Sampled evaluation (``eval_batches``; nanoGPT's ``estimate_loss``): per split, every
        run's mean loss and metrics over ``eval_batches`` batches of windows drawn uniformly
        (with replacement) from its own ``eval`` stream, train split first, in eval mode."""
        n = self.eval_batches * self.batch
        d = self.data
        out = {}
        for split, rows in (("train", d.train_idx), ("val", d.val_idx)):
            pos = torch.stack([torch.randint(m, (n,), generator=g) for g, m in
                               zip(d.eval_gens, d.n_split[split], strict=True)])
            picked = rows.gather(1, pos.to(self.device))
            out[split] = self._mean_over(lambda a, b, p=picked: (
                self.inputs[p[:, a:b]], self.targets[p[:, a:b]], None), n)
        return out

    def _mean_over(self, part: Callable[[int, int], tuple], n: int) -> dict[str, torch.Tensor]:
        """Mean loss and metrics per run over ``n`` examples that ``part(a, b)`` gives in
        slices (inputs, targets and a weight mask, or None for all ones)."""
        chunk = eval_chunk(self.n_runs, self.device)
        total: dict[str, torch.Tensor] = {}
        count = torch.zeros(self.n_runs, device=self.device)
        for i in range(0, n, chunk):
            x, y, w = part(i, i + chunk)
            loss, metrics = self.fn(self.params.views, x, y, False, None)
            w = torch.ones_like(loss) if w is None else w
            count += w.sum(1)
            for name, v in {"loss": loss, **metrics}.items():
                piece = (v * w).sum(1)
                total[name] = total[name] + piece if name in total else piece
        return {name: v / count for name, v in total.items()}

    def evaluate(self) -> dict[int, EvalRow]:
        """Train metrics (mean over the batches since the last evaluation) and validation
        metrics of every run, plus what the hooks add; runs the hooks ask to retire leave
        the cohort afterwards (``ended``). Returns ``{position in specs: row}``."""
        if self.eval_batches is None:
            val = self.validate()
            metrics = self.sums.means()
        else:  # both splits sampled in eval mode
            both = self.estimate()
            val = both["val"]
            metrics = {f"train_{n}": v for n, v in both["train"].items()}
        metrics |= {f"val_{n}": v for n, v in val.items()}
        extra: dict[str, torch.Tensor] = {}
        retire: dict[bool, set[int]] = {True: set(), False: set()}  # by own hooks or not
        for own, hook in [(True, h) for h in self.own_hooks] + [(False, h) for h in self.hooks]:
            result = hook(self, self.t, metrics | extra)
            if result is not None:
                extra |= result.metrics
                retire[own] |= set(result.retire)
        core = torch.stack([metrics[k] for k in ("train_loss", "train_acc", "val_loss",
                                                  "val_acc")], 1).tolist()
        extras = {k: torch.as_tensor(v, dtype=torch.float64).flatten().tolist()
                  for k, v in extra.items()}
        rows = {pos: EvalRow(self.t, *core[i], extra={k: v[i] for k, v in extras.items()
                                                     if not math.isnan(v[i])})  # NaN: unmeasured
                for i, pos in enumerate(self.index)}
        self.sums.reset(self.n_runs)
        if retire[True] or retire[False]:  # a run its own rule stops is not "stopped"
            self.retire(sorted(retire[True] | retire[False]),
                        stopped=retire[False] - retire[True])
        return rows

    # -- runs leaving -----------------------------------------------------------------------
    def run_end(self, i: int, stopped: bool = False) -> RunEnd:
        """The end of the run at position ``i`` of the current cohort, as it is now."""
        pos = self.index[i]
        opt = self.opt.run_state(i) if pos in self.keep_optimizer else None
        return RunEnd(self.params.run(i), opt, stopped)

    def retire(self, positions: Sequence[int], stopped: set[int] | frozenset[int] = frozenset()
               ) -> None:
        """Remove the runs at ``positions`` (of the current cohort; those in ``stopped`` were
        retired by an external hook) into ``ended``; the rest go on."""
        gone = set(positions)
        keep = [i for i in range(self.n_runs) if i not in gone]
        for i in sorted(gone):
            self.ended[self.index[i]] = self.run_end(i, stopped=i in stopped)
        self.index = [self.index[i] for i in keep]
        self.params = self.params.select(keep)
        self.opt.params = self.params.flat
        for component in self.components.values():
            component.select(keep)
        self.grad = torch.empty_like(self.params.flat)

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue exactly where this state is (CPU tensors)."""
        return {"t": self.t, "index": list(self.index),
                "params": self.params.flat.detach().cpu().clone(),
                **{name: _to(c.state_dict(), "cpu") for name, c in self.components.items()}}

    def load_state_dict(self, sd: dict) -> None:
        """Restore a ``state_dict`` of a cohort built from the same specs."""
        if sd["index"] != self.index:
            missing = [i for i, pos in enumerate(self.index) if pos not in sd["index"]]
            self.retire(missing)
            self.ended.clear()  # retired before the save: not this state's to report
        if sd["index"] != self.index:
            raise ValueError("checkpoint runs do not match this cohort's runs")
        self.t = int(sd["t"])
        if "seen" in sd:  # a checkpoint of groklab <= 0.1.x: train sums stored flat
            sd = {**sd, "sums": {"sums": sd["sums"], "seen": sd["seen"]}}
        with torch.no_grad():
            self.params.flat.copy_(sd["params"])
        for name, c in self.components.items():
            c.load_state_dict(sd[name])


def warm_start(spec: RunSpec, init: dict[str, torch.Tensor],
               parents: Mapping[str, Mapping[str, torch.Tensor]] | None
               ) -> dict[str, torch.Tensor]:
    """A run's initial parameters: its parent's final weights when ``spec.init_from`` names
    one (same names and shapes as ``init``, else ``ValueError``), else ``init``."""
    if spec.init_from is None:
        return init
    if parents is None or spec.init_from not in parents:
        raise ValueError(f"run {spec.run_id} starts from run {spec.init_from}, whose weights "
                         "were not given (train the parent first, into the same store)")
    parent = parents[spec.init_from]
    shapes = {n: tuple(t.shape) for n, t in init.items()}
    theirs = {n: tuple(t.shape) for n, t in parent.items()}
    if shapes != theirs:
        diff = sorted(n for n in set(shapes) | set(theirs) if shapes.get(n) != theirs.get(n))
        raise ValueError(f"run {spec.run_id} cannot start from run {spec.init_from}: parameters "
                         f"differ in name or shape ({', '.join(diff[:4])}); a Transformer "
                         "continued on longer sequences needs max_len set on both")
    return {n: parent[n].detach().to(torch.float32).clone() for n in init}


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device``; a strided view (text windows) keeps sharing its storage there."""
    if t.device == device:
        return t
    if t.is_contiguous():
        return t.to(device)
    base = t._base if t._base is not None else t
    if base.storage_offset() or not base.is_contiguous():
        return t.to(device)
    return base.to(device).as_strided(t.shape, t.stride(), t.storage_offset())


def _to(obj: object, device: str | torch.device) -> object:
    """``obj`` with every tensor inside (dicts, lists) moved to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to(v, device) for v in obj]
    return obj
