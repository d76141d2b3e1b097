"""`groklab report A B --out DIR`: one report of several stores (report/data.py ``load``).

Two small fake stores share one run: the merged report lists the runs of both with their
store (report.md, report.html, summary.csv, the interactive figures' hover), counts the
shared run once and says so in one line on stderr and once in the report, tells a study
name found in both stores apart by its store, and refuses bad input (a path that is not a
store, a store twice, no --out) in one line, exit 2, writing nothing. One store: the report
is as it was."""

import csv
import re

import pytest
from conftest import groklab
from fake_runs import curve, files, spec, write

from groklab.report import load_studies, summary_table, write_report
from groklab.report.data import load
from groklab.report.figures import colors
from groklab.report.interactive import grid_plot

SHARED = spec(seed=1)


def two_stores(root):
    """Store ``a``: study ``grid`` (seeds 0 and 1); store ``b``: study ``grid`` (seeds 1, the
    shared run, and 2) and study ``solo`` (x_minus_y, seed 0). Returns the runs' ids."""
    ids = {"a0": spec(seed=0).run_id, "shared": SHARED.run_id, "b2": spec(seed=2).run_id,
           "solo": spec("x_minus_y", seed=0).run_id}
    write(root / "a", [(spec(seed=0), curve([0.3, 0.995])), (SHARED, curve([0.4, 0.999]))],
          study=("grid", {}))
    write(root / "b", [(SHARED, curve([0.4, 0.999])), (spec(seed=2), curve([0.5, 0.6]))],
          study=("grid", {}))
    write(root / "b", [(spec("x_minus_y", seed=0), curve([0.2, 0.7]))], study=("solo", {}))
    return ids


@pytest.fixture(scope="module")
def merged(tmp_path_factory):
    """The stores, the command's output and the report it wrote (run from their folder, so
    the stores are named ``a`` and ``b``)."""
    root = tmp_path_factory.mktemp("stores")
    ids = two_stores(root)
    before = {s: files(root / s) for s in ("a", "b")}
    proc = groklab("report", "a", "b", "--out", "both", cwd=root)
    return root, ids, proc, before


def runs_table(md: str, study: str) -> list[dict[str, str]]:
    """The rows of the runs table under ``study``'s heading in report.md."""
    section = md.split(f"## {study}\n", 1)[1].split("\n## ", 1)[0]
    lines = section.split("**Runs (with the store each was read from)**\n\n", 1)[1]
    lines = [line for line in lines.split("\n\n", 1)[0].splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, [c.strip() for c in line.strip("|").split("|")], strict=True))
            for line in lines[2:]]


def test_the_merged_report_lists_the_runs_of_both_stores_with_their_store(merged):
    root, ids, proc, before = merged
    out = root / "both"
    assert {p.name for p in out.iterdir()} >= {"report.md", "report.html", "summary.csv",
                                                "figures"}
    assert not (root / "a" / "report.md").exists() and not (root / "b" / "report.md").exists()
    assert {s: files(root / s) for s in ("a", "b")} == before  # the stores only read
    md = (out / "report.md").read_text()
    assert "Stores `a/groklab.sqlite`, `b/groklab.sqlite`" in md
    listed = {study: {r["id"]: r["store"] for r in runs_table(md, f"Study `{study}`")}
              for study in ("grid (a)", "grid (b)", "solo")}
    assert listed == {"grid (a)": {ids["a0"]: "a", ids["shared"]: "a"},
                      "grid (b)": {ids["b2"]: "b"}, "solo": {ids["solo"]: "b"}}
    assert md.count("From store `a`.") == 1 and md.count("From store `b`.") == 2
    page = (out / "report.html").read_text()
    assert page.count("<th>store</th>") == 3 and f"<td>{ids['b2']}</td>" in page
    hover = f"run {ids['b2']}\\u003cbr\\u003ebaseline\\u003cbr\\u003eseed 2\\u003cbr\\u003estore b"
    assert hover in page  # the interactive figures' hover (plotly escapes < and >)
    with open(out / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:2] == ["study", "store"]
    assert {(r["study"], r["store"], r["task"], r["n"]) for r in rows} == {
        ("grid (a)", "a", "x_plus_y", "2"), ("grid (b)", "b", "x_plus_y", "1"),
        ("solo", "b", "x_minus_y", "1")}


def test_a_run_in_both_stores_is_counted_once_and_said_so_once(merged):
    root, ids, proc, _ = merged
    notice = [line for line in proc.stderr.splitlines() if ids["shared"] in line]
    assert len(notice) == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "1 run id(s) are in more than one store" in notice[0]
    assert f"{ids['shared']} (a, b)" in notice[0] and "counted once" in notice[0]
    md = (root / "both" / "report.md").read_text()
    said = [p for p in md.split("\n\n") if "more than one store" in p]
    assert len(said) == 1 and f"{ids['shared']} (a, b)" in said[0]
    # listed once (store a's study), counted in no other study's tables
    assert sum(ids["shared"] in line for line in md.splitlines() if line.startswith("|")) == 1
    assert "1 finished run(s); 1 more counted under another store" in md


def test_study_names_found_in_two_stores_are_told_apart(merged):
    root, ids, _, _ = merged
    md = (root / "both" / "report.md").read_text()
    headings = re.findall(r"^## (.*)$", md, re.M)
    assert headings == ["Study `grid (a)`", "Study `grid (b)`", "Study `solo`"]
    figures = {p.name.split("-")[0] for p in (root / "both" / "figures").iterdir()}
    assert figures == {"grid_a_", "grid_b_", "solo"}


def test_the_shared_run_is_read_from_a_store_that_finished_it(tmp_path):
    write(tmp_path / "a", [(SHARED, None), (spec(seed=0), curve([0.3, 0.9]))])
    write(tmp_path / "b", [(SHARED, curve([0.4, 0.999]))])
    loaded = load([tmp_path / "a", tmp_path / "b"])
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert loaded.shared == {SHARED.run_id: [b, a]}  # the store it is read from first
    by_name = {s.name: s for s in loaded.studies}
    assert set(by_name) == {f"groklab run ({a})", f"groklab run ({b})"}  # told apart
    mine = by_name[f"groklab run ({b})"]
    assert list(mine.runs["id"]) == [SHARED.run_id] and list(mine.runs["status"]) == ["finished"]
    assert set(mine.curves["store"]) == {b} and by_name[f"groklab run ({a})"].elsewhere == 1
    assert SHARED.run_id not in set(by_name[f"groklab run ({a})"].runs["id"])
    studies = load_studies([tmp_path / "a", tmp_path / "b"])
    fig = grid_plot(studies[1].curves, "t", colors(list(studies[1].curves["config"].unique())))
    assert f"<br>store {b}<br>" in fig["data"][0]["hovertemplate"]
    table = summary_table([tmp_path / "a", tmp_path / "b"])
    assert list(table.columns[:2]) == ["study", "store"] and table["n"].sum() == 2
    md = write_report([tmp_path / "a", tmp_path / "b"], tmp_path / "r").markdown.read_text()
    assert "## Runs of `groklab run` of store " in md


def test_one_store_reports_as_before(tmp_path):
    two_stores(tmp_path)
    proc = groklab("report", "a", cwd=tmp_path)
    assert proc.stderr == "" and (tmp_path / "a" / "report.md").exists()
    md = (tmp_path / "a" / "report.md").read_text()
    assert "From store" not in md and "| store |" not in md and "Runs (with" not in md
    assert re.findall(r"^## (.*)$", md, re.M) == ["Study `grid`"]
    assert "store" not in (tmp_path / "a" / "summary.csv").read_text().splitlines()[0]
    (study,) = load_studies(tmp_path / "a")
    assert study.store is None and "store" not in study.runs.columns


@pytest.mark.parametrize("args, says", [
    (["a", "b"], "give --out DIR"),  # two stores, no home
    (["a", "nowhere", "--out", "r"], "no groklab store in nowhere"),
    (["a", "notes", "--out", "r"], "is a folder, not a groklab store"),
    (["a", "b", "a", "--out", "r"], "store a given twice"),
    (["a", "./a/", "--out", "r"], "given twice"),
    (["a", "b", "--out", "a/groklab.sqlite"], "is not a folder"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, says):
    two_stores(tmp_path)
    (tmp_path / "notes" / "groklab.sqlite").mkdir(parents=True)
    before = files(tmp_path)
    proc = groklab("report", *args, check=False, cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and says in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert files(tmp_path) == before and not (tmp_path / "r").exists()


def test_the_python_api_refuses_several_stores_without_out_or_a_store_twice(tmp_path):
    two_stores(tmp_path)
    with pytest.raises(ValueError, match="needs out"):
        write_report([tmp_path / "a", tmp_path / "b"])
    with pytest.raises(ValueError, match="given twice"):
        load([tmp_path / "a", tmp_path / "a"])
    assert not (tmp_path / "a" / "report.md").exists()
