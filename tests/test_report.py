"""A short study end to end: run, interrupt, resume, report (tables, PNGs, HTML)."""

import base64
import sqlite3

import pytest
from conftest import groklab
from PIL import Image

import groklab as gl
from groklab.engine import executor
from groklab.engine.slots import Evaluated
from groklab.records import EvalRow
from groklab.report import load_studies, write_report
from groklab.spec import RunSpec
from groklab.store import Store

STUDY = """
name = "tiny"
description = "Two tasks, two configurations, two seeds."
seeds = 2

[settings]
p = 23
train_fraction = 0.8
batch_size = 64
steps = 60
eval_every = 10
weight_decay = 1.0

[grid]
task = ["x_plus_y", "x_minus_y"]

[variants.baseline]
lr = "baseline"

[variants.fast]
lr = 3e-3
"""


@pytest.fixture
def study_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(STUDY)
    return path


def interrupt_second_cohort(monkeypatch):
    """Let the first cohort finish; stop the second after three evaluations (a Ctrl-C)."""
    real = executor.slot_life
    calls = []

    def flaky(queue, *args, **kw):
        calls.append(len(queue.pending()))
        for event in real(queue, *args, **kw):
            yield event
            if len(calls) > 1 and isinstance(event, Evaluated) and event.rows[0][1].step == 30:
                raise KeyboardInterrupt

    monkeypatch.setattr(executor, "slot_life", flaky)
    return calls


@pytest.mark.slow
def test_study_interrupt_resume_report(tmp_path, study_file, monkeypatch):
    out = tmp_path / "runs"
    calls = interrupt_second_cohort(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        gl.study(study_file, out=out, device="cpu", progress=False)
    assert calls == [4, 4]
    statuses = [r["status"] for r in gl.results(out).to_dict("records")]
    assert sorted(statuses) == ["finished"] * 4 + ["interrupted"] * 4  # released at Ctrl-C
    (partial,) = load_studies(out)  # an interrupted study can already be reported
    assert len(partial.finished) == 4 and partial.pending == 0
    assert "4 not finished" in (gl.report(out).markdown.read_text())

    monkeypatch.undo()
    table = gl.study(study_file, out=out, device="cpu", progress=False)
    assert sorted(r["status"] for r in gl.results(out).to_dict("records")) == ["finished"] * 8
    db = sqlite3.connect(out / "groklab.sqlite")
    per_run = db.execute("SELECT run_id, COUNT(*), MIN(step), MAX(step) FROM curves "
                         "GROUP BY run_id").fetchall()
    assert len(per_run) == 8 and {r[1:] for r in per_run} == {(6, 10, 60)}  # no duplicates
    assert list(table["task"]) == ["x_plus_y", "x_plus_y", "x_minus_y", "x_minus_y"]
    assert list(table["config"]) == ["baseline", "fast"] * 2
    assert set(table["n"]) == {2} and table["final_val_acc_mean"].between(0, 1).all()
    with Store(out, create=False) as store:
        (recorded,) = store.studies()
        assert recorded["name"] == "tiny" and recorded["wall_s"] > 0
        assert recorded["environment"]["device"] == "cpu"
        assert len(store.study_members("tiny")) == 8

    again = groklab("study", str(study_file), "--out", str(out), "--no-progress")
    assert "0 run(s) trained here, 8 already finished" in again.stderr
    proc = groklab("report", str(out))
    assert "report.html" in proc.stdout
    check_report(out)


def check_report(out):
    md = (out / "report.md").read_text()
    for title in ("Final validation accuracy", "Steps to 99 % validation accuracy",
                  "Final validation loss"):
        assert f"**{title}**\n\n| task | baseline | fast |" in md
    acc = md.split("**Final validation accuracy**")[1].split("**Steps")[0]
    rows = [line.split(" | ")[0].strip("| ") for line in acc.strip().splitlines()[2:]]
    assert rows == ["x_plus_y", "x_minus_y"]
    assert "8 finished run(s)." in md and "not finished" not in md
    assert "python 3." in md and "torch 2." in md and "Device: `cpu`" in md
    assert "wall time" in md and '"p": 23' in md
    pngs = sorted((out / "figures").glob("*.png"))
    assert [p.name for p in pngs] == ["tiny-val_acc.png", "tiny-x_minus_y.png",
                                      "tiny-x_plus_y.png"]
    page = (out / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<img ") == 3
    assert "src=\"figures/" not in page  # self-contained: nothing to fetch
    for png in pngs:
        assert f"]({png.relative_to(out)})" in md
        assert base64.b64encode(png.read_bytes()).decode() in page
        with Image.open(png) as img:
            img.verify()
        with Image.open(png) as img:
            assert img.format == "PNG" and 900 <= img.width <= 2000 and 350 <= img.height <= 1500
    csv = (out / "summary.csv").read_text().splitlines()
    assert csv[0].startswith("study,task,config,n,steps,censored,") and len(csv) == 5


def test_cli_overrides_and_a_store_without_studies(tmp_path, study_file):
    out = tmp_path / "quick"
    groklab("study", str(study_file), "--out", str(out), "--steps", "20", "--seeds", "1",
            "--tasks", "x_minus_y", "--device", "cpu", "--no-progress")
    assert "Run with overrides: `steps = 20`; `task = x_minus_y`; seeds 0." in (
        gl.report(out).markdown.read_text())
    runs = gl.results(out)
    rows = runs[["task", "label", "steps", "seed"]].itertuples(index=False, name=None)
    assert sorted(rows) == [
        ("x_minus_y", "baseline", 20, 0), ("x_minus_y", "fast", 20, 0)]

    plain = tmp_path / "plain"  # `groklab run` records no study: the report still works
    gl.run(plain, task="x_plus_y", p=11, steps=20, batch_size=32, lr=["baseline", "layerwise"],
           progress=False, device="cpu")
    files = gl.report(plain)
    md = files.markdown.read_text()
    assert "## Runs of `groklab run` (in no study)" in md
    header = next(line for line in md.splitlines() if line.startswith("| task |"))
    assert sorted(header.strip("| ").split(" | ")[1:]) == ["baseline", "layerwise"]  # one cohort
    assert len(files.figures) == 2 and all(p.is_file() for p in files.figures)


def test_report_of_a_missing_store_is_an_error(tmp_path):
    proc = groklab("report", str(tmp_path / "none"), check=False)
    assert proc.returncode == 2 and "no groklab store" in proc.stderr
    assert not (tmp_path / "none").exists()


def write_runs(root, specs):
    """Finished runs of ``specs`` written straight into a store at ``root`` (no training)."""
    with Store(root) as store:
        for i, spec in enumerate(specs):
            curve = [EvalRow(step, 1.0 / step, 0.5, 2.0 / step, min(1.0, i / 4 + step / 100))
                     for step in (10, 20, 30)]
            store.begin([spec], "cpu")
            store.finish({spec.run_id: curve}, {spec.run_id: curve}, 1.0)


def test_report_says_when_a_column_holds_differing_settings(tmp_path):
    def spec(task, steps, **kw):
        return RunSpec(**{"task": task, "p": 11, "steps": steps, "lr_name": "baseline", **kw})

    write_runs(tmp_path, [spec("x_plus_y", 1500), spec("x_plus_y", 1500, seed=1),
                          spec("x_minus_y", 7500), spec("permutation", 1500, k=4)])
    files = write_report(tmp_path)
    md = files.markdown.read_text()
    assert "| task | baseline |" in md  # one configuration per task: one column
    note = "Column `baseline` holds differing settings across tasks: k (4, 5); steps (1500, 7500)."
    assert md.count(note) == 0  # k: only permutation takes it
    note = "Column `baseline` holds differing settings across tasks: steps (1500, 7500)."
    assert md.count(note) == 1  # once, under the first table
    first = md.split("**Final validation accuracy**")[1].split("**Steps to 99 %")[0]
    assert note in first
    steps = md.split("**Steps to 99 % validation accuracy**")[1].split("**Steps to held")[0]
    assert md.count("\\* In a starred cell") == 1 and "\\* In a starred cell" in steps
    page = files.html.read_text()
    assert page.count('<p class="note">Column <code>baseline</code> holds differing settings '
                      "across tasks: steps (1500, 7500).</p>") == 1

    write_runs(tmp_path / "p", [spec("x_plus_y", 1500), spec("x_plus_y", 1500, p=13)])
    md = write_report(tmp_path / "p").markdown.read_text()
    assert "| task | baseline (p=11) | baseline (p=13) |" in md and "differing" not in md


def test_a_report_opens_the_store_once(tmp_path, store_opens):
    write_runs(tmp_path, [RunSpec(task="x_plus_y", p=11, steps=30, lr_name="baseline", seed=s)
                          for s in (0, 1)])
    store_opens.clear()  # the report's own opens only
    opened = store_opens
    files = write_report(tmp_path)
    assert len(opened) == 1 and files.csv.is_file()


def test_a_section_is_one_entry_in_the_registry(tmp_path, monkeypatch):
    from groklab.report import build
    from groklab.report.document import Paragraph
    from groklab.report.sections import Section, every_study

    write_runs(tmp_path, [RunSpec(task="x_plus_y", p=11, steps=30, lr_name="baseline")])

    def extra(study, root, prefix):
        return [Paragraph(f"Extra of {study.name} at {prefix.relative_to(root)}.")], []

    monkeypatch.setattr(build, "SECTIONS", (*build.SECTIONS, Section("extra", every_study, extra)))
    md = write_report(tmp_path).markdown.read_text()
    assert md.index("### Figures") < md.index(
        "Extra of groklab run at figures/groklab_run.") < md.index(
        "### Settings")  # appended after the grokking section, before the settings
    whole = Section("whole", every_study, extra, whole=True)
    monkeypatch.setattr(build, "SECTIONS", (whole, *build.SECTIONS))
    md = write_report(tmp_path).markdown.read_text()
    assert "Extra of groklab run" in md and "### Figures" not in md and "### Settings" in md
