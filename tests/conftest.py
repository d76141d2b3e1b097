"""Shared helpers: the small run the tests train (``TINY``) and its command line; run the
`groklab` command, in this process (fast: no interpreter start-up, modules already imported)
or, for what needs a process of its own (killing it, the console entry point), in a
subprocess."""

import contextlib
import io
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import pytest

from groklab.cli import main

GROKLAB = [sys.executable, "-m", "groklab.cli"]

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test`: one torch thread per worker process
    # (two workers on two cores; more threads than cores made a cohort step 40x slower), and
    # the same for the processes the tests start
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

# The small run the tests train: a Transformer of width 16 with 2 heads on x + y mod 11, 12
# steps of 16 examples, evaluated every 4 steps after a warm-up of 2. A test that needs other
# settings takes ``tiny(...)``: these with some left out (at RunSpec's defaults) or changed.
TINY: dict[str, Any] = dict(task="x_plus_y", p=11, d_model=16, n_heads=2, steps=12,
                            batch_size=16, eval_every=4, warmup=2)


def tiny(*without: str, **changed: Any) -> dict[str, Any]:
    """``TINY`` without the settings named in ``without``, with those in ``changed``."""
    unknown = set(without) - set(TINY)
    assert not unknown, f"not in TINY: {sorted(unknown)}"
    return {k: v for k, v in TINY.items() if k not in without} | changed


def flags(settings: dict[str, Any]) -> list[str]:
    """Run settings (numbers and names) as ``groklab run`` flags: ``{"d_model": 16}`` ->
    ``["--d-model", "16"]``."""
    return [a for k, v in settings.items() for a in (f"--{k.replace('_', '-')}", str(v))]


# the settings of the command-line tests' runs: TINY's model on x_plus_y mod 5, 2 steps of 8
# examples (task, evaluation and warm-up at the command's defaults)
TINY_COMMAND = tiny("task", "eval_every", "warmup", p=5, steps=2, batch_size=8)


def tiny_args(*without: str, **changed: Any) -> list[str]:
    """``TINY_COMMAND`` as flags, without a progress bar; ``without`` and ``changed`` as
    ``tiny`` takes them."""
    unknown = set(without) - set(TINY_COMMAND)
    assert not unknown, f"not in TINY_COMMAND: {sorted(unknown)}"
    return [*flags({k: v for k, v in TINY_COMMAND.items() if k not in without} | changed),
            "--no-progress"]


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


# The files that take longest, first: `make test` gives two workers a file at a time in
# collection order (pytest -n 2 --dist loadfile), so a long file collected last would end the
# run alone while the other worker idles. The other files keep their order.
# (test_compile.py: about 75 s on one core where Inductor's cache is cold, as in CI)
LONGEST_FIRST = ("test_cli.py", "test_fault_campaign.py", "test_compile.py", "test_precision.py",
                 "test_ray.py", "test_bench.py", "test_faults.py", "test_tune.py",
                 "test_checkpoint.py", "test_report.py", "test_slots_store.py",
                 "test_measures.py", "test_report_html_browser.py", "test_reference.py",
                 "test_fused_chain.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
