"""The training state of one cohort: R runs that share task and model shape, stepped as ONE
stacked computation (docs/design.md, decisions 2-4 and 11).

``CohortState`` owns everything a cohort's training needs: per-run splits (ragged sizes
allowed), the flat ``[R, N]`` parameters and their layout, the optimiser chain and its rate
policy, the sampler, per-run noise streams and the objective. ``step`` does one update of
every run; ``evaluate`` returns each run's named metrics and runs the evaluation hooks,
which may add metrics and retire runs (early stop, an external hook); ``state_dict`` /
``load_state_dict`` save and restore all of it. Nothing a run computes depends on its
cohort mates: table, split, init, batches and noise come from its own seed, or, for a warm
start (``init_from``), its initial weights from its parent's final ones (``parents``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from groklab.engine.balanced import build_sampler
from groklab.engine.early_stop import early_stop
from groklab.engine.embedding import embedding_monitor
from groklab.engine.hooks import Hook
from groklab.engine.host import keep_freed_memory
from groklab.engine.loss import CrossEntropy, Objective, objective_for
from groklab.engine.measures import progress_measures
from groklab.engine.params import FlatParams
from groklab.engine.phases import phase
from groklab.engine.rows import Tree, each_row, put, restore, snapshot, take
from groklab.engine.sampler import noise_seed, run_generators
from groklab.engine.splits import Splits, TrainSums
from groklab.engine.tables import cohort_tables
from groklab.models import CohortModel, RunRandom, build_model
from groklab.models.layout import ParamLayout
from groklab.optim import build_optimizer
from groklab.optim.transforms import compiled
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
    """Per-run state a cohort holds beside its parameters and optimiser (sampler, noise
    streams, evaluation streams, train-metric sums, early stop, embedding monitor, rate
    policy). Its state is one tree with the run axis first (``rows()``, engine/rows.py), so
    taking a run out, putting one in and checkpointing are written once for all of them;
    ``CohortState`` keeps every component in ``components``. A component may also define
    ``loaded(j)``: called after row ``j`` was put or restored (a sampler redraws its chunk)."""

    def rows(self) -> Tree: ...


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

    return compiled(fn) if compile else fn


def check_vocabulary(task: TaskData) -> None:
    """Every token id of the table must lie in the vocabulary (else: ``IndexError``)."""
    lo, hi = int(task.inputs.min()), int(task.inputs.max())
    if lo < 0 or hi >= task.vocab_size:
        raise IndexError(f"task {task.name}: token ids {lo}..{hi} fall outside its vocabulary "
                         f"0..{task.vocab_size - 1}")


@dataclass
class RunEnd:
    """A run that left the cohort: its final parameters, its final optimiser state when it
    was asked for (``keep_optimizer``: a child carries it), whether an external hook
    stopped it (then it did not train what its id describes: engine/hooks.py), and its own
    step count when it left."""

    params: dict[str, torch.Tensor]
    optimizer: dict[str, torch.Tensor] | None = None
    stopped: bool = False
    step: int = 0


@dataclass
class RowsView:
    """What a hook sees when only some runs of a cohort are evaluated (runs that joined at
    other steps): their specs by row, the rows evaluated (``index``), their own step
    (``t``) and their parameters (``params``, those rows only)."""

    specs: list[RunSpec]
    index: list[int]
    t: int
    params: FlatParams


@dataclass
class Carried:
    """One run taken out of a cohort to continue in another (``CohortState.take_run``):
    its own step, parameters, optimiser state (with its update count) and every
    component's row."""

    step: int
    params: dict[str, torch.Tensor]
    optimizer: dict[str, torch.Tensor]
    rows: dict[str, Tree] = field(default_factory=dict)


class CohortState:
    """R runs with one cohort key, trained together (see the module docstring).

    Every run counts its own steps: row ``i`` had ``offset[i]`` updates before this
    state's first (a run carried in from an earlier state, ``carried``), and its own step
    is ``t + offset[i]``. A run that retires stays in its row, inactive, until the caller
    compacts (``take_run`` the others into a new state: engine/slots.py decides when)."""

    def __init__(self, specs: Sequence[RunSpec], device: str | torch.device = "cpu", *,
                 compile: bool = False, hooks: Sequence[Hook] = (),
                 parents: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
                 parent_optimizers: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
                 keep_optimizer: Sequence[int] = (),
                 carried: Sequence[Carried | None] | None = None):
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
        R = len(specs)
        self.index = list(range(R))  # the rows still training
        self.offset = [0] * R  # every row's own steps before this state's first update
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

        carried = list(carried) if carried is not None else [None] * R
        inits = [self.model.init(g["init"]) for g in gens]  # every run draws its init stream
        inits = [c.params if c is not None else warm_start(s, init, parents)
                 for s, init, c in zip(specs, inits, carried, strict=True)]
        self.params = FlatParams.stack(inits, device)
        self.layout = ParamLayout.build(self.model.param_info(),
                                        s0.group_rules or self.model.default_groups(),
                                        self.model.n_blocks)
        if list(self.layout.offsets.items()) != list(self.params.offsets.items()):
            raise RuntimeError("the model's param_info disagrees with its init")
        self.opt, self.policy = build_optimizer(specs, self.layout, self.params.flat,
                                                fuse=compile)
        for i, s in enumerate(specs):  # warm starts that carry their parent's optimiser
            if carried[i] is None and s.init_from is not None and \
                    s.init_optimizer == "carried":
                if parent_optimizers is None or s.init_from not in parent_optimizers:
                    raise ValueError(f"run {s.run_id} carries the optimiser state of run "
                                     f"{s.init_from}, which was not saved (train parent and "
                                     "child in one invocation: groklab saves it for them)")
                self.opt.load_run_state(i, dict(parent_optimizers[s.init_from]))
        self.keep_optimizer = set(keep_optimizer)  # rows whose final state is kept
        self.ended: dict[int, RunEnd] = {}  # retired since last read: row -> its end
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
        self.hooks = list(hooks)  # ... and the caller's: a run they retire is "halted_by_hook"
        self.rng = RunRandom([noise_seed(g["noise"]) for g in gens], device,
                             dropout=[s.dropout for s in specs])
        self.loss = CrossEntropy([s.loss for s in specs])  # each run's softmax or StableMax
        self.objective: Objective = objective_for(task.sequence, self.loss)
        self.fn = make_example_fn(self.model, self.objective, device, s0.precision, compile)
        self.sums = TrainSums(("loss", *self.objective.metric_names), R, device)
        self.t = 0  # updates done by this state
        # every per-run component, by its name in ``state_dict`` and in a carried run
        self.components: dict[str, Component] = {
            "policy": self.policy, "sampler": self.sampler, "rng": self.rng,
            "sums": self.sums, "eval": self.data}
        if self.embedding is not None:
            self.components["embedding"] = self.embedding
        if self.early_stop is not None:
            self.components["early_stop"] = self.early_stop
        for j, c in enumerate(carried):
            if c is not None:
                self._put_run(j, c)
        self.policy.set_offsets(self.offset)

    # -- properties -------------------------------------------------------------------------
    @property
    def n_runs(self) -> int:
        """Runs still training."""
        return len(self.index)

    @property
    def done(self) -> bool:
        return not self.index or all(self.own_step(i) >= self.steps for i in self.index)

    def own_step(self, row: int) -> int:
        """Updates the run in ``row`` has had, counted from its own start."""
        return self.t + self.offset[row]

    def due(self) -> list[int]:
        """The training rows evaluated after this update: each run every ``eval_every`` of
        its own steps and at its last."""
        e = self.eval_every
        return [i for i in self.index
                if (s := self.own_step(i)) % e == 0 or s == self.steps]

    # -- training ---------------------------------------------------------------------------
    def train_rows(self) -> torch.Tensor:
        """The next batch: ``[R, B]`` indices into the task table (from the train splits)."""
        return self.data.train_idx.gather(1, self.sampler.next())

    def step(self) -> None:
        """One update of every run."""
        with phase("sample"):
            rows = self.train_rows()
            x, y = self.inputs[rows], self.targets[rows]
        if self.embedding is not None:
            self.embedding.observe(x)
            own = torch.tensor([self.own_step(i) for i in range(len(self.specs))])
            self.embedding.before_update(own, self.params)
        with phase("forward"):
            loss, metrics = self.fn(self.params.views, x, y, True, self.rng)
            loss = loss.mean(1)
        with phase("backward"):
            grads = torch.autograd.grad(loss.sum(), list(self.params.views.values()))
        with phase("optimizer"):
            self.opt.step(self.params.flatten_grads(grads, self.grad))
        with phase("train_metrics"), torch.no_grad():
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
    def estimate(self, rows: Sequence[int] | None = None) -> dict[str, dict[str, torch.Tensor]]:
        """Sampled evaluation (``eval_batches``; nanoGPT's ``estimate_loss``): per split, every
        run's mean loss and metrics over ``eval_batches`` batches of windows drawn uniformly
        (with replacement) from its own ``eval`` stream, train split first, in eval mode.
        Only the runs at ``rows`` (None: all) draw from their streams; the others' values
        are those of their first window (unused)."""
        n = self.eval_batches * self.batch
        d = self.data
        drawn = set(range(len(self.specs)) if rows is None else rows)
        out = {}
        for split, idx in (("train", d.train_idx), ("val", d.val_idx)):
            pos = torch.stack([torch.randint(m, (n,), generator=g) if r in drawn
                               else torch.zeros(n, dtype=torch.long)
                               for r, (g, m) in enumerate(zip(d.eval_gens, d.n_split[split],
                                                              strict=True))])
            picked = idx.gather(1, pos.to(self.device))
            out[split] = self._mean_over(lambda a, b, p=picked: (
                self.inputs[p[:, a:b]], self.targets[p[:, a:b]], None), n)
        return out

    def _mean_over(self, part: Callable[[int, int], tuple], n: int) -> dict[str, torch.Tensor]:
        """Mean loss and metrics per run over ``n`` examples that ``part(a, b)`` gives in
        slices (inputs, targets and a weight mask, or None for all ones)."""
        R = len(self.specs)
        chunk = eval_chunk(R, self.device)
        total: dict[str, torch.Tensor] = {}
        count = torch.zeros(R, device=self.device)
        for i in range(0, n, chunk):
            x, y, w = part(i, i + chunk)
            loss, metrics = self.fn(self.params.views, x, y, False, None)
            w = torch.ones_like(loss) if w is None else w
            count += w.sum(1)
            for name, v in {"loss": loss, **metrics}.items():
                piece = (v * w).sum(1)
                total[name] = total[name] + piece if name in total else piece
        return {name: v / count for name, v in total.items()}

    def evaluate(self, rows: Sequence[int] | None = None) -> dict[int, EvalRow]:
        """Train metrics (mean over the batches since the run's last evaluation) and
        validation metrics of the runs at ``rows`` (None: every run still training), plus
        what the hooks add, each at the run's own step; runs the hooks ask to retire leave
        training afterwards (``ended``). Returns ``{row: EvalRow}``."""
        rows = list(self.index) if rows is None else list(rows)
        if not rows:
            return {}
        with phase("evaluate"):
            return self._evaluate(rows)

    def _evaluate(self, rows: list[int]) -> dict[int, EvalRow]:
        if self.eval_batches is None:
            val = self.validate()
            metrics = self.sums.means()
        else:  # both splits sampled in eval mode
            both = self.estimate(rows)
            val = both["val"]
            metrics = {f"train_{n}": v for n, v in both["train"].items()}
        metrics |= {f"val_{n}": v for n, v in val.items()}
        core = torch.stack([metrics[k] for k in ("train_loss", "train_acc", "val_loss",
                                                  "val_acc")], 1).tolist()
        out: dict[int, EvalRow] = {}
        retire: dict[int, bool] = {}  # row -> retired by an external hook only
        groups: dict[int, list[int]] = {}  # the runs at each own step
        for r in rows:
            groups.setdefault(self.own_step(r), []).append(r)
        for step, group in groups.items():
            view, sub = self._view(group, step, metrics)
            extra: dict[str, torch.Tensor] = {}
            for own, hook in [(True, h) for h in self.own_hooks] + [(False, h)
                                                                    for h in self.hooks]:
                result = hook(view, step, sub | extra)
                if result is not None:
                    extra |= result.metrics
                    for i in result.retire:
                        r = group[i]
                        retire[r] = retire.get(r, True) and not own
            extras = {k: torch.as_tensor(v, dtype=torch.float64).flatten().tolist()
                      for k, v in extra.items()}
            for i, r in enumerate(group):  # NaN: unmeasured
                out[r] = EvalRow(step, *core[r], extra={k: v[i] for k, v in extras.items()
                                                         if not math.isnan(v[i])})
        self.sums.reset(rows)
        if retire:  # a run its own rule stops is not "halted_by_hook"
            self.retire(sorted(retire), stopped={r for r, ext in retire.items() if ext})
        return dict(sorted(out.items()))

    def _view(self, group: list[int], step: int, metrics: dict[str, torch.Tensor]
              ) -> tuple[Any, dict[str, torch.Tensor]]:
        """What the hooks see of the runs in ``group`` (all at ``step``): the state itself
        when they are all its rows, else a ``RowsView`` of those rows."""
        if group == list(range(len(self.specs))):
            return self, metrics
        k = torch.tensor(group, device=self.device)
        return (RowsView(self.specs, group, step, self.params.select(group)),
                {n: v[k] for n, v in metrics.items()})

    # -- runs leaving and moving ------------------------------------------------------------
    def run_end(self, row: int, stopped: bool = False) -> RunEnd:
        """The end of the run in ``row``, as it is now."""
        opt = self.opt.run_state(row) if row in self.keep_optimizer else None
        return RunEnd(self.params.run(row), opt, stopped, self.own_step(row))

    def retire(self, rows: Sequence[int], stopped: set[int] | frozenset[int] = frozenset()
               ) -> None:
        """End the runs in ``rows`` (those in ``stopped`` were retired by an external hook)
        into ``ended``; they stay in their rows, inactive, until the cohort is compacted."""
        gone = set(rows) & set(self.index)
        for r in sorted(gone):
            self.ended[r] = self.run_end(r, stopped=r in stopped)
        self.index = [r for r in self.index if r not in gone]

    @torch.no_grad()
    def take_run(self, row: int) -> Carried:
        """The run in ``row`` as data, to continue in another state (``carried``)."""
        return Carried(self.own_step(row), self.params.run(row), self.opt.run_state(row),
                       {name: take(c.rows(), row) for name, c in self.components.items()})

    def _put_run(self, j: int, c: Carried) -> None:
        """Continue a carried run in row ``j`` (at construction, before any update)."""
        self.offset[j] = c.step
        self.opt.load_run_state(j, c.optimizer)
        for name, comp in self.components.items():
            put(comp.rows(), j, c.rows[name])
            loaded = getattr(comp, "loaded", None)
            if loaded is not None:
                loaded(j)

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue exactly where this state is (CPU tensors)."""
        return {"format": 2, "t": self.t, "offset": list(self.offset),
                "index": list(self.index),
                "params": self.params.flat.detach().cpu().clone(),
                "opt": _to(self.opt.state_dict(), "cpu"),
                **{name: snapshot(c.rows()) for name, c in self.components.items()}}

    def load_state_dict(self, sd: dict) -> None:
        """Restore a ``state_dict`` of a state built from the same specs in the same rows
        (``ValueError`` for one of other runs or of an older groklab)."""
        if sd.get("format") != 2:
            raise ValueError("saved by an older groklab (a cohort state without per-run "
                             "steps); it cannot be continued: the runs restart from step 0")
        if len(sd["offset"]) != len(self.specs):
            raise ValueError("checkpoint runs do not match this cohort's runs")
        self.t = int(sd["t"])
        self.offset = [int(v) for v in sd["offset"]]
        self.index = [int(v) for v in sd["index"]]
        with torch.no_grad():
            self.params.flat.copy_(sd["params"])
        self.opt.load_state_dict(sd["opt"])
        for name, c in self.components.items():
            restore(c.rows(), sd[name])
            each_row(len(self.specs), getattr(c, "loaded", None))
        self.policy.set_offsets(self.offset)


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
