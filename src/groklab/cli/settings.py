"""Run settings from the command line: which flag gave each (``given``), errors of the
settings model worded with those flags and their formats (``describe``), settings the runs
ignore (``refuse_ignored``), repeated rates (``drop_repeats``) and parents that exist
(``refuse_unknown_parents``). docs/protocol.md §9 states the rules.

Flags and settings are matched by name (``--train-fraction`` sets ``train_fraction``), a
flag whose text sets several settings by ``COMPOSITE``, and ``--set KEY=VALUE`` by its key;
a setting's bounds and choices are its declaration's (``groklab.settings``); nothing here is a
second list of settings, so a new setting is covered when it arrives.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperArgument

from groklab.cli.common import fail
from groklab.registry import did_you_mean
from groklab.settings import SETTINGS

if TYPE_CHECKING:
    from pydantic import ValidationError

    from groklab.spec import RunSpec

# flags whose text sets several settings: the format they take and, by setting, its part
COMPOSITE: dict[str, tuple[str, dict[str, str]]] = {
    "--grad-filter": ("none, ema:ALPHA:LAMBDA or ma:WINDOW:LAMBDA",
                      {"filter_alpha": "ALPHA", "filter_window": "WINDOW",
                       "filter_lamb": "LAMBDA"}),
    "--lr-decay": ("none, exp:GAMMA, linear:FLOOR or cosine:FLOOR",
                   {"lr_depth_gamma": "GAMMA", "lr_depth_floor": "FLOOR"}),
}


def given(ctx: typer.Context, extra: Mapping[str, object] = {},
          sets: Mapping[str, Iterable[str]] = {}) -> dict[str, str]:
    """The run settings this command line gives, each with the flag that gave it: every
    option typed on the command line (or taken from the environment) whose name is a run
    setting, or that ``sets`` maps to the settings its text sets (``--grad-filter``), then
    every ``--set`` key in ``extra`` (``"--set KEY"``). A setting both a flag and ``--set``
    give has two values: an error naming both (``--steps 10 --set steps=20``)."""
    out: dict[str, str] = {}
    for param in ctx.command.params:
        name = param.name
        source = ctx.get_parameter_source(name) if name else None
        # by name: typer may vendor its own click, whose ParameterSource is another class
        if name is None or isinstance(param, TyperArgument) or source is None \
                or source.name not in ("COMMANDLINE", "ENVIRONMENT"):
            continue
        flag = param.opts[0]
        if param.secondary_opts and ctx.params.get(name) is False:
            flag = param.secondary_opts[0]  # --no-embedding
        for field in sets.get(name, (name,)):
            if field in SETTINGS:
                out[field] = flag
    twice = [f"{out[k]}{_value(ctx, k)} and --set {k}={_text(extra[k])} both set {k}"
             for k in extra if k in out]
    if twice:
        fail("; ".join(twice) + "; give each setting once")
    return out | {key: f"--set {key}" for key in extra}


def _value(ctx: typer.Context, field: str) -> str:
    """`` VALUE``: the value a flag named for ``field`` gave (empty for a switch or a flag
    whose text sets several settings)."""
    value = ctx.params.get(field)
    return "" if value is None or isinstance(value, bool) else f" {value}"


def _text(value: object) -> str:
    """A ``--set`` value as typed (TOML: true, "text", 1e-3)."""
    import json

    return value if isinstance(value, str) else json.dumps(value)


def describe(err: ValidationError, origin: Mapping[str, str] = {}) -> str:
    """The settings model's errors as one line, each naming the flag that gave the setting
    (``origin``, from ``given``) and what it takes: ``--train-fraction must be in (0, 1),
    got 1.0``; ``--grad-filter expects none, ema:ALPHA:LAMBDA or ma:WINDOW:LAMBDA; ALPHA must
    be in [0, 1), got 2.0``. A setting no flag gave is named as the setting."""
    parts = []
    for e in err.errors():
        field = str(e["loc"][0]) if e["loc"] else None
        if field is None:  # a rule across settings: name the flags of the settings it names
            parts.append(_with_flags(e["msg"].removeprefix("Value error, "), origin))
            continue
        flag = origin.get(field)
        reason = _reason(e, field)
        if flag in COMPOSITE:
            form, part = COMPOSITE[flag]
            parts.append(f"{flag} expects {form}; {part.get(field, field)}{reason}")
        else:
            parts.append(f"{flag or field}{reason}")
    return "; ".join(parts)


def _reason(e: Any, field: str) -> str:
    """What is wrong with one setting's value, worded for a user to follow its name
    (``" must be in [0, 1), got 2.0"``, ``": unknown model 'gru' ..."``)."""
    declared = SETTINGS.get(field)
    value = e.get("input")
    if e["type"] in ("greater_than", "greater_than_equal", "less_than", "less_than_equal") \
            and declared is not None:
        return f" must be {declared.limits}, got {value!r}"
    if e["type"] == "literal_error" and declared is not None:
        choices = [str(c) for c in declared.choices]
        return (f" must be one of {', '.join(choices)}, got {value!r}"
                f"{did_you_mean(str(value), choices)}")
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "value_error":
        return f": {msg}"
    return f": {msg[:1].lower()}{msg[1:]}, got {value!r}"


def _with_flags(message: str, origin: Mapping[str, str]) -> str:
    """``message`` with each setting name that has an underscore (``d_model``) replaced by
    the flag that gave it, where a flag did."""
    return re.sub(r"\b[a-z]+(?:_[a-z0-9]+)+\b",
                  lambda m: origin.get(m.group(0), m.group(0)).removeprefix("--set "), message)


def refuse_ignored(specs: Sequence[RunSpec], origin: Mapping[str, str], *,
                   every: bool = False) -> None:
    """Fail naming each setting given (``origin``) that means nothing for the runs and why
    (``RunSpec.ignored_reasons``): any run ignoring it, or with ``every`` (a study's
    ``--set``, whose variants may differ) every run. A value equal to what leaving it unset
    gives (``AS_UNSET``) means what it says and passes."""
    from groklab.spec import AS_UNSET

    reasons = [s.ignored_reasons() for s in specs]
    bad = []
    for field, flag in origin.items():
        why = [r[field] for r in reasons if r.get(field, AS_UNSET) != AS_UNSET]
        if why and (len(why) == len(reasons) or not every):
            scope = "every run of the study" if every else "these runs"
            bad.append(f"{flag} means nothing for {scope}: {why[0]}")
    if bad:
        fail("; ".join(bad))


def drop_repeats(specs: Sequence[RunSpec]) -> tuple[list[RunSpec], list[str]]:
    """``specs`` with each run once (the first label wins) and a note for every label whose
    runs another label already names (``--lr baseline --lr run0``: the same rates)."""
    first: dict[str, RunSpec] = {}
    repeats: dict[tuple[str, str], int] = {}
    for s in specs:
        kept = first.setdefault(s.run_id, s)
        if kept is not s and kept.label != s.label:
            repeats[(s.label, kept.label)] = repeats.get((s.label, kept.label), 0) + 1
    notes = [f"--lr {label} gives the same runs as --lr {kept}: {n} run(s) train once, "
             f"labelled {kept!r}" for (label, kept), n in repeats.items()]
    return list(first.values()), notes


def refuse_unknown_parents(specs: Sequence[RunSpec], out: Path, origin: Mapping[str, str],
                           store: Any = None) -> None:
    """Fail when a parent (``init_from``) is neither a run of ``specs`` nor a run of the
    store: checked against ``store`` once it is open, or, before (``store`` None), when
    ``out`` holds no store at all, so that nothing is written. A parent that is in the store
    but not finished is waited for (the engine trains children once it is)."""
    from groklab.store import STORE_NAME

    if store is None and (out / STORE_NAME).is_file():
        return  # checked against the store once the command opens it
    have = {s.run_id for s in specs} | {r["id"] for r in (store.runs() if store else [])}
    missing = sorted({s.init_from for s in specs if s.init_from and s.init_from not in have})
    if missing:
        where = f"{out}'s store" if store is not None else f"{out} (it holds no store)"
        fail(f"{origin.get('init_from', 'init_from')} {missing[0]}: no such run in {where} "
             "and none of this command's runs (see groklab results)")
