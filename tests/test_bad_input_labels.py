"""Labels that describe the run (issue 27, 6): one rule (studies/labels.py) names what a run
has beyond the name it was asked for, so a Muon + StableMax + ⊥Grad run is never labelled
``baseline`` beside AdamW baselines; every reader shows the stored label; ids do not change."""

import csv

import pytest
from conftest import TINY_COMMAND, groklab, results_json, tiny_args

from groklab.api import make_specs
from groklab.recipes import recipe
from groklab.spec import RunSpec
from groklab.studies import Study, load_toml
from groklab.studies.labels import run_label

ARGS = tiny_args(steps=1)


@pytest.mark.parametrize("argv, label", [
    (["--optimizer", "muon", "--loss", "stablemax", "--grad-ortho"],
     "baseline optimizer=muon loss=stablemax grad_ortho=True"),
    (["--recipe", "acceleration-fast", "--optimizer", "adamw"],
     "acceleration-fast optimizer=adamw"),
    (["--recipe", "acceleration-fast", "--lr", "baseline"], "acceleration-fast lr=baseline"),
    # beyond the listed ones: a recipe as it is, a plain baseline, rates given as numbers
    (["--recipe", "acceleration-fast"], "acceleration-fast"),
    ([], "baseline"),
    (["--lr", "1e-3,2e-3,3e-3", "--grad-filter", "ema"], "0.001,0.002,0.003 grad_filter=ema"),
])
def test_the_label_names_what_is_set_beyond_its_name(tmp_path, argv, label):
    out = tmp_path / "out"
    groklab("run", *ARGS, *argv, "--out", str(out))
    (run,) = results_json(out)
    assert run["label"] == label
    table = groklab("results", str(out)).stdout
    assert label in table
    groklab("export", "csv", str(out), str(tmp_path / "tables"))
    with open(tmp_path / "tables" / "runs.csv") as f:
        assert [r["label"] for r in csv.DictReader(f)] == [label]


def test_labels_leave_ids_unchanged():
    tiny = TINY_COMMAND | {"steps": 1}  # the settings ARGS gives
    (muon,) = make_specs(optimizer="muon", loss="stablemax", grad_ortho=True, **tiny)
    labelled = muon.model_copy(update={"lr_name": run_label("baseline", muon)})
    assert labelled.label == "baseline optimizer=muon loss=stablemax grad_ortho=True"
    assert labelled.run_id == muon.run_id
    (fast,) = make_specs(recipe="acceleration-fast", optimizer="adamw", **tiny)
    settings = recipe("acceleration-fast").settings
    assert run_label("acceleration-fast", fast, settings) == "acceleration-fast optimizer=adamw"
    assert run_label("acceleration-fast", RunSpec(**tiny), settings).startswith(
        "acceleration-fast lr=")


def test_a_study_without_variants_names_its_methods():
    study = load_toml('[settings]\np = 5\noptimizer = "muon"\nloss = "stablemax"\n', "s.toml",
                      "s")
    assert [r.label for r in study.expand()] == ["baseline optimizer=muon loss=stablemax"]


def test_a_command_line_method_override_is_in_every_study_label():
    study = Study(name="s", settings={"p": 5}, variants={"a": {"lr": "baseline"},
                                                         "b": {"lr": "layerwise"}})
    assert sorted(r.label for r in study.expand()) == ["a", "b"]
    over = study.with_overrides(loss="stablemax", steps=10)
    assert sorted(r.label for r in over.expand()) == ["a loss=stablemax", "b loss=stablemax"]
    assert {r.spec.run_id for r in over.expand()} == {
        s.run_id for s in Study(name="s", settings={"p": 5, "loss": "stablemax", "steps": 10},
                                variants={"a": {"lr": "baseline"},
                                          "b": {"lr": "layerwise"}}).specs()}
