"""`groklab tune`: the search space, the objective read from the store, batches trained as one
cohort, trials in Optuna's storage and in the store, resuming after a crash or a kill, and
one-line errors."""

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from conftest import tiny
from optuna.trial import TrialState

from groklab.cli import main
from groklab.records import EvalRow
from groklab.spec import RunSpec
from groklab.store import Store
from groklab.tune import SpaceError, build_space, load_space
from groklab.tune.objective import outcome
from groklab.tune.search import default_storage, run_search

BASE = tiny(steps=20, eval_every=5)
BASE_SET = [a for k, v in BASE.items() if k not in ("task", "steps")
            for a in ("--set", f"{k}={v}")]


def trials_of(out, name="tune-x_plus_y"):
    return optuna.load_study(study_name=name, storage=default_storage(out)).get_trials()


# -- the space --------------------------------------------------------------------------------
def test_default_space_is_three_log_uniform_rates():
    space = build_space()
    assert [(d.name, d.low, d.high, d.log) for d in space.dims] == [
        ("lr_e", 1e-4, 1e-2, True), ("lr_l", 1e-4, 1e-2, True), ("lr_h", 1e-4, 1e-2, True)]
    spec = space.spec({"lr_e": 1e-3, "lr_l": 2e-3, "lr_h": 3e-3}, seed=2, label="t0001")
    assert spec.lr == (1e-3, 2e-3, 3e-3) and spec.seed == 2 and spec.label == "t0001"


def test_a_space_file_fixes_and_adds_any_run_setting(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text('[settings]\ntask = "permutation"\nk = 4\n'
                    '[params.lr_e]\nlow = 1e-3\nhigh = 1e-1\n'
                    '[params.weight_decay]\nlow = 0.05\nhigh = 2.0\nlog = true\n'
                    '[params.warmup]\nlow = 0\nhigh = 100\n'
                    '[params.lr_schedule]\nchoices = ["constant", "cosine"]\n')
    space = load_space(path, overrides={"steps": 50})
    kinds = {d.name: d.kind for d in space.dims}
    assert kinds == {"lr_e": "float", "lr_l": "float", "lr_h": "float", "weight_decay": "float",
                     "warmup": "int", "lr_schedule": "categorical"}
    assert space.dims[0].low == 1e-3 and space.dims[0].log
    spec = space.spec({"lr_e": 0.01, "lr_l": 1e-3, "lr_h": 1e-3, "weight_decay": 0.1,
                       "warmup": 7, "lr_schedule": "cosine"}, seed=0, label="x")
    assert (spec.task, spec.k, spec.steps, spec.warmup, spec.lr_schedule) == (
        "permutation", 4, 50, 7, "cosine")
    fixed = build_space({"settings": {"lr": [1e-3, 1e-3, 1e-3]}})
    assert fixed.dims == ()


@pytest.mark.parametrize("text, message", [
    ("[params.lr_e\nlow = 1", "TOML"),
    ("[nonsense]\nx = 1", "nonsense: unknown key"),
    ("[params.lr_e]\nlow = 1e-2\nhigh = 1e-3", "params.lr_e: low 0.01 must be below high"),
    ("[params.weight_decay]\nlow = 0.0\nhigh = 1.0\nlog = true", "log range needs low > 0"),
    ("[params.not_a_setting]\nlow = 0\nhigh = 1", "params.not_a_setting: unknown run setting"),
    ("[params.weight_decay]\nlow = -1.0\nhigh = 1.0", "params.weight_decay: "),
    ("[params.lr_schedule]\nchoices = []", "non-empty list"),
    ("[params.seed]\nlow = 0\nhigh = 3", "params.seed: trials choose seeds"),
    ("[settings]\nsteps = 0", "settings.steps"),
    ("[params.warmup]\nlow = 0\nhigh = 9\nspeed = 2", "params.warmup.speed: unknown key"),
])
def test_a_malformed_space_names_file_key_and_reason(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SpaceError, match=message) as e:
        load_space(path)
    assert str(e.value).startswith(str(path))


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[params.lr_e]\nlow = 1\nhigh = 0.1\n")
    out = tmp_path / "out"
    for args, expected in [(["--space", str(bad)], "bad.toml: params.lr_e: low 1 must be"),
                           (["--metric", "val_happiness"], "--metric 'val_happiness': unknown"),
                           (["--batch", "0"], "--batch must be at least 1")]:
        assert main(["tune", "--out", str(out), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], err
    assert not out.exists()


def test_a_missing_extra_names_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    assert main(["tune", "--out", str(tmp_path / "o"), "--trials", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'groklab[tune]'" in err[0]


# -- the objective ----------------------------------------------------------------------------
def fake_run(store, seed, reached_at, val_loss, steps=40, lr=(1e-3, 1e-3, 1e-3),
             finished=True):
    """A run whose val acc passes 0.99 at ``reached_at`` (None: never)."""
    spec = RunSpec(**(BASE | {"steps": steps, "eval_every": 10, "lr": lr}), seed=seed)
    rows = [EvalRow(s, 1.0, 0.5, val_loss, 1.0 if reached_at and s >= reached_at else 0.5)
            for s in range(10, steps + 1, 10)]
    store.begin([spec], "cpu")
    if finished:
        store.finish({spec.run_id: rows}, {spec.run_id: rows}, 1.0)
    return spec.run_id


def test_steps_to_99_is_censored_at_the_budget_and_ties_go_to_the_lower_loss(tmp_path):
    with Store(tmp_path) as store:
        a = fake_run(store, 0, reached_at=20, val_loss=0.5)
        b = fake_run(store, 1, reached_at=20, val_loss=0.1)
        c = fake_run(store, 2, reached_at=30, val_loss=0.01)
        never = fake_run(store, 3, reached_at=None, val_loss=0.01)
        values = {k: outcome(store, [rid], "steps_to_99") for k, rid in
                  dict(a=a, b=b, c=c, never=never).items()}
        assert values["b"].value < values["a"].value < values["c"].value < values["never"].value
        assert values["never"].details == {"steps_to_99": [40.0], "final_val_loss": [0.01],
                                           "censored": 1}
        assert 40 <= values["never"].value < 50
        both = outcome(store, [a, never], "steps_to_99")
        assert both.details["steps_to_99"] == [20.0, 40.0] and 30 <= both.value < 35
        assert outcome(store, [a, b], "final_val_loss").value == pytest.approx(0.3)
        assert outcome(store, [a, "0123456789abcdef"], "max_val_acc") is None  # not finished


# -- the search -------------------------------------------------------------------------------
def cohort_sizes():
    sizes = []

    def hook(state, step, metrics):
        if step == state.eval_every:
            sizes.append(len(state.specs))

    return sizes, hook


def test_batches_train_as_one_cohort_and_trials_are_in_optuna_and_the_store(tmp_path):
    sizes, hook = cohort_sizes()
    space = build_space(overrides=BASE)
    result = run_search(tmp_path, space, trials=4, batch=2, seeds=2, sampler_seed=0,
                        progress=False, hooks=[hook])
    assert sizes == [4, 4]  # two batches, each 2 trials x 2 seeds in one cohort
    assert result.told == 4 and result.trained == 8
    trials = trials_of(tmp_path)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    with Store(tmp_path, create=False) as store:
        members = store.study_members("tune-x_plus_y")
        runs = {r["id"]: r for r in store.runs()}
        for t in trials:
            ids = t.user_attrs["run_ids"]
            assert len(ids) == 2 and all(runs[i]["status"] == "finished" for i in ids)
            assert runs[ids[0]]["lr"] == [t.params["lr_e"], t.params["lr_l"], t.params["lr_h"]]
            assert t.value == outcome(store, ids, "steps_to_99").value
            assert {(i, f"t{t.number:04d}") for i in ids} <= set(members)
    assert len(members) == 8 and result.best["value"] == min(t.value for t in trials)
    again = run_search(tmp_path, space, trials=4, batch=2, seeds=2, progress=False)
    assert again.told == 0 and again.trained == 0


def test_a_crash_at_telling_is_told_from_the_store(tmp_path, monkeypatch):
    """A trial is told the moment its run ends, during training: a crash there leaves the
    finished run in the store, told by the next invocation without training it again."""
    space = build_space(overrides=BASE)
    real_tell = optuna.study.Study.tell

    def crash(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(optuna.study.Study, "tell", crash)
    with pytest.raises(KeyboardInterrupt):
        run_search(tmp_path, space, trials=4, batch=2, progress=False)
    monkeypatch.setattr(optuna.study.Study, "tell", real_tell)
    assert [t.state for t in trials_of(tmp_path)] == [TrialState.RUNNING] * 2
    with Store(tmp_path, create=False) as store:
        first = {r["id"]: r["started"] for r in store.runs() if r["status"] == "finished"}
    assert len(first) == 1
    result = run_search(tmp_path, space, trials=4, batch=2, progress=False)
    assert result.told == 4 and result.trained == 3  # the finished one was not trained again
    assert [t.state for t in trials_of(tmp_path)] == [TrialState.COMPLETE] * 4
    with Store(tmp_path, create=False) as store:
        started = {r["id"]: r["started"] for r in store.runs()}
    assert len(started) == 4 and all(started[k] == v for k, v in first.items())


@pytest.mark.slow
def test_killing_the_command_and_running_it_again_continues_the_study(tmp_path):
    out = tmp_path / "out"
    args = [sys.executable, "-m", "groklab.cli", "tune", "--out", str(out), "--steps", "300",
            "--trials", "4", "--batch", "2", "--no-progress", *BASE_SET]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        finished, started = [], []
        # kill while the second batch trains: the first is finished, the second's runs begun
        while (len(finished) < 2 or len(started) < 4) and time.monotonic() < deadline \
                and proc.poll() is None:
            time.sleep(0.1)
            if (out / "groklab.sqlite").is_file():
                with Store(out, create=False) as store:
                    started = store.runs()
                    finished = [r for r in started if r["status"] == "finished"]
        assert proc.poll() is None, "the search ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)  # during the second batch
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    first = {r["id"]: r["started"] for r in finished}
    assert any(t.state == TrialState.RUNNING for t in trials_of(out))  # left behind by the kill
    with Store(out, create=False) as store:
        assert sum(r["status"] == "finished" for r in store.runs()) < 4
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    trials = trials_of(out)
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    with Store(out, create=False) as store:
        runs = {r["id"]: r for r in store.runs()}
    assert len(runs) == 4 and all(r["status"] == "finished" for r in runs.values())
    assert all(runs[k]["started"] == v for k, v in first.items())  # not trained again
    assert {i for t in trials for i in t.user_attrs["run_ids"]} == set(runs)


def test_a_trial_asked_but_never_claimed_is_taken_over(tmp_path):
    """A process killed between Optuna's ask and its claim leaves an owner-less running
    trial; the next invocation finishes it instead of asking a new one."""
    space = build_space(overrides=BASE | {"steps": 5})
    assert run_search(tmp_path, space, trials=1, batch=1, progress=False).told == 1
    study = optuna.load_study(study_name="tune-x_plus_y", storage=default_storage(tmp_path))
    dists = trials_of(tmp_path)[0].distributions
    study.ask(dists)  # ... and the process died here
    result = run_search(tmp_path, space, trials=2, batch=1, progress=False)
    assert result.told == 1 and result.trained == 1
    trials = trials_of(tmp_path)
    assert len(trials) == 2 and all(t.state == TrialState.COMPLETE for t in trials)


def test_a_seeded_search_continued_one_trial_at_a_time_draws_new_points(tmp_path):
    space = build_space(overrides=BASE | {"steps": 5})
    for n in (1, 2, 3):
        result = run_search(tmp_path, space, trials=n, batch=1, sampler="random",
                            sampler_seed=0, metric="final_val_loss", progress=False)
        assert result.trained == 1 and result.told == 1
    trials = trials_of(tmp_path)
    assert len({tuple(t.params.values()) for t in trials}) == 3


# -- the report of a search -------------------------------------------------------------------
def best_table(report, study):
    """(trial, value, params) rows of ``study``'s best-trials table in report.md, in order,
    and the table's header."""
    section = report.split(f"## Study `{study}`")[1].split("## Study")[0]
    lines = section.split("**Best ")[1].splitlines()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines
            if line.startswith("|")]
    return rows[0], rows[2:]


def expected_order(out, labels, metric):
    """Trials best first, computed from the store's curves (not through groklab.tune)."""
    with Store(out, create=False) as store:
        runs = {r["id"]: r for r in store.runs()}
        values = {}
        for label, ids in labels.items():
            curves = [store.curve(i) for i in ids]
            if metric == "max_val_acc":
                values[label] = sum(max(r.val_acc for r in c) for c in curves) / len(ids)
                continue
            steps = [next((r.step for r in c if r.val_acc > 0.99), runs[i]["steps"])
                     for i, c in zip(ids, curves, strict=True)]
            loss = sum(c[-1].val_loss for c in curves) / len(ids)
            values[label] = (sum(steps) + BASE["eval_every"] * loss / (1 + loss)) / len(ids)
    sign = -1 if metric == "max_val_acc" else 1
    return sorted(values.items(), key=lambda kv: (sign * kv[1], kv[0]))


@pytest.mark.slow
def test_the_report_of_a_search_shows_its_best_trials_and_the_landscape(tmp_path):
    from PIL import Image

    space = tmp_path / "space.toml"
    space.write_text("[params.weight_decay]\nlow = 0.1\nhigh = 2.0\nlog = true\n")
    out = tmp_path / "out"
    search = ["tune", "--out", str(out), "--space", str(space), "--steps", "60", "--trials",
              "12", "--batch", "12", "--seeds", "2", "--sampler", "random", "--sampler-seed",
              "0", "--no-early-stop", "--no-progress", *BASE_SET]
    assert main([*search, "--study-name", "by-steps"]) == 0
    # the same points maximising another metric: the same runs, another study (and section)
    assert main([*search, "--study-name", "by-acc", "--metric", "max_val_acc"]) == 0
    assert main(["report", str(out)]) == 0
    report = (out / "report.md").read_text()
    with Store(out, create=False) as store:
        runs = {r["id"]: r for r in store.runs()}
        labels = {}
        for rid, label in store.study_members("by-steps"):
            labels.setdefault(label, []).append(rid)
        assert len(runs) == 24 and labels == {
            label: [rid for rid, lab in store.study_members("by-acc") if lab == label]
            for label in labels}
    for study, metric in (("by-steps", "steps_to_99"), ("by-acc", "max_val_acc")):
        header, rows = best_table(report, study)
        expected = expected_order(out, labels, metric)[:10]
        assert header[:2] == ["trial", metric + (" (minimized)" if metric == "steps_to_99"
                                                 else " (maximized)")]
        assert [r[0] for r in rows] == [label for label, _ in expected]
        assert [float(r[1]) for r in rows] == pytest.approx([v for _, v in expected],
                                                            rel=1e-5)
        for row in rows:  # the searched values, as the runs' settings hold them
            run = runs[labels[row[0]][0]]
            assert row[-4:] == [f"{v:.3g}" for v in (*run["lr"], run["weight_decay"])]
        assert header[-4:] == ["lr_e", "lr_l", "lr_h", "weight_decay"]
        assert "Final validation accuracy" not in report.split(f"## Study `{study}`")[1]
        for figure in ("landscape", "best-val_acc"):
            png = out / "figures" / f"{study}-{figure}.png"
            assert png.is_file() and f"figures/{study}-{figure}.png" in report
            assert Image.open(png).size[0] > 400


def test_a_search_report_ranks_by_censored_steps_then_final_loss(tmp_path):
    # (reached_at, final val loss) per seed of each trial; the budget is 40 steps
    made = {"t0000": [(20, 0.5), (20, 0.5)], "t0001": [(20, 0.1), (20, 0.1)],
            "t0002": [(20, 0.2), (None, 0.2)], "t0003": [(None, 0.01), (None, 0.01)],
            "t0004": [(30, 0.05), (30, 0.05)], "t0005": [(10, 0.01), None]}  # None: unfinished
    definition = {"kind": "tune", "metric": "steps_to_99", "direction": "minimize",
                  "seeds": 2, "space": build_space(overrides={"task": "x_plus_y"}).definition()}
    with Store(tmp_path) as store:
        members = []
        for n, (label, seeds) in enumerate(made.items()):
            lr = (1e-4 * (n + 1), 2e-4 * (n + 1), 3e-4 * (n + 1))
            members += [(fake_run(store, seed, *(run or (None, 1.0)), lr=lr,
                                  finished=run is not None), label)
                        for seed, run in enumerate(seeds)]
        store.record_study("tune-x_plus_y", definition, {}, members)
    assert main(["report", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    header, rows = best_table(report, "tune-x_plus_y")
    assert header == ["trial", "steps_to_99 (minimized)", "reached 99 %", "lr_e", "lr_l",
                      "lr_h"]
    # 20 + 5·L/(1+L) for L = 0.1 and 0.5; 30 + 5·0.05/1.05; (20 + 40)/2 + 5·0.2/1.2; 40 + ...
    assert [(r[0], r[2]) for r in rows] == [("t0001", "2/2"), ("t0000", "2/2"),
                                            ("t0004", "2/2"), ("t0002", "1/2"),
                                            ("t0003", "0/2")]
    assert [float(r[1]) for r in rows] == pytest.approx(
        [20 + 5 * 0.1 / 1.1, 20 + 5 * 0.5 / 1.5, 30 + 5 * 0.05 / 1.05, 30 + 5 * 0.2 / 1.2,
         40 + 5 * 0.01 / 1.01], rel=1e-5)
    assert rows[0][3:] == ["0.0002", "0.0004", "0.0006"]  # t0001's rates, from its runs
    assert "5 trial(s) with a value, 1 without" in report
    assert (tmp_path / "figures" / "tune-x_plus_y-landscape.png").is_file()
