"""Curricula in studies: ``[[stages]]``, each a table of setting overrides and a step budget.

A study (or one of its variants, with ``[[variants.NAME.stages]]``, which replaces the
study's) declares stages. For every grid point, variant and seed the study then holds one
run per stage: stage i's settings are the run's settings with stage i's overrides on top
(command-line overrides still win), and every stage after the first starts from the final
weights of the previous stage's run of the same seed (``init_from`` = that run's id, part of
the child's identity). Invariants:

- The last stage's run carries the configuration's label (the report compares it); an
  earlier stage's run is labelled by its stage alone, ``stage 1: operands=2 steps=3000``, so
  one pre-training run shared by several variants is the same run, trained once.
- Parents train before their children and a child never starts before its parent finished
  (engine/runner.py, ``plan_levels``).

This module knows nothing of ``Study``: the study passes its sections and a callable that
builds (and checks) one run's spec.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

from groklab.format import setting
from groklab.spec import RunSpec
from groklab.studies.errors import StudyError

# setting -> (value, where the study declared it: ``settings.p``, ``grid.task``, ...)
Values = dict[str, tuple[Any, str]]
# (values, label, seed) -> the run's spec; raises StudyError naming the declaring key
SpecMaker = Callable[[Values, str, int], RunSpec]


def stages_of(stages: Sequence[Mapping[str, Any]], variant: str,
              overrides: Mapping[str, Any]) -> tuple[Sequence[Mapping[str, Any]], str]:
    """The stages a variant's runs go through (its own ``overrides["stages"]``, else the
    study's ``stages``) and where they were declared (for error messages)."""
    if "stages" in overrides:
        return overrides["stages"], f"variants.{variant}.stages"
    return stages, "stages"


def stage_label(index: int, stage: Mapping[str, Any]) -> str:
    """The label of an earlier stage's run: ``stage 1: operands=2 steps=3000``."""
    shown = " ".join(f"{k}={setting(v, compact=True)}" for k, v in stage.items())
    return f"stage {index + 1}: {shown}" if shown else f"stage {index + 1}"


def stage_runs(make_spec: SpecMaker, values: Values, label: str, seed: int,
               stages: Sequence[Mapping[str, Any]], where: str, overridden: Collection[str]
               ) -> Iterator[tuple[str, RunSpec]]:
    """(label, spec) of every stage of one run, first stage first; no stages: the run.
    Settings in ``overridden`` (the command line's) win over a stage's."""
    if not stages:
        yield label, make_spec(values, label, seed)
        return
    parent: RunSpec | None = None
    for i, stage in enumerate(stages):
        last = i == len(stages) - 1
        here = values | {k: (v, f"{where}[{i}].{k}") for k, v in stage.items()
                         if k not in overridden}
        if parent is not None:
            here["init_from"] = (parent.run_id, f"{where}[{i}]")
        run_label = label if last else stage_label(i, stage)
        parent = make_spec(here, run_label, seed)
        yield run_label, parent


def stage_sections(source: str, stages: Sequence[Mapping[str, Any]],
                   variants: Mapping[str, Any], grid: Mapping[str, Any]
                   ) -> list[tuple[str, Mapping[str, Any]]]:
    """Every stage table (the study's ``stages`` and its ``variants``') with the name errors
    give it, for the study's section checks (``StudyError`` for stages that are not a list
    of tables, or that set ``init_from`` or a grid axis)."""
    lists = [("stages", stages)]
    lists += [(f"variants.{n}.stages", v["stages"]) for n, v in variants.items()
              if isinstance(v, Mapping) and "stages" in v]
    out: list[tuple[str, Mapping[str, Any]]] = []
    for name, declared in lists:
        if not isinstance(declared, list | tuple) or not all(isinstance(s, Mapping)
                                                             for s in declared):
            raise StudyError(source, name, "expected a list of tables ([[stages]])")
        for i, stage in enumerate(declared):
            if "init_from" in stage:
                raise StudyError(source, f"{name}[{i}].init_from",
                                 "a stage starts from the previous stage's run")
            for key in stage:
                if key in grid:
                    raise StudyError(source, f"{name}[{i}].{key}", "also a grid axis; keep one")
            out.append((f"{name}[{i}]", stage))
    return out
