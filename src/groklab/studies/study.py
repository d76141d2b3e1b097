"""A study: a named list of run specs, declared as fixed settings × grid × variants × seeds.

TOML layout (every key optional except ``name`` for a file without a useful stem)::

    name = "lr-sweep"
    description = "what it shows"
    seeds = 3                       # seeds 0, 1, 2 (or an explicit list: [0, 5, 9])

    [settings]                      # fixed RunSpec settings
    steps = 3000
    p = 59

    [grid]                          # every value a list; the study is their product
    task = ["x_plus_y", "x_minus_y"]
    weight_decay = [0.1, 1.0]

    [variants.baseline]             # named sets of overrides; the name labels the runs
    lr = "baseline"
    [variants.mine]
    lr = [8e-4, 2e-3, 3e-3]         # a configuration name, one rate, or (e, l, h)
    grad_clip = 1.0                 # any RunSpec field (docs/protocol.md; README settings)
    [variants.fast]
    recipe = "NAME"                 # a named recipe's settings (groklab.recipes); own keys win

    [[stages]]                      # optional, also per variant: [[variants.NAME.stages]]
    operands = 2                    # a curriculum: every run trains through the stages in
    steps = 3000                    # order, each stage starting from the final weights of
    [[stages]]                      # the previous stage's run of the same seed
    operands = 3                    # (studies/stages.py)

A run's label (the report's column) is its variant's name followed by ``key=value`` for
each grid axis other than ``task``; without variants and axes, the lr name or rates.
Everything is checked when the study is built: errors name the file, the key and the reason.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from groklab.engine.limits import MAX_RUNS
from groklab.format import setting
from groklab.rates import parse_lr
from groklab.recipes import with_recipe
from groklab.registry import did_you_mean
from groklab.spec import RunSpec
from groklab.studies.errors import StudyError
from groklab.studies.labels import beyond
from groklab.studies.stages import Values, stage_runs, stage_sections, stages_of
from groklab.tasks import task_names

STUDY_KEYS = ("name", "description", "seeds", "settings", "grid", "variants", "stages")
RUN_KEYS = tuple(k for k in RunSpec.model_fields if k not in ("seed", "lr_name"))
_RESERVED = {"seed": "give seeds at the top level (seeds = 3 or seeds = [0, 1, 2])",
             "lr_name": "a run's label is its variant's name"}


@dataclass(frozen=True)
class StudyRun:
    """One run of a study: its configuration label and its spec."""

    label: str
    spec: RunSpec


@dataclass(frozen=True)
class Study:
    """Settings × grid × variants × seeds, plus command-line overrides applied last.

    Frozen: its runs are expanded (and checked) once, on construction, and kept;
    ``with_overrides`` makes a new study with its own.
    """

    name: str
    source: str = "<python>"
    description: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    grid: Mapping[str, list[Any]] = field(default_factory=dict)
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    overrides: Mapping[str, list[Any]] = field(default_factory=dict)
    stages: tuple[Mapping[str, Any], ...] = ()  # a curriculum: see studies/stages.py
    # refuse to expand more runs than this (None: any number; the command's --yes)
    max_runs: int | None = field(default=MAX_RUNS, compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_sections(self)
        n = self.count_bound()
        if self.max_runs is not None and n > self.max_runs:
            raise StudyError(self.source, "seeds", f"the study expands to up to {n:,} runs, "
                             f"more than {self.max_runs:,} in one command; give --yes to "
                             "expand it anyway (groklab.Study(..., max_runs=None) in Python)")
        _ = self._runs  # expanded now: impossible values surface before anything runs

    def count_bound(self) -> int:
        """At most how many runs the study expands to, counted without expanding it:
        seeds × grid points × variants × stages (runs two of them describe alike count
        once in ``expand``)."""
        points = math.prod(len(v) for v in self.axes().values())
        stages = max([len(self.stages) or 1] + [len(v.get("stages", ())) for v in
                                                self.variants.values()
                                                if isinstance(v, Mapping)])
        return len(self.seeds) * points * max(1, len(self.variants)) * stages

    def with_overrides(self, *, steps: int | None = None, seeds: int | None = None,
                       tasks: Sequence[str] | None = None, **settings: Any) -> Study:
        """This study with ``steps``, the number of ``seeds``, ``tasks`` or settings replaced."""
        over = dict(self.overrides) | {k: [v] for k, v in settings.items() if v is not None}
        if steps is not None:
            over["steps"] = [steps]
        if tasks is not None:
            over["task"] = list(tasks)
        new_seeds = self.seeds
        if seeds is not None:
            if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
                raise StudyError(self.source, "seeds", f"must be a positive number, got {seeds!r}")
            new_seeds = tuple(range(min(self.seeds), min(self.seeds) + seeds))
        return replace(self, overrides=over, seeds=new_seeds)

    def axes(self) -> dict[str, list[Any]]:
        """The grid after overrides, ``task`` first (it is the outer loop)."""
        axes = {k: list(v) for k, v in self.grid.items() if k not in self.overrides}
        axes |= {k: list(v) for k, v in self.overrides.items() if len(v) > 1 or k in self.grid}
        return dict(sorted(axes.items(), key=lambda kv: kv[0] != "task"))

    def expand(self) -> list[StudyRun]:
        """Every run: tasks × other grid axes × variants × seeds, in that nesting order
        (expanded once per study; each call returns a new list)."""
        return list(self._runs)

    @cached_property
    def _runs(self) -> tuple[StudyRun, ...]:
        """``expand``'s runs, computed on first use (cached_property writes the instance's
        ``__dict__`` directly, so a frozen dataclass can hold it)."""
        axes = self.axes()
        fixed = {k: (v, f"settings.{k}") for k, v in self.settings.items()
                 if k not in self.overrides}
        fixed |= {k: (v[0], f"override {k}") for k, v in self.overrides.items()
                  if k not in axes}
        varying = [k for k, v in axes.items() if k != "task" and len(v) > 1]
        runs: list[StudyRun] = []
        seen: dict[str, str] = {}
        for combo in itertools.product(*axes.values()):
            point = {k: (v, f"grid.{k}") for k, v in zip(axes, combo, strict=True)}
            for vname, vset in (self.variants or {"": {}}).items():
                stages, where = stages_of(self.stages, vname, vset)
                values = fixed | {k: (v, f"variants.{vname}.{k}") for k, v in vset.items()
                                  if k not in self.overrides and k != "stages"} | point
                label = _label(vname, {k: values[k][0] for k in varying}, values.get("lr"))
                # what the label's name does not say (studies/labels.py): the training
                # methods of a label named after its rates, and the command line's
                label = " ".join([label, *beyond(
                    {k: v for k, (v, _) in values.items()
                     if not (vname or varying) or k in self.overrides},
                    {"lr": values["lr"][0]} if "lr" in values else {})])
                for seed in self.seeds:
                    for run_label, spec in stage_runs(self._spec, values, label, seed, stages,
                                                      where, self.overrides):
                        shared = run_label != label  # a stage before the last
                        if spec.run_id in seen and seen[spec.run_id] != run_label and not shared:
                            raise StudyError(self.source, "variants", f"{seen[spec.run_id]!r} "
                                             f"and {run_label!r} describe identical runs")
                        seen.setdefault(spec.run_id, run_label)
                        runs.append(StudyRun(run_label, spec))
        return tuple({r.spec.run_id: r for r in runs}.values())

    def specs(self) -> list[RunSpec]:
        """The runs' specs, in ``expand`` order."""
        return [r.spec for r in self.expand()]

    def definition(self) -> dict[str, Any]:
        """The study as plain JSON-able data (what the store records)."""
        return {"name": self.name, "source": self.source, "description": self.description,
                "seeds": list(self.seeds), "settings": dict(self.settings),
                "grid": dict(self.grid), "variants": {k: dict(v) for k, v in self.variants.items()},
                "overrides": dict(self.overrides), "stages": [dict(s) for s in self.stages]}

    def _spec(self, values: Values, label: str, seed: int) -> RunSpec:
        """One run's spec; an invalid one raises ``StudyError`` naming the declaring key."""
        fields = {k: v for k, (v, _) in values.items()}
        if "lr" in fields:
            fields["lr"] = _rates(fields["lr"], self.source, values["lr"][1])[1]
        try:
            return RunSpec(**fields, lr_name=label, seed=seed)
        except ValidationError as e:
            err = e.errors()[0]
            reason = err["msg"].removeprefix("Value error, ")
            if err["loc"]:
                key = values.get(str(err["loc"][0]), (None, str(err["loc"][0])))[1]
                if ", got " not in reason:
                    reason += f" (got {err['input']!r})"
            else:  # a rule over several settings: name those the message mentions
                named = [o for k, (_, o) in values.items() if re.search(rf"\b{k}\b", reason)]
                key = ", ".join(named) or "settings"
            raise StudyError(self.source, key, reason) from None


def _rates(value: Any, source: str, key: str
           ) -> tuple[str | None, tuple[float, float, float] | dict[str, float]]:
    """An lr value: a configuration name, one rate, three rates (embedding, lower, higher),
    or a table of rates per group (for a study's own ``group_rules``)."""
    if isinstance(value, dict):
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and 0 < v < math.inf
                   for v in value.values()):
            raise StudyError(source, key, f"rates must be positive finite numbers, got {value!r}")
        return None, {str(k): float(v) for k, v in value.items()}
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, list | tuple):
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            raise StudyError(source, key, "rates are numbers, got "
                             + json.dumps(value, default=str))
        value = ",".join(str(v) for v in value)
    if not isinstance(value, str):
        raise StudyError(source, key, f"expected a name or rates, got {value!r}")
    try:
        return parse_lr(value)
    except ValueError as e:
        raise StudyError(source, key, str(e).removeprefix("--lr ")) from None


def _label(variant: str, axes: dict[str, Any], lr: tuple[Any, str] | None) -> str:
    """The configuration label: variant name, then ``key=value`` per varying grid axis."""
    parts = [variant] if variant else []
    for k, v in axes.items():
        parts.append(_lr_text(v) if k == "lr" and not variant
                     else f"{k}={setting(v, compact=True)}")
    if not parts:
        parts.append(_lr_text(lr[0]) if lr else "baseline")
    return " ".join(parts)


def _lr_text(v: Any) -> str:
    """An lr value in a label: its configuration name, else its rates."""
    name, rates = _rates(v, "", "lr")
    return name or setting(rates, compact=True)


def _check_sections(study: Study) -> None:
    """Shapes and names of every section; values are checked by RunSpec during expansion."""
    src = study.source
    if not isinstance(study.name, str) or not re.fullmatch(r"[\w.+-]+", study.name):
        raise StudyError(src, "name", f"use letters, digits, '-', '_' or '.', got {study.name!r}")
    if not study.seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0
                              for s in study.seeds):
        raise StudyError(src, "seeds", f"need at least one seed >= 0, got {list(study.seeds)}")
    if len(set(study.seeds)) != len(study.seeds):
        raise StudyError(src, "seeds", f"repeated seed in {list(study.seeds)}")
    sections = [("settings", study.settings), ("grid", study.grid)]
    sections += [(f"variants.{n}", {k: x for k, x in v.items() if k != "stages"})
                 if isinstance(v, Mapping) else (f"variants.{n}", v)
                 for n, v in study.variants.items()]
    sections += [("override", study.overrides),
                 *stage_sections(src, study.stages, study.variants, study.grid)]
    for section, table in sections:
        if not isinstance(table, Mapping):
            raise StudyError(src, section, f"expected a table, got {type(table).__name__}")
        for key, value in table.items():
            where = f"{section}.{key}" if section != "override" else f"override {key}"
            if key in _RESERVED:
                raise StudyError(src, where, _RESERVED[key])
            if key not in RUN_KEYS:
                raise StudyError(src, where, f"unknown run setting; known: {', '.join(RUN_KEYS)}")
            values = value
            if section in ("grid", "override"):
                if not isinstance(value, list) or not value:
                    raise StudyError(src, where, f"expected a non-empty list, got {value!r}")
            else:
                values = [value]
            for i, v in enumerate(values):
                at = f"{where}[{i}]" if values is value else where
                if key == "lr":
                    _rates(v, src, at)
                if key == "task" and v not in task_names():
                    known = ", ".join(task_names())
                    raise StudyError(src, at, f"unknown task {v!r}; known: {known}"
                                     f"{did_you_mean(v, task_names())}")
    _check_overlaps(study)


def _check_overlaps(study: Study) -> None:
    """A setting is fixed, a grid axis or a variant's override: never two of these at once."""
    for name in study.variants:
        if not name.strip():
            raise StudyError(study.source, "variants", "a variant needs a non-empty name")
    for key in study.grid:
        if key in study.settings:
            raise StudyError(study.source, f"grid.{key}", "also set in [settings]; keep one")
        for name, overrides in study.variants.items():
            if key in overrides:
                raise StudyError(study.source, f"variants.{name}.{key}",
                                 "also a grid axis; keep one")


def load_toml(text: str, source: str, default_name: str | None = None,
              max_runs: int | None = MAX_RUNS) -> Study:
    """Parse a study from TOML text; ``source`` names it in error messages. An empty study
    (no keys: an empty file, or only comments) is an error, not one run of the defaults.
    ``max_runs``: see ``Study``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise StudyError(source, "TOML", str(e)) from None
    if not data:
        raise StudyError(source, "file", "the study is empty; give at least [settings], "
                         "[grid] or [variants] (README, Studies and reports)")
    for key in data:
        if key not in STUDY_KEYS:
            raise StudyError(source, key, f"unknown key; expected one of {', '.join(STUDY_KEYS)}")
    seeds = data.get("seeds", 1)
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise StudyError(source, "seeds", f"must be a positive number, got {seeds}")
        seeds = list(range(seeds))
    if not isinstance(seeds, list):
        raise StudyError(source, "seeds", f"expected a number or a list, got {seeds!r}")
    variants = data.get("variants", {})
    if not isinstance(variants, dict) or not all(isinstance(v, dict) for v in variants.values()):
        raise StudyError(source, "variants", "expected tables: [variants.NAME] with settings")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise StudyError(source, "description", f"expected a string, got {description!r}")
    stages = data.get("stages", [])
    if not isinstance(stages, list) or not all(isinstance(st, dict) for st in stages):
        raise StudyError(source, "stages", "expected tables: [[stages]] with settings")
    settings = data.get("settings", {})
    if not isinstance(settings, dict):
        raise StudyError(source, "settings", "expected a table of run settings")
    try:
        settings = with_recipe(settings)
    except ValueError as e:
        raise StudyError(source, "settings.recipe", str(e)) from None
    for vname, vset in variants.items():
        try:
            variants[vname] = with_recipe(vset)
        except ValueError as e:
            raise StudyError(source, f"variants.{vname}.recipe", str(e)) from None
    return Study(name=data.get("name", default_name), source=source, description=description,
                 settings=settings, grid=data.get("grid", {}),
                 variants=variants, seeds=tuple(seeds), stages=tuple(stages),
                 max_runs=max_runs)


def load_file(path: str | Path, max_runs: int | None = MAX_RUNS) -> Study:
    """Read a study from a TOML file (its name defaults to the file's stem)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise StudyError(str(path), "file", f"cannot read: {e}") from None
    return load_toml(text, str(path), default_name=path.stem, max_runs=max_runs)
