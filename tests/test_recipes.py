"""Named recipes (groklab.recipes, docs/protocol.md §6.8): every shipped recipe makes valid
runs; a study takes ``recipe = "NAME"`` with its own keys winning; unknown names are errors."""

from pathlib import Path

import pytest

import groklab.recipes as recipes_mod
from groklab.recipes import recipe, recipe_names, with_recipe
from groklab.spec import RunSpec
from groklab.studies import StudyError, load_toml
from groklab.studies.study import _rates


def test_every_shipped_recipe_makes_a_valid_run_and_says_where_it_came_from():
    assert recipe_names(), "the acceleration search's recipes are shipped"
    for name in recipe_names():
        r = recipe(name)
        assert r.description and r.origin, name
        settings = dict(r.settings)
        if "lr" in settings:
            settings["lr"] = _rates(settings["lr"], name, "lr")[1]
        RunSpec(**settings)


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "fast.toml").write_text(
        'description = "a test recipe"\norigin = "this test"\n'
        '[settings]\noptimizer = "muon"\nweight_decay = 0.1\nlr = [1e-3, 2e-3, 3e-3]\n')
    monkeypatch.setattr(recipes_mod, "_FOLDER", tmp_path)
    return tmp_path


def test_a_study_variant_takes_a_recipe_and_its_own_keys_win(folder: Path):
    study = load_toml('seeds = 1\n[settings]\np = 11\nd_model = 16\nn_heads = 2\n'
                      '[variants.fast]\nrecipe = "fast"\nweight_decay = 0.3\n'
                      '[variants.plain]\nlr = "baseline"\n', "t.toml", "t")
    runs = {r.label: r.spec for r in study.expand()}
    assert runs["fast"].optimizer == "muon" and runs["fast"].weight_decay == 0.3
    assert runs["fast"].lr == (1e-3, 2e-3, 3e-3)
    assert runs["plain"].optimizer == "adamw"


def test_unknown_recipes_are_errors_naming_the_known_ones(folder: Path):
    with pytest.raises(ValueError, match="unknown recipe 'nope'; known recipes: fast"):
        recipe("nope")
    with pytest.raises(StudyError, match=r"variants\.v\.recipe.*unknown recipe 'nope'"):
        load_toml('[variants.v]\nrecipe = "nope"\n', "t.toml", "t")
    with pytest.raises(ValueError, match="expected a recipe's name"):
        with_recipe({"recipe": 3})
    assert with_recipe({"p": 5}) == {"p": 5}


def test_make_specs_and_the_command_take_a_recipe_and_given_settings_win(tmp_path: Path):
    from conftest import groklab

    from groklab.api import make_specs

    fast = recipe("acceleration-fast").settings
    (spec,) = make_specs(recipe="acceleration-fast", p=11, d_model=16, n_heads=2, steps=3)
    assert spec.label == "acceleration-fast" and spec.optimizer == fast["optimizer"]
    assert spec.lr == tuple(fast["lr"]) and spec.loss == fast["loss"]
    (named,) = make_specs(recipe="acceleration-fast", lr="layerwise", weight_decay=0.1)
    # the one label rule (studies/labels.py): the recipe, then what was set beyond it
    assert named.label == "acceleration-fast lr=layerwise weight_decay=0.1"
    assert named.weight_decay == 0.1
    assert named.muon_lr_ratio == fast["muon_lr_ratio"]

    out = tmp_path / "r"
    groklab("run", "--recipe", "acceleration-fast", "--weight-decay", "0.2", "--p", "11",
            "--steps", "3", "--eval-every", "3", "--batch-size", "8", "--set", "d_model=16",
            "--set", "n_heads=2", "--out", str(out), "--no-progress")
    (row,) = groklab_results(out)
    assert row["weight_decay"] == 0.2 and row["optimizer"] == "muon"  # the flag wins
    assert row["grad_filter"] == fast["grad_filter"] and row["loss"] == fast["loss"]


def groklab_results(out: Path) -> list[dict]:
    from groklab.store import Store

    with Store(out, create=False) as store:
        return store.runs()
