"""Ctrl-C: a clear message that the runs were interrupted and how to resume; their status
afterwards is 'interrupted' (released: another invocation may take them at once), never
'running'; the results table shows every missing number as format.MISSING; the next
invocation resumes them (engine/runner.py, store.release)."""

import pytest
from conftest import groklab, results_json, tiny

from groklab.engine import run_specs
from groklab.format import MISSING
from groklab.spec import RunSpec
from groklab.store import Store

BASE = tiny("warmup", p=7, steps=40, eval_every=10)  # the settings RUN gives
RUN = ["run", "--task", "x_plus_y", "--p", "7", "--steps", "40", "--batch-size", "16",
       "--set", "d_model=16", "--set", "n_heads=2", "--seeds", "2", "--no-progress"]


def ctrl_c_at(step: int):
    """A hook that acts as Ctrl-C at evaluation ``step``."""
    def hook(state, at, metrics):
        if at == step:
            raise KeyboardInterrupt

    return hook


def test_ctrl_c_from_a_hook_leaves_runs_interrupted_and_says_how_to_resume(tmp_path, capsys):
    specs = [RunSpec(**BASE, seed=s) for s in (0, 1)]
    with pytest.raises(KeyboardInterrupt):
        run_specs(specs, tmp_path, device="cpu", progress=False, hooks=[ctrl_c_at(20)])
    err = capsys.readouterr().err
    assert "interrupted: 2 run(s) in training are recorded as 'interrupted'" in err
    assert "Run the same command again to resume." in err
    with Store(tmp_path, create=False) as store:
        assert [store.status(s.run_id) for s in specs] == ["interrupted"] * 2
        assert {r["owner"] for r in store.db.execute("SELECT owner FROM runs")} == {None}
    table = groklab("results", str(tmp_path)).stdout
    lines = table.splitlines()
    assert len(lines) == 3 and all("interrupted" in line for line in lines[1:])
    assert MISSING in lines[1] and not any(w in table for w in ("nan", "None", "<NA>"))

    counts = run_specs(specs, tmp_path, device="cpu", progress=False)  # resumes: trains both
    assert counts["trained"] == 2
    with Store(tmp_path, create=False) as store:
        assert [store.status(s.run_id) for s in specs] == ["finished"] * 2
        assert [r.step for r in store.curve(specs[0].run_id)] == [10, 20, 30, 40]


def test_ctrl_c_in_the_command_keeps_the_checkpoint_and_the_next_run_resumes(
        tmp_path, monkeypatch):
    from groklab.engine import executor
    from groklab.engine.slots import Evaluated

    real = executor.slot_life

    def interrupted(*args, **kw):  # a Ctrl-C once the evaluation at step 30 is recorded
        for event in real(*args, **kw):
            yield event
            if isinstance(event, Evaluated) and event.rows[0][1].step == 30:
                raise KeyboardInterrupt

    out = tmp_path / "out"
    monkeypatch.setattr(executor, "slot_life", interrupted)
    proc = groklab(*RUN, "--checkpoint-every", "20", "--out", str(out), check=False)
    assert proc.returncode == 130
    assert (f"the cohort's last checkpoint is kept in {out / 'checkpoints'}" in proc.stderr
            and "resume" in proc.stderr.splitlines()[-1])
    assert [r["status"] for r in results_json(out)] == ["interrupted"] * 2
    monkeypatch.setattr(executor, "slot_life", real)
    again = groklab(*RUN, "--checkpoint-every", "20", "--out", str(out))
    assert "resuming 2 run(s) from step 20" in again.stderr
    assert "2 run(s) trained here" in again.stderr
    assert [r["status"] for r in results_json(out)] == ["finished"] * 2
