"""MLflow export (integrations/mlflow.py, `groklab export mlflow`): runs read back with MLflow's
own client hold the store's curves exactly (steps and values), its settings as params and
study, label and status as tags; metrics go in batches; exporting again replaces; the core
never imports MLflow."""

import ast
import json
import sys
from pathlib import Path

import pytest
from fake_runs import curve, read_only, spec, write

import groklab
from groklab.cli import main
from groklab.integrations.mlflow import CURVE_METRICS, NO_STUDY, RUN_ID_TAG, param_value
from groklab.records import EvalRow
from groklab.spec import RunSpec
from groklab.store import Store

mlflow = pytest.importorskip("mlflow", reason="the 'mlflow' extra is not installed")
from mlflow.tracking import MlflowClient  # noqa: E402


def store_of_two_studies(root: Path) -> dict[str, RunSpec]:
    """Study `alpha` (two runs, one with a named metric), study `beta` (one of alpha's runs
    again, under another label), a run in no study and an unfinished one."""
    a = spec(seed=0, lr_name="base")
    b = spec(seed=1, lr_name="lw", lr=(8e-4, 2e-3, 3e-3))
    odd = [EvalRow(step, 1 / 3 + step, 0.1 * step, 2 ** -step, 0.123456789 * step,
                   extra={"sigma_max_E": step / 7}) for step in (3, 10, 40, 41)]
    write(root, [(a, curve([0.25, 0.5, 1.0])), (b, odd)], study=("alpha", {}))
    with Store(root) as store:
        store.record_study("beta", {}, {}, [(a.run_id, "again")])
    loose, unfinished = spec("x_minus_y", seed=5), spec("x_minus_y", seed=6)
    write(root, [(loose, curve([0.5])), (unfinished, None)])
    return {"a": a, "b": b, "loose": loose, "unfinished": unfinished}


def runs_by_id(client: MlflowClient, experiment: str) -> dict[str, list]:
    exp = client.get_experiment_by_name(experiment)
    out: dict[str, list] = {}
    for r in client.search_runs([exp.experiment_id], max_results=1000):
        out.setdefault(r.data.tags[RUN_ID_TAG], []).append(r)
    return out


@pytest.mark.parametrize("kind", [pytest.param("sqlite", marks=pytest.mark.slow), "file"])
def test_runs_round_trip_through_mlflow(tmp_path, capsys, kind):
    root = tmp_path / "runs"
    specs = store_of_two_studies(root)
    uri = (f"sqlite:///{tmp_path / 'ml' / 'mlflow.db'}" if kind == "sqlite"
           else (tmp_path / "mlruns").as_uri())
    for _ in range(2):  # exporting again replaces each run, never duplicates it
        assert main(["export", "mlflow", str(root), "--uri", uri]) == 0
    err = capsys.readouterr().err
    assert "4 run(s)" in err and "in experiment 'runs'" in err and "4 earlier" in err
    client = MlflowClient(tracking_uri=uri)
    exported = runs_by_id(client, "runs")
    assert sorted(exported) == sorted(s.run_id for s in specs.values())
    assert all(len(v) == 1 for v in exported.values())
    with Store(root, create=False) as store:
        stored = {r["id"]: r for r in store.runs()}
        for name, s in specs.items():
            (run,) = exported[s.run_id]
            tags = run.data.tags
            study, label = {"a": ("alpha, beta", "base"), "b": ("alpha", "lw")}.get(
                name, (NO_STUDY, s.label))
            assert (tags["study"], tags["label"]) == (study, label)
            assert tags["status"] == stored[s.run_id]["status"]
            assert (tags["task"], tags["seed"]) == (s.task, str(s.seed))
            assert run.info.status == ("KILLED" if name == "unfinished" else "FINISHED")
            assert run.info.run_name == f"{label} seed{s.seed}"
            params = run.data.params
            assert params == {k: param_value(stored[s.run_id][k]) for k in RunSpec.model_fields}
            assert json.loads(params["lr"]) == list(s.lr) and params["task"] == s.task
            rows = store.curve(s.run_id)
            for metric in CURVE_METRICS:
                history = client.get_metric_history(run.info.run_id, metric)
                got = sorted((m.step, m.value) for m in history)
                assert got == [(r.step, getattr(r, metric)) for r in rows], (name, metric)
            named = client.get_metric_history(run.info.run_id, "sigma_max_E")
            assert sorted((m.step, m.value) for m in named) == [
                (r.step, r.extra["sigma_max_E"]) for r in rows if "sigma_max_E" in r.extra]
    odd = sorted((m.step, m.value) for m in client.get_metric_history(
        exported[specs["b"].run_id][0].info.run_id, "val_acc"))
    assert odd == [(step, 0.123456789 * step) for step in (3, 10, 40, 41)]  # exact float64
    assert exported[specs["unfinished"].run_id][0].data.metrics == {}  # no curve yet


def test_metrics_go_in_batches(tmp_path, monkeypatch, capsys):
    long = [EvalRow(10 * i, 1.0 / i, 0.5, 2.0 / i, i / 300) for i in range(1, 301)]
    runs = [(spec(seed=s), long) for s in range(2)]
    write(tmp_path / "runs", runs)
    calls: list[tuple[int, int]] = []
    real = MlflowClient.log_batch

    def counted(self, run_id, metrics=(), params=(), tags=(), **kw):
        calls.append((len(metrics), len(params)))
        return real(self, run_id, metrics=metrics, params=params, tags=tags, **kw)

    def one_by_one(*args, **kw):
        raise AssertionError("log_metric: one value a call")

    monkeypatch.setattr(MlflowClient, "log_batch", counted)
    monkeypatch.setattr(MlflowClient, "log_metric", one_by_one)
    uri = (tmp_path / "mlruns").as_uri()
    assert main(["export", "mlflow", str(tmp_path / "runs"), "--uri", uri,
                 "--experiment", "batched"]) == 0
    assert "2 run(s), 2400 metric values in experiment 'batched'" in capsys.readouterr().err
    per_run = [(1000, 0), (200, 0)]  # 300 steps × 4 curve values
    assert sorted(calls) == sorted([(0, len(RunSpec.model_fields))] * 2 + per_run * 2)
    client = MlflowClient(tracking_uri=uri)
    (run,) = runs_by_id(client, "batched")[runs[0][0].run_id]
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert sorted((m.step, m.value) for m in history) == [(r.step, r.val_loss) for r in long]


def test_errors_are_one_line(tmp_path, monkeypatch, capsys):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    assert main(["export", "mlflow", str(tmp_path), "--uri", uri]) == 2
    assert "no groklab store" in capsys.readouterr().err
    write(tmp_path, [(spec(), curve([0.5]))])
    assert main(["export", "mlflow", str(tmp_path), "--uri", "bogus://x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MLflow export to bogus://x failed" in err[0]
    monkeypatch.setitem(sys.modules, "mlflow", None)
    assert main(["export", "mlflow", str(tmp_path), "--uri", uri]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'groklab[mlflow]'" in err[0]


def test_a_read_only_store_exports(tmp_path, monkeypatch, capsys):
    root = tmp_path / "runs"
    (s,) = write(root, [(spec(), curve([0.5, 1.0]))])
    uri = (tmp_path / "mlruns").as_uri()
    with read_only(root, monkeypatch):
        assert main(["export", "mlflow", str(root), "--uri", uri]) == 0
    assert "1 run(s), 8 metric values" in capsys.readouterr().err
    (run,) = runs_by_id(MlflowClient(tracking_uri=uri), "runs")[s.run_id]
    history = client_history(uri, run.info.run_id, "val_acc")
    assert history == [(10, 0.5), (20, 1.0)]


def client_history(uri: str, run_id: str, metric: str) -> list[tuple[int, float]]:
    history = MlflowClient(tracking_uri=uri).get_metric_history(run_id, metric)
    return sorted((m.step, m.value) for m in history)


def test_only_the_integration_imports_mlflow():
    """The core never imports MLflow: only integrations/mlflow.py does, and only the export
    command imports that module, inside its function."""
    src = Path(groklab.__file__).parent
    importers, module_level = set(), set()
    for path in src.rglob("*.py"):
        tree = ast.parse(path.read_text())
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            rel = str(path.relative_to(src))
            if any(n == "mlflow" or n.startswith("mlflow.") for n in names):
                importers.add(rel)
            if "groklab.integrations.mlflow" in names and id(node) in top:
                module_level.add(rel)
    assert importers == {"integrations/mlflow.py"} and module_level == set()
