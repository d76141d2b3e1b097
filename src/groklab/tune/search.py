"""The search loop: Optuna's ask/tell, a new trial asked each time a slot frees.

An Optuna study (in an RDB: by default ``sqlite:///OUT/optuna.sqlite3``, or any URL Optuna
takes, e.g. a PostgreSQL server several machines share) holds the trials; the groklab store
in OUT holds their runs, recorded as a groklab study of the same name so ``groklab report``
shows the search. A trial is ``--seeds`` runs of one point of the space. A round asks ``batch``
trials and trains their runs with ``run_specs`` (runs that share a cohort key, as rate-only
spaces do, train as ONE cohort over slots: engine/slots.py); in process, as each run ends
the trial's value is told from the store once all its runs are finished, and a new trial
is asked for the freed slot (``TrialFeed``) until the study holds ``trials``. An executor
(Ray) trains whole rounds instead.

Resuming. Every trial records its run ids and its owner (``host:pid:token``). A trial left
running by a process that is gone (same host, dead pid, or an earlier invocation in this
process) is finished by the next invocation on the same OUT: told from the store when its
runs are finished there, else trained (from the runs' checkpoints) in the next round. The
search stops once the study holds ``trials`` trials that are complete, failed, or still
running in a live process; re-running the same command after a kill continues it (a trial
asked but not yet claimed when the process died is taken over too).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from groklab.claims import new_owner, process_alive, same_process
from groklab.integrations import require
from groklab.spec import RunSpec
from groklab.store import Store
from groklab.tune.objective import DEFAULT_METRIC, default_direction, outcome
from groklab.tune.space import Space

OPTUNA_FILE = "optuna.sqlite3"


class TuneError(ValueError):
    """A search that cannot run as asked (e.g. an existing study with another objective)."""


@dataclass
class TuneResult:
    """What an invocation did and the study's best trial so far."""

    study_name: str
    storage: str
    told: int = 0  # trials told in this invocation
    trained: int = 0  # runs trained in this invocation
    best: dict[str, Any] | None = None
    trials: list[dict[str, Any]] = field(default_factory=list)


def default_storage(out: str | Path) -> str:
    return f"sqlite:///{(Path(out).resolve() / OPTUNA_FILE).as_posix()}"


def run_search(out: str | Path, space: Space, *, trials: int, batch: int = 8, seeds: int = 1,
               metric: str = DEFAULT_METRIC, direction: str | None = None,
               storage: str | None = None, study_name: str | None = None,
               sampler: str = "tpe", sampler_seed: int | None = None,
               device: str | None = None, progress: bool = True, executor: Any = None,
               hooks: Sequence[Any] = ()) -> TuneResult:
    """Run (or continue) the search until the study holds ``trials`` trials."""
    optuna = require("optuna", "tune", "groklab tune")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from groklab.engine import default_device, run_specs
    from groklab.studies.execute import environment

    direction = direction or default_direction(metric)
    device = device or default_device()
    Path(out).mkdir(parents=True, exist_ok=True)
    storage = storage or default_storage(out)
    name = study_name or f"tune-{space.settings.get('task', 'x_plus_y')}"
    searched = ", ".join(d.name for d in space.dims) or "nothing"
    definition = {"kind": "tune", "metric": metric, "direction": direction, "seeds": seeds,
                  "space": space.definition(),
                  "description": f"Optuna search ({storage}, study {name!r}): {metric} "
                                 f"({direction}) over {searched}; {seeds} seed(s) per trial, "
                                 "runs labelled by trial (t0000, t0001, ...)."}
    compared = {k: v for k, v in definition.items() if k != "description"}
    study = _open_study(optuna, storage, name, direction, compared, sampler, sampler_seed)
    me = Owner(out)
    result = TuneResult(name, storage)
    distributions = {d.name: _distribution(optuna, d) for d in space.dims}

    def specs_of(trial: Any) -> list[RunSpec]:
        label = f"t{trial.number:04d}"
        return [space.spec(trial.params, seed=s, label=label) for s in range(seeds)]

    with Store(out) as store:  # one store for the whole invocation
        pending = [(t, specs_of(t)) for t in me.orphans(study)]
        pending = _tell_finished(study, store, pending, metric, result)
        feed = None if executor is not None else TrialFeed(
            study, me, distributions, specs_of, trials, store, metric, result)
        members = lambda: store.record_study(  # noqa: E731
            name, definition, environment(device), _members(study, me))
        while True:
            room = trials - _counted(study, me)
            new = [study.ask(distributions) for _ in range(max(0, min(batch, room)))]
            for t in new:
                me.claim(t)
            pending += [(t, specs_of(t)) for t in new]
            if feed is not None:  # trials it asked for another cohort key, not yet trained
                pending += feed.take_deferred()
                feed.inflight = list(pending)
            if not pending:
                break
            members()
            t0 = time.perf_counter()
            counts = run_specs([s for _, specs in pending for s in specs], out, device=device,
                               progress=progress, hooks=hooks, executor=executor, store=store,
                               feed=feed)
            result.trained += counts["trained"]
            store.add_study_time(name, time.perf_counter() - t0)
            if feed is not None:
                pending = feed.inflight
            left = _tell_finished(study, store, pending, metric, result)
            if left and not new:
                break  # runs another live process trains: leave them to it
            pending = left
        members()
    _summarise(study, result)
    return result


class TrialFeed:
    """Asks Optuna for a new trial each time a slot frees (``run_specs(feed=...)``) and tells
    it each trial's value the moment its runs are finished: the search never waits for its
    slowest trial. TPE runs with ``constant_liar`` (Optuna's way to sample while trials are
    in flight). A trial whose runs have another cohort key than the cohort asking waits for
    the next round (``take_deferred``)."""

    def __init__(self, study: Any, me: Owner, distributions: dict[str, Any],
                 specs_of: Any, trials: int, store: Store, metric: str, result: TuneResult):
        self.study, self.me, self.distributions = study, me, distributions
        self.specs_of, self.trials, self.store = specs_of, trials, store
        self.metric, self.result = metric, result
        self.inflight: list[tuple[Any, list[RunSpec]]] = []
        self.deferred: list[tuple[Any, list[RunSpec]]] = []

    def more(self) -> bool:
        return self.trials - _counted(self.study, self.me) > 0

    def ask(self, n: int, key: tuple) -> list[RunSpec]:
        out: list[RunSpec] = []
        while len(out) < n and self.more():
            trial = self.study.ask(self.distributions)
            self.me.claim(trial)
            specs = self.specs_of(trial)
            if specs[0].cohort_key() != key:
                self.deferred.append((trial, specs))
                continue
            trial.set_user_attr("run_ids", [s.run_id for s in specs])
            self.inflight.append((trial, specs))
            out += specs
        return out

    def ended(self, run_id: str) -> None:
        if any(run_id in {s.run_id for s in specs} for _, specs in self.inflight):
            self.inflight = _tell_finished(self.study, self.store, self.inflight,
                                           self.metric, self.result)

    def take_deferred(self) -> list[tuple[Any, list[RunSpec]]]:
        out, self.deferred = self.deferred, []
        return out


class Owner:
    """This invocation's owner token and the trials it may take over."""

    def __init__(self, out: str | Path):
        self.token = new_owner()
        self.store = str(Path(out).resolve())

    def claim(self, trial: Any) -> None:
        trial.set_user_attr("owner", self.token)
        trial.set_user_attr("store", self.store)

    def alive(self, token: str | None) -> bool:
        """Whether the process behind ``token`` may still be working on its trials."""
        if not token:
            return False
        if token == self.token:
            return True
        if same_process(token):
            return False  # an earlier invocation in this very process
        return process_alive(token)

    def orphans(self, study: Any) -> list[Any]:
        """Running trials of this store whose owner is gone (they are ours to finish), and
        trials a killed process asked but never claimed (killed between ``ask`` and
        ``claim``), taken when no other process that may be alive owns a running trial."""
        from optuna.trial import TrialState

        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        others_alive = any(t.user_attrs.get("owner") not in (None, self.token)
                           and self.alive(t.user_attrs.get("owner")) for t in running)
        out = []
        for frozen in running:
            attrs = frozen.user_attrs
            ours = attrs.get("store") == self.store and not self.alive(attrs.get("owner"))
            unclaimed = "owner" not in attrs and not others_alive
            if ours or unclaimed:
                trial = _trial(study, frozen)
                self.claim(trial)
                out.append(trial)
        return out


def _trial(study: Any, frozen: Any) -> Any:
    """A live ``Trial`` handle for a running trial of ``study``."""
    import optuna

    return optuna.trial.Trial(study, frozen._trial_id)


def _counted(study: Any, me: Owner) -> int:
    """Trials that count towards the target: finished, or running in a live process."""
    from optuna.trial import TrialState

    n = 0
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.RUNNING:
            n += me.alive(t.user_attrs.get("owner"))
        elif t.state != TrialState.WAITING:
            n += 1
    return n


def _tell_finished(study: Any, store: Store, pending: list[tuple[Any, list[RunSpec]]],
                   metric: str, result: TuneResult) -> list[tuple[Any, list[RunSpec]]]:
    """Tell every pending trial whose runs are finished in the store; return the rest."""
    from optuna.trial import TrialState

    left = []
    for trial, specs in pending:
        ids = [s.run_id for s in specs]
        got = outcome(store, ids, metric)
        if got is None:
            left.append((trial, specs))
            continue
        trial.set_user_attr("run_ids", ids)
        for k, v in got.details.items():
            trial.set_user_attr(k, v)
        if got.value != got.value:  # NaN: the runs did not record the metric
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        else:
            study.tell(trial, got.value, skip_if_finished=True)
        result.told += 1
    return left


def _members(study: Any, me: Owner) -> list[tuple[str, str]]:
    """(run id, label) of every run of this store's trials, in trial order."""
    out = []
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("store") == me.store:
            ids = t.user_attrs.get("run_ids") or []
            out += [(rid, f"t{t.number:04d}") for rid in ids]
    return out


def _open_study(optuna: Any, storage: str, name: str, direction: str,
                definition: dict[str, Any], sampler: str, seed: int | None) -> Any:
    """Create the study, or load it and check it optimises the same thing. A seeded sampler
    is seeded with ``seed`` + the trials the study already holds, so an invocation that
    continues a study does not draw the points of the one before it again."""
    if sampler not in ("tpe", "random"):
        raise TuneError(f"unknown sampler {sampler!r}; use tpe or random")
    study = optuna.create_study(storage=storage, study_name=name, direction=direction,
                                load_if_exists=True)
    if seed is not None:
        seed += len(study.get_trials(deepcopy=False))
    if sampler == "tpe":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant_liar is marked experimental
            study.sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    else:
        study.sampler = optuna.samplers.RandomSampler(seed=seed)
    mine = json.dumps(definition, sort_keys=True)
    theirs = study.user_attrs.get("groklab")
    if theirs is None:
        study.set_user_attr("groklab", mine)
    elif theirs != mine:
        raise TuneError(f"study {name!r} in {storage} searches another space or objective "
                        f"({_diff(json.loads(theirs), definition)}); use --study-name to "
                        "start a new one")
    if study.direction.name.lower() != direction:
        raise TuneError(f"study {name!r} is {study.direction.name.lower()}d; asked to "
                        f"{direction}")
    return study


def _diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return "differs in " + ", ".join(keys)


def _distribution(optuna: Any, dim: Any) -> Any:
    d = optuna.distributions
    if dim.kind == "categorical":
        return d.CategoricalDistribution(list(dim.choices))
    if dim.kind == "int":
        return d.IntDistribution(dim.low, dim.high, log=dim.log, step=dim.step or 1)
    return d.FloatDistribution(dim.low, dim.high, log=dim.log, step=dim.step)


def _summarise(study: Any, result: TuneResult) -> None:
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    reverse = study.direction.name == "MAXIMIZE"
    done.sort(key=lambda t: t.value, reverse=reverse)
    result.trials = [{"number": t.number, "value": t.value, "params": dict(t.params),
                      **{k: v for k, v in t.user_attrs.items() if k not in ("owner", "store")}}
                     for t in done]
    result.best = result.trials[0] if result.trials else None
