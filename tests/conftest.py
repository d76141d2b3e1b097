"""Shared helpers: run the real `groklab` command in a subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

GROKLAB = [sys.executable, "-m", "groklab.cli"]


def groklab(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([*GROKLAB, *args], capture_output=True, text=True, env=env, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"groklab {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def results_json(out: Path) -> list[dict]:
    return json.loads(groklab("results", str(out), "--json").stdout)


@pytest.fixture
def cli():
    return groklab
