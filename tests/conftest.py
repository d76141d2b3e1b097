"""Shared helpers: run the `groklab` command, in this process (fast: no interpreter start-up,
modules already imported) or, for what needs a process of its own (killing it, the console
entry point), in a subprocess."""

import contextlib
import io
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from groklab.cli import main

GROKLAB = [sys.executable, "-m", "groklab.cli"]


def groklab_process(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """The real command in a subprocess."""
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([*GROKLAB, *args], capture_output=True, text=True, env=env, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"groklab {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def groklab(*args: str, check: bool = True, cwd: Path | None = None
            ) -> subprocess.CompletedProcess:
    """The command's entry function ``main`` in this process, with its stdout and stderr
    captured: what the subprocess would print and return (an uncaught exception: its
    traceback on stderr and exit code 1, as Python gives it)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.ExitStack() as stack:
        if cwd is not None:
            stack.enter_context(contextlib.chdir(cwd))
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        try:
            code = main(list(args))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except Exception:  # noqa: BLE001 - the interpreter would print it and exit 1
            traceback.print_exc()
            code = 1
    proc = subprocess.CompletedProcess(["groklab", *args], code, out.getvalue(),
                                       err.getvalue())
    if check and proc.returncode != 0:
        raise AssertionError(f"groklab {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def results_json(out: Path) -> list[dict]:
    return json.loads(groklab("results", str(out), "--json").stdout)


@pytest.fixture
def cli():
    return groklab


@pytest.fixture
def store_opens(monkeypatch) -> list:
    """Every ``Store`` opened from now on (its arguments), to count a command's stores."""
    from groklab.store import Store

    opened: list = []
    real = Store.__init__

    def counting(self, *args, **kwargs):
        opened.append(args)
        real(self, *args, **kwargs)

    monkeypatch.setattr(Store, "__init__", counting)
    return opened
