"""Studies: grid expansion, variant naming, presets, overrides and validation errors."""

import pytest
from conftest import groklab

from groklab.studies import Study, StudyError, get_study, load_file, load_toml, preset

SMALL = {"p": 23, "batch_size": 64, "steps": 40}


def test_grid_times_variants_times_seeds_in_nesting_order():
    study = Study(name="s", settings=SMALL, seeds=(0, 1),
                  grid={"task": ["x_plus_y", "x_minus_y"], "weight_decay": [0.1, 1.0]},
                  variants={"base": {"lr": "baseline"}, "mine": {"lr": [8e-4, 2e-3, 3e-3]}})
    runs = study.expand()
    assert len(runs) == 2 * 2 * 2 * 2
    assert [r.label for r in runs[:8:2]] == ["base weight_decay=0.1", "mine weight_decay=0.1",
                                             "base weight_decay=1", "mine weight_decay=1"]
    first = runs[0].spec
    assert (first.task, first.weight_decay, first.lr, first.seed) == ("x_plus_y", 0.1,
                                                                      (1e-3, 1e-3, 1e-3), 0)
    assert runs[1].spec.seed == 1 and runs[2].spec.lr == (8e-4, 2e-3, 3e-3)
    assert [r.spec.task for r in runs] == ["x_plus_y"] * 8 + ["x_minus_y"] * 8
    assert all(r.spec.lr_name == r.label and r.spec.p == 23 for r in runs)
    assert len({r.spec.run_id for r in runs}) == 16


def test_labels_without_variants():
    lr_axis = Study(name="s", settings=SMALL, grid={"lr": ["layerwise", 2e-3, [1e-3, 2e-3, 3e-3]]})
    assert [r.label for r in lr_axis.expand()] == ["layerwise", "0.002,0.002,0.002",
                                                   "0.001,0.002,0.003"]
    fixed = Study(name="s", settings={**SMALL, "lr": "run2"}, grid={"task": ["x_plus_y"]})
    assert [r.label for r in fixed.expand()] == ["run2"]
    assert [r.label for r in Study(name="s", settings=SMALL).expand()] == ["baseline"]


def test_variant_overrides_a_fixed_setting():
    study = Study(name="s", settings={**SMALL, "weight_decay": 0.5},
                  variants={"a": {}, "b": {"weight_decay": 0.05}})
    assert [r.spec.weight_decay for r in study.expand()] == [0.5, 0.05]


@pytest.mark.parametrize("name, n_runs, labels, tasks", [
    ("paper-table1", 24, ["baseline", "layerwise"], 4),
    ("paper-runs", 60, ["run0", "run1", "run2", "run3", "run4"], 4),
    ("paper-ablation", 12, ["layerwise", "tie_e_l", "tie_e_h", "tie_l_h"], 1),
])
def test_presets_expand_to_the_paper_grids(name, n_runs, labels, tasks):
    runs = preset(name).expand()
    assert len(runs) == n_runs
    assert list(dict.fromkeys(r.label for r in runs)) == labels
    assert len({r.spec.task for r in runs}) == tasks
    assert {r.spec.seed for r in runs} == {0, 1, 2}
    assert all(r.spec.steps == 7500 and r.spec.p == 97 and r.spec.batch_size == 512
               for r in runs)
    assert get_study(name).name == name


def test_preset_rates_match_the_named_configurations():
    runs = preset("paper-ablation").expand()
    assert {r.label: r.spec.lr for r in runs} == {
        "layerwise": (8e-4, 2e-3, 3e-3), "tie_e_l": (2e-3, 2e-3, 3e-3),
        "tie_e_h": (3e-3, 2e-3, 3e-3), "tie_l_h": (8e-4, 3e-3, 3e-3)}
    assert {r.spec.task for r in runs} == {"permutation"}


def test_overrides_replace_steps_seeds_and_tasks():
    quick = preset("paper-table1").with_overrides(steps=500, seeds=1, tasks=["x_div_y"])
    runs = quick.expand()
    assert [(r.label, r.spec.task, r.spec.steps, r.spec.seed) for r in runs] == [
        ("baseline", "x_div_y", 500, 0), ("layerwise", "x_div_y", 500, 0)]
    two = preset("paper-ablation").with_overrides(tasks=["x_plus_y", "x_minus_y"], seeds=2)
    assert len(two.expand()) == 2 * 4 * 2
    with pytest.raises(StudyError, match="override steps"):
        preset("paper-table1").with_overrides(steps=0)
    with pytest.raises(StudyError, match="seeds"):
        preset("paper-table1").with_overrides(seeds=0)
    with pytest.raises(StudyError, match="unknown task 'x_times_y'"):
        preset("paper-table1").with_overrides(tasks=["x_times_y"])


GOOD = """
name = "ok"
seeds = 2
[settings]
p = 23
[grid]
task = ["x_plus_y"]
[variants.a]
lr = "baseline"
"""


@pytest.mark.parametrize("text, key, reason", [
    ("name = 'x'\n[settings\np = 3", "TOML", "Expected ']'"),
    ("name = 'x'\nsteps = 5", "steps", "unknown key"),
    ("[settings]\nlearning_rate = 1e-3", "settings.learning_rate", "unknown run setting"),
    ("[grid]\np = 23", "grid.p", "expected a non-empty list"),
    ("[grid]\ntask = ['x_plus_y', 'x_times_y']", "grid.task[1]", "unknown task 'x_times_y'"),
    ("[variants.fast]\nlr = 'fastest'", "variants.fast.lr", "neither a configuration"),
    ("[variants.fast]\nlr = [1e-3, 0.0, 1e-3]", "variants.fast.lr", "positive"),
    ("[settings]\nsteps = 0", "settings.steps", "greater than or equal to 1"),
    ("[settings]\ntrain_fraction = 1.5", "settings.train_fraction", "less than 1"),
    ("[settings]\np = 91\n[grid]\ntask = ['x_div_y']", "settings.p", "prime"),
    ("[settings]\nd_model = 100\nn_heads = 3", "settings.d_model, settings.n_heads",
     "not divisible"),
    ("[settings]\nseed = 3", "settings.seed", "top level"),
    ("seeds = 0", "seeds", "positive"),
    ("seeds = [1, 1]", "seeds", "repeated"),
    ("[settings]\np = 23\n[grid]\np = [23, 29]", "grid.p", "also set in [settings]"),
    ("[grid]\np = [23, 29]\n[variants.a]\np = 31", "variants.a.p", "also a grid axis"),
    ("[variants.a]\nlr = 'run4'\n[variants.b]\nlr = 'layerwise'", "variants", "identical runs"),
    ("variants = 3", "variants", "expected tables"),
])
def test_toml_errors_name_file_key_and_reason(tmp_path, text, key, reason):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(StudyError) as info:
        load_file(path)
    err = info.value
    assert (err.source, err.key) == (str(path), key)
    assert reason in err.reason
    assert str(err).startswith(f"{path}: {key}: ")


def test_a_good_file_loads_and_its_name_defaults_to_the_stem(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(GOOD)
    assert load_file(path).name == "ok" and len(load_file(path).expand()) == 2
    path.write_text(GOOD.replace('name = "ok"', ""))
    assert load_file(path).name == "grid"
    assert load_toml(GOOD, "<text>").definition()["variants"] == {"a": {"lr": "baseline"}}


def test_cli_rejects_a_bad_study_file_before_anything_is_written(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[grid]\ntask = ['x_plus_y', 'nope']\n")
    out = tmp_path / "never"
    proc = groklab("study", str(path), "--out", str(out), check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1
    assert lines[0] == (f"groklab: error: {path}: grid.task[1]: unknown task 'nope'; known: "
                        "permutation, sum, text, x2_plus_xy_plus_y2, x2_plus_y2, x3_plus_xy, "
                        "x_div_y, x_minus_y, x_plus_y")
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["no-such-study"], "neither a built-in study"),
    (["missing.toml"], "missing.toml: file: no such file"),
    (["paper-table1", "--steps", "0"], "override steps"),
    (["paper-table1", "--seeds", "0"], "seeds"),
    (["paper-table1", "--tasks", " , "], "--tasks"),
    (["paper-table1", "--tasks", "x_plus_y,bogus"], "unknown task 'bogus'"),
    (["paper-table1", "--device", "tpu"], "unknown device"),
])
def test_cli_study_bad_input_one_line_exit_2(tmp_path, args, message):
    out = tmp_path / "never"
    proc = groklab("study", *args, "--out", str(out), check=False, cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0]
    assert not out.exists()


def test_cli_list_shows_tasks_configurations_and_studies():
    out = groklab("list", "--runs").stdout  # counts: --runs (tests/test_cli_start.py: list)
    for word in ("x_div_y", "permutation", "layerwise", "tie_l_h", "paper-table1",
                 "paper-runs", "paper-ablation"):
        assert word in out
    assert "24 runs" in out and "60 runs" in out and "12 runs" in out


def test_a_study_expands_once_and_an_overridden_copy_expands_its_own(monkeypatch):
    import groklab.studies.study as module

    built = []
    real = module.stage_runs
    monkeypatch.setattr(module, "stage_runs", lambda *args: built.append(1) or real(*args))
    study = Study(name="s", settings=SMALL, seeds=(0, 1), grid={"weight_decay": [0.1, 1.0]})
    assert len(built) == 4  # expanded (and checked) on construction
    assert study.expand() == study.expand() and study.expand() is not study.expand()
    assert len(study.specs()) == 4 and len(built) == 4
    quick = study.with_overrides(steps=5)
    assert len(built) == 8 and {r.spec.steps for r in quick.expand()} == {5}
    assert {r.spec.steps for r in study.expand()} == {40} and len(built) == 8


def test_the_acceleration_preset_runs_every_method_on_held_out_seeds():
    """docs/protocol.md §6.8: the paper protocol, 8 methods × 4 tasks × seeds 2-4 (the seeds
    the search never saw), every run stopped once 99 % has held for 20 evaluations."""
    runs = preset("acceleration").expand()
    assert len(runs) == 108 and {r.spec.seed for r in runs} == {2, 3, 4}
    by = {r.label: r.spec for r in runs if r.spec.task == "x_plus_y" and r.spec.seed == 2}
    assert list(by) == ["baseline", "layerwise", "grokfast", "adaptive_embedding",
                        "layerwise_grokfast", "muon", "stablemax_orthograd", "acceleration-fast",
                        "acceleration-adamw"]
    assert all(s.steps == 7500 and s.p == 97 and s.batch_size == 512 and s.d_model == 128
               and s.train_fraction == 0.5 and (s.stop_val_acc, s.stop_patience) == (0.99, 20)
               for s in by.values())
    assert by["muon"].optimizer == "muon"
    assert (by["stablemax_orthograd"].loss, by["stablemax_orthograd"].grad_ortho,
            by["stablemax_orthograd"].weight_decay) == ("stablemax", True, 0.0)
    fast, adamw = by["acceleration-fast"], by["acceleration-adamw"]
    assert (fast.optimizer, fast.muon_lr_ratio, fast.loss, fast.grad_filter, fast.lr) == (
        "muon", 3.59, "stablemax", "ema", (2.57e-3, 2.61e-3, 8.21e-3))
    assert (adamw.loss, adamw.grad_ortho, adamw.embedding_lr, adamw.lr) == (
        "stablemax", True, "adaptive", (2.06e-3, 3.68e-3, 2.48e-3))
