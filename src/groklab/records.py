"""Run records: what an evaluation produces for one run (the four curve metrics and any named
extras), the statuses a run is stored with (docs/protocol.md §10), and the one table of
summary metrics, ``SUMMARIES`` (docs/protocol.md §4).

Every fact about a summary metric is one field of its ``Summary``: its definition (a function
of a run's curve), whether it is a whole number, which way a search takes it, which runs it
applies to, whether a run may never reach it (censored: averages count such a run as its step
budget), and the store version that added its column. The store (its columns, their back-fill
by migration), the results table, the report's tables, the exports and the search all read
them from here.

A leaf module: the engine produces these records, the store keeps them, reports read them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class EvalRow:
    """One run at one evaluated step.

    ``extra`` holds named per-run metrics beyond loss and accuracy (a hook's diagnostics,
    a gradient norm, ...); the store keeps them in its long ``metrics`` table.
    """

    step: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    extra: Mapping[str, float] = field(default_factory=dict)


# A run's status in the store: claimed and training; given back unfinished (the next
# invocation resumes it); cut short by a hook from outside its settings (``run_specs(hooks=
# ...)``: not the run its id names, so no summary; the next invocation trains it in full);
# trained to its budget or to its own early stop. Stores before version 6 wrote HALTED as
# 'stopped', which read as an early stop (a finished run); opening one renames it.
RUNNING, INTERRUPTED, HALTED, FINISHED = "running", "interrupted", "halted_by_hook", "finished"
STATUSES = (FINISHED, RUNNING, INTERRUPTED, HALTED)

Curve = Sequence[EvalRow]
Value = float | int | None
Direction = Literal["minimize", "maximize"]
# the runs a metric applies to: algorithmic tasks, language models (a task registered with
# ``language_model=True``), runs that record the embedding diagnostics (``diagnostics``)
RunKind = Literal["algorithmic", "language", "diagnostics"]
THRESHOLD = 0.99  # the "99" of the step metrics: strictly above it


@dataclass(frozen=True)
class Summary:
    """One summary metric of a run: every fact readers need about it, in one place."""

    name: str
    title: str  # what it is, in words: a report table's title
    # its definition, over a run's evaluated curve (None where the curve does not have it);
    # None: a named metric a hook records at every evaluation (its summary: the last value)
    of: Callable[[Curve], Value] | None
    whole: bool = False  # a whole number (a step count) rather than a real one
    direction: Direction = "minimize"  # which way a search takes it
    runs: tuple[RunKind, ...] = ("algorithmic",)  # the runs it applies to (listed for)
    # a step a finished run may never reach: averages count such a run as its step budget
    # and flag it in a column of this name; ``reached`` says what such a run never did
    censored: str | None = None
    reached: str = ""
    # defined for only some finished runs and not censored: averages take the runs that
    # have it and say how many; the words say which runs those are
    partial: str | None = None
    tabled: bool = True  # the report gives it a table (mean ± stderr per task and label)
    # the store schema version that added its column of ``runs`` (0: groklab 0.1's);
    # None: not stored
    added: int | None = 0

    @property
    def stored(self) -> bool:
        """Whether the store keeps it, a column of ``runs`` written when a run finishes."""
        return self.added is not None

    @property
    def column_type(self) -> str:
        """Its SQLite column type."""
        return "INTEGER" if self.whole else "REAL"


def final(value: str) -> Callable[[Curve], Value]:
    """The definition "curve ``value`` at the curve's last row" (a run retired early by its
    own stop rule has a shorter curve)."""

    def last_row(curve: Curve) -> Value:
        return getattr(curve[-1], value) if curve else None

    return last_row


def first_step(curve: Curve, value: str, threshold: float = THRESHOLD) -> int | None:
    """The first evaluated step whose curve ``value`` (``val_acc``, ``train_acc``) is strictly
    above ``threshold``; None when none is."""
    return next((r.step for r in curve if getattr(r, value) > threshold), None)


def held_step(curve: Curve, threshold: float = THRESHOLD) -> int | None:
    """The first evaluated step from which validation accuracy stays above ``threshold``
    through the curve's last row (docs/protocol.md §4): None when the last row is not above
    it (the run had not grokked for good when it ended: censored). A run that passes the
    threshold, spikes back down (Adam's slingshot) and recovers is held only from the
    recovery on."""
    held = None
    for row in reversed(curve):
        if not row.val_acc > threshold:
            break
        held = row.step
    return held


def max_val_acc(curve: Curve) -> float | None:
    """The best validation accuracy evaluated."""
    return max((r.val_acc for r in curve), default=None)


def grokking_delay(curve: Curve) -> int | None:
    """Steps from memorisation to generalisation: ``step_val_acc_99 - step_train_acc_99``,
    None unless both were reached."""
    reached, memorised = first_step(curve, "val_acc"), first_step(curve, "train_acc")
    return reached - memorised if reached is not None and memorised is not None else None


def _diagnostic(name: str, title: str) -> Summary:
    """A diagnostic the embedding monitor records at every evaluation (docs/protocol.md
    §6.7; engine/embedding.py): not stored as a summary, a search takes its last value."""
    return Summary(name, title, None, runs=("diagnostics",), tabled=False, added=None)


# Every summary metric. Order: the store's columns, as ``--json``, the exports and ``groklab
# show`` list them (a new column comes last, after the store's newest); then the named
# metrics with a meaning of their own. Views that order them otherwise say so
# (report/listing.py, report/tables.py).
SUMMARIES: tuple[Summary, ...] = (
    Summary("final_train_loss", "Final train loss", final("train_loss"),
            runs=("language",)),
    Summary("final_train_acc", "Final train accuracy", final("train_acc"),
            direction="maximize", tabled=False),
    Summary("final_val_loss", "Final validation loss", final("val_loss"),
            runs=("algorithmic", "language")),
    Summary("final_val_acc", "Final validation accuracy", final("val_acc"),
            direction="maximize"),
    Summary("step_val_acc_99", "Steps to 99 % validation accuracy",
            lambda c: first_step(c, "val_acc"), whole=True, censored="censored",
            reached="reached 99 % validation accuracy"),
    Summary("max_val_acc", "Maximum validation accuracy within the budget", max_val_acc,
            direction="maximize", added=2),
    Summary("step_train_acc_99", "Steps to 99 % train accuracy (memorisation)",
            lambda c: first_step(c, "train_acc"), whole=True, censored="censored_train",
            reached="reached 99 % train accuracy", added=2),
    Summary("grokking_delay",
            "Grokking delay: steps from 99 % train to 99 % validation accuracy",
            grokking_delay, whole=True,
            partial="reached 99 % on both train and validation accuracy", added=2),
    Summary("step_val_acc_99_held", "Steps to held 99 % validation accuracy (above 0.99 from "
            "that step to the end of the run)", held_step, whole=True,
            censored="censored_held", reached="held 99 % validation accuracy to their end",
            added=4),
    _diagnostic("sigma_max_E", "Largest singular value of the token embedding E"),
    _diagnostic("sigma_max_W", "Largest singular value of W, the first matrix after E"),
    _diagnostic("fro_E", "Frobenius norm of E"),
    _diagnostic("fro_W", "Frobenius norm of W"),
    _diagnostic("eta_E_over_eta_W", "Embedding rate over W's rate"),
    _diagnostic("token_updates_cv", "Coefficient of variation of E's row update counts"),
    _diagnostic("token_updates_min_over_mean", "Fewest row updates of E over the mean"),
)
SUMMARY: dict[str, Summary] = {s.name: s for s in SUMMARIES}
# the stored ones, in the store's column order: what a finished run is recorded with
FINAL_METRICS: tuple[str, ...] = tuple(s.name for s in SUMMARIES if s.stored)
# the names the embedding monitor records, in its order (engine/embedding.py)
DIAGNOSTICS: tuple[str, ...] = tuple(s.name for s in SUMMARIES if "diagnostics" in s.runs)


def ordered(names: Sequence[str], first: Sequence[str]) -> list[str]:
    """``names``: those in ``first`` in its order, then the others in theirs (how a view
    that orders metrics its own way still shows a metric it does not name)."""
    return [*(n for n in first if n in names), *(n for n in names if n not in first)]


def final_metrics(curve: Curve) -> dict[str, Any]:
    """A finished run's stored summary metrics (``FINAL_METRICS``), each by its definition
    over the run's curve (every one None for an empty curve)."""
    return {name: definition(name)(curve) for name in FINAL_METRICS}


def definition(name: str) -> Callable[[Curve], Value]:
    """The definition of summary metric ``name``; ``KeyError`` for a name with none (a
    hook's named metric, or no summary metric)."""
    of = SUMMARY[name].of
    if of is None:
        raise KeyError(f"summary metric {name!r} is recorded by a hook, not defined on a curve")
    return of
