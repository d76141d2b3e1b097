"""Strict values (issue 27, 4): booleans are not numbers, strings are not booleans, a setting
has one value, a study file says something, an output folder is not empty text, and --tasks
only narrows a study. Each is one line on stderr, exit code 2, nothing written."""

import pytest
from conftest import groklab, tiny_args
from pydantic import ValidationError

from groklab.spec import RunSpec
from groklab.studies import StudyError, load_toml

ARGS = tiny_args()


def refused(tmp_path, *argv: str) -> str:
    """Run the command; assert one line, exit 2, nothing written; return the line."""
    proc = groklab(*argv, check=False, cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in tmp_path.iterdir() if p.suffix == ".toml"), "something was written"
    return lines[0]


@pytest.mark.parametrize("toml, key, got", [
    ("steps = true", "settings.steps", "expects a number, got true"),
    ("weight_decay = true", "settings.weight_decay", "expects a number, got true"),
    ('grad_ortho = "yes"', "settings.grad_ortho", 'expects true or false, got "yes"'),
    # beyond the listed ones
    ("grad_ortho = 1", "settings.grad_ortho", "expects true or false, got 1"),
    ('weight_decay = "0.5"', "settings.weight_decay", 'expects a number, got "0.5"'),
    ("lr = [true, 1e-3, 1e-3]", "settings.lr", "rates are numbers, got [true, 0.001, 0.001]"),
])
def test_a_study_value_of_the_wrong_kind_is_an_error(tmp_path, toml, key, got):
    path = tmp_path / "s.toml"
    path.write_text(f'name = "s"\n[settings]\np = 5\n{toml}\n')
    line = refused(tmp_path, "study", str(path), "--out", "out")
    assert f"{path}: {key}" in line and got in line, line
    with pytest.raises(StudyError, match=key):
        load_toml(path.read_text(), str(path))


@pytest.mark.parametrize("setting, got", [
    ("steps=true", "--set steps: expects a number, got true"),
    ("weight_decay=true", "--set weight_decay: expects a number, got true"),
    ("grad_ortho=yes", '--set grad_ortho: expects true or false, got "yes"'),
    # beyond the listed ones
    ("nesterov=1", "--set nesterov: expects true or false, got 1"),
    ('batch_size="8"', '--set batch_size: expects a number, got "8"'),
])
def test_a_set_value_of_the_wrong_kind_is_an_error(tmp_path, setting, got):
    line = refused(tmp_path, "run", "--p", "5", "--set", setting, "--out", "out")
    assert got in line, line


def test_run_spec_takes_booleans_as_switches_only():
    for bad in (dict(steps=True), dict(weight_decay=False), dict(grad_ortho="yes"),
                dict(grad_ortho=1), dict(lr=(True, 1e-3, 1e-3)), dict(seed="0")):
        with pytest.raises(ValidationError):
            RunSpec(**bad)
    ok = RunSpec(steps=10.0, grad_ortho=True, weight_decay=1, grad_clip=None)
    assert (ok.steps, ok.grad_ortho, ok.weight_decay) == (10, True, 1.0)


@pytest.mark.parametrize("argv, named", [
    (["--steps", "10", "--set", "steps=20"], ("--steps 10", "--set steps=20")),
    (["--set", "p=7"], ("--p 5", "--set p=7")),
    (["--d-model", "32", "--set", "d_model=16"], ("--d-model", "--set d_model=16")),
    (["--set", "warmup=1", "--set", "warmup=2"], ("--set warmup is given twice", "1 and 2")),
    # beyond the listed ones
    (["--grad-filter", "ema:0.9:2", "--set", "filter_alpha=0.8"],
     ("--grad-filter", "--set filter_alpha=0.8")),
])
def test_two_values_for_one_setting_name_both(tmp_path, argv, named):
    line = refused(tmp_path, "run", *ARGS, *argv, "--out", "out")
    assert all(n in line for n in named), line


def test_two_values_for_one_setting_of_a_study_name_both(tmp_path):
    line = refused(tmp_path, "study", "paper-table1", "--steps", "10", "--set", "steps=20",
                   "--out", "out")
    assert "--steps 10" in line and "--set steps=20" in line, line


@pytest.mark.parametrize("text", ["", "# nothing here yet\n\n"])
def test_an_empty_study_file_is_an_error(tmp_path, text):
    path = tmp_path / "empty.toml"
    path.write_text(text)
    line = refused(tmp_path, "study", str(path), "--out", "out")
    assert f"{path}: file: the study is empty" in line, line


@pytest.mark.parametrize("argv", [
    ["run", *ARGS, "--out", ""],
    # beyond the listed one
    ["run", *ARGS, "--out", "   "],
    ["study", "paper-table1", "--out", ""],
])
def test_an_empty_output_folder_is_an_error(tmp_path, argv):
    line = refused(tmp_path, *argv)
    assert "--out" in line and "empty text" in line, line


def test_report_and_export_refuse_an_empty_output_folder(tmp_path):
    from fake_runs import curve, spec, write

    write(tmp_path / "store", [(spec(), curve([0.5]))])
    for argv in (["report", str(tmp_path / "store"), "--out", ""],
                 ["export", "csv", str(tmp_path / "store"), ""]):
        proc = groklab(*argv, check=False, cwd=tmp_path)
        assert proc.returncode == 2 and "empty text" in proc.stderr, proc.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


@pytest.mark.parametrize("study, tasks, foreign", [
    ("paper-ablation", "x_plus_y", "x_plus_y"),
    # beyond the listed one: one of two tasks foreign
    ("paper-table1", "x_plus_y,sum", "sum"),
])
def test_tasks_only_narrow_a_study_to_tasks_it_has(tmp_path, study, tasks, foreign):
    line = refused(tmp_path, "study", study, "--tasks", tasks, "--out", "out")
    assert f"has no runs of task {foreign!r}" in line, line


def test_an_id_given_by_set_stays_text(tmp_path):
    """An id of digits only is an id, not a number: the error is that no such run exists."""
    line = refused(tmp_path, "run", *ARGS, "--set", "init_from=1234567890123456",
                   "--out", "out")
    assert "1234567890123456: no such run" in line, line


@pytest.mark.parametrize("argv, words", [
    (["--task", "x_times_y"], "unknown task 'x_times_y'"),
    (["--task", "x_div_y", "--p", "9"], "composite p = 9"),
    (["--lr", "0"], "learning rates must be positive"),
    (["--train-fraction", "1.5"], "--train-fraction must be in (0, 1), got 1.5"),
])
def test_the_readme_promise_about_bad_input_holds(tmp_path, argv, words):
    """README, The command line: "Bad input (unknown task, a composite p for x_div_y, a zero
    rate, a fraction outside (0, 1), an output path that is a file…) prints one line and
    exits with code 2 without writing anything." """
    assert words in refused(tmp_path, "run", *argv, "--out", "out")
    (tmp_path / "afile.toml").write_text("a file, not a folder")
    line = refused(tmp_path, "run", "--out", "afile.toml")
    assert "afile.toml exists and is not a folder" in line
