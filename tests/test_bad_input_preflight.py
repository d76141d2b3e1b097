"""Every check before the store (issue 27, 2): an empty split, a parent of another shape, an
output path under a file, a device this machine lacks. Each used to fail after the store was
opened (a long traceback, runs left 'interrupted'); now engine/preflight.py refuses it before
anything is written: the command prints one line and exits 2, ``run_specs`` raises a
``PreflightError`` (a ``ValueError``) without creating a store."""

import pytest
import torch
from conftest import TINY_COMMAND, groklab, results_json, tiny_args
from fake_runs import files

from groklab.engine import run_specs
from groklab.engine.preflight import (
    DeviceError,
    OutputError,
    ParentError,
    PreflightError,
    SplitError,
    preflight,
)
from groklab.spec import RunSpec

ARGS = tiny_args("p")


def refused(cwd, *argv: str) -> str:
    proc = groklab(*argv, check=False, cwd=cwd)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.mark.parametrize("argv, words", [
    (["--p", "5", "--train-fraction", "0.01"], "has 25 example(s), 0 for training"),
    # beyond the listed one: division's table has p·(p-1) pairs
    (["--task", "x_div_y", "--p", "3", "--train-fraction", "0.1"],
     "has 6 example(s), 0 for training"),
])
def test_an_empty_split_is_refused_before_the_store(tmp_path, argv, words):
    line = refused(tmp_path, "run", *ARGS, *argv, "--out", "out")
    assert "train_fraction" in line and "training split empty" in line and words in line, line
    assert not (tmp_path / "out").exists()


def test_a_split_of_one_example_is_a_warning_not_an_error(tmp_path):
    """--p 2 --task x_div_y: 2 pairs, 1 for training and 1 for validation; it trains, with
    one warning line that batches repeat that one example."""
    proc = groklab("run", *ARGS, "--task", "x_div_y", "--p", "2", "--out", str(tmp_path / "o"))
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert warnings == ["groklab: warning: the training split of task x_div_y (p 2, "
                        "train_fraction 0.5) holds only 1 example(s): every batch repeats "
                        "examples"], proc.stderr
    (run,) = results_json(tmp_path / "o")
    assert run["status"] == "finished"


def test_a_split_smaller_than_the_batch_is_a_warning(tmp_path):
    proc = groklab("run", "--steps", "2", "--d-model", "16", "--n-heads", "2",
                   "--no-progress", "--p", "5", "--out", str(tmp_path / "o"))
    assert ("holds 12 example(s), fewer than the batch size 512: every batch repeats "
            "examples") in proc.stderr


def test_a_study_with_an_empty_split_is_refused_before_the_store(tmp_path):
    study = tmp_path / "s.toml"
    study.write_text('name = "s"\n[settings]\np = 5\nsteps = 2\nd_model = 16\nn_heads = 2\n'
                     "[grid]\ntrain_fraction = [0.5, 0.01]\n")
    line = refused(tmp_path, "study", str(study), "--out", "out")
    assert "train_fraction 0.01 leaves the training split empty" in line, line
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    """A store with one finished run (x_plus_y, p 5, width 16) to start from."""
    out = tmp_path_factory.mktemp("parent") / "out"
    groklab("run", *ARGS, "--p", "5", "--out", str(out))
    (run,) = results_json(out)
    return out, run["id"]


@pytest.mark.parametrize("argv, differ", [
    (["--p", "5", "--d-model", "32"], "d_model 32 (parent: 16)"),
    (["--p", "7", "--d-model", "16"], "p 7 (parent: 5)"),
    # beyond the listed ones: another model; a deeper one
    (["--p", "5", "--model", "mlp", "--set", "d_model=16"],
     "model 'mlp' (parent: 'transformer')"),
    (["--p", "5", "--d-model", "16", "--n-layers", "3"], "n_layers 3 (parent: 2)"),
])
def test_a_parent_of_another_shape_is_refused_naming_what_differs(parent, argv, differ):
    out, pid = parent
    before = files(out)
    heads = [] if "--model" in argv else ["--n-heads", "2"]
    argv = ["--steps", "2", "--batch-size", "8", "--no-progress", *heads, *argv]
    line = refused(out.parent, "run", *argv, "--set", f"init_from={pid}", "--out", str(out))
    assert f"init_from {pid}: the parent has other parameter shapes" in line, line
    assert differ in line, line
    assert files(out) == before and len(results_json(out)) == 1  # nothing written


def test_a_parent_of_the_same_shape_is_taken(parent):
    out, pid = parent
    spec = RunSpec(**TINY_COMMAND, init_from=pid)  # the parent's settings
    preflight([spec], out, "cpu")  # no error


@pytest.mark.parametrize("out, words", [
    ("afile/sub", "afile is a file, not a folder"),
    # beyond the listed one: the file itself, and a path two levels under it
    ("afile", "afile exists and is not a folder"),
    ("afile/sub/deeper", "afile is a file, not a folder"),
])
def test_an_output_path_under_a_file_is_refused(tmp_path, out, words):
    (tmp_path / "afile").write_text("not a folder")
    line = refused(tmp_path, "run", *ARGS, "--p", "5", "--out", out)
    assert words in line, line
    with pytest.raises(OutputError, match="not a folder"):
        run_specs([RunSpec(p=5, steps=1)], tmp_path / out, device="cpu", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_run_specs_on_cuda_without_a_gpu_creates_no_store(tmp_path):
    with pytest.raises(DeviceError, match="no CUDA GPU is available"):
        run_specs([RunSpec(p=5, steps=1)], tmp_path / "out", device="cuda", progress=False)
    with pytest.raises(DeviceError, match="no CUDA GPU is available"):  # beyond: cuda:1
        run_specs([RunSpec(p=5, steps=1)], tmp_path / "out", device="cuda:1", progress=False)
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):  # beyond: no such kind
        run_specs([RunSpec(p=5, steps=1)], tmp_path / "out", device="tpu", progress=False)
    assert not (tmp_path / "out").exists()


def test_run_specs_refuses_an_empty_split_before_creating_a_store(tmp_path):
    with pytest.raises(SplitError) as caught:
        run_specs([RunSpec(p=5, train_fraction=0.01, steps=1)], tmp_path / "out",
                  device="cpu", progress=False)
    assert isinstance(caught.value, PreflightError) and isinstance(caught.value, ValueError)
    assert not (tmp_path / "out").exists()


def test_run_specs_refuses_a_parent_of_another_shape(parent, tmp_path):
    out, pid = parent
    child = RunSpec(p=5, d_model=32, n_heads=2, steps=2, batch_size=8, init_from=pid)
    with pytest.raises(ParentError, match="d_model 32"):
        run_specs([child], out, device="cpu", progress=False)
    assert len(results_json(out)) == 1
