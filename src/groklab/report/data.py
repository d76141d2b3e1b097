"""Read what a report shows from the store alone (docs/design.md, decision 6), once.

``read_studies`` loads from an open store everything a report's sections show (runs,
curves, named metrics, texts); the sections read only the ``StudyData`` it returns.

Runs are seeds of one configuration only when every setting but the seed is equal: each
run carries its settings key (``groklab.spec.comparable_settings``), and where one task's
configuration label holds runs of more than one key, each group's label is extended with
the settings that tell them apart, e.g. ``baseline (p=59)`` and ``baseline (p=97)``. Runs
of an older semantics version are always tagged with it, e.g. ``baseline [v1]``. The
label as recorded stays in column ``label_base``.

Several stores make one report (``load``): each store is opened and read once, and every
run, curve and metric row carries its store (column ``store``: the folder as given). A run
id names one run (its settings), so a run found in more than one store is counted once, from
the first store (in the order given) whose copy is finished, else the first that holds it;
``Loaded.shared`` names those runs and ``shared_note`` says so. Studies keep their names,
except a name found in several stores: each becomes ``NAME (store)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from groklab.format import is_missing, setting
from groklab.spec import SEMANTICS, RunSpec, comparable_settings, stored_spec
from groklab.store import STORE_NAME, Store

CURVE_COLUMNS = ["step", "train_loss", "train_acc", "val_loss", "val_acc"]
METRIC_COLUMNS = ["step", "name", "value", "run_id", "config", "task", "seed"]


@dataclass(frozen=True)
class StudyData:
    """One study's runs (one row each, ``config`` = its label) and finished runs' curves.

    ``runs`` also holds ``label_base`` (the label as recorded), ``settings`` (the settings
    key: runs with equal keys are seeds of one configuration) and ``semantics`` (1 where a
    run predates the field).
    """

    name: str
    definition: dict[str, Any] | None
    environment: dict[str, Any] | None
    wall_s: float | None
    runs: pd.DataFrame
    curves: pd.DataFrame
    pending: int  # member runs never started
    # finished runs' named per-step metrics (long: step, name, value, run_id, config, task,
    # seed), with σ_max(E)/σ_max(W) derived where both are recorded
    metrics: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=METRIC_COLUMNS))
    # finished runs' named texts (a language model's ``sample``): run id -> name -> text
    texts: dict[str, dict[str, str]] = field(default_factory=dict)
    # in a report of several stores: the store the study comes from (None: one store), and
    # how many of its runs are counted under another store (the same run id there)
    store: str | None = None
    elsewhere: int = 0

    @property
    def finished(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] == "finished"]


AD_HOC = "groklab run"  # the group of runs in no study (``groklab run``, ``run_specs``)


def read_studies(store: Store) -> list[StudyData]:
    """Every study recorded in ``store`` (an earlier version of an edited study among them:
    ``Store.record_study``), then, if there are any, the runs of no study as one group named
    ``AD_HOC`` (all runs of a store without studies): no run of the store is left out."""
    return _read(store, {r["id"]: r for r in store.runs()})


def _read(store: Store, runs: dict[str, dict], skip: frozenset[str] = frozenset()
          ) -> list[StudyData]:
    """``read_studies`` of ``store`` (``runs``: its rows by id), leaving out the runs of
    ``skip`` (counted under another store: ``StudyData.elsewhere``)."""
    out, members = [], set()
    for s in store.studies():
        listed = store.study_members(s["name"])
        members |= {rid for rid, _ in listed}
        out.append(_study(store, runs, s["name"], listed, s, skip))
    loose = [(rid, r["label"]) for rid, r in runs.items() if rid not in members]
    if any(rid not in skip for rid, _ in loose) or not (out or skip):
        out.append(_study(store, runs, AD_HOC, loose, None, skip))
    return out


def _study(store: Store, runs: dict[str, dict], name: str, members: list[tuple[str, str]],
           row: dict[str, Any] | None, skip: frozenset[str] = frozenset()) -> StudyData:
    elsewhere = sum(rid in skip for rid, _ in members)
    members = [(rid, label) for rid, label in members if rid not in skip]
    present = label_runs([{**runs[rid], "config": label} for rid, label in members
                          if rid in runs])
    frame = pd.DataFrame(present)
    parts = [pd.DataFrame(store.curve(r["id"]), columns=CURVE_COLUMNS).assign(
                 run_id=r["id"], config=r["config"], task=r["task"], seed=r["seed"])
             for r in present if r["status"] == "finished"]
    curves = (pd.concat(parts, ignore_index=True) if parts
              else pd.DataFrame(columns=[*CURVE_COLUMNS, "run_id", "config", "task", "seed"]))
    named = [pd.DataFrame(store.metrics(r["id"]), columns=["step", "name", "value"]).assign(
                 run_id=r["id"], config=r["config"], task=r["task"], seed=r["seed"])
             for r in present if r["status"] == "finished"]
    named = [m for m in named if not m.empty]
    metrics = (with_sigma_ratio(pd.concat(named, ignore_index=True)) if named
               else pd.DataFrame(columns=METRIC_COLUMNS))
    texts = {r["id"]: store.texts(r["id"]) for r in present if r["status"] == "finished"}
    return StudyData(name=name, definition=row and row["definition"],
                     environment=row and row["environment"], wall_s=row and row["wall_s"],
                     runs=frame, curves=curves, pending=len(members) - len(present),
                     metrics=metrics, texts={k: v for k, v in texts.items() if v},
                     elsewhere=elsewhere)


# -- several stores -------------------------------------------------------------------------
@dataclass(frozen=True)
class Loaded:
    """What a report of one or several stores shows: ``studies`` in store order, the stores
    (their folders as given), and ``shared``: run id -> the stores holding it, the one it
    is read from first (empty for one store)."""

    studies: list[StudyData]
    stores: list[str]
    shared: dict[str, list[str]] = field(default_factory=dict)


def store_label(path: str | Path) -> str:
    """How a report names a store: its folder as given."""
    return str(Path(path))


def stored_name(name: str, store: str) -> str:
    """A study's name in a report of several stores where another store has one of the same
    name: ``NAME (store)``."""
    return f"{name} ({store})"


def is_ad_hoc(study: StudyData) -> bool:
    """Whether ``study`` is the group of runs in no study (``AD_HOC``), named apart or not."""
    return study.definition is None and study.name in (
        AD_HOC, stored_name(AD_HOC, study.store or ""))


def same_stores(paths: Sequence[str | Path]) -> tuple[str, str] | None:
    """The first two of ``paths`` that name one store file (as given), else None."""
    seen: dict[Path, str] = {}
    for p in paths:
        key = (Path(p) / STORE_NAME).resolve()
        if key in seen:
            return seen[key], store_label(p)
        seen[key] = store_label(p)
    return None


def load(paths: Sequence[str | Path]) -> Loaded:
    """Every study of the stores at ``paths`` (one or more, each opened to read once): for one
    store ``read_studies``' as they are; for several, merged (the module docstring). A
    store given twice is a ``ValueError``."""
    if not paths:
        raise ValueError("no store to report")
    twice = same_stores(paths)
    if twice:
        raise ValueError(f"store {twice[1]} given twice (also as {twice[0]})")
    labels = [store_label(p) for p in paths]
    if len(paths) == 1:
        with Store(paths[0], create=False) as store:
            return Loaded(read_studies(store), labels)
    with ExitStack() as stack:
        stores = [stack.enter_context(Store(p, create=False)) for p in paths]
        rows = [{r["id"]: r for r in store.runs()} for store in stores]
        holders: dict[str, list[int]] = {}
        for i, runs in enumerate(rows):
            for rid in runs:
                holders.setdefault(rid, []).append(i)
        read_from = {rid: next((i for i in at if rows[i][rid]["status"] == "finished"), at[0])
                     for rid, at in holders.items()}
        per_store = [[_with_store(s, label) for s in _read(store, runs, frozenset(
                          rid for rid in runs if read_from[rid] != i))]
                     for i, (store, runs, label) in enumerate(zip(stores, rows, labels,
                                                                  strict=True))]
    shared = {rid: [labels[read_from[rid]], *(labels[i] for i in at if i != read_from[rid])]
              for rid, at in holders.items() if len(at) > 1}
    count: dict[str, int] = {}
    for studies in per_store:
        for s in studies:
            count[s.name] = count.get(s.name, 0) + 1
    merged = [replace(s, name=stored_name(s.name, s.store or "")) if count[s.name] > 1 else s
              for studies in per_store for s in studies]
    return Loaded(merged, labels, shared)


def _with_store(study: StudyData, store: str) -> StudyData:
    """``study`` with its store named, in ``store`` columns of its runs, curves and metrics
    too."""
    return replace(study, store=store, runs=study.runs.assign(store=store),
                   curves=study.curves.assign(store=store),
                   metrics=study.metrics.assign(store=store))


def shared_note(shared: dict[str, list[str]], limit: int | None = None) -> str | None:
    """One line on the run ids found in more than one store (``Loaded.shared``), the first
    ``limit`` of them named (None: all); None when there are none."""
    if not shared:
        return None
    items = list(shared.items())
    shown = ", ".join(f"{rid} ({', '.join(where)})" for rid, where in items[:limit])
    more = (f" and {len(items) - limit} more" if limit is not None and len(items) > limit
            else "")
    return (f"{len(items)} run id(s) are in more than one store; an id names one run (the same "
            f"settings), so each is counted once, from the first store named for it: "
            f"{shown}{more}")


SIGMA_RATIO = "sigma_max_E / sigma_max_W"


def with_sigma_ratio(metrics: pd.DataFrame) -> pd.DataFrame:
    """``metrics`` plus σ_max(E)/σ_max(W) per run and step where both are recorded."""
    keys = ["run_id", "step"]
    e = metrics[metrics["name"] == "sigma_max_E"].set_index(keys)["value"]
    w = metrics[metrics["name"] == "sigma_max_W"].set_index(keys)["value"]
    ratio = (e / w).dropna()
    if ratio.empty:
        return metrics
    info = metrics.drop_duplicates("run_id").set_index("run_id")[["config", "task", "seed"]]
    extra = ratio.rename("value").reset_index().assign(name=SIGMA_RATIO)
    extra = extra.join(info, on="run_id")
    return pd.concat([metrics, extra[metrics.columns]], ignore_index=True)


# -- settings keys and labels ---------------------------------------------------------------
def label_runs(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``rows`` (run rows with ``task`` and ``config``) with ``semantics`` filled
    in, ``settings`` added and ``config`` made unique per settings key (see the module
    docstring); the label as given moves to ``label_base``."""
    out = [_with_settings(r) for r in rows]
    by_config: dict[tuple[str, str], list[str]] = {}
    for r in out:
        keys = by_config.setdefault((r["task"], r["label_base"]), [])
        if r["settings"] not in keys:
            keys.append(r["settings"])
    for r in out:
        keys = by_config[(r["task"], r["label_base"])]
        r["config"] = config_label(r["label_base"], r["settings"], r["semantics"],
                                   differing_settings(keys) if len(keys) > 1 else [])
    return out


def _with_settings(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with ``label_base``, ``semantics`` (missing: 1) and ``settings``."""
    semantics = row.get("semantics")
    semantics = 1 if semantics is None or pd.isna(semantics) else int(semantics)
    out = {**row, "label_base": row["config"], "semantics": semantics}
    out["settings"] = settings_key(out)
    return out


def settings_key(row: dict[str, Any]) -> str:
    """The run's settings key; a row that no longer makes a valid spec (a task since
    removed, say) falls back to its recorded fields, so the report still shows it."""
    try:
        return comparable_settings(row)
    except (ValueError, TypeError):
        fields = {k: v for k, v in row.items() if k in RunSpec.model_fields
                  and k not in ("seed", "lr_name") and not is_missing(v)}
        return json.dumps(fields, sort_keys=True, default=str)


def config_label(base: str, key: str, semantics: int, names: list[str]) -> str:
    """``base`` with the run's values of ``names`` (those it uses) and, for an older
    semantics version, ``[v<version>]``: "baseline (p=59, steps=500) [v1]"."""
    settings, ignored = json.loads(key), ignored_settings(key)
    shown = [f"{n}={setting(settings.get(n, _default(n)))}" for n in names if n not in ignored]
    label = f"{base} ({', '.join(shown)})" if shown else base
    return f"{label} [v{semantics}]" if semantics < SEMANTICS else label


def differing_settings(keys: list[str], skip: Iterable[str] = ("semantics",)) -> list[str]:
    """The settings whose values differ between the settings ``keys``, in name order.

    A setting counts only among the keys whose runs use it: a setting one run ignores
    (normalised in its key, such as ``p`` for the permutation task) never differs.
    """
    return [n for n, values in setting_values(keys, skip).items() if len(values) > 1]


def setting_values(keys: list[str], skip: Iterable[str] = ()) -> dict[str, list[Any]]:
    """Per setting (by name), the distinct values the runs of ``keys`` that use it hold,
    in order of first appearance."""
    values: dict[str, list[Any]] = {}
    parsed = [(json.loads(k), ignored_settings(k)) for k in keys]
    names = sorted({n for settings, _ in parsed for n in settings} - set(skip))
    for name in names:
        for settings, ignored in parsed:
            value = settings.get(name, _default(name))
            seen = values.setdefault(name, [])
            if name not in ignored and value not in seen:
                seen.append(value)
    return values


@lru_cache(maxsize=4096)
def ignored_settings(key: str) -> frozenset[str]:
    """The settings the runs of settings ``key`` ignore (none if it is not a valid spec)."""
    try:
        return frozenset(stored_spec(json.loads(key)).ignored())
    except (ValueError, TypeError):
        return frozenset()


def _default(name: str) -> Any:
    """What a setting missing from a settings key holds: its default (None if unknown)."""
    field = RunSpec.model_fields.get(name)
    return None if field is None else json.loads(json.dumps(field.default))
