"""Faults of the machine (issue 27, 7): a write that fails (a full disk, simulated by a file
size limit, RLIMIT_FSIZE, in the command's own process) is one line and exit code 1, leaves
no half-written file, and the runs are 'interrupted': the same command, once there is room,
resumes and finishes them. Weights files get the store file's permissions."""

import os
import resource
import stat
import subprocess

import pytest
from conftest import GROKLAB, results_json

from groklab.store import STORE_NAME, Store
from groklab.store.weights import save_weights, weights_path

ARGS = ["run", "--p", "5", "--steps", "20", "--batch-size", "32", "--no-progress"]


def limited(limit: int, *args: str) -> subprocess.CompletedProcess:
    """``groklab ARGS`` in a process that may write no file larger than ``limit`` bytes."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([*GROKLAB, *args], capture_output=True, text=True, preexec_fn=cap,
                          env=os.environ | {"OMP_NUM_THREADS": "1"})


def leftovers(out) -> list[str]:
    """Temporary or partial files a failed write could leave."""
    return sorted(str(p.relative_to(out)) for p in out.rglob("*")
                  if p.is_file() and (p.name.endswith(".tmp") or p.suffix == ".safetensors"
                                      or p.suffix == ".ckpt"))


@pytest.mark.parametrize("what, args, limit", [
    # a checkpoint (the default 128-wide model: about 5 MB) over a 1 MB limit
    ("checkpoint", ["--checkpoint-every", "10"], 1_000_000),
    # beyond the listed one: the final weights (1.7 MB) with no checkpoints; the store
    # itself, when its write-ahead log outgrows the limit
    ("weights", ["--checkpoint-every", "0"], 1_000_000),
    ("store", ["--d-model", "16", "--n-heads", "2", "--steps", "600", "--eval-every", "1",
               "--checkpoint-every", "0"], 90_000),
])
def test_a_failed_write_is_one_line_and_the_runs_resume(tmp_path, what, args, limit):
    out = tmp_path / "out"
    argv = [*ARGS, *args, "--out", str(out)]
    proc = limited(limit, *argv)
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and len(errors) == 1, proc.stderr
    assert "'interrupted'" in errors[0] and "run the same command again" in errors[0]
    if what != "store":
        assert "File too large" in errors[0], errors
    assert leftovers(out) == []  # nothing half-written kept
    (run,) = results_json(out)
    assert run["status"] == "interrupted" and run["final_val_acc"] is None

    again = subprocess.run([*GROKLAB, *argv], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    (run,) = results_json(out)
    assert run["status"] == "finished" and weights_path(out, run["id"]).is_file()


def test_weights_get_the_store_files_mode(tmp_path):
    import torch

    Store(tmp_path).close()
    os.chmod(tmp_path / STORE_NAME, 0o640)
    path = save_weights(tmp_path, "0123456789abcdef", {"w": torch.ones(2)})
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    os.chmod(tmp_path / STORE_NAME, 0o664)
    path = save_weights(tmp_path, "0123456789abcdef", {"w": torch.ones(2)})
    assert stat.S_IMODE(path.stat().st_mode) == 0o664
