"""Choosing a store's runs on the command line: ``--study``, ``--status`` and ``--where
KEY=VALUE`` (any run setting), shared by ``results``, ``plot`` and ``rm``; run ids (or
unique prefixes) as arguments; and a command's folders told from its run ids.

Filters combine: a run is chosen when it belongs to one of the ``--study`` names, has one of
the ``--status`` values and matches every ``--where``. A ``--where`` value is read as
``--set`` reads it (TOML: ``1e-3``, ``true``, ``[1, 2]``; else plain text) and checked
against the setting's type, then compared with each run's stored setting read the same way
(so ``lr=[1e-3, 1e-3, 1e-3]``, ``lr=baseline`` and ``weight_decay=1`` all match what they
mean).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from groklab.cli.common import fail, key_value, parse_settings
from groklab.records import STATUSES
from groklab.registry import did_you_mean

Studies = Annotated[list[str] | None, typer.Option(
    "--study", metavar="NAME", help="Only runs of this study (repeatable: runs of any of "
    "them; `groklab studies` lists a store's studies).")]
Statuses = Annotated[list[str] | None, typer.Option(
    "--status", metavar="STATUS", help="Only runs with this status: "
    f"{', '.join(STATUSES[:-1])} or {STATUSES[-1]} (repeatable: any of them).")]
Where = Annotated[list[str] | None, typer.Option(
    "--where", metavar="KEY=VALUE", help="Only runs whose setting KEY equals VALUE: any run "
    "setting, seed and lr_name too; VALUE as --set reads it (1e-3, true, [1, 2], cosine; "
    "lr also takes a configuration name). Repeatable: runs matching all of them.")]

_PROBE = "steps"  # a setting --set takes: parse_settings reads VALUE under it, once


@dataclass(frozen=True)
class Filters:
    """What ``--study``, ``--status`` and ``--where`` ask for (empty: every run)."""

    studies: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    where: Mapping[str, Any] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.studies or self.statuses or self.where)


def parse_filters(studies: Sequence[str] | None, statuses: Sequence[str] | None,
                  where: Sequence[str] | None) -> Filters:
    """The options as ``Filters``; a malformed ``--where`` (no ``=``, an unknown setting, a
    value its setting cannot take) is one line, exit 2."""
    wanted: dict[str, Any] = {}
    for pair in where or []:
        key, text = key_value(pair, "--where")
        wanted[key] = setting_value(key, text, "--where")
    return Filters(tuple(dict.fromkeys(studies or [])), tuple(dict.fromkeys(statuses or [])),
                   wanted)


def setting_value(key: str, text: str, flag: str) -> Any:
    """``text`` as a value of run setting ``key``, read as ``--set`` reads values and
    checked against the setting's type (``lr`` also takes a configuration name)."""
    from pydantic import ValidationError

    from groklab.spec import RunSpec

    fields = RunSpec.model_fields
    if key not in fields:
        fail(f"{flag} {key}: unknown run setting{did_you_mean(key, list(fields))}; known: "
             f"{', '.join(fields)}")
    value = parse_settings([f"{_PROBE}={text}"])[_PROBE]
    if key == "lr" and isinstance(value, str):
        from groklab.rates import LR_CONFIGS, parse_lr

        try:
            value = parse_lr(value)[1]
        except ValueError as e:
            fail(f"{flag} lr={text}: {e}{did_you_mean(value, LR_CONFIGS)}")
    try:
        return _adapter(key).validate_python(value)
    except ValidationError as e:
        reason = e.errors()[0]["msg"]
        fail(f"{flag} {key}={text}: {reason} (got {value!r})")


def _stored(key: str, row: Mapping[str, Any]) -> Any:
    """Run ``row``'s setting ``key`` read as a filter's value is (its default when the run
    predates the setting)."""
    from pydantic import ValidationError

    from groklab.spec import RunSpec

    value = row.get(key, RunSpec.model_fields[key].default)
    try:
        return _adapter(key).validate_python(value)
    except ValidationError:
        return value


@functools.cache
def _adapter(key: str) -> Any:
    """The validator of run setting ``key``'s type (pydantic's ``TypeAdapter``), made once."""
    from pydantic import TypeAdapter

    from groklab.spec import RunSpec

    return TypeAdapter(RunSpec.model_fields[key].annotation)


def check_names(filters: Filters, stores: Sequence[Any]) -> None:
    """A ``--study`` no store has, or a ``--status`` no run can have: one line, exit 2."""
    known = [s["name"] for store in stores for s in store.studies()]
    for name in filters.studies:
        if name not in known:
            where = ", ".join(str(s.root) for s in stores)
            fail(f"--study {name!r}: no such study in {where}{did_you_mean(name, known)}"
                 f"; studies: {', '.join(dict.fromkeys(known)) or 'none'}")
    present = {r["status"] for store in stores for r in store.runs()}
    statuses = [*STATUSES, *sorted(present - set(STATUSES))]
    for status in filters.statuses:
        if status not in statuses:
            fail(f"--status {status!r}: not a run status{did_you_mean(status, statuses)}; "
                 f"use {', '.join(statuses)}")


def choose(rows: Sequence[dict[str, Any]], filters: Filters,
           memberships: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
    """The ``rows`` (``Store.runs()``) that pass ``filters``; ``memberships``: run id -> its
    studies (``Store.run_studies()``)."""
    out = []
    for r in rows:
        if filters.studies and not set(memberships.get(r["id"], ())) & set(filters.studies):
            continue
        if filters.statuses and r["status"] not in filters.statuses:
            continue
        if any(_stored(k, r) != v for k, v in filters.where.items()):
            continue
        out.append(r)
    return out


def resolve_ids(store: Any, run_ids: Sequence[str]) -> set[str]:
    """Full ids of ``run_ids`` (ids or unique prefixes) in ``store``; one line, exit 2, for an
    unknown or ambiguous one."""
    from groklab.store import UnknownRun

    try:
        return {store.resolve(r) for r in run_ids}
    except UnknownRun as e:
        fail(str(e))
    return set()  # not reached: fail raises


def folders_and_ids(words: Sequence[str]) -> tuple[list[Path], list[str]]:
    """A command's ``PATH [PATH]... [RUN_ID]...`` words split: the first is a store's folder,
    and so is every later word that names an existing path or holds a ``/``; the other
    words are run ids (or unique prefixes of them)."""
    folders, ids = [Path(words[0])], []
    for word in words[1:]:
        if Path(word).exists() or "/" in word or os.sep in word:
            folders.append(Path(word))
        else:
            ids.append(word)
    return folders, ids
