"""Re-running an edited study file of the same name never hides the earlier runs: the
version they belong to is kept as study '<name> (earlier version N)', which the report shows
as such (Store.record_study, report/build.py)."""

import pytest
from conftest import groklab
from fake_runs import curve, spec, write

from groklab.report import load_studies, write_report
from groklab.store import Store


def names(root):
    with Store(root, create=False) as store:
        return {s["name"]: [rid for rid, _ in store.study_members(s["name"])]
                for s in store.studies()}


def test_an_edited_definition_keeps_the_earlier_version_and_folds_it_back(tmp_path):
    a, b, c, d, e = write(tmp_path, [(spec(seed=i), curve([0.5, 1.0])) for i in range(5)])
    one, two, three = {"seeds": [0, 1]}, {"seeds": [2, 3]}, {"seeds": [0, 1, 4]}
    never = spec(seed=9)  # a member that never started: nothing to keep
    with Store(tmp_path) as store:
        assert store.record_study("s", one, {}, [(a.run_id, "x"), (b.run_id, "x"),
                                                 (never.run_id, "x")]) is None
        kept = store.record_study("s", two, {}, [(c.run_id, "x"), (d.run_id, "x")])
        assert kept == "s (earlier version 1)"
        assert store.record_study("s", two, {}, [(c.run_id, "x"), (d.run_id, "x")]) is None
    assert names(tmp_path) == {"s (earlier version 1)": [a.run_id, b.run_id],
                               "s": [c.run_id, d.run_id]}
    with Store(tmp_path) as store:  # back to the first definition: it is current again
        assert store.record_study("s", one, {}, [(a.run_id, "x"), (b.run_id, "x")]) == \
            "s (earlier version 2)"
        # a definition that keeps every earlier run hides nothing: one study
        assert store.record_study("s", three, {}, [(a.run_id, "x"), (b.run_id, "x"),
                                                   (e.run_id, "x")]) is None
        recorded = {s["name"]: s["definition"] for s in store.studies()}
    assert names(tmp_path) == {"s (earlier version 2)": [c.run_id, d.run_id],
                               "s": [a.run_id, b.run_id, e.run_id]}
    assert recorded["s (earlier version 2)"] == {**two, "earlier_version_of": "s",
                                                 "earlier_version": 2}
    md = write_report(tmp_path).markdown.read_text()
    assert "## Study `s (earlier version 2)`" in md and "An earlier version of study `s`" in md
    assert '"earlier_version' not in md  # the marker is not part of the definition shown


@pytest.mark.slow
def test_rerunning_an_edited_study_file_reports_both_versions(tmp_path):
    out, study = tmp_path / "out", tmp_path / "edited.toml"
    text = ('name = "edited"\nseeds = 1\n[settings]\ntask = "x_plus_y"\np = 7\nsteps = {}\n'
            'batch_size = 16\nd_model = 16\nn_heads = 2\n[variants.base]\nlr = "baseline"\n')
    study.write_text(text.format(20))
    groklab("study", str(study), "--out", str(out), "--no-progress")
    study.write_text(text.format(30))  # the same name, edited
    proc = groklab("study", str(study), "--out", str(out), "--no-progress")
    assert "study 'edited (earlier version 1)'" in proc.stderr
    studies = {s.name: s for s in load_studies(out)}
    assert set(studies) == {"edited", "edited (earlier version 1)"}
    assert list(studies["edited"].runs["steps"]) == [30]
    assert list(studies["edited (earlier version 1)"].runs["steps"]) == [20]
    groklab("report", str(out))
    md = (out / "report.md").read_text()
    assert md.count("1 finished run(s).") == 2
    html = (out / "report.html").read_text()
    assert "<h2>Study <code>edited (earlier version 1)</code></h2>" in html  # no literal `
