"""Files named groklab.sqlite that are not stores (issue 27, 3): random bytes, a truncated
copy, a text file, another program's SQLite file, an empty file; beyond those, an empty
SQLite database, a damaged store and a folder of that name. Every command that reads or
writes a store (results, report, export, run) says what the file is in one line, exit 2,
and leaves it as it was: never written, never "repaired" (store/store.py, ``not_a_store``)."""

import os
import sqlite3

import pytest
from conftest import groklab
from fake_runs import curve, files, spec, write

from groklab.store import STORE_NAME, Store, StoreError


def _good_store(root):
    write(root, [(spec(seed=s), curve([0.2, 0.6, 0.9])) for s in range(20)])
    return root / STORE_NAME


def make(kind: str, folder, tmp_path):
    """A folder whose groklab.sqlite is of ``kind``; returns the path."""
    folder.mkdir(parents=True)
    path = folder / STORE_NAME
    if kind == "random bytes":
        path.write_bytes(os.urandom(8192))
    elif kind == "truncated copy":
        good = _good_store(tmp_path / "good")
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "text file":
        path.write_text("id,task,seed\nabc,x_plus_y,0\n")
    elif kind == "another program's SQLite":
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE songs (title TEXT, artist TEXT)")
        db.execute("INSERT INTO songs VALUES ('a', 'b')")
        db.commit()
        db.close()
    elif kind == "empty file":
        path.write_bytes(b"")
    elif kind == "empty SQLite database":
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE t (x)")
        db.execute("DROP TABLE t")
        db.commit()
        db.close()
    elif kind == "damaged store":
        good = bytearray(_good_store(tmp_path / "good").read_bytes())
        assert len(good) > 3 * 4096
        for i in range(2 * 4096, len(good) - 4096):  # pages past the schema, scrambled
            good[i] = (good[i] * 7 + 3) % 256
        path.write_bytes(bytes(good))
    elif kind == "folder":
        path.mkdir()
    return path


KINDS = {"random bytes": "not a SQLite database", "truncated copy": "truncated",
         "text file": "a text file", "another program's SQLite": "another program's",
         "empty file": "empty file (0 bytes)",
         # beyond the listed ones
         "empty SQLite database": "empty SQLite database", "damaged store": "damaged",
         "folder": "is a folder"}

COMMANDS = {
    "results": lambda d, t: ["results", str(d)],
    "results --json": lambda d, t: ["results", str(d), "--json"],
    "report": lambda d, t: ["report", str(d), "--out", str(t / "report")],
    "export": lambda d, t: ["export", "csv", str(d), str(t / "tables")],
    "run": lambda d, t: ["run", "--p", "5", "--steps", "2", "--d-model", "16", "--n-heads", "2",
                         "--batch-size", "8", "--no-progress", "--out", str(d)],
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_file_that_is_not_a_store_is_one_line_exit_2_and_left_as_it_is(
        tmp_path, kind, command):
    folder = tmp_path / "store"
    path = make(kind, folder, tmp_path)
    before = files(folder)
    proc = groklab(*COMMANDS[command](folder, tmp_path), check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and str(path) in lines[0] and KINDS[kind] in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert files(folder) == before  # not a byte changed, no side file (journal, WAL) made
    assert not (tmp_path / "report").exists() and not (tmp_path / "tables").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_opening_such_a_file_raises_store_error_and_writes_nothing(tmp_path, kind):
    folder = tmp_path / "store"
    make(kind, folder, tmp_path)
    before = files(folder)
    for create in (False, True):
        with pytest.raises(StoreError, match="not a groklab store|damaged|is a folder"):
            Store(folder, create=create)
    assert files(folder) == before


def test_a_fresh_store_is_never_seen_half_made(tmp_path, monkeypatch):
    """The store is created whole under a temporary name and linked into place: at no
    moment is there an empty groklab.sqlite another process would refuse."""
    seen = []
    real_link = os.link

    def link(src, dst, **kw):
        seen.append((os.path.getsize(src), os.path.exists(dst)))
        return real_link(src, dst, **kw)

    monkeypatch.setattr(os, "link", link)
    with Store(tmp_path / "new") as store:
        assert store.runs() == []
    (size, existed), = seen
    assert size > 0 and not existed
    assert sorted(p.name for p in (tmp_path / "new").iterdir()
                  if not p.name.startswith(STORE_NAME + "-")) == [STORE_NAME]
    Store(tmp_path / "new").close()  # and it opens again as a store


def test_a_good_store_still_opens_and_reads(tmp_path):
    path = _good_store(tmp_path / "ok")
    proc = groklab("results", str(path.parent))
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 21
