"""`groklab bench`: the figures it prints are consistent with each other (no timing asserted)."""

import json

import pytest

from groklab.bench import (
    METHODS,
    bench_training,
    matmul_peak,
    reference_specs,
    step_flops,
)
from groklab.models import Transformer


def test_step_flops_is_training_plus_amortised_evaluation():
    spec = reference_specs(1, "fp32", steps=10)[0]
    model = Transformer(vocab_size=99, n_classes=97, seq_len=4)
    n_val = 97 * 96 - int(0.5 * 97 * 96)  # x_div_y: b runs over 1..p-1
    expected = model.train_step_flops(512) + model.forward_flops(n_val) / 10
    assert step_flops(spec) == expected


def test_bench_row_figures_agree():
    assert matmul_peak("cpu", "fp32", repeats=1) > 0
    row = bench_training("cpu", "fp32", cohort=2, windows=1, batch_size=64)
    assert row.cohort == 2 and row.precision == "fp32" and not row.compiled
    flops = row.gflop_per_step * 1e9
    assert flops == pytest.approx(2 * step_flops(reference_specs(1, "fp32", 10,
                                                                 batch_size=64)[0]))
    assert row.achieved_gflops == pytest.approx(flops / (row.ms_per_step / 1000) / 1e9)
    assert row.fraction_of_peak == pytest.approx(row.achieved_gflops / row.peak_gflops)
    assert row.ideal_ms_per_step == pytest.approx(flops / row.peak_gflops / 1e6)
    assert row.runs_steps_per_s == pytest.approx(2000 / row.ms_per_step)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mlp", "lstm"])
def test_bench_times_other_models_with_their_flop_counts(model):
    row = bench_training("cpu", "fp32", cohort=1, windows=1, model=model, batch_size=64)
    spec = reference_specs(1, "fp32", 10, model, 64)[0]
    assert (row.model, row.batch_size) == (model, 64)
    assert row.gflop_per_step * 1e9 == pytest.approx(step_flops(spec))
    assert row.ms_per_step > 0


@pytest.mark.slow
def test_cli_bench_json(cli):
    proc = cli("bench", "--device", "cpu", "--precision", "fp32", "--cohorts", "1",
               "--batch-size", "64", "--json", "--no-progress")
    out = json.loads(proc.stdout)
    (row,) = out["rows"]
    assert row["device"] == "cpu" and row["cohort"] == 1 and row["ms_per_step"] > 0
    assert isinstance(out["torch"], str) and out["threads"] >= 1


def test_cli_bench_profile_puts_every_operator_in_a_phase(cli):
    """``--profile``: each phase's operator time per step, matmuls apart, plus what no
    operator accounts for; the phases and the untraced rest add up to the step."""
    proc = cli("bench", "--profile", "--model", "mlp", "--device", "cpu", "--precision",
               "fp32", "--cohorts", "1", "--batch-size", "64", "--json", "--no-progress")
    (prof,) = json.loads(proc.stdout)["rows"]
    phases = {p["phase"]: p for p in prof["phases"]}
    assert list(phases) == ["sample", "forward", "backward", "optimizer", "train_metrics",
                            "evaluate", "other", "untraced"]
    for name in ("forward", "backward", "evaluate"):  # the model's products are matmuls
        assert phases[name]["matmul_ms"] > 0 and phases[name]["other_ms"] > 0
    assert phases["optimizer"]["other_ms"] > 0 and phases["optimizer"]["matmul_ms"] == 0
    assert all(p["ms"] == pytest.approx(p["matmul_ms"] + p["other_ms"]) for p in phases.values())
    total = sum(p["ms"] for p in phases.values())
    assert total == pytest.approx(prof["ms_per_step"], rel=0.02)
    assert sum(p["share"] for p in phases.values()) == pytest.approx(1.0, rel=0.02)
    assert phases["forward"]["ms"] > phases["other"]["ms"]  # the engine's work is labelled
    assert prof["operators"][0]["ms"] >= prof["operators"][-1]["ms"] > 0


@pytest.mark.parametrize("args, message", [
    (["--precision", "fp8"], "--precision"),
    (["--cohorts", "0"], "--cohorts"),
    (["--cohorts", "two"], "--cohorts"),
    (["--device", "tpu"], "unknown device"),
    (["--model", "gru"], "--model"),
    (["--batch-size", "0"], "--batch-size"),
    (["--method", "adamw,lion"], "--method"),
])
def test_cli_bench_bad_input(cli, args, message):
    proc = cli("bench", *args, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_bench_times_each_method_on_the_reference_configuration():
    specs = {m: reference_specs(2, "fp32", 10, method=m) for m in METHODS}
    assert [s.optimizer for s in specs["muon"]] == ["muon", "muon"]
    assert specs["orthograd"][0].grad_ortho and specs["stablemax"][0].loss == "stablemax"
    assert specs["adamw"] == reference_specs(2, "fp32", 10)


@pytest.mark.slow
def test_bench_row_names_its_method():
    row = bench_training("cpu", "fp32", cohort=1, windows=1, method="muon")
    assert row.method == "muon" and row.ms_per_step > 0
