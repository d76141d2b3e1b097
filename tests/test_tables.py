"""Aggregation over seeds against hand-computed numbers, censored runs included; only runs
whose settings are equal but for the seed are averaged (stores written row by row)."""

import math

import pandas as pd
import pytest

from groklab.records import EvalRow
from groklab.report import censored_note, load_studies, settings_note, summarize, wide
from groklab.report.data import label_runs
from groklab.spec import RunSpec
from groklab.store import Store


def run(task, config, seed, acc, step99, loss, steps=500, status="finished"):
    return {"task": task, "config": config, "seed": seed, "steps": steps, "status": status,
            "final_val_acc": acc, "step_val_acc_99": step99, "final_val_loss": loss}


RUNS = pd.DataFrame([
    run("x_plus_y", "baseline", 0, 0.90, 100, 0.1),
    run("x_plus_y", "baseline", 1, 1.00, None, 0.2),  # never reached 99 %: counts as 500
    run("x_plus_y", "baseline", 2, 0.95, 300, 0.3),
    run("x_plus_y", "layerwise", 0, 0.99, 50, 0.05),  # a single seed: no stderr
    run("x_plus_y", "layerwise", 1, 0.10, None, 9.0, status="running"),  # not counted
    run("permutation", "baseline", 0, 0.5, None, 2.0),
    run("permutation", "baseline", 1, 0.7, None, 1.0),
])


def test_mean_and_stderr_over_seeds_with_censored_runs():
    s = summarize(RUNS).set_index(["task", "config"])
    b = s.loc[("x_plus_y", "baseline")]
    assert (b["n"], b["censored"], b["steps"]) == (3, 1, 500)
    assert b["final_val_acc_mean"] == pytest.approx(0.95)
    assert b["final_val_acc_stderr"] == pytest.approx(0.05 / math.sqrt(3))  # std 0.05
    assert b["step_val_acc_99_mean"] == pytest.approx(300.0)  # (100 + 500 + 300) / 3
    assert b["step_val_acc_99_stderr"] == pytest.approx(200 / math.sqrt(3))  # std 200
    assert b["final_val_loss_mean"] == pytest.approx(0.2)
    assert b["final_val_loss_stderr"] == pytest.approx(0.1 / math.sqrt(3))
    lw = s.loc[("x_plus_y", "layerwise")]
    assert (lw["n"], lw["censored"], lw["final_val_acc_mean"]) == (1, 0, 0.99)
    assert math.isnan(lw["final_val_acc_stderr"])
    p = s.loc[("permutation", "baseline")]
    assert (p["n"], p["censored"], p["step_val_acc_99_mean"], p["step_val_acc_99_stderr"]) == (
        2, 2, 500.0, 0.0)
    assert p["final_val_acc_stderr"] == pytest.approx(math.sqrt(0.02) / math.sqrt(2))


def test_paper_layout_rows_tasks_columns_configurations_flags_censored():
    summary = summarize(RUNS)
    acc = wide(summary, "final_val_acc")
    assert list(acc.index) == ["x_plus_y", "permutation"]
    assert list(acc.columns) == ["baseline", "layerwise"]
    assert acc.loc["x_plus_y", "baseline"] == "0.950 ± 0.029"
    assert acc.loc["x_plus_y", "layerwise"] == "0.990"
    assert acc.loc["permutation", "layerwise"] == "—"
    steps = wide(summary, "step_val_acc_99")
    assert steps.loc["x_plus_y", "baseline"] == "300 ± 115*"
    assert steps.loc["x_plus_y", "layerwise"] == "50"
    assert steps.loc["permutation", "baseline"] == "500 ± 0*"
    assert wide(summary, "final_val_loss").loc["permutation", "baseline"] == "1.500 ± 0.500"
    note = censored_note(summary)
    assert note.startswith("* ") and "(500)" in note
    assert "x_plus_y / baseline: 1 of 3" in note and "permutation / baseline: 2 of 2" in note
    assert "layerwise" not in note


def test_no_censoring_no_note_and_empty_input():
    done = RUNS[RUNS["step_val_acc_99"].notna() & (RUNS["status"] == "finished")]
    assert censored_note(summarize(done)) is None
    assert summarize(RUNS.iloc[:0]).empty
    assert summarize(RUNS[RUNS["status"] == "running"]).empty


# -- settings: runs are seeds of one configuration only if every other setting is equal ----
def stored(root, *runs):
    """Write finished runs, (spec, final validation accuracy) each, into a store at ``root``
    and load it back: the one study 'runs'."""
    with Store(root) as store:
        for spec, acc in runs:
            curve = [EvalRow(10, 2.0, 0.1, 3.0, 0.05), EvalRow(20, 0.5, 1.0, 1.0 - acc, acc)]
            store.begin([spec], "cpu")
            store.finish({spec.run_id: curve}, {spec.run_id: curve}, 1.0)
    (study,) = load_studies(root)
    return study


def spec(task="x_plus_y", **settings):
    return RunSpec(**{"task": task, "steps": 100, "lr_name": "baseline", **settings})


def cells(study):
    """(task, config) -> (n, mean final validation accuracy), and the summary."""
    summary = summarize(study.runs)
    rows = summary.itertuples(index=False)
    return {(r.task, r.config): (r.n, pytest.approx(r.final_val_acc_mean)) for r in rows}


def test_runs_with_different_p_are_separate_columns_never_averaged(tmp_path):
    study = stored(tmp_path, (spec(p=11), 0.2), (spec(p=13), 0.8), (spec(p=13, seed=1), 0.6))
    assert cells(study) == {("x_plus_y", "baseline (p=11)"): (1, 0.2),
                            ("x_plus_y", "baseline (p=13)"): (2, 0.7)}
    assert list(wide(summarize(study.runs), "final_val_acc").columns) == [
        "baseline (p=11)", "baseline (p=13)"]
    assert set(study.runs["label_base"]) == {"baseline"}
    assert set(study.curves["config"]) == {"baseline (p=11)", "baseline (p=13)"}


def test_runs_with_different_weight_decay_are_separate(tmp_path):
    study = stored(tmp_path, (spec(p=11, weight_decay=0.1), 0.2),
                   (spec(p=11, weight_decay=1.0), 0.8), (spec(p=11, weight_decay=1.0, seed=1), 1.0))
    assert cells(study) == {("x_plus_y", "baseline (weight_decay=0.1)"): (1, 0.2),
                            ("x_plus_y", "baseline (weight_decay=1)"): (2, 0.9)}


def test_several_differing_settings_all_named(tmp_path):
    study = stored(tmp_path, (spec(p=11, steps=50), 0.2), (spec(p=11, weight_decay=0.1), 0.8))
    assert set(cells(study)) == {("x_plus_y", "baseline (steps=50, weight_decay=0.5)"),
                                 ("x_plus_y", "baseline (steps=100, weight_decay=0.1)")}


def test_a_setting_the_task_ignores_does_not_split_seeds(tmp_path):
    study = stored(tmp_path, (spec("permutation", p=59), 0.4), (spec("permutation", p=97, seed=1),
                                                               0.6))
    assert cells(study) == {("permutation", "baseline"): (2, 0.5)}


def test_an_older_semantics_version_is_never_mixed_with_current_runs(tmp_path):
    study = stored(tmp_path, (spec(p=11, semantics=1), 0.2), (spec(p=11, seed=1), 0.8))
    assert cells(study) == {("x_plus_y", "baseline [v1]"): (1, 0.2),
                            ("x_plus_y", "baseline"): (1, 0.8)}
    old = study.runs[study.runs["config"] == "baseline [v1]"]
    assert list(old["semantics"]) == [1] and list(old["label_base"]) == ["baseline"]


def test_a_row_without_semantics_is_version_1():
    row = {"task": "x_plus_y", "p": 11, "steps": 100, "seed": 0, "config": "baseline"}
    (labelled,) = label_runs([row])
    assert (labelled["config"], labelled["semantics"]) == ("baseline [v1]", 1)
    assert '"semantics"' not in labelled["settings"]  # version 1 identities carry none


def test_summarize_never_merges_two_settings_under_one_label():
    raw = pd.DataFrame([run("x_plus_y", "baseline", 0, 0.2, None, 1.0, steps=500),
                        run("x_plus_y", "baseline", 1, 0.8, None, 1.0, steps=600)])
    with pytest.raises(ValueError, match="x_plus_y / baseline"):
        summarize(raw)
    labelled = pd.DataFrame(label_runs(raw.assign(semantics=2).to_dict("records")))
    s = summarize(labelled)
    assert list(s["config"]) == ["baseline (steps=500)", "baseline (steps=600)"]
    assert list(s["n"]) == [1, 1]
    with pytest.raises(ValueError, match="x_plus_y / baseline"):
        summarize(labelled.assign(config="baseline"))


def test_note_names_the_settings_a_column_holds_across_tasks(tmp_path):
    study = stored(tmp_path, (spec(p=11), 0.2), (spec("x_minus_y", p=11, steps=200), 0.4),
                   (spec("permutation", p=13), 0.6))  # permutation ignores p
    summary = summarize(study.runs)
    assert list(wide(summary, "final_val_acc").columns) == ["baseline"]
    assert settings_note(summary) == (
        "Column `baseline` holds differing settings across tasks: steps (100, 200).")
    same = stored(tmp_path / "same", (spec(p=11), 0.2), (spec("permutation", p=13), 0.6))
    assert settings_note(summarize(same.runs)) is None


def test_one_format_for_setting_values_and_cells():
    from groklab.format import MISSING, WHOLE, mean_se, number, setting, stderr

    assert (setting(0.001), setting(1.0), setting(7), setting(None)) == ("0.001", "1", "7", "None")
    assert setting([1e-3, 2e-3]) == "(0.001, 0.002)" and setting({"a": 0.5}) == "{a=0.5}"
    assert setting([1e-3, 2e-3], compact=True) == "0.001,0.002"  # a label's token: no spaces
    assert setting({"a": 0.5, "b": 2.0}, compact=True) == "a=0.5,b=2"
    assert setting(0.000812345, float_format=".3g") == "0.000812"
    assert mean_se(300.0, 200 / math.sqrt(3), WHOLE) == "300 ± 115"  # whole steps
    assert mean_se(0.99, math.nan) == "0.990"  # one seed: no stderr, no ±
    assert mean_se(math.nan, math.nan) == mean_se(None, None) == number(None) == MISSING
    assert math.isnan(stderr([1.0])) and stderr([1.0, 0.992]) == pytest.approx(0.004)
    assert stderr([100, 500, 300]) == pytest.approx(200 / math.sqrt(3))


def test_the_language_model_table_shows_one_seed_without_stderr():
    from groklab.lm.summary import lm_frame, lm_summary, lm_table

    row = {"id": "r", "label": "none", "seed": 0, "final_train_loss": 1.23456,
           "best_val_loss": 1.5, "wall_s": 10.0, "train_tokens_per_s": 1000.4,
           "gen_tokens_per_s": None, "sample": ""}
    table = lm_table(lm_summary(lm_frame([row, {**row, "id": "s", "label": "two"},
                                          {**row, "id": "t", "label": "two", "seed": 1,
                                           "final_train_loss": 1.0}])))
    assert list(table.loc["none"]) == [1, "1.235", "1.500", "10", "1000", "—"]
    assert table.loc["two", "final train loss"] == "1.117 ± 0.117"
