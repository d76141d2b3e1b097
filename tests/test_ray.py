"""The Ray executor on a local Ray instance: the same store as the in-process executor (runs,
curves, named metrics, weights), and a worker killed mid-cohort is retried into a complete
store."""

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import ray
from safetensors.torch import load_file

from groklab.cli import main
from groklab.engine import run_specs
from groklab.engine.recorder import Recorder
from groklab.integrations.ray_executor import RayExecutor
from groklab.spec import RunSpec
from groklab.store import Store

pytestmark = pytest.mark.slow  # starts a Ray instance

TINY = dict(task="x_plus_y", p=11, d_model=16, n_heads=2, steps=16, batch_size=16,
            eval_every=4, warmup=2)
VOLATILE = ("started", "finished", "wall_s")  # when and how long, not what


def study_specs() -> list[RunSpec]:
    """Two cohorts (one with diagnostics: named metrics), an early stop, and two warm starts
    (optimiser fresh and carried) whose parent trains in the first generation."""
    parent = RunSpec(**TINY, lr_name="parent")
    return [parent, RunSpec(**TINY, seed=1, stop_val_acc=0.0, stop_patience=2),
            RunSpec(**TINY, diagnostics=True), RunSpec(**TINY, diagnostics=True, seed=2),
            RunSpec(**TINY, seed=3, init_from=parent.run_id),
            RunSpec(**TINY, seed=4, init_from=parent.run_id, init_optimizer="carried")]


def snapshot(out: Path) -> dict:
    with Store(out, create=False) as store:
        runs = {r["id"]: {k: v for k, v in r.items() if k not in VOLATILE}
                for r in store.runs()}
        curves = {rid: store.curve(rid) for rid in runs}
        metrics = {rid: store.metrics(rid) for rid in runs}
    weights = {rid: {k: v.tolist() for k, v in
                     load_file(out / "weights" / f"{rid}.safetensors").items()} for rid in runs}
    files = sorted(p.name for p in (out / "weights").iterdir())  # + the carried parent's state
    assert sum(name.endswith(".optimizer.safetensors") for name in files) == 1
    return {"runs": runs, "curves": curves, "metrics": metrics, "weights": weights,
            "files": files}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # this file's hooks
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    run_specs(study_specs(), out, device="cpu", progress=False)
    return snapshot(out)


def test_ray_gives_the_store_of_the_in_process_executor(local_ray, in_process, tmp_path):
    counts = run_specs(study_specs(), tmp_path, device="cpu", progress=False,
                       executor=RayExecutor(cpus_per_cohort=1))
    assert counts == {"total": 6, "trained": 6, "skipped": 0, "waiting": 0, "elsewhere": 0,
                      "stopped": 0}
    got = snapshot(tmp_path)
    assert len(got["runs"]) == 6 and all(r["status"] == "finished" for r in got["runs"].values())
    assert any(got["metrics"].values())
    assert got == in_process


class KillOnce:
    """A hook that, in the first attempt only, announces its process and waits to be killed."""

    def __init__(self, marker: str):
        self.marker = marker

    def __call__(self, state, step, metrics):
        if step != 2 * state.eval_every:
            return
        try:  # only the first cohort to get here, once: its retry finds the lock
            os.close(os.open(self.marker + ".lock", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        tmp = Path(self.marker + ".tmp")
        tmp.write_text(str(os.getpid()))
        tmp.rename(self.marker)
        time.sleep(120)  # killed from outside long before this ends


def test_a_killed_worker_is_retried_into_a_complete_store(local_ray, in_process, tmp_path):
    marker = tmp_path / "worker.pid"
    killed = []

    def killer():
        deadline = time.monotonic() + 120
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.2)
        pid = int(marker.read_text())
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    out = tmp_path / "out"
    counts = run_specs(study_specs(), out, device="cpu", progress=False,
                       hooks=[KillOnce(str(marker))], executor=RayExecutor(cpus_per_cohort=1))
    thread.join(5)
    assert killed and killed[0] != os.getpid()  # a worker process died mid-cohort
    assert counts["trained"] == 6
    assert snapshot(out) == in_process


def test_the_executor_flags(tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "o")
    assert main(["run", "--out", out, "--address", "auto"]) == 2
    assert "need --executor ray" in capsys.readouterr().err
    assert main(["study", "paper-table1", "--out", out, "--executor", "dask"]) == 2
    assert "--executor 'dask': use local or ray" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main(["run", "--out", out, "--executor", "ray"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'groklab[ray]'" in err[0]
    assert not (tmp_path / "o").exists()


def test_a_killed_worker_resumes_from_the_last_checkpoint(local_ray, in_process, tmp_path):
    # checkpoints every 4 updates: the task killed at step 8 starts again from one, not 0
    marker, out = tmp_path / "worker.pid", tmp_path / "out"
    killed: list[int] = []

    def killer():
        deadline = time.monotonic() + 120
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.2)
        killed.append(int(marker.read_text()))
        os.kill(killed[0], signal.SIGKILL)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    resumed: list[int] = []
    real = Recorder.restart

    def restart(self):
        saved = real(self)
        resumed.append(-1 if saved is None else int(saved["clock"]))
        return saved

    Recorder.restart = restart
    try:
        counts = run_specs(study_specs(), out, device="cpu", progress=False,
                           checkpoint_every=4, hooks=[KillOnce(str(marker))],
                           executor=RayExecutor(cpus_per_cohort=1))
    finally:
        Recorder.restart = real
    thread.join(5)
    assert killed and resumed and resumed[0] >= 4  # from a checkpoint
    assert counts["trained"] == 6
    assert snapshot(out) == in_process
    assert not (out / "checkpoints").exists()  # removed once its runs finished


def test_ctrl_c_on_ray_resumes_in_process(
        local_ray, in_process, tmp_path, monkeypatch, capsys):
    """A Ctrl-C on the driver releases the runs as interrupted with the checkpoint kept, and
    the in-process executor resumes it into the same store."""
    real = Recorder.on_snapshot
    snapshots: list[int] = []

    def interrupt_at_second(self, snap):
        real(self, snap)
        snapshots.append(snap.extra["clock"])
        if len(snapshots) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(Recorder, "on_snapshot", interrupt_at_second)
    with pytest.raises(KeyboardInterrupt):
        run_specs(study_specs(), tmp_path, device="cpu", progress=False, checkpoint_every=4,
                  executor=RayExecutor(cpus_per_cohort=1))
    with Store(tmp_path, create=False) as store:
        statuses = {r["id"]: r["status"] for r in store.runs()}
    assert "interrupted" in statuses.values()
    assert "the cohort's last checkpoint is kept" in capsys.readouterr().err
    monkeypatch.setattr(Recorder, "on_snapshot", real)
    run_specs(study_specs(), tmp_path, device="cpu", progress=False, checkpoint_every=4)
    assert "resuming" in capsys.readouterr().err
    assert snapshot(tmp_path) == in_process


def test_a_run_ends_by_itself_on_ray(local_ray, tmp_path):
    specs = [RunSpec(**dict(TINY, steps=400), seed=1, stop_val_acc=0.0, stop_patience=1),
             RunSpec(**dict(TINY, steps=400), seed=2)]
    run_specs(specs, tmp_path, device="cpu", progress=False,
              executor=RayExecutor(cpus_per_cohort=1))
    with Store(tmp_path, create=False) as store:
        early, late = ({r["id"]: r for r in store.runs()}[s.run_id] for s in specs)
        assert store.curve(specs[0].run_id)[-1].step < 400
    assert early["status"] == late["status"] == "finished"
    assert early["finished"] < late["finished"] and early["wall_s"] < late["wall_s"]
