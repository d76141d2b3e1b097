"""Every run setting, declared once (docs/design.md, "Run settings").

A declaration says what a setting is and who reads it:

- ``type``, ``default`` and limits (``ge``, ``gt``, ``le``, ``lt``, ``pattern``): the field
  of ``RunSpec`` (spec.py);
- ``help`` and ``flag``: the option of ``groklab run`` (cli/flags.py; None: ``--set NAME=VALUE``
  only), and the table of docs/protocol.md §9.1;
- ``read_by``: when a run reads it. A condition names the setting that chooses the reader
  (``when("optimizer", "sgd")``: the SGD chain reads it) or a plug-in that declares it itself
  (``TASK``: the task's builder takes it; ``MODEL``: the model's builder does). A run that
  does not read a setting ignores it: its id leaves it out and ``RunSpec.ignored_reasons``
  says why (``ignored by optimizer 'adamw'``), which the command turns into an error;
- ``per_run``: the engine reads it from each run apart, so runs that differ in it share a
  cohort (``PER_RUN``); every other setting splits cohorts.

Nothing here imports torch or pydantic: the command shows its help without them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin

from groklab.rates import LR_CONFIGS, parse_grad_filter

SEMANTICS = 2  # the current meaning of a run (spec.py, docs/design.md decision 12)


@dataclass(frozen=True)
class When:
    """Read while setting ``setting`` holds one of ``values`` (with ``negate``: any other
    value). ``why`` words the other case, with the run's settings as ``{name}``."""

    setting: str
    values: tuple[Any, ...]
    why: str
    negate: bool = False

    def holds(self, value: Any) -> bool:
        """Whether a run whose ``setting`` is ``value`` reads the setting (switches and None
        by identity, so that 0 is not False)."""
        found = any(value is v if v is None or isinstance(v, bool) else value == v
                    for v in self.values)
        return found != self.negate

    def __str__(self) -> str:
        values = ", ".join(shown(v) for v in self.values)
        if self.negate:
            return f"{self.setting} set" if self.values == (None,) else \
                f"{self.setting} not {values}"
        return f"{self.setting} {values}"


@dataclass(frozen=True)
class Plugin:
    """Read when the run's plug-in declares it: ``"task"`` (the task's builder takes it),
    ``"model"`` (the model's builder does), ``"split"`` (the task's split is drawn from the
    run's seed, not fixed by the task)."""

    kind: str
    why: str

    def __str__(self) -> str:
        return {"task": "the task", "model": "the model", "split": "a seeded split"}[self.kind]


Condition = When | Plugin


def when(setting: str, *values: Any) -> When:
    """Read while ``setting`` is one of ``values``: "ignored by optimizer 'adamw'"."""
    return When(setting, values, f"by {setting} {{{setting}!r}}")


def unless(setting: str, value: Any, why: str) -> When:
    """Read unless ``setting`` is ``value``."""
    return When(setting, (value,), why, negate=True)


def given(setting: str) -> When:
    """Read when ``setting`` is set (not None): "ignored without stop_val_acc"."""
    return When(setting, (None,), f"without {setting}", negate=True)


TASK = Plugin("task", "by task {task!r}")
MODEL = Plugin("model", "by model {model!r}")
SEEDED_SPLIT = Plugin("split", "by task {task!r} (its split is fixed)")


@dataclass(frozen=True)
class Setting:
    """One run setting (see the module's docstring)."""

    name: str
    type: Any
    default: Any
    help: str  # what it means; the flag's help ("{choices}": the values it takes)
    flag: str | None = None  # the `groklab run` option; None: --set NAME=VALUE only
    read_by: Condition | tuple[Condition, ...] = ()  # every condition holds: the run reads it
    per_run: bool = False
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    pattern: str | None = None
    none: str | None = None  # what None means ("4 × d_model")
    # the value None stands for, from the run's settings: giving it means what unset means
    none_is: Callable[[Any], Any] | None = None
    parse: Callable[[str], dict[str, Any]] | None = None  # the flag's text -> settings
    methods: Mapping[str, Any] = field(default_factory=dict)  # `groklab bench --method` names
    set_key: bool = True  # --set takes it (seed and lr_name: --seed and --lr)

    def meaning(self, names: Sequence[str] = ()) -> str:
        """``help`` with ``{choices}`` filled in: the values it takes (its ``Literal``, else
        ``names``, a registry's, else "a registered <name>")."""
        values = [str(v) for v in self.choices or names] or [f"a registered {self.name}"]
        return self.help.replace("{choices}", either(values))

    @property
    def conditions(self) -> tuple[Condition, ...]:
        """``read_by`` as a tuple."""
        return self.read_by if isinstance(self.read_by, tuple) else (self.read_by,)

    @property
    def choices(self) -> tuple[Any, ...]:
        """The values of a ``Literal`` setting (also inside ``X | None``); () for others."""
        return _literals(self.type)

    @property
    def limits(self) -> str:
        """The declared bounds as words: ``in [0, 1)``, ``at least 1``, ``greater than 0``
        (empty when it has none)."""
        lo = ("[", self.ge) if self.ge is not None else ("(", self.gt) if self.gt is not None \
            else None
        hi = ("]", self.le) if self.le is not None else (")", self.lt) if self.lt is not None \
            else None
        if lo and hi:
            return f"in {lo[0]}{lo[1]:g}, {hi[1]:g}{hi[0]}"
        if lo:
            return f"{'at least' if lo[0] == '[' else 'greater than'} {lo[1]:g}"
        if hi:
            return f"{'at most' if hi[0] == ']' else 'less than'} {hi[1]:g}"
        return ""


def either(names: Sequence[str]) -> str:
    """``('a', 'b', 'c')`` -> ``'a, b or c'``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def shown(value: Any) -> str:
    """A setting's value as docs and help show it (``1e-08``, ``true``, ``x_plus_y``)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ", ".join(shown(v) for v in value)
    return str(value)


def _literals(annotation: Any) -> tuple[Any, ...]:
    if get_origin(annotation) is Literal:
        return get_args(annotation)
    return tuple(v for arg in get_args(annotation) for v in _literals(arg))


Rates = tuple[float, float, float] | dict[str, float]
GroupRules = tuple[tuple[str, str], ...] | None
ADAM = ("adamw", "adam", "muon")  # the chains with Adam's moments (Muon: beside the matrices)

_DECLARED = (
    # -- task (protocol §2) ---------------------------------------------------------------
    Setting("task", str, "x_plus_y", "Task name (see `groklab list`).", "--task"),
    Setting("p", int, 97, "Modulus for modular tasks.", "--p", TASK, ge=2),
    Setting("k", int, 5, "k of S_k for permutation.", "--k", TASK, ge=2),
    Setting("operands", int, 2, "K, the operands of task sum.", "--operands", TASK, ge=2),
    Setting("n_examples", int, 10_000, "sum: examples drawn from the run's seed when p^K is "
            "larger.", "--n-examples", TASK, ge=2),
    Setting("corpus", str, "tinyshakespeare", "text: a UTF-8 file or the shipped corpus (the "
            "run's id holds the text's SHA-256, not its path).", read_by=TASK),
    Setting("context", int, 64, "text: characters per window.", read_by=TASK, ge=1),
    Setting("train_fraction", float, 0.5, "Training fraction in (0, 1).", "--train-fraction",
            SEEDED_SPLIT, per_run=True, gt=0.0, lt=1.0),
    # -- model (protocol §3) --------------------------------------------------------------
    Setting("model", str, "transformer", "{choices} (gpt trains the text task: see groklab "
            "lm).", "--model"),
    Setting("n_layers", int, 2, "Layers: Transformer and GPT blocks, MLP hidden layers, LSTM "
            "layers.", "--n-layers", MODEL, ge=1),
    Setting("d_model", int, 128, "Width of the token embedding and the residual stream.",
            "--d-model", (MODEL, unless("embedding", False, "by model {model!r} without an "
                                        "embedding table")), ge=1),
    Setting("n_heads", int, 4, "Attention heads, Transformer and GPT; must divide d_model.",
            "--n-heads", MODEL, ge=1),
    Setting("d_ff", int | None, None, "Transformer feed-forward width.", "--d-ff", MODEL,
            ge=1, none="4 × d_model", none_is=lambda s: 4 * s.d_model),
    Setting("max_len", int | None, None, "Transformer positions; set it to the longest "
            "sequence a model will see, e.g. 12 to continue a K=2 model on K=6.", "--max-len",
            MODEL, ge=1, none="the task's length", none_is=lambda s: s.seq_len()),
    Setting("d_hidden", int, 512, "MLP and LSTM hidden width.", "--d-hidden", MODEL, ge=1),
    Setting("activation", Literal["relu", "gelu", "tanh"], "relu", "MLP activation: "
            "{choices}.", "--activation", MODEL),
    Setting("embedding", bool, True, "MLP input: learned token embeddings or one-hot vectors "
            "with no embedding table.", "--embedding/--no-embedding", MODEL),
    Setting("dropout", float, 0.0, "Dropout probability in [0, 1), training only (Transformer: "
            "attention probabilities and residual branches; MLP and LSTM: between layers).",
            "--dropout", per_run=True, ge=0.0, lt=1.0),
    # -- embedding study (protocol §5, §6.7) ----------------------------------------------
    Setting("embedding_lr", Literal["fixed", "adaptive"], "fixed", "fixed, or adaptive: every "
            "N steps η_E = η_W·c·(σ_max(E)/σ_max(W))·(f_W/f_E) (docs/protocol.md §5; c and N: "
            "--set embedding_lr_c, embedding_lr_every).", "--embedding-lr", per_run=True),
    Setting("embedding_lr_c", float, 1.0, "Adaptive embedding rate: the factor c.",
            read_by=when("embedding_lr", "adaptive"), per_run=True, gt=0.0),
    Setting("embedding_lr_every", int, 100, "Adaptive embedding rate: recomputed every N "
            "updates.", read_by=when("embedding_lr", "adaptive"), per_run=True, ge=1),
    Setting("sampling", Literal["uniform", "balanced"], "uniform", "uniform, or balanced: "
            "batches in which every operand token appears about equally often "
            "(docs/protocol.md §6.7).", "--sampling", per_run=True),
    Setting("diagnostics", bool, False, "Record σ_max and norms of the embedding and the next "
            "matrix, η_E/η_W and token update spread at every evaluation.", "--diagnostics"),
    # -- progress measures (protocol §4.1) ------------------------------------------------
    Setting("measures", Literal["none", "norms", "fourier"], "none", "Progress measures "
            "(docs/protocol.md §4.1): none; norms (weight norm in total and per rate group); "
            "fourier (also the Fourier spectra of the embedding and the logits, key "
            "frequencies, restricted and excluded loss; x_plus_y, x_minus_y, sum with 2 "
            "operands). Recorded at the first, every --measures-every-th and the last "
            "evaluation. Cost of a Fourier measurement: one forward over all p² pairs, 1.5-2.5 "
            "times an evaluation at training fraction 0.5 (measured on 2 shared CPU cores, p "
            "97: Transformer 0.5-0.8 s per run against 0.3 s per evaluation, one-hot MLP "
            "0.1-0.15 s against 0.04-0.07 s), so every 10 evaluations adds about a fifth to "
            "the evaluation time; norms: under 2 ms.", "--measures", per_run=True),
    Setting("measures_every", int, 10, "Measure every N evaluations (with --measures).",
            "--measures-every", when("measures", "norms", "fourier"), per_run=True, ge=1),
    # -- optimiser (protocol §4) ----------------------------------------------------------
    Setting("optimizer", Literal["adamw", "adam", "sgd", "muon"], "adamw", "{choices} (muon: "
            "Muon on the hidden matrices, AdamW on the rest).", "--optimizer",
            methods={"muon": "muon"}),
    Setting("beta1", float, 0.9, "Adam's β1.", read_by=when("optimizer", *ADAM),
            per_run=True, ge=0.0, lt=1.0),
    Setting("beta2", float, 0.98, "Adam's β2.", read_by=when("optimizer", *ADAM),
            per_run=True, ge=0.0, lt=1.0),
    Setting("eps", float, 1e-8, "Adam's ε.", read_by=when("optimizer", *ADAM),
            per_run=True, gt=0.0),
    Setting("weight_decay", float, 0.5, "AdamW weight decay.", "--weight-decay", per_run=True,
            ge=0.0),
    Setting("decay_params", Literal["all", "matrices", "2d"], "all", "The tensors weight decay "
            "applies to: all; matrices (no biases, norms, embeddings); 2d (matrices and "
            "embedding tables, not norms or biases: nanoGPT's rule).", per_run=True),
    Setting("momentum", float, 0.0, "SGD momentum.", "--momentum", when("optimizer", "sgd"),
            per_run=True, ge=0.0, lt=1.0),
    Setting("nesterov", bool, False, "Nesterov momentum (SGD with --momentum > 0).",
            "--nesterov", when("optimizer", "sgd"), per_run=True),
    Setting("grad_clip", float | None, None, "Clip each run's global gradient norm to this.",
            per_run=True, gt=0.0, none="no clipping"),
    Setting("grad_filter", Literal["none", "ema", "ma"], "none", "Grokfast gradient filter: "
            "none, ema:ALPHA:LAMBDA (e.g. ema:0.98:2) or ma:WINDOW:LAMBDA (e.g. ma:100:5). MA "
            "keeps the last WINDOW gradients of every run: WINDOW × 4 bytes × the model's "
            "parameters per run (ma:100 on the 0.42 M-parameter Transformer: 170 MB per run); "
            "EMA keeps one.", "--grad-filter", per_run=True, parse=parse_grad_filter),
    Setting("filter_alpha", float, 0.98, "Grokfast EMA momentum α.",
            read_by=when("grad_filter", "ema"), per_run=True, ge=0.0, lt=1.0),
    Setting("filter_window", int, 100, "Grokfast MA window.", read_by=when("grad_filter", "ma"),
            per_run=True, ge=1),
    Setting("filter_lamb", float | None, None, "Grokfast amplification λ.",
            read_by=when("grad_filter", "ema", "ma"), per_run=True, ge=0.0,
            none="2 for ema, 5 for ma"),
    Setting("muon_lr_ratio", float, 20.0, "Muon: the hidden matrices' rate as a multiple of "
            "the rate their group has (by default 0.02 beside 1e-3). Momentum, Nesterov and "
            "shape factor: --set muon_momentum, muon_nesterov, muon_adjust_lr.",
            "--muon-lr-ratio", when("optimizer", "muon"), per_run=True, gt=0.0),
    Setting("muon_momentum", float, 0.95, "Muon's momentum μ.",
            read_by=when("optimizer", "muon"), per_run=True, ge=0.0, lt=1.0),
    Setting("muon_nesterov", bool, True, "Muon's Nesterov step.",
            read_by=(when("optimizer", "muon"),  # no momentum: the Nesterov step is the gradient
                     unless("muon_momentum", 0.0, "with muon_momentum 0")), per_run=True),
    Setting("muon_adjust_lr", Literal["original", "match_rms_adamw"], "original", "Muon's "
            "shape factor (torch's adjust_lr_fn): original or match_rms_adamw.",
            read_by=when("optimizer", "muon"), per_run=True),
    Setting("grad_ortho", bool, False, "⊥Grad: remove from each weight tensor's gradient its "
            "component along the tensor, keeping the gradient's norm (docs/protocol.md §4).",
            "--grad-ortho", per_run=True, methods={"orthograd": True}),
    Setting("loss", Literal["softmax", "stablemax"], "softmax", "softmax, or stablemax: "
            "cross-entropy with s(x) = x + 1 (x ≥ 0), 1/(1 − x) (x < 0) in place of exp "
            "(docs/protocol.md §4).", "--loss", per_run=True, methods={"stablemax": "stablemax"}),
    # -- rates (protocol §5) --------------------------------------------------------------
    Setting("lr", Rates, LR_CONFIGS["baseline"], "Configuration name or rates 'e,l,h'; repeat "
            "to train several together.", "--lr", per_run=True),
    Setting("lr_name", str | None, None, "A label for the rates (an --lr name); not part of "
            "the run's identity.", set_key=False, none="the rates"),
    Setting("group_rules", GroupRules, None, "Your own grouping: [[regex, group], ...], first "
            "match wins.", none="the model's default rule"),
    Setting("warmup", int, 50, "Linear warm-up steps.", "--warmup", per_run=True, ge=0),
    Setting("lr_schedule", Literal["constant", "cosine"], "constant", "After warm-up: constant, "
            "or cosine down to min_lr_ratio × the rate by the last step.", per_run=True),
    Setting("min_lr_ratio", float, 0.1, "Cosine schedule: the last step's share of the rate.",
            read_by=when("lr_schedule", "cosine"), per_run=True, ge=0.0, le=1.0),
    Setting("lr_depth", Literal["none", "exponential", "linear", "cosine"], "none", "Per-block "
            "rate multipliers (docs/protocol.md §5).", per_run=True),
    Setting("lr_depth_gamma", float, 0.8, "exponential depth decay: η_i = η_0 γ^i.",
            read_by=when("lr_depth", "exponential"), per_run=True, gt=0.0),
    Setting("lr_depth_floor", float, 0.1, "linear or cosine depth decay: the deepest block's "
            "share of η_0.", read_by=when("lr_depth", "linear", "cosine"), per_run=True,
            ge=0.0, le=1.0),
    # -- warm start (protocol §6) ---------------------------------------------------------
    Setting("init_from", str | None, None, "The id of a finished run of the same store whose "
            "final weights this run starts from.", per_run=True, pattern=r"^[0-9a-f]{16}$",
            none="a fresh start"),
    Setting("init_optimizer", Literal["fresh", "carried"], "fresh", "With init_from: a fresh "
            "optimiser, or the parent's final state carried on.", read_by=given("init_from"),
            per_run=True),
    # -- schedule and evaluation (protocol §4) --------------------------------------------
    Setting("steps", int, 7500, "Update steps.", "--steps", ge=1),
    Setting("batch_size", int, 512, "Batch size.", "--batch-size", ge=1),
    Setting("eval_every", int, 10, "Steps between evaluations.", "--eval-every", ge=1),
    Setting("eval_batches", int | None, None, "Evaluate on N random batches of each split in "
            "eval mode, from the run's own stream.", ge=1,
            none="the whole validation split"),
    Setting("stop_val_acc", float | None, None, "Early stop: retire the run once validation "
            "accuracy is above this for stop_patience evaluations in a row.", per_run=True,
            ge=0.0, lt=1.0, none="train the whole budget"),
    Setting("stop_patience", int, 1, "Early stop: evaluations in a row.",
            read_by=given("stop_val_acc"), per_run=True, ge=1),
    Setting("precision", Literal["fp32", "bf16"], "fp32", "{choices}.", "--precision"),
    Setting("semantics", int, SEMANTICS, "The version of what a run means: 1 reproduces "
            "groklab 0.1's runs (docs/design.md decision 12).", ge=1, le=SEMANTICS),
    Setting("seed", int, 0, "First seed; runs use seed..seed+seeds-1.", "--seed", per_run=True,
            ge=0, set_key=False),
)

SETTINGS: dict[str, Setting] = {s.name: s for s in _DECLARED}

# Settings the engine reads from every run separately: they may differ inside one cohort.
PER_RUN = frozenset(name for name, s in SETTINGS.items() if s.per_run)


def read_by(kind: str) -> tuple[str, ...]:
    """The settings that plug-ins of ``kind`` (``"task"``, ``"model"``) declare they read."""
    return tuple(name for name, s in SETTINGS.items()
                 if any(isinstance(c, Plugin) and c.kind == kind for c in s.conditions))


def choices(name: str) -> tuple[Any, ...]:
    """The values setting ``name`` takes (its ``Literal``)."""
    return SETTINGS[name].choices


def methods() -> dict[str, dict[str, Any]]:
    """Training methods by name, each the settings it changes from the reference: the
    reference (the default optimiser, no change), then each value a setting names."""
    out: dict[str, dict[str, Any]] = {SETTINGS["optimizer"].default: {}}
    for s in SETTINGS.values():
        out |= {method: {s.name: value} for method, value in s.methods.items()}
    return out


def table() -> str:
    """Every setting as the table of docs/protocol.md §9.1 shows it (tests/test_settings.py
    keeps the two equal; ``python -m groklab.settings`` prints it)."""
    rows = ["| setting | default | values | flag | read by | per run | meaning |",
            "|---|---|---|---|---|---|---|"]
    for s in SETTINGS.values():
        default = s.none if s.default is None else f"`{shown(s.default)}`"
        values = ", ".join(f"`{c}`" for c in s.choices) or s.limits
        flag = f"`{s.flag}`" if s.flag else "`--set`" if s.set_key else "—"
        readers = "; ".join(str(c) for c in s.conditions) or "every run"
        meaning = re.split(r"(?<=\.)\s+(?=[A-Z])", s.meaning())[0]
        rows.append(f"| `{s.name}` | {default} | {values} | {flag} | {readers} | "
                    f"{'yes' if s.per_run else ''} | {meaning} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
