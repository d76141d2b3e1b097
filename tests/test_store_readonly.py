"""Reading works where writing cannot: `results`, `report --out`, `export` and the Python API
on a store in a read-only folder or in a read-only file open it read-only (SQLite
``immutable=1``) and change nothing, an older store is migrated in memory only, and a
command that would write there says so in one line, exit 2 (docs/design.md, decision 6).

As root (where chmod stops nothing) the folder is still chmod-ed, and groklab is told the
paths are read-only (tests/fake_runs.py: ``read_only``), so the same read-only path runs."""

import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import groklab
from fake_runs import curve, files, read_only, spec, write

import groklab as gl
from groklab.store import STORE_NAME, VERSION, Store, StoreError

DATA = Path(__file__).parent / "data"


@pytest.fixture
def store(tmp_path):
    """A store of three finished runs and one left unfinished."""
    root = tmp_path / "store"
    write(root, [(spec(seed=0), curve([0.2, 0.995, 1.0])), (spec(seed=1), curve([0.1, 0.3, 0.5])),
                 (spec("x_minus_y"), curve([0.4, 0.6, 0.7])), (spec(seed=2), None)])
    return root


def test_results_and_export_read_a_read_only_folder_and_change_nothing(store, tmp_path,
                                                                     monkeypatch):
    before = files(store)
    with read_only(store, monkeypatch):
        table = groklab("results", str(store)).stdout
        assert table.count("finished") == 3 and "interrupted" in table
        listed = groklab("results", str(store), "--json").stdout
        exported = groklab("export", "csv", str(store), str(tmp_path / "csv"))
        with Store(store, create=False) as opened:
            assert opened.read_only and len(opened.runs()) == 4
        frame = gl.results(store)
    assert files(store) == before  # not a byte changed, no -wal or -shm file created
    assert '"status": "finished"' in listed and len(frame) == 4
    assert {Path(p).name for p in exported.stdout.split()} == {"runs.csv", "curves.csv"}


def test_report_of_a_read_only_store_goes_to_another_folder(tmp_path, monkeypatch):
    store = tmp_path / "one-task"  # one task: few figures, a fast report
    write(store, [(spec(seed=0), curve([0.2, 0.995, 1.0])), (spec(seed=1), None)])
    before = files(store)
    elsewhere = tmp_path / "report"
    with read_only(store, monkeypatch):
        refused = groklab("report", str(store), check=False)
        assert refused.returncode == 2 and refused.stdout == ""
        (line,) = refused.stderr.splitlines()
        assert "read-only" in line and "--out" in line
        done = groklab("report", str(store), "--out", str(elsewhere))
    assert files(store) == before
    assert (elsewhere / "report.md").is_file() and (elsewhere / "report.html").is_file()
    md = (elsewhere / "report.md").read_text()
    assert "1 finished run(s); 1 not finished" in md and "figures/" in md
    assert all((elsewhere / p).is_file() for p in done.stdout.splitlines()[:3])


def test_a_read_only_file_in_a_writable_folder_is_read(store, monkeypatch):
    with read_only(store, monkeypatch, only_file=STORE_NAME):
        before = (store / STORE_NAME).read_bytes()
        assert "finished" in groklab("results", str(store)).stdout
        refused = groklab("run", "--p", "7", "--steps", "5", "--out", str(store), check=False)
        assert refused.returncode == 2 and "read-only" in refused.stderr
        assert len(refused.stderr.splitlines()) == 1
    assert (store / STORE_NAME).read_bytes() == before


@pytest.mark.parametrize("command", [
    ["run", "--p", "7", "--steps", "5", "--no-progress"],
    ["study", "paper-ablation", "--steps", "5", "--seeds", "1", "--no-progress"],
    ["lm", "--steps", "5", "--no-progress"],
])
def test_writing_into_a_read_only_folder_is_one_line_exit_2(tmp_path, monkeypatch, command):
    folder = tmp_path / "locked"
    folder.mkdir()
    with read_only(folder, monkeypatch):
        proc = groklab(*command, "--out", str(folder), check=False)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("groklab: error:") and "read-only" in line
    assert list(folder.iterdir()) == []


def test_an_older_store_in_a_read_only_folder_is_migrated_in_memory(tmp_path, monkeypatch):
    folder = tmp_path / "v0"
    folder.mkdir()
    shutil.copy(DATA / "store-v0" / STORE_NAME, folder / STORE_NAME)
    before = files(folder)
    with read_only(folder, monkeypatch):
        with Store(folder, create=False) as opened:
            assert opened.read_only
            runs = opened.runs()
            assert runs and all(r["semantics"] == 1 for r in runs)  # migrated: v1 ids
            assert opened.db.execute("PRAGMA user_version").fetchone()[0] == VERSION
        assert "finished" in groklab("results", str(folder)).stdout
    assert files(folder) == before
    on_disk = sqlite3.connect(f"{(folder / STORE_NAME).as_uri()}?mode=ro", uri=True)
    assert on_disk.execute("PRAGMA user_version").fetchone()[0] == 0  # the file: still 0.1's
    on_disk.close()


def test_the_store_api_refuses_to_write_a_read_only_folder(tmp_path, monkeypatch):
    folder = tmp_path / "locked"
    folder.mkdir()
    with read_only(folder, monkeypatch), pytest.raises(StoreError, match="read-only"):
        Store(folder)
