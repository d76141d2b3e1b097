"""TensorBoard: exported event files, read back with TensorBoard's own reader, hold the
store's numbers (as float32), one TensorBoard run per study and label; the live writer
writes what training evaluates."""

import sys

import numpy as np
from conftest import TINY
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from groklab.cli import main
from groklab.engine import run_specs, train_cohort
from groklab.integrations.tensorboard import CURVE_TAGS, LiveWriter, safe_name
from groklab.spec import RunSpec
from groklab.store import Store


def read(folder):
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def expected(store, run_id):
    """The store's numbers as TensorBoard keeps them: tag -> [(step, float32 value)]."""
    out = {}
    for row in store.curve(run_id):
        for field, tag in CURVE_TAGS.items():
            out.setdefault(tag, []).append((row.step, float(np.float32(getattr(row, field)))))
        for name, value in row.extra.items():
            out.setdefault(f"metrics/{name}", []).append((row.step, float(np.float32(value))))
    return out


def test_export_reads_back_to_the_store(tmp_path, capsys):
    specs = [RunSpec(**TINY, diagnostics=True, lr_name="base"),
             RunSpec(**TINY, diagnostics=True, lr=(1e-3, 2e-3, 3e-3), lr_name="lw x/y")]
    lone = RunSpec(**TINY, seed=3)
    run_specs([*specs, lone], tmp_path, device="cpu", progress=False)
    with Store(tmp_path) as store:
        store.record_study("one", {}, {}, [(s.run_id, s.lr_name) for s in specs])
        store.record_study("two", {}, {}, [(specs[0].run_id, "again")])
    logdir = tmp_path / "tb"
    for _ in range(2):  # exporting again replaces, never duplicates
        assert main(["export", "tensorboard", str(tmp_path), "--logdir", str(logdir)]) == 0
    assert "3 run(s)" in capsys.readouterr().err
    places = {specs[0].run_id: [("one", "base"), ("two", "again")],
              specs[1].run_id: [("one", "lw x/y")], lone.run_id: [("_runs", lone.label)]}
    with Store(tmp_path, create=False) as store:
        seen = 0
        for rid, where in places.items():
            want = expected(store, rid)
            assert ("metrics/sigma_max_E" in want) == (rid != lone.run_id)
            for study, label in where:
                folders = list((logdir / study / safe_name(label)).glob(f"seed*-{rid}"))
                assert len(folders) == 1, (study, label)
                assert read(folders[0]) == want
                seen += 1
    assert seen == 4
    assert len(list(logdir.rglob("events.out.tfevents.*"))) == 4


def test_export_errors_are_one_line(tmp_path, monkeypatch, capsys):
    assert main(["export", "tensorboard", str(tmp_path), "--logdir", str(tmp_path / "tb")]) == 2
    assert "no groklab store" in capsys.readouterr().err
    with Store(tmp_path):
        pass
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    assert main(["export", "tensorboard", str(tmp_path), "--logdir", str(tmp_path / "tb")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'groklab[tensorboard]'" in err[0]


def test_the_live_writer_writes_what_training_evaluates(tmp_path):
    specs = [RunSpec(**TINY), RunSpec(**TINY, seed=1, stop_val_acc=0.0)]
    writer = LiveWriter(tmp_path)
    curves = train_cohort(specs, progress=False, hooks=[writer])
    writer.close()
    for spec, curve in zip(specs, curves, strict=True):
        got = read(tmp_path / safe_name(spec.label) / spec.run_id)
        assert got["val/acc"] == [(r.step, float(np.float32(r.val_acc))) for r in curve]
        assert got["train/loss"] == [(r.step, float(np.float32(r.train_loss))) for r in curve]
    assert len(curves[1]) < len(curves[0])  # the stopped run's events end with its curve
