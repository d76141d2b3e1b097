"""Curricula in studies: ``[[stages]]`` expand to chained runs (``init_from``), parents train
first, the curriculum preset, and the report's curriculum figure and table."""

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from conftest import tiny

import groklab as gl
from groklab.report.curriculum import last_stage_table
from groklab.store.weights import load_weights
from groklab.studies import StudyError, get_study, load_toml, preset

# TINY's model on sum mod 7 (200 sampled examples, sequences up to K = 3), 20 steps of 32
SETTINGS = tiny("warmup", task="sum", p=7, n_examples=200, max_len=6, batch_size=32,
                eval_every=5, steps=20)
SETTINGS_TOML = "\n".join(f"{k} = {json.dumps(v)}" for k, v in SETTINGS.items())
STUDY = f"""
name = "cur"
seeds = 2
[settings]
{SETTINGS_TOML}
[variants.K3-scratch]
operands = 3
[[variants.K3-after-K2.stages]]
operands = 2
steps = 15
[[variants.K3-after-K2.stages]]
operands = 3
"""


def test_stages_chain_runs_of_the_same_seed():
    runs = load_toml(STUDY, "tiny").expand()
    assert [r.label for r in runs] == ["K3-scratch"] * 2 + ["stage 1: operands=2 steps=15",
                                                            "K3-after-K2"] * 2
    scratch, (pre0, post0, pre1, post1) = runs[:2], runs[2:]
    assert post0.spec.init_from == pre0.spec.run_id and post1.spec.init_from == pre1.spec.run_id
    assert pre0.spec.init_from is None and (pre0.spec.operands, pre0.spec.steps) == (2, 15)
    assert (post0.spec.operands, post0.spec.steps, post0.spec.seed) == (3, 20, 0)
    assert post0.spec.cohort_key() == scratch[0].spec.cohort_key()  # one K=3 cohort
    over = load_toml(STUDY, "tiny").with_overrides(steps=9).expand()
    assert {r.spec.steps for r in over} == {9}  # command-line overrides win over stages


def test_study_level_stages_apply_to_every_variant():
    text = STUDY.split("[variants.K3-scratch]")[0] + """
[variants.a]
weight_decay = 0.1
[variants.b]
[[stages]]
operands = 2
[[stages]]
operands = 3
"""
    runs = load_toml(text, "t").expand()
    assert len(runs) == 2 * 2 * 2
    finals = [r for r in runs if r.spec.init_from]
    assert {r.label for r in finals} == {"a", "b"} and len(finals) == 4


@pytest.mark.parametrize("extra, key", [
    ("[[stages]]\ninit_from = \"0123456789abcdef\"\n", "stages[0].init_from"),
    ("[[stages]]\nseed = 3\n", "stages[0].seed"),
    ("[[stages]]\nnope = 3\n", "stages[0].nope"),
    ("stages = 3\n", "stages"),
])
def test_bad_stages_are_refused_with_their_key(extra, key):
    head = STUDY.split("[variants.K3-scratch]")[0]
    text = extra + head if extra.startswith("stages") else head + extra
    with pytest.raises(StudyError) as e:
        load_toml(text, "f.toml")
    assert e.value.key == key


def test_curriculum_preset():
    runs = preset("curriculum-sum").expand()
    assert len(runs) == 18 and {r.spec.seed for r in runs} == {0, 1, 2}
    finals = [r for r in runs if r.spec.init_from]
    assert sorted({r.label for r in finals}) == ["K3-after-K2", "K4-after-K2", "K5-after-K2",
                                                 "K6-after-K2"]
    parents = {r.spec.run_id: r.spec for r in runs if r.label.startswith("stage 1")}
    assert len(parents) == 3 and all(p.operands == 2 and p.steps == 3000
                                     for p in parents.values())
    assert all(r.spec.init_from in parents and r.spec.steps == 10_000 for r in finals)
    assert all(r.spec.max_len == 12 and r.spec.p == 97 and r.spec.n_examples == 10_000
               for r in runs)
    scratch = [r.spec for r in runs if r.label == "K3-scratch"]
    assert len(scratch) == 3 and all(s.operands == 3 and s.init_from is None for s in scratch)


def test_the_cpu_sized_curriculum_example():
    """docs/examples/curriculum-sum-p23.toml (the README's curriculum figure) stays valid."""
    path = Path(__file__).parents[1] / "docs" / "examples" / "curriculum-sum-p23.toml"
    runs = get_study(path).expand()
    assert len(runs) == 21 and {r.spec.p for r in runs} == {23}
    parents = {r.spec.run_id for r in runs if r.label.startswith("stage 1")}
    children = [r.spec for r in runs if r.spec.init_from]
    assert len(parents) == 3 and len(children) == 15
    assert all(c.init_from in parents for c in children)
    carried = {c.init_optimizer for c in children if c.operands == 3}
    assert carried == {"fresh", "carried"}


def test_curriculum_study_trains_parents_first_and_reports_stages(tmp_path):
    study = load_toml(STUDY, "tiny")
    out = tmp_path / "cur"
    gl.study(study, out=out, device="cpu", progress=False)
    runs = {r["id"]: r for r in gl.results(out).to_dict("records")}
    assert len(runs) == 6 and {r["status"] for r in runs.values()} == {"finished"}
    for r in runs.values():
        if isinstance(r["init_from"], str):
            parent = runs[r["init_from"]]
            assert parent["operands"] == 2 and parent["finished"] <= r["started"]
        assert load_weights(out, r["id"])  # every finished run has its weights
    files = gl.report(out)
    md = files.markdown.read_text()
    assert "### Curricula" in md and "K3-after-K2" in md and "max val acc" in md
    section = md.split("### Curricula")[1]
    assert "K3-scratch" in section  # the same last stage from scratch, compared
    steps = [line.rstrip(" |").rsplit("| ", 1)[1] for line in section.splitlines()
             if line.startswith("| K3-")]
    assert len(steps) == 2  # step cells: whole steps, or how many seeds never got there
    assert all(re.fullmatch(r"\d+ ± \d+ \(\d/\d reached\)|not reached \(0/\d\)", c)
               for c in steps), steps
    assert any("curriculum-K3-after-K2" in p.name for p in files.figures)


def test_last_stage_table_counts_steps_in_whole_steps():
    curve = {"a": [0.5, 0.995, 1.0], "b": [0.2, 0.6, 0.992], "c": [0.1, 0.2, 0.3]}
    study = SimpleNamespace(
        finished=pd.DataFrame({"id": ["a", "b", "c"], "config": ["cur", "cur", "scratch"]}),
        curves=pd.DataFrame([{"run_id": r, "step": 100 * (i + 1), "val_acc": v}
                             for r, vals in curve.items() for i, v in enumerate(vals)]))
    table = last_stage_table(study, ["cur", "scratch"])
    # cur: first steps above 99 %: 200 and 300 -> 250 ± 50; finals (= maxima) 1.0 and 0.992
    # -> 0.996 ± 0.008 / 2 (stderr of two values: their half difference)
    assert table.loc["cur", "step val acc > 99 %"] == "250 ± 50 (2/2 reached)"
    assert table.loc["cur", "final val acc"] == "0.996 ± 0.004"
    assert table.loc["cur", "max val acc"] == "0.996 ± 0.004"
    assert table.loc["scratch", "step val acc > 99 %"] == "not reached (0/1)"
    assert table.loc["scratch", "final val acc"] == "0.300"  # one seed: no ± (format.mean_se)
