"""Limits before allocation (issue 27, 1): a run that cannot fit alone, runs that cannot fit
together, absurd counts and absurd budgets are caught before anything is allocated or written
(engine/limits.py, cli/checks.py)."""

import json
import subprocess
import sys

import pytest
from conftest import TINY_COMMAND, groklab, results_json, tiny_args

import groklab.engine.limits as limits
from groklab.spec import RunSpec

ARGS = tiny_args()


def refused(cwd, *argv: str) -> str:
    proc = groklab(*argv, check=False, cwd=cwd)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert not (cwd / "out").exists()
    return lines[0]


@pytest.mark.parametrize("argv, words", [
    (["run", "--p", "5", "--steps", "10", "--seeds", "100000"], "--seeds 100000: 100,000 runs"),
    # beyond the listed one: seeds × rates, and a study's seeds
    (["run", "--p", "5", "--seeds", "4000", "--lr", "baseline", "--lr", "run1", "--lr", "run2"],
     "--seeds 4000 × 3 --lr values: 12,000 runs"),
    (["study", "paper-table1", "--seeds", "100000"],
     "--seeds 100000 of study paper-table1: 800,000 runs"),
])
def test_absurd_counts_are_refused_without_yes(tmp_path, argv, words):
    line = refused(tmp_path, *argv, "--out", "out")
    assert words in line and "more than 10,000 in one command; give --yes" in line, line


def test_a_study_file_of_absurdly_many_seeds_is_refused_before_expanding(tmp_path):
    study = tmp_path / "many.toml"
    study.write_text("seeds = 200000\n[settings]\np = 5\n")
    line = refused(tmp_path, "study", str(study), "--out", "out")
    assert "expands to up to 200,000 runs" in line and "--yes" in line, line


def test_yes_lets_a_count_over_the_limit_train(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "MAX_RUNS", 2)
    refused(tmp_path, "run", *ARGS, "--seeds", "3", "--out", "out")
    groklab("run", *ARGS, "--seeds", "3", "--yes", "--out", str(tmp_path / "out"))
    assert len(results_json(tmp_path / "out")) == 3


@pytest.mark.parametrize("argv, names", [
    (["--batch-size", "100000", "--d-model", "1024"], ("training batch", "--batch-size 100000")),
    # beyond the listed one: a Grokfast MA window that keeps a million gradients per run
    (["--grad-filter", "ma:1000000:5"], ("parameters and optimiser state", "--grad-filter")),
])
def test_a_run_that_cannot_fit_alone_is_refused_naming_its_flags(tmp_path, argv, names):
    line = refused(tmp_path, "run", "--p", "5", "--steps", "10", *argv, "--out", "out")
    assert "one run needs about" in line and "available on cpu" in line, line
    assert all(n in line for n in names), line


def test_runs_that_do_not_fit_together_train_in_cohorts_that_do(tmp_path, monkeypatch):
    one = limits.estimate_cohort_bytes(
        [RunSpec(**TINY_COMMAND)], "cpu").total
    # room for 2 of these runs (and not 3) in SAFETY × available
    monkeypatch.setattr(limits, "available_bytes", lambda device: int(2.5 * one / 0.8))
    proc = groklab("run", *ARGS, "--seeds", "5", "--out", str(tmp_path / "out"))
    notes = [line for line in proc.stderr.splitlines() if "cohorts of at most" in line]
    assert notes == [notes[0]] and "5 runs need about" in notes[0], proc.stderr
    assert "training them as 3 cohorts of at most 2 runs" in notes[0], notes
    assert [r["status"] for r in results_json(tmp_path / "out")] == ["finished"] * 5


def test_max_runs_per_cohort_is_the_largest_count_that_fits():
    specs = [RunSpec(p=5, d_model=16, n_heads=2, seed=s) for s in range(50)]
    total = limits.estimate_cohort_bytes(specs, "cpu").total
    assert limits.max_runs_per_cohort(specs, "cpu", int(total / limits.SAFETY) + 1) is None
    k = limits.max_runs_per_cohort(specs, "cpu", total // 4)
    assert 0 < k < 50
    room = limits.SAFETY * (total // 4)
    assert limits.estimate_cohort_bytes(specs[:k], "cpu").total <= room
    assert limits.estimate_cohort_bytes(specs[: k + 1], "cpu").total > room
    assert limits.max_runs_per_cohort(specs, "cpu", None) is None
    assert limits.max_runs_per_cohort(specs, "cpu", 1000) == 0


def test_the_estimate_grows_with_what_makes_a_run_big():
    def need(**kw):
        return limits.estimate_cohort_bytes([RunSpec(p=11, **kw)], "cpu")

    base = need()
    assert need(batch_size=1024).parts["training batch"] > base.parts["training batch"]
    assert need(grad_filter="ma", filter_window=100).parts["parameters and optimiser state"] \
        > 50 * base.parts["parameters and optimiser state"] / 8
    two = limits.estimate_cohort_bytes([RunSpec(p=11, seed=s) for s in (0, 1)], "cpu")
    assert base.total < two.total <= 2 * base.total


def test_available_memory_reads_the_address_space_limit():
    """Under ``prlimit --as`` (RLIMIT_AS) the room is what the limit leaves, not the
    machine's free memory."""
    code = ("import resource, json; from groklab.engine.limits import available_bytes;"
            "free = available_bytes('cpu');"
            "hard = resource.getrlimit(resource.RLIMIT_AS)[1];"
            "resource.setrlimit(resource.RLIMIT_AS, (3 << 30, hard));"
            "print(json.dumps([free, available_bytes('cpu')]))")
    free, capped = json.loads(subprocess.run([sys.executable, "-c", code], check=True,
                                             capture_output=True, text=True).stdout)
    assert 0 < capped < 3 << 30 and capped <= free


def test_the_estimate_is_above_what_a_cohort_really_takes():
    """Peak resident memory of a small cohort's training against the estimate (in a fresh
    process, on this machine; the numbers measured for larger ones: engine/limits.py)."""
    code = """
import json, re, torch
from groklab.engine import train_cohort
from groklab.engine.limits import estimate_cohort_bytes
from groklab.spec import RunSpec
def kb(key):
    return int(re.search(rf"^{key}:\\s+(\\d+) kB", open("/proc/self/status").read(), re.M)[1])
specs = [RunSpec(p=23, d_model=32, n_heads=2, batch_size=256, steps=10, seed=s)
         for s in range(8)]
estimate = estimate_cohort_bytes(specs, "cpu").total
torch.set_num_threads(1)
base = kb("VmRSS")
train_cohort(specs, "cpu", progress=False)
print(json.dumps([(kb("VmHWM") - base) * 1024, estimate]))
"""
    grown, estimate = json.loads(subprocess.run([sys.executable, "-c", code], check=True,
                                                capture_output=True, text=True).stdout)
    assert 0 < grown <= estimate, (grown, estimate)


@pytest.mark.parametrize("argv", [
    ["run", "--p", "5", "--steps", "100000000000"],
    # beyond the listed one: a study whose steps make it absurd
    ["study", "paper-table1", "--steps", "10000000000"],
])
def test_an_absurd_budget_asks_for_yes(tmp_path, argv):
    line = refused(tmp_path, *argv, "--out", "out")
    assert "would train for at least" in line and "give --yes" in line, line


def test_estimated_seconds_and_their_words():
    assert limits.estimate_seconds([1e9, 2e9], [10, 5], 1e9) == 20.0
    assert limits.duration(3 * 86400) == "3.0 days"
    assert limits.duration(400 * 365 * 86400) == "400 years"
    assert limits.size(3 << 30) == "3.0 GiB"
