"""The §6.2–6.5 presets (training fraction, architectures, optimisers, Grokfast): what they
expand to, how they batch into cohorts, and each one end to end at tiny size with its report."""

import pytest
from conftest import tiny

from groklab.engine.runner import plan_cohorts
from groklab.report import load_studies, write_report
from groklab.store import Store
from groklab.studies import preset, run_study

# name -> (runs, cohorts, labels of seed 0 in order, fixed settings)
PRESETS = {
    "grokking-fraction": (12, 1, [f"train_fraction={a}" for a in (0.3, 0.4, 0.5, 0.7)],
                          dict(weight_decay=0.05, batch_size=256, steps=20000)),
    "grokking-architectures": (9, 3, ["transformer", "mlp", "lstm"],
                               dict(train_fraction=0.5, batch_size=256, steps=10000)),
    "grokking-optimizers": (90, 3, [f"{v} train_fraction={a}" for a in
                                    (0.3, 0.4, 0.5, 0.6, 0.7, 0.8) for v in
                                    ("sgd", "sgd-nesterov", "adam", "adamw", "adam-dropout")],
                            dict(batch_size=256, steps=8000)),
    "grokfast": (18, 2, [f"{v} model={m}" for m in ("transformer", "mlp")
                         for v in ("none", "ma", "ema")],
                 dict(train_fraction=0.5, batch_size=256, steps=10000)),
}
# small enough for a CPU test: TINY's p = 11 and narrow models (each preset keeps its tasks,
# steps and warm-up), evaluated every 5 steps
BASE = tiny("task", "steps", "warmup", d_hidden=16, eval_every=5)


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_expands_to_the_runs_it_claims(name):
    n_runs, n_cohorts, labels, fixed = PRESETS[name]
    runs = preset(name).expand()
    assert len(runs) == n_runs
    assert list(dict.fromkeys(r.label for r in runs if r.spec.seed == 0)) == labels
    assert {r.spec.seed for r in runs} == {0, 1, 2}
    assert all(getattr(r.spec, k) == v for r in runs for k, v in fixed.items())
    assert all(r.spec.task == "x_plus_y" for r in runs)
    assert len(plan_cohorts([r.spec for r in runs])) == n_cohorts


def test_optimizer_variants_are_what_their_names_say():
    specs = {r.label.split()[0]: r.spec for r in preset("grokking-optimizers").expand()}
    assert specs["sgd"].optimizer == "sgd" and specs["sgd"].momentum == 0
    nesterov = specs["sgd-nesterov"]
    assert nesterov.nesterov and nesterov.momentum == 0.9
    assert specs["adam"].optimizer == "adam" and specs["adam"].weight_decay == 0
    assert specs["adamw"].optimizer == "adamw" and specs["adamw"].weight_decay == 0.05
    assert specs["adam-dropout"].dropout == 0.1 and specs["adam-dropout"].optimizer == "adam"


def test_grokfast_variants_use_the_reference_filters():
    specs = {r.label: r.spec for r in preset("grokfast").expand()}
    ma, ema = specs["ma model=mlp"], specs["ema model=transformer"]
    assert (ma.grad_filter, ma.filter_window, ma.resolved_filter_lamb()) == ("ma", 100, 5.0)
    assert (ema.grad_filter, ema.filter_alpha, ema.resolved_filter_lamb()) == ("ema", 0.98, 2.0)
    assert specs["none model=mlp"].grad_filter == "none"


@pytest.mark.slow
@pytest.mark.parametrize("name, steps", [("grokking-fraction", 20), ("grokking-architectures", 10),
                                         ("grokking-optimizers", 10), ("grokfast", 10)])
def test_preset_runs_at_tiny_size_and_reports(tmp_path, name, steps):
    study = preset(name).with_overrides(steps=steps, seeds=2 if name == "grokking-fraction"
                                        else 1, **BASE)
    counts = run_study(study, tmp_path, progress=False)
    assert counts["trained"] == len(study.expand())
    with Store(tmp_path, create=False) as store:
        runs = store.runs()
    assert all(r["status"] == "finished" and r["max_val_acc"] is not None for r in runs)
    files = write_report(tmp_path)
    text = files.markdown.read_text()
    assert "Maximum validation accuracy within the budget" in text
    assert "Grokking delay" in text
    names = [p.name for p in files.figures]
    by_alpha = [n for n in names if n.endswith("-by-train_fraction.png")]
    if name in ("grokking-fraction", "grokking-optimizers"):
        assert by_alpha == [f"{name}-x_plus_y-by-train_fraction.png"]
        assert by_alpha[0] in text
    else:
        assert by_alpha == []
    (data,) = load_studies(tmp_path)
    assert len(data.finished) == len(study.expand())


def test_embedding_study_expands_and_reports_its_diagnostics(tmp_path):
    runs = preset("embedding-study").expand()
    assert len(runs) == 54 and {r.spec.task for r in runs} == {"x_plus_y", "x_div_y"}
    assert len(plan_cohorts([r.spec for r in runs])) == 6  # task × (one-hot, MLP, Transformer)
    by_label = {r.label: r.spec for r in runs if r.spec.task == "x_div_y" and r.spec.seed == 0}
    assert not by_label["mlp-one-hot"].embedding and by_label["mlp"].embedding
    both = by_label["mlp-adaptive-balanced"]
    assert (both.embedding_lr, both.sampling, both.model) == ("adaptive", "balanced", "mlp")
    assert by_label["transformer-layerwise"].lr == (8e-4, 2e-3, 3e-3)
    assert all(r.spec.diagnostics for r in runs)
    tiny = preset("embedding-study").with_overrides(steps=10, seeds=1, tasks=["x_plus_y"],
                                                    **BASE)
    run_study(tiny, tmp_path, progress=False)
    files = write_report(tmp_path)
    assert [p.name for p in files.figures if p.name.endswith("-metrics.png")] == [
        "embedding-study-x_plus_y-metrics.png"]
    (data,) = load_studies(tmp_path)
    names = set(data.metrics["name"])
    assert {"sigma_max_E", "eta_E_over_eta_W", "sigma_max_E / sigma_max_W"} <= names
    one_hot = data.metrics[data.metrics["config"] == "mlp-one-hot"]
    assert one_hot.empty  # no embedding table: nothing to measure


def test_run_study_opens_its_store_once_and_uses_a_given_one(tmp_path, store_opens):
    study = preset("grokking-fraction").with_overrides(steps=5, seeds=1, **BASE)
    opened = store_opens
    assert run_study(study, tmp_path, progress=False)["trained"] == 4
    assert len(opened) == 1
    with Store(tmp_path) as store:
        counts = run_study(study, tmp_path, progress=False, store=store)
        (recorded,) = store.studies()
    assert len(opened) == 2 and counts["skipped"] == 4 and recorded["wall_s"] > 0
