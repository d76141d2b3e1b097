"""The `groklab` command as a careful user first meets it (issue 21, part A): it starts
without the training code, every --help shows its text as written, -h and --version work,
and progress through a pipe or into a file is a few plain lines."""

import io
import json
import re
import subprocess
import sys
import unicodedata
from importlib.metadata import version
from typing import get_args

import pytest
from conftest import groklab

import groklab as gl
from groklab.cli import app
from groklab.cli.names import MODELS, OPTIMIZERS, TASKS

HEAVY = ("torch", "pandas", "numpy", "matplotlib", "groklab.spec", "groklab.engine",
         "groklab.store", "groklab.report", "groklab.studies", "groklab.tasks",
         "groklab.models", "optuna", "ray", "tensorboard")


def _loaded_after(code: str) -> list[str]:
    """The heavy modules a fresh interpreter holds after running ``code``."""
    probe = (f"{code}\nimport json, sys\n"
             f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_importing_the_command_loads_no_heavy_library():
    assert _loaded_after("import groklab.cli") == []
    assert _loaded_after("import groklab") == []


def test_help_list_version_and_a_bad_flag_load_no_heavy_library():
    code = ("import contextlib, io\nfrom groklab.cli import main\n"
            "for argv in (['--help'], ['run', '--help'], ['lm', '-h'], ['list'], ['--version'],"
            " ['run', '--out', 'never', '--bad-flag'], ['rnu']):\n"
            "    with contextlib.redirect_stdout(io.StringIO()), "
            "contextlib.redirect_stderr(io.StringIO()):\n        main(argv)")
    assert _loaded_after(code) == []


def test_public_names_load_on_first_use_and_report_stays_the_function():
    import groklab.report.figures  # noqa: F401  (the subpackage imports as usual)
    from groklab import api
    from groklab.report import tables

    assert gl.report is api.report and callable(gl.report)
    assert tables.__name__ == "groklab.report.tables"
    assert isinstance(sys.modules["groklab.report"], type(sys))
    assert sorted(gl.__all__) == sorted(gl._WHERE)
    assert {name: getattr(gl, name) is not None for name in gl.__all__} == dict.fromkeys(
        gl.__all__, True)
    assert set(gl.__all__) <= set(dir(gl))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        gl.nope  # noqa: B018


def test_names_shown_without_the_training_code_equal_the_registries():
    from groklab.models import model_names
    from groklab.optim.chains import chain_names
    from groklab.spec import OptimizerName
    from groklab.tasks import task_names

    assert list(TASKS) == task_names()
    assert sorted(MODELS) == model_names()
    assert list(OPTIMIZERS) == list(get_args(OptimizerName))
    assert sorted(OPTIMIZERS) == sorted(chain_names())
    run = _command("run")
    helps = {p.name: p.help for p in run.params}
    assert all(m in helps["model"] for m in MODELS)
    assert all(o in helps["optimizer"] for o in OPTIMIZERS)


def test_list_names_everything_without_counting_and_counts_with_runs():
    from groklab.studies import preset, preset_names

    out = groklab("list").stdout
    assert all(name in out for name in (*TASKS, *MODELS, *OPTIMIZERS, "layerwise"))
    studies = out.split("studies")[1].splitlines()[1:]
    assert [line.split()[0] for line in studies] == preset_names()
    line = next(x for x in studies if x.split()[0] == "paper-ablation")
    assert line.split(None, 1)[1] == preset("paper-ablation").description
    assert " runs " not in out
    assert "12 runs  " + preset("paper-ablation").description in groklab("list", "--runs").stdout


def test_version_and_h_on_every_command():
    assert groklab("--version").stdout.strip() == f"groklab {version('groklab')}"
    for path in _command_paths():
        assert groklab(*path, "-h").stdout == groklab(*path, "--help").stdout != ""


# -- help text as written ---------------------------------------------------------------------


def _command(*path: str):
    import typer

    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    return cmd


def _command_paths() -> list[tuple[str, ...]]:
    """Every command and sub-command, e.g. ("run",), ("export", "csv")."""
    out: list[tuple[str, ...]] = [()]

    def walk(cmd, path):
        for name, sub in getattr(cmd, "commands", {}).items():
            out.append((*path, name))
            walk(sub, (*path, name))

    walk(_command(), ())
    return out


def _flat(text: str) -> str:
    """Whitespace normalised; a line broken after a hyphen (``--stop-`` / ``patience``) is
    joined, as the wrapper breaks lines there."""
    return re.sub(r"-\s+", "-", " ".join(text.split()))


def _emoji(text: str) -> list[str]:
    return [c for c in text if unicodedata.category(c) == "So" and ord(c) >= 0x2600]


@pytest.mark.parametrize("path", _command_paths(), ids=lambda p: " ".join(p) or "groklab")
def test_help_shows_every_text_as_written_at_80_columns(monkeypatch, path):
    monkeypatch.setenv("COLUMNS", "80")
    shown = groklab(*path, "--help").stdout
    flat = _flat(shown)
    cmd = _command(*path)
    texts = [cmd.help or ""] + [p.help or "" for p in cmd.params]
    texts += [sub.get_short_help_str(80) for sub in getattr(cmd, "commands", {}).values()]
    rest = flat
    for text in texts:  # every description in full (a command's own: up to its \f)
        assert _flat(text.partition("\f")[0]) in flat
        rest = rest.replace(_flat(text.partition("\f")[0]), "")
    rest = re.sub(r"\S*(\]|ARGS|RUN_ID)\.\.\.\S*", "", rest)  # "[ARGS]...": repeatable
    assert "…" not in rest and "..." not in rest  # nothing cut
    assert _emoji(shown) == [] and "S" "PEC" not in shown  # an old citation users cannot find
    assert max(len(line) for line in shown.splitlines()) <= 80
    for param in cmd.params:  # a default that holds a newline is shown in words
        if isinstance(param.default, str) and not param.default.isprintable():
            assert isinstance(param.show_default, str)
    assert not re.search(r"\[default:\s*\]", shown)


def test_help_keeps_what_markup_would_eat():
    run_help = _flat(groklab("run", "--help").stdout)
    assert "ema:0.98:2" in run_help and "ma:100:5" in run_help
    assert "{name: [[step, value], ...]}" in _flat(groklab("results", "--help").stdout)
    assert "[default: (a newline)]" in groklab("sample", "--help").stdout


# -- progress ---------------------------------------------------------------------------------


def test_a_run_through_a_pipe_writes_a_few_plain_progress_lines(tmp_path):
    proc = groklab("run", "--out", str(tmp_path / "o"), "--p", "5", "--steps", "200",
                   "--eval-every", "5", "--batch-size", "8", "--d-model", "16",
                   "--n-heads", "2")
    assert "\r" not in proc.stderr and "\x1b[" not in proc.stderr
    lines = [x for x in proc.stderr.splitlines() if " step (" in x]
    # one line per 5 % done (the start is not written; a minute passing adds one)
    assert 20 <= len(lines) <= 21, proc.stderr
    assert lines[0].startswith("[1/1] x_plus_y ×1: 10/200 step (5 %)")
    assert lines[-1].startswith("[1/1] x_plus_y ×1: 200/200 step (100 %)")


def test_every_progress_bar_goes_through_the_one_helper():
    import ast
    from pathlib import Path

    src = Path(gl.__file__).parent
    users = sorted(str(p.relative_to(src)) for p in src.rglob("*.py")
                   if any(isinstance(n, ast.ImportFrom | ast.Import) and "tqdm" in (
                       getattr(n, "module", None) or " ".join(a.name for a in n.names))
                       for n in ast.walk(ast.parse(p.read_text()))))
    assert users == ["progress.py"]


class _Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_line_progress_writes_each_5_percent_or_minute_and_the_end(monkeypatch):
    from groklab import progress

    clock = _Clock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    out = io.StringIO()
    bar = progress.bar(total=1000, desc="task ×2", unit="step", file=out)
    assert isinstance(bar, progress.LineProgress)
    for _ in range(1000):
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 20 and lines[0].startswith("task ×2: 50/1000 step (5 %)")
    assert lines[-1].startswith("task ×2: 1000/1000 step (100 %)")
    slow = io.StringIO()
    bar = progress.bar(total=1000, unit="step", file=slow)
    for _minute in range(3):  # 1 % a minute: a line each minute, not each step
        for _ in range(10):
            clock.t += 6.0
            bar.update(1)
    bar.set_postfix_str("val acc 0.5")
    bar.n = 1000  # set directly, as the runner's overall bar does
    bar.update(0)
    bar.close()
    lines = slow.getvalue().splitlines()
    assert [x.split(" step")[0] for x in lines] == ["10/1000", "20/1000", "30/1000", "1000/1000"]
    assert lines[0] == "10/1000 step (1 %) 1:00 elapsed, 1:39:00 left"
    assert lines[-1].endswith("val acc 0.5")


def test_in_a_terminal_the_bar_is_tqdm():
    from tqdm import tqdm

    from groklab import progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    with progress.bar(range(3), file=Terminal(), disable=True) as bar:
        assert isinstance(bar, tqdm) and list(bar) == [0, 1, 2]
    with progress.bar(range(3), file=io.StringIO(), desc="bench") as bar:
        assert list(bar) == [0, 1, 2]
