"""The run store: one SQLite file per output folder, the single source of truth for reports.

Tables: ``runs`` (id = hash of the spec's identity, the spec as JSON, label, status, final
metrics, the semantics version, and who trains it: ``owner``, ``heartbeat``), ``curves``
(one row per run and evaluated step: the four curve values), ``metrics`` (a long table of
named per-step metrics beyond those four: an ``EvalRow``'s ``extra``), ``studies`` (a
study's definition, the environment it ran in, its accumulated wall time), ``study_runs``
(which runs belong to a study, under which configuration label: the same run can serve two
studies under two labels), ``texts`` (named text outputs of a run: a language model's
generated sample) and ``id_migrations`` (old id -> new id of every run a migration
re-identified, so a user can trace a run across versions).

Versions. The schema version is SQLite's ``PRAGMA user_version``: 0 is the store groklab 0.1
wrote, ``VERSION`` the current one. Opening a store migrates it, in one ``BEGIN IMMEDIATE``
transaction (a failure leaves the file as it was), through ``MIGRATIONS``: one function per
step, version n -> n + 1, so a new version appends one. A fresh store is created directly
at the current version with the same schema; a store newer than this code is refused
untouched (``StoreError``).

Claims. Two processes may train into one folder. Each ``Store`` has an owner token
(``host:pid:random``). ``begin`` claims runs in one transaction and returns the specs it
claimed: not finished runs, nor runs another owner is training (its heartbeat is younger than
``STALE_S`` and, on this host, its process is alive). ``append`` and ``finish`` write only
runs this instance still owns and refresh their heartbeat; ``release`` (and ``close``) gives
unfinished runs back, with status 'interrupted'. A run's status (``STATUSES``) is 'running'
(claimed), 'interrupted' (released unfinished: Ctrl-C, an error), 'halted_by_hook' (a hook
from outside its settings cut it short; 'stopped' before store version 6) or 'finished'
(trained to its budget or to its own early stop). A claimed run's partial rows from an
earlier attempt are dropped, so a resumed run never holds duplicate rows; a killed process
leaves a run unfinished and claimable once its owner is stale or dead. What a reader is
shown is true without a write: a 'running' run whose owner is gone (``claims.owner_gone``:
its process ended, or, on another host, its heartbeat is stale) reads as 'interrupted'
(``runs``, ``status``).

Files that are not stores. Opening checks the file before SQLite touches it and refuses,
with ``StoreError`` naming the file and what it is, anything that is not a groklab store: an
empty file, one that is not SQLite (text, random bytes), a truncated copy (shorter than its
header says), a damaged one (``PRAGMA quick_check``, for files up to ``QUICK_CHECK_BYTES``)
or another program's SQLite database (no ``runs`` table). Such a file is never written, never
"repaired". A fresh store is made whole under a temporary name and linked into place, so no
process ever sees a half-made (empty) ``groklab.sqlite``.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from groklab.claims import new_owner, owner_gone, process_alive
from groklab.records import FINAL_METRICS, HALTED, EvalRow, final_metrics
from groklab.spec import RunSpec
from groklab.store.migrations import MIGRATIONS, SCHEMA, VERSION, StoreError, stored_curve

STORE_NAME = "groklab.sqlite"
STALE_S = 600.0  # a running run whose owner has not written for this long may be claimed
SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file
QUICK_CHECK_BYTES = 64 << 20  # files up to this size are checked whole when opened
# what marks a study definition kept as an earlier version of another (record_study)
EARLIER_KEYS = ("earlier_version_of", "earlier_version")


class UnknownRun(LookupError):
    """A run id (or id prefix) that names no run of the store, or several."""


def not_a_store(path: str | Path) -> str | None:
    """What the existing file ``path`` is, when its bytes alone show it cannot be a store
    ("an empty file (0 bytes)", "a text file, not a SQLite database", "a truncated SQLite
    database ..."); None when it may be one (SQLite then looks inside). Reads at most 100
    bytes (and the size of its write-ahead log); writes nothing."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return "an empty file (0 bytes)"
    with open(path, "rb") as f:
        head = f.read(100)
    if not head.startswith(SQLITE_HEADER):
        text = head.decode("utf-8", "replace")  # a character cut at byte 100: one U+FFFD
        plain = text.count("\ufffd") <= 1 and all(
            c.isprintable() or c in "\t\r\n\ufffd" for c in text)
        return f"{'a text file' if plain else 'a file of unknown bytes'}, not a SQLite database"
    if len(head) < 100:
        return f"a truncated SQLite database ({size} bytes, shorter than its header)"
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(head[28:32], "big")
    declared = pages * page if pages and head[24:28] == head[92:96] else 0
    # a write-ahead log with pages in it: the file may be shorter than its header says (a
    # checkpoint, copying the log into the file, cut short by a full disk); SQLite reads
    # those pages from the log, and its quick_check judges the whole (Store._refuse_foreign)
    wal = path.with_name(path.name + "-wal")
    logged = wal.is_file() and wal.stat().st_size > 0
    if page < 512 or (not logged and (size % page or size < declared)):
        return (f"a truncated or damaged SQLite database ({size} bytes"
                + (f"; its header says {declared}" if declared else "") + ")")
    return None


def shown_status(row: Mapping[str, Any], now: float | None = None) -> str:
    """A run's status as readers show it, from its row (``status``, ``owner``,
    ``heartbeat``): 'interrupted' for a 'running' run whose owner is gone
    (``claims.owner_gone``), else the stored status. Nothing is written."""
    if row["status"] == "running" and owner_gone(row["owner"], row["heartbeat"], STALE_S, now):
        return "interrupted"
    return row["status"]


def writable(path: str | Path) -> bool:
    """Whether this process may write ``path``: a file, a folder (create files in it) or, when
    it does not exist yet, the nearest existing folder above it."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return os.access(path, os.W_OK | (os.X_OK if path.is_dir() else 0))


class Store:
    """A run store in folder ``root`` (created on first write, never on read); opening it
    migrates an older store to ``VERSION``.

    ``create=False`` opens it as a reader: the file must exist. Where this process may write
    the folder and the file, the reader migrates an older store in place as a writer would;
    where it may not (a read-only folder or file), it opens the file read-only (SQLite
    ``immutable=1``, or ``mode=ro`` when a write-ahead log holds data), creates and changes
    nothing, and migrates an older store in memory only (``read_only`` is then True).
    """

    def __init__(self, root: str | Path, *, create: bool = True):
        self.root = Path(root)
        self.path = self.root / STORE_NAME
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a folder, not a groklab store")
        if not create and not self.path.is_file():
            raise FileNotFoundError(f"no groklab store in {self.root} (expected {self.path})")
        self.read_only = not create and not (writable(self.root) and writable(self.path))
        if create and not (writable(self.root) and (not self.path.exists()
                                                    or writable(self.path))):
            raise StoreError(f"cannot write the store {self.path}: "
                             f"{'the file' if self.path.exists() else 'the folder'} is "
                             "read-only (reading it works: groklab results, report --out, "
                             "export)")
        if self.path.exists():
            self._refuse_non_store()
        elif create:
            self.root.mkdir(parents=True, exist_ok=True)
            self._create()
        self.owner = new_owner()
        self._claimed = False
        # autocommit mode: every write is an explicit BEGIN IMMEDIATE ... COMMIT (see _tx)
        self.db = self._connect_read_only() if self.read_only else sqlite3.connect(
            self.path, timeout=30, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        try:
            self._refuse_foreign()
            if self.read_only:
                self._open_read_only()
            else:
                self._open()
        except sqlite3.DatabaseError as e:  # OperationalError too: locked, disk full
            self.db.close()
            raise StoreError(f"cannot open the store {self.path}: {e}") from None
        except BaseException:
            self.db.close()
            raise

    def _refuse_non_store(self) -> None:
        """``StoreError`` when the file's bytes show it is not a store (``not_a_store``)."""
        what = not_a_store(self.path)
        if what is not None:
            raise StoreError(f"{self.path} is not a groklab store: it is {what}; it was "
                             "left as it is")

    def _refuse_foreign(self) -> None:
        """``StoreError`` for a SQLite database that is not a groklab store (no ``runs``
        table: another program's, or an empty database) or that is damaged
        (``PRAGMA quick_check``, up to ``QUICK_CHECK_BYTES``); reads only."""
        try:
            tables = sorted(r[0] for r in self.db.execute(
                "SELECT name FROM sqlite_master WHERE type='table'"))
            damage = None
            if self.path.stat().st_size <= QUICK_CHECK_BYTES:
                damage = self.db.execute("PRAGMA quick_check(1)").fetchone()[0]
        except sqlite3.DatabaseError as e:
            if isinstance(e, sqlite3.OperationalError) and "locked" in str(e):
                raise
            raise StoreError(f"{self.path} is not a groklab store: SQLite cannot read it "
                             f"({' '.join(str(e).split())}); it was left as it is") from None
        if damage not in (None, "ok"):
            raise StoreError(f"{self.path} is a damaged SQLite database "
                             f"({' '.join(str(damage).split())}); it was left as it is")
        if "runs" not in tables:
            what = (f"another program's SQLite database (tables: {', '.join(tables[:6])}"
                    f"{', ...' if len(tables) > 6 else ''})" if tables
                    else "an empty SQLite database (no tables)")
            raise StoreError(f"{self.path} is not a groklab store: it is {what}; it was left "
                             "as it is")

    def _create(self) -> None:
        """A fresh store at the current version, made whole under a temporary name and linked
        into place (a process that lost the race opens the winner's file)."""
        tmp = self.path.with_name(f".{STORE_NAME}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            db = sqlite3.connect(tmp, isolation_level=None)
            try:
                db.executescript(f"BEGIN;{SCHEMA};PRAGMA user_version = {VERSION};COMMIT;")
            finally:
                db.close()
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass  # another process made it first: open that one
            except OSError:  # a file system without hard links
                if not self.path.exists():
                    os.replace(tmp, self.path)
        except sqlite3.Error as e:
            raise StoreError(f"cannot create the store {self.path}: {e}") from None
        finally:
            tmp.unlink(missing_ok=True)

    def _connect_read_only(self) -> sqlite3.Connection:
        """A connection that writes nothing, not even SQLite's side files: ``immutable=1``,
        unless a write-ahead log holds data it would miss (then ``mode=ro``)."""
        wal = self.path.with_name(STORE_NAME + "-wal")
        mode = "mode=ro" if wal.is_file() and wal.stat().st_size else "immutable=1"
        return sqlite3.connect(f"{self.path.absolute().as_uri()}?{mode}", uri=True,
                               isolation_level=None)

    def _open_read_only(self) -> None:
        """Refuse a newer store; migrate an older one in an in-memory copy (the file is
        not changed)."""
        if self._version() < VERSION:
            memory = sqlite3.connect(":memory:", isolation_level=None)
            self.db.backup(memory)
            self.db.close()
            self.db = memory
            self.db.row_factory = sqlite3.Row
            self._open()

    def _open(self) -> None:
        """Refuse a newer store; create or migrate to ``VERSION`` in one transaction."""
        if self._version() < VERSION:
            with self._tx():
                version = self._version()  # another process may have migrated meanwhile
                if version == 0 and not self._has_tables():
                    for statement in SCHEMA.split(";"):
                        if statement.strip():
                            self.db.execute(statement)
                else:
                    for migrate in MIGRATIONS[version:]:
                        migrate(self.db)
                self.db.execute(f"PRAGMA user_version = {VERSION}")
        if not self.read_only:
            self.db.execute("PRAGMA journal_mode=WAL")

    def _version(self) -> int:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > VERSION:
            raise StoreError(f"{self.path} is a version-{version} store, newer than this groklab "
                             f"understands (version {VERSION}); upgrade groklab to open it. "
                             "The file was not changed.")
        return version

    def _has_tables(self) -> bool:
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table'").fetchone() \
            is not None

    @contextmanager
    def _tx(self) -> Iterator[None]:
        """One write transaction, taking the write lock up front; rolled back on any error."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Release this instance's unfinished runs (best effort) and close the file."""
        try:
            if self._claimed:
                self.release()
        except sqlite3.Error:
            pass  # the runs' heartbeat goes stale instead
        finally:
            self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes (one transaction each) ------------------------------------------------------
    def begin(self, specs: Iterable[RunSpec], device: str) -> list[RunSpec]:
        """Claim the runs this instance may train and return their specs, in order.

        Skipped: finished runs, and running runs another live owner holds. A claimed run is
        (re)inserted as 'running' under this owner, its partial curve and metrics dropped.
        """
        now = time.time()
        claimed = []
        with self._tx():
            for s in {s.run_id: s for s in specs}.values():
                row = self.db.execute("SELECT status, owner, heartbeat FROM runs WHERE id=?",
                                      (s.run_id,)).fetchone()
                if row is not None and (row["status"] == "finished" or self._held(row, now)):
                    continue
                self.db.execute("DELETE FROM curves WHERE run_id=?", (s.run_id,))
                self.db.execute("DELETE FROM metrics WHERE run_id=?", (s.run_id,))
                self.db.execute(
                    "INSERT OR REPLACE INTO runs (id, spec, label, status, device, started, "
                    "semantics, owner, heartbeat) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?)",
                    (s.run_id, json.dumps(s.model_dump(mode="json")), s.label, device, now,
                     s.semantics, self.owner, now))
                claimed.append(s)
        self._claimed = self._claimed or bool(claimed)
        return claimed

    def append(self, rows: Mapping[str, Sequence[EvalRow]]) -> list[str]:
        """Append rows of unfinished runs this instance owns (progress a report can show
        live) and refresh their heartbeat; returns the ids still owned (others are skipped)."""
        with self._tx():
            owned = self._owned(rows)
            self._insert_rows({rid: rows[rid] for rid in owned})
        return owned

    def finish(self, rows: Mapping[str, Sequence[EvalRow]],
               curves: Mapping[str, Sequence[EvalRow]], wall_s: float,
               stopped: Iterable[str] = ()) -> list[str]:
        """Write the remaining rows and final metrics and mark the runs finished, atomically.

        Runs in ``stopped`` (an external hook retired them: engine/hooks.py) get their rows
        and status ``HALTED`` ('halted_by_hook') instead: they are not the full-length runs
        their ids name, so they have no final metrics and a later invocation trains them
        again. Only runs this instance still owns are written; returns the ids it
        finished.
        """
        now = time.time()
        stopped = set(stopped)
        with self._tx():
            owned = self._owned(list(dict.fromkeys([*rows, *curves, *stopped])))
            self._insert_rows({rid: rows[rid] for rid in owned if rid in rows})
            done = [rid for rid in owned if rid in curves and rid not in stopped]
            for rid in done:
                m = final_metrics(curves[rid])
                self.db.execute(
                    "UPDATE runs SET status='finished', finished=?, wall_s=?, "
                    + ", ".join(f"{k}=?" for k in FINAL_METRICS) + " WHERE id=?",
                    (now, wall_s, *(m[k] for k in FINAL_METRICS), rid))
            self.db.executemany(
                "UPDATE runs SET status=?, owner=NULL, heartbeat=NULL, wall_s=? WHERE id=?",
                [(HALTED, wall_s, rid) for rid in owned if rid in stopped])
        return done

    def release(self, run_ids: Iterable[str] | None = None) -> None:
        """Give back unfinished runs this instance owns (all of them by default), e.g. when
        interrupted, so another process can claim them at once: their status becomes
        'interrupted' (nobody trains them; the next invocation resumes them)."""
        sql = ("UPDATE runs SET owner=NULL, heartbeat=NULL, status='interrupted' "
               "WHERE owner=? AND status='running'")
        with self._tx():
            if run_ids is None:
                self.db.execute(sql, (self.owner,))
            else:
                self.db.executemany(sql + " AND id=?", [(self.owner, rid) for rid in run_ids])

    def record_study(self, name: str, definition: dict[str, Any], environment: dict[str, Any],
                     members: Sequence[tuple[str, str]]) -> str | None:
        """Create or update study ``name`` with its (run id, label) members, atomically (a run
        listed twice, e.g. two values of a setting it ignores, is a member once: the first).

        Versions: when ``name`` is recorded with another definition (an edited study file,
        other overrides) and some of its runs are not among ``members``, that earlier version
        is kept as study ``<name> (earlier version N)`` (its definition marked with
        ``earlier_version_of``), so a report shows those runs as what they were rather than
        hiding them; an earlier version whose definition is recorded again is folded back.
        Returns the name the earlier version was kept under (None: nothing kept)."""
        now = time.time()
        with self._tx():
            kept = self._keep_earlier_version(name, definition, members)
            self.db.execute(
                "INSERT INTO studies (name, definition, environment, created, updated) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                "definition=excluded.definition, environment=excluded.environment, "
                "updated=excluded.updated",
                (name, json.dumps(definition), json.dumps(environment), now, now),
            )
            self.db.execute("DELETE FROM study_runs WHERE study=?", (name,))
            self.db.executemany("INSERT OR IGNORE INTO study_runs VALUES (?, ?, ?, ?)",
                                [(name, i, rid, label) for i, (rid, label) in enumerate(members)])
        return kept

    def _keep_earlier_version(self, name: str, definition: dict[str, Any],
                              members: Sequence[tuple[str, str]]) -> str | None:
        """Inside ``record_study``'s transaction: keep study ``name``'s recorded version
        under a name of its own if the new definition differs and drops some of its runs."""
        row = self.db.execute("SELECT * FROM studies WHERE name=?", (name,)).fetchone()
        new = json.loads(json.dumps(definition))
        if row is None or json.loads(row["definition"]) == new:
            return None
        earlier = {r["name"]: json.loads(r["definition"]) for r in self.db.execute(
            "SELECT name, definition FROM studies WHERE name != ?", (name,))}
        earlier = {k: d for k, d in earlier.items() if d.get("earlier_version_of") == name}
        for old_name, d in earlier.items():  # recorded again: that version is current again
            if {k: v for k, v in d.items() if k not in EARLIER_KEYS} == new:
                self.db.execute("DELETE FROM study_runs WHERE study=?", (old_name,))
                self.db.execute("DELETE FROM studies WHERE name=?", (old_name,))
        old_ids = [r[0] for r in self.db.execute(
            "SELECT run_id FROM study_runs WHERE study=? AND run_id IN (SELECT id FROM runs)",
            (name,))]
        if set(old_ids) <= {rid for rid, _ in members}:
            return None  # nothing would be hidden: one study, its wall time summed on
        version = 1 + max((d.get("earlier_version", 0) for d in earlier.values()), default=0)
        kept = f"{name} (earlier version {version})"
        marked = {**json.loads(row["definition"]), "earlier_version_of": name,
                  "earlier_version": version}
        self.db.execute("INSERT INTO studies (name, definition, environment, wall_s, created, "
                        "updated) VALUES (?, ?, ?, ?, ?, ?)",
                        (kept, json.dumps(marked), row["environment"], row["wall_s"],
                         row["created"], row["updated"]))
        self.db.execute("INSERT INTO study_runs SELECT ?, pos, run_id, label FROM study_runs "
                        "WHERE study=? AND run_id IN (SELECT id FROM runs)", (kept, name))
        self.db.execute("DELETE FROM studies WHERE name=?", (name,))  # the new version: fresh
        return kept

    def add_study_time(self, name: str, wall_s: float) -> None:
        """Add an invocation's wall time to study ``name``."""
        with self._tx():
            self.db.execute("UPDATE studies SET wall_s = wall_s + ?, updated = ? WHERE name=?",
                            (wall_s, time.time(), name))

    def _held(self, row: sqlite3.Row, now: float) -> bool:
        """Whether another owner is training this run: fresh heartbeat, process alive."""
        owner, beat = row["owner"], row["heartbeat"]
        if row["status"] != "running" or owner is None or owner == self.owner:
            return False
        return beat is not None and now - beat < STALE_S and process_alive(owner)

    def held_elsewhere(self, run_id: str) -> bool:
        """Whether another live owner is training ``run_id`` now."""
        row = self.db.execute("SELECT status, owner, heartbeat FROM runs WHERE id=?",
                              (run_id,)).fetchone()
        return row is not None and row["owner"] != self.owner and self._held(row, time.time())

    def _owned(self, run_ids: Iterable[str]) -> list[str]:
        """The running runs among ``run_ids`` this instance owns, heartbeat refreshed."""
        now = time.time()
        owned = [rid for rid in run_ids if self.db.execute(
            "SELECT 1 FROM runs WHERE id=? AND owner=? AND status='running'",
            (rid, self.owner)).fetchone()]
        self.db.executemany("UPDATE runs SET heartbeat=? WHERE id=?", [(now, r) for r in owned])
        return owned

    def _insert_rows(self, rows: Mapping[str, Sequence[EvalRow]]) -> None:
        self.db.executemany(
            "INSERT INTO curves VALUES (?, ?, ?, ?, ?, ?)",
            [(rid, r.step, r.train_loss, r.train_acc, r.val_loss, r.val_acc)
             for rid, rs in rows.items() for r in rs],
        )
        self.db.executemany(  # getattr: an engine row without extras writes none
            "INSERT INTO metrics VALUES (?, ?, ?, ?)",
            [(rid, r.step, name, float(value)) for rid, rs in rows.items() for r in rs
             for name, value in getattr(r, "extra", {}).items()],
        )

    def record_outputs(self, run_id: str, step: int, metrics: Mapping[str, float],
                       texts: Mapping[str, str]) -> None:
        """Add named metrics (at ``step``) and named texts of a finished run (replacing
        earlier values of the same names), atomically."""
        with self._tx():
            self.db.executemany("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?)",
                                [(run_id, step, k, float(v)) for k, v in metrics.items()])
            self.db.executemany("INSERT OR REPLACE INTO texts VALUES (?, ?, ?)",
                                [(run_id, k, v) for k, v in texts.items()])

    # -- reads ------------------------------------------------------------------------------
    def texts(self, run_id: str) -> dict[str, str]:
        """The run's named texts (a language model's ``sample``)."""
        rows = self.db.execute("SELECT name, value FROM texts WHERE run_id=? ORDER BY name",
                               (run_id,))
        return {r["name"]: r["value"] for r in rows}

    def resolve(self, run_id: str) -> str:
        """The id of the one run whose id is ``run_id`` or starts with it (a unique prefix, as
        git takes them); ``UnknownRun`` naming the matches when there are none or several."""
        if self.db.execute("SELECT 1 FROM runs WHERE id=?", (run_id,)).fetchone():
            return run_id
        pattern = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        found = [r[0] for r in self.db.execute(
            "SELECT id FROM runs WHERE id LIKE ? ESCAPE '\\' ORDER BY id", (pattern,))]
        if len(found) == 1:
            return found[0]
        if not found:
            raise UnknownRun(f"no run {run_id!r} in {self.root} (see groklab results "
                             f"{self.root})")
        shown = ", ".join(found[:10]) + (f" and {len(found) - 10} more" if len(found) > 10
                                         else "")
        raise UnknownRun(f"run id {run_id!r} is ambiguous in {self.root}: {len(found)} runs "
                         f"start with it ({shown}); give more characters")

    def status(self, run_id: str) -> str | None:
        """The run's status as ``runs`` shows it (None: no such run)."""
        row = self.db.execute("SELECT status, owner, heartbeat FROM runs WHERE id=?",
                              (run_id,)).fetchone()
        return None if row is None else shown_status(row)

    def runs(self) -> list[dict[str, Any]]:
        """Every run: id, label, status (``shown_status``: a running run whose owner is gone
        is 'interrupted'), the spec's fields, semantics, timing, final metrics, and its last
        evaluated step with that step's validation accuracy (``last_step``,
        ``last_val_acc``; None before its first evaluation) - not the claim's owner and
        heartbeat."""
        last: dict[str, tuple[int, float]] = {r[0]: (r[1], r[2]) for r in self.db.execute(
            "SELECT c.run_id, c.step, c.val_acc FROM curves c JOIN (SELECT run_id, MAX(step) "
            "AS step FROM curves GROUP BY run_id) m ON c.run_id = m.run_id AND c.step = m.step")}
        out = []
        now = time.time()
        for row in self.db.execute("SELECT * FROM runs ORDER BY started, id"):
            d = dict(row)
            spec = json.loads(d.pop("spec"))
            d["status"] = shown_status(row, now)
            del d["owner"], d["heartbeat"]
            step, val_acc = last.get(d["id"], (None, None))
            out.append({"id": d.pop("id"), **spec, **d, "last_step": step,
                        "last_val_acc": val_acc})
        return out

    def curve(self, run_id: str) -> list[EvalRow]:
        """The run's evaluated steps in order, each with its named metrics as ``extra``."""
        return stored_curve(self.db, run_id)

    def metrics(self, run_id: str) -> list[tuple[int, str, float]]:
        """The run's named metrics as (step, name, value), ordered by step and name."""
        rows = self.db.execute("SELECT step, name, value FROM metrics WHERE run_id=? "
                               "ORDER BY step, name", (run_id,))
        return [tuple(r) for r in rows]

    def metric_names(self) -> list[str]:
        """Every metric name in the store, sorted."""
        return [r[0] for r in self.db.execute("SELECT DISTINCT name FROM metrics ORDER BY name")]

    def studies(self) -> list[dict[str, Any]]:
        """Every recorded study: name, definition, environment, wall time, in creation order."""
        rows = self.db.execute("SELECT * FROM studies ORDER BY created, name").fetchall()
        return [{**dict(r), "definition": json.loads(r["definition"]),
                 "environment": json.loads(r["environment"])} for r in rows]

    def study_members(self, name: str) -> list[tuple[str, str]]:
        """(run id, configuration label) of study ``name``'s runs, in expansion order."""
        rows = self.db.execute("SELECT run_id, label FROM study_runs WHERE study=? ORDER BY pos",
                               (name,))
        return [(r["run_id"], r["label"]) for r in rows]

    # -- the researcher's desk (cli/desk.py): invocations, claims, studies, removal ---------
    # Tables ``invocations`` and ``invocation_specs`` (schema version 5) hold every ``run``,
    # ``study``, ``tune`` and ``lm`` command line with the specs it expanded, recorded before
    # it trains: ``groklab resume`` continues them, ``groklab show`` quotes them.
    def record_invocation(self, command: str, argv: Sequence[str], cwd: str,
                          specs: Sequence[RunSpec], options: Mapping[str, Any]) -> int:
        """Record one command line (``argv``: the words after ``groklab``, run in ``cwd``),
        how it trains (``options``, JSON-able) and its expanded ``specs`` in order, atomically;
        returns the invocation's number."""
        with self._tx():
            cur = self.db.execute(
                "INSERT INTO invocations (command, argv, cwd, options, created) "
                "VALUES (?, ?, ?, ?, ?)",
                (command, json.dumps(list(argv)), cwd, json.dumps(dict(options)), time.time()))
            number = int(cur.lastrowid or 0)
            self.db.executemany(
                "INSERT INTO invocation_specs VALUES (?, ?, ?, ?)",
                [(number, i, s.run_id, json.dumps(s.model_dump(mode="json")))
                 for i, s in enumerate(specs)])
        return number

    def invocations(self) -> list[dict[str, Any]]:
        """Every recorded invocation, oldest first: ``id``, ``command``, ``argv`` (a list),
        ``cwd``, ``options`` (a dict), ``created`` and ``run_ids`` (its specs' ids, in order)."""
        ids: dict[int, list[str]] = defaultdict(list)
        for r in self.db.execute("SELECT invocation, run_id FROM invocation_specs "
                                 "ORDER BY invocation, pos"):
            ids[r[0]].append(r[1])
        return [{**dict(r), "argv": json.loads(r["argv"]), "options": json.loads(r["options"]),
                 "run_ids": ids.get(r["id"], [])}
                for r in self.db.execute("SELECT * FROM invocations ORDER BY id")]

    def invocation_specs(self, number: int) -> list[RunSpec]:
        """The specs invocation ``number`` expanded, in its order."""
        from groklab.spec import stored_spec  # beside RunSpec, imported above

        return [stored_spec(json.loads(r[0])) for r in self.db.execute(
            "SELECT spec FROM invocation_specs WHERE invocation=? ORDER BY pos", (number,))]

    def claim(self, run_id: str) -> dict[str, Any]:
        """Who holds run ``run_id``: ``owner`` (token or None), ``heartbeat`` (time or None)
        and ``held`` (another live process trains it: it may not be claimed or removed)."""
        row = self.db.execute("SELECT status, owner, heartbeat FROM runs WHERE id=?",
                              (run_id,)).fetchone()
        if row is None:
            return {"owner": None, "heartbeat": None, "held": False}
        return {"owner": row["owner"], "heartbeat": row["heartbeat"],
                "held": self._held(row, time.time())}

    def last_steps(self) -> dict[str, int]:
        """Every run's last recorded (evaluated) step, by id; runs with no curve rows absent."""
        return {r[0]: r[1] for r in self.db.execute(
            "SELECT run_id, MAX(step) FROM curves GROUP BY run_id")}

    def run_studies(self) -> dict[str, list[str]]:
        """The studies each run belongs to, by run id (runs of no study absent), in study
        creation order."""
        out: dict[str, list[str]] = defaultdict(list)
        for r in self.db.execute("SELECT m.run_id, m.study FROM study_runs m JOIN studies s "
                                 "ON s.name = m.study ORDER BY s.created, s.name, m.pos"):
            out[r[0]].append(r[1])
        return dict(out)

    def study_counts(self) -> list[dict[str, Any]]:
        """Every study, in creation order: ``name``, ``runs`` (its members), a count per
        status of its members (``not started``: a member with no run row yet), ``wall_s``,
        ``created`` and ``updated``."""
        out = []
        for s in self.db.execute("SELECT name, wall_s, created, updated FROM studies "
                                 "ORDER BY created, name").fetchall():
            counts: dict[str, int] = {}
            for rid, _ in self.study_members(s["name"]):
                status = self.status(rid) or "not started"  # the status readers are shown
                counts[status] = counts.get(status, 0) + 1
            out.append({"name": s["name"], "runs": sum(counts.values()), "status": counts,
                        "wall_s": s["wall_s"], "created": s["created"],
                        "updated": s["updated"]})
        return out

    def remove_runs(self, run_ids: Iterable[str], *, dry_run: bool = False) -> dict[str, Any]:
        """Delete runs with their curves, metrics, texts, study memberships and recorded
        specs (so ``resume`` does not bring them back), in one transaction; a study or an
        invocation left with no runs goes too. Nothing is deleted when one of them is held by
        another live process, or with ``dry_run``. Returns what was (or would be) removed:
        ``held`` (run id -> owner token), ``rows`` (table -> rows), ``studies`` and
        ``invocations`` left empty. Files next to the store (weights, checkpoints) are the
        caller's (store/weights.py, engine/checkpoint.py)."""
        from contextlib import nullcontext

        ids = list(dict.fromkeys(run_ids))
        where = "run_id IN (SELECT value FROM json_each(?))"
        tables = {"runs": "id IN (SELECT value FROM json_each(?))", "curves": where,
                  "metrics": where, "texts": where, "study_runs": where,
                  "invocation_specs": where}
        now, blob = time.time(), json.dumps(ids)
        with nullcontext() if dry_run else self._tx():  # a dry run only reads
            held = {r["id"]: r["owner"] for r in self.db.execute(
                f"SELECT id, status, owner, heartbeat FROM runs WHERE {tables['runs']}",
                (blob,)) if self._held(r, now)}
            rows = {t: self.db.execute(f"SELECT COUNT(*) FROM {t} WHERE {w}", (blob,))
                    .fetchone()[0] for t, w in tables.items()}
            studies = [r[0] for r in self.db.execute(
                f"SELECT DISTINCT study FROM study_runs WHERE {where} AND study NOT IN "
                f"(SELECT study FROM study_runs WHERE NOT {where})", (blob, blob))]
            invocations = [r[0] for r in self.db.execute(
                f"SELECT DISTINCT invocation FROM invocation_specs WHERE {where} AND "
                f"invocation NOT IN (SELECT invocation FROM invocation_specs WHERE NOT {where})",
                (blob, blob))]
            if not held and not dry_run:
                for t, w in tables.items():
                    self.db.execute(f"DELETE FROM {t} WHERE {w}", (blob,))
                self.db.executemany("DELETE FROM studies WHERE name=?", [(s,) for s in studies])
                self.db.executemany("DELETE FROM invocations WHERE id=?",
                                    [(i,) for i in invocations])
        return {"held": held, "rows": rows, "studies": studies, "invocations": invocations}

