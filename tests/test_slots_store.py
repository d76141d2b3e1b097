"""A run ends by itself in the store: finished (or halted by a hook) at the evaluation where it
ends, while its cohort trains on; a killed cohort with runs that ended and runs that joined resumes
bit for bit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from groklab.engine import run_specs
from groklab.spec import RunSpec
from groklab.store import Store
from groklab.store.weights import has_weights

BASE = dict(task="x_plus_y", p=11, d_model=16, n_heads=2, steps=40, batch_size=16,
            eval_every=4, warmup=6)


def test_a_run_is_finished_in_the_store_within_one_evaluation_of_its_stop(tmp_path):
    # seed 0 stops by its own rule at its first evaluation above 0 val acc; seed 1 goes on
    specs = [RunSpec(**BASE, seed=0, stop_val_acc=0.0, stop_patience=1),
             RunSpec(**BASE, seed=1)]
    seen: dict[int, str] = {}

    def watch(state, step, metrics):
        with Store(tmp_path, create=False) as store:
            seen[step] = store.status(specs[0].run_id)
        return None

    run_specs(specs, tmp_path, device="cpu", progress=False, hooks=[watch])
    with Store(tmp_path, create=False) as store:
        (a,) = [r for r in store.runs() if r["id"] == specs[0].run_id]
        (b,) = [r for r in store.runs() if r["id"] == specs[1].run_id]
        last = store.curve(specs[0].run_id)[-1].step
    assert last < 40 and a["status"] == "finished" and b["status"] == "finished"
    assert seen[last] == "running" and seen[last + 4] == "finished"  # the next evaluation
    assert a["wall_s"] < b["wall_s"]  # its own wall time, not its cohort's
    assert has_weights(tmp_path, specs[0].run_id)


SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from groklab.engine import HookResult, run_specs
    from groklab.spec import RunSpec

    out, kill_at, stop_ext = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
    base = dict(task="x_plus_y", p=11, d_model=16, n_heads=2, steps=40, batch_size=16,
                eval_every=4, warmup=6, grad_filter="ema")
    specs = [RunSpec(**base, seed=0, stop_val_acc=0.0, stop_patience=2)] + [
        RunSpec(**base, seed=s) for s in (1, 2, 3)]
    calls = []

    def killer(state, step, metrics):
        calls.append(step)
        if len(calls) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def stop_seed3(state, step, metrics):  # an external hook: seed 3 is 'halted_by_hook'
        if step == 4 and stop_ext:
            return HookResult(retire=[i for i, r in enumerate(state.index)
                                      if state.specs[r].seed == 3])

    run_specs(specs, out, device="cpu", progress=False, slots=2, checkpoint_every=4,
              hooks=[stop_seed3, killer])
""")


def _run(out, kill_at: int, stop_ext: bool) -> int:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", SCRIPT, str(out), str(kill_at),
                           "1" if stop_ext else "0"], env=env, capture_output=True,
                          text=True, timeout=300).returncode


def _store(out):
    with Store(out, create=False) as store:
        return {r["id"]: (r["status"], store.curve(r["id"]), r["final_val_acc"])
                for r in store.runs()}


@pytest.mark.slow
@pytest.mark.parametrize("stop_ext", [False, True])
def test_kill_9_after_runs_ended_and_joined_resumes_bit_for_bit(tmp_path, stop_ext):
    """Seed 0 stops by its rule at step 8, seed 2 joins; seed 1 ends at 40 and seed 3 joins
    (with ``stop_ext``: an external hook stops seed 3 at its step 4, so it is 'halted_by_hook'
    before the checkpoint at 44). SIGKILL at step 48 (the 21st evaluation call), then the
    same call again: every curve, status and final metric equals an uninterrupted call's,
    bit for bit, and an externally stopped run is still 'halted_by_hook' with no weights."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert _run(straight, 0, stop_ext) == 0
    assert _run(killed, 21, stop_ext) == -9
    # a killed owner's runs read as interrupted (owner gone)
    before = sorted(status for status, _, _ in _store(killed).values())
    assert before == sorted(["finished", "finished", "interrupted",
                             "halted_by_hook" if stop_ext else "interrupted"])
    assert list((killed / "checkpoints").glob("*.ckpt"))
    assert _run(killed, 0, stop_ext) == 0
    after, expect = _store(killed), _store(straight)
    assert after == expect
    statuses = sorted(status for status, _, _ in after.values())
    assert statuses == (["finished"] * 3 + ["halted_by_hook"] if stop_ext else ["finished"] * 4)
    for rid, (status, _, _) in after.items():
        assert has_weights(killed, rid) == (status == "finished")
    assert not list(killed.glob("checkpoints/*.ckpt"))


def test_with_one_slot_the_second_run_is_claimed_only_when_the_first_has_finished(tmp_path):
    specs = [RunSpec(**(BASE | dict(steps=12)), seed=s) for s in range(2)]
    seen = []

    def watch(state, step, metrics):
        with Store(tmp_path, create=False) as store:
            seen.append(tuple(store.status(s.run_id) for s in specs))

    counts = run_specs(specs, tmp_path, device="cpu", progress=False, slots=1, hooks=[watch])
    assert counts["trained"] == 2
    assert seen[:3] == [("running", None)] * 3  # queued: not claimed, nothing written
    assert seen[3:] == [("finished", "running")] * 3
    with Store(tmp_path, create=False) as store:
        a, b = (next(r for r in store.runs() if r["id"] == s.run_id) for s in specs)
    assert b["started"] >= a["finished"]


def test_leftovers_of_killed_processes_are_swept_once_their_runs_are_finished(tmp_path):
    """A kill between a cohort's last run and its checkpoint's removal, or during a write,
    leaves files nothing reads; the next call removes them (and keeps a live cohort's)."""
    from groklab.engine.checkpoint import Checkpointer
    from groklab.engine.runner import sweep_leftovers

    specs = [RunSpec(**(BASE | dict(steps=8)), seed=s) for s in range(2)]
    run_specs(specs, tmp_path, device="cpu", progress=False)
    folder = tmp_path / "checkpoints"
    stale = Checkpointer(folder / "cohort-0-dead.ckpt")
    stale.save([specs[0].run_id], {"format": 2, "t": 4}, [[]], extra={"queue": [specs[1].run_id]})
    live = Checkpointer(folder / "cohort-0-live.ckpt")
    live.save(["not-finished-run"], {"format": 2, "t": 4}, [[]])
    dead_tmp = folder / ".cohort-0-x.ckpt.999999999.tmp"
    dead_tmp.write_bytes(b"partial")
    os.utime(dead_tmp, (0, 0))
    mine = tmp_path / "weights" / f".abc.safetensors.{os.getpid()}.tmp"
    mine.write_bytes(b"being written")
    os.utime(mine, (0, 0))
    run_specs(specs, tmp_path, device="cpu", progress=False)  # all finished: sweeps
    assert not stale.path.exists() and not dead_tmp.exists()
    assert live.path.exists() and mine.exists()  # a run not finished; a live writer
    with Store(tmp_path) as store:
        assert sweep_leftovers(store) == []
