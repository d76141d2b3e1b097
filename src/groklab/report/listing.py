"""The results table: one line per run, what ``groklab results`` lists and ``groklab run``
and ``groklab study`` end with (``groklab lm`` and ``groklab tune`` end with tables of their
own kind: the language-model summary, the best trials).

Runs are sorted by task, label and seed. Only the columns that apply to the runs shown are
there: the summary metrics that apply to their kinds of run (``groklab.records.SUMMARIES``:
accuracies, steps to 99 %, the grokking delay for algorithmic tasks, the losses for language
models, ``tasks.language_tasks()``); ``store`` (first) when the rows carry
the store they come from (``groklab results A B``), ``study`` (before ``label``) when some
row belongs to a study; ``last_step`` and ``last_val_acc`` (after ``steps``: where a run got
to, its last evaluation) when a run shown is not finished and has evaluated (a report of
several stores lists each study's runs with these columns too). Every missing
number (a step never reached, a run not finished) is ``format.MISSING``; accuracies and
losses have four decimals, whole numbers (steps: ``Summary.whole``) none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from groklab.format import MISSING, is_missing
from groklab.records import SUMMARIES, RunKind, ordered
from groklab.tasks import language_tasks

IDENTITY = ["id", "task", "model", "label", "seed", "status", "steps"]
# the order of the metric columns: the stored summary metrics that apply to a kind of run
# (groklab.records.SUMMARIES), these first; any other follows in the table's order
ORDER = ("final_train_acc", "final_val_acc", "max_val_acc", "final_train_loss",
         "final_val_loss", "step_train_acc_99", "step_val_acc_99", "step_val_acc_99_held",
         "grokking_delay")


def kind_columns(kind: RunKind) -> list[str]:
    """The metric columns of runs of ``kind``, in display order."""
    return ordered([s.name for s in SUMMARIES if s.stored and kind in s.runs], ORDER)


# metric columns per kind of run, in display order
GROKKING = kind_columns("algorithmic")
LANGUAGE = kind_columns("language")
WHOLE_NUMBERS = {"seed", "steps", "last_step", *(s.name for s in SUMMARIES if s.whole)}
# where an unfinished run got to (Store.runs): shown, after ``steps``, when a run shown is
# not finished and has evaluated, and only for such runs
PROGRESS = ["last_step", "last_val_acc"]


def result_columns(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The columns that apply to ``runs``: identity, then the metrics of their kinds."""
    language = language_tasks()
    kinds = {"language" if r.get("task") in language else "algorithmic" for r in runs}
    metrics = [*(GROKKING if "algorithmic" in kinds else []),
               *(LANGUAGE if "language" in kinds else [])]
    identity = list(IDENTITY)
    if any(not is_missing(r.get("study")) for r in runs):
        identity.insert(identity.index("label"), "study")
    if any("store" in r for r in runs):
        identity.insert(0, "store")
    if any(r.get("status") not in ("finished", None) and not is_missing(r.get("last_step"))
           for r in runs):
        at = identity.index("steps") + 1
        identity[at:at] = PROGRESS
    return identity + list(dict.fromkeys(metrics))


def sort_runs(runs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """``runs`` by task, label, seed (then id and store, so the order is total)."""
    return sorted(runs, key=lambda r: (str(r.get("task")), str(r.get("label")),
                                       r.get("seed") if isinstance(r.get("seed"), int) else -1,
                                       str(r.get("id")), str(r.get("store", ""))))


def cell(column: str, value: Any) -> str:
    """One cell's text: whole numbers, four decimals, names as they are; ``MISSING``."""
    if is_missing(value):
        return MISSING
    if column in WHOLE_NUMBERS:
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def results_rows(runs: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The results table of ``runs`` (``Store.runs()`` rows) as its columns and its rows of
    cell texts, sorted (``sort_runs``); a report of several stores shows them as a table."""
    columns = result_columns(runs)
    rows = [[cell(c, None if c in PROGRESS and r.get("status") == "finished" else r.get(c))
             for c in columns] for r in sort_runs(runs)]
    return columns, rows


def results_table(runs: Sequence[Mapping[str, Any]]) -> str:
    """The text table of ``runs`` (``Store.runs()`` rows): a header line, one line per run,
    columns separated by two spaces, numbers right-aligned; "no runs" when empty."""
    if not runs:
        return "no runs"
    columns, rows = results_rows(runs)
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(columns)]
    left = {"store", "id", "task", "model", "study", "label", "status"}

    def line(cells: list[str]) -> str:
        return "  ".join(text.ljust(w) if c in left else text.rjust(w)
                         for c, text, w in zip(columns, cells, widths, strict=True)).rstrip()

    return "\n".join([line(columns), *(line(row) for row in rows)])
