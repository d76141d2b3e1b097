"""The store's schema and its migrations (docs/design.md, decision 6).

The schema version is SQLite's ``PRAGMA user_version``: 0 is the store groklab 0.1 wrote,
``VERSION`` the current one. ``MIGRATIONS[n]`` takes a version-n store to n + 1 inside the
transaction that opened it, so a new version appends one function; ``SCHEMA`` is what a fresh
store is created with, and a migrated store must end up identical to it.

Summary metrics are not defined here: their columns of ``runs`` come from
``groklab.records.SUMMARIES`` (each metric's ``added`` version), and the migration of the
version that adds one, ``add_summaries``, back-fills it for every finished run by running the
metric's one Python definition over the run's stored curve.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from groklab.records import HALTED, STATUSES, SUMMARIES, EvalRow, definition
from groklab.spec import stored_spec


def summary_columns(added: Callable[[int], bool]) -> str:
    """The ``runs`` columns of the summary metrics whose ``added`` version passes ``added``
    (in the order of ``records.SUMMARIES``), as SQL column definitions."""
    chosen = [s for s in SUMMARIES if s.added is not None and added(s.added)]
    return ",\n    ".join(f"{s.name} {s.column_type}"
                          for s in sorted(chosen, key=lambda s: s.added or 0))


# The current schema (version len(MIGRATIONS)); a migrated store must end up identical.
# Summary columns: groklab 0.1's where 0.1 put them, later ones last (records.SUMMARIES).
SCHEMA = f"""
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    label TEXT NOT NULL,
    status TEXT NOT NULL,              -- {', '.join(repr(s) for s in STATUSES)}
    device TEXT,
    started REAL,
    finished REAL,
    wall_s REAL,
    {summary_columns(lambda v: v == 0)},
    semantics INTEGER,                 -- the spec's semantics version
    owner TEXT,                        -- host:pid:token of the Store training it
    heartbeat REAL,                    -- the owner's last write (time.time())
    {summary_columns(lambda v: v > 0)}
);
CREATE TABLE curves (
    run_id TEXT NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    train_loss REAL, train_acc REAL, val_loss REAL, val_acc REAL,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE metrics (
    run_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, step, name)
);
CREATE TABLE studies (
    name TEXT PRIMARY KEY,
    definition TEXT NOT NULL,          -- JSON: settings, grid, variants, seeds, overrides
    environment TEXT NOT NULL,         -- JSON: device, software versions of the last invocation
    wall_s REAL NOT NULL DEFAULT 0,    -- summed over invocations (a resumed study adds up)
    created REAL,
    updated REAL
);
CREATE TABLE study_runs (
    study TEXT NOT NULL REFERENCES studies(name),
    pos INTEGER NOT NULL,              -- the run's place in the study's expansion order
    run_id TEXT NOT NULL,
    label TEXT NOT NULL,               -- the configuration, as the report's columns show it
    PRIMARY KEY (study, run_id)
);
CREATE TABLE texts (
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,                -- e.g. 'sample': text a language model generated
    value TEXT NOT NULL,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE id_migrations (
    old_id TEXT PRIMARY KEY,
    new_id TEXT,
    version INTEGER                    -- the schema version whose migration mapped it
);
CREATE TABLE invocations (
    id INTEGER PRIMARY KEY,
    command TEXT NOT NULL,             -- 'run', 'study', 'tune' or 'lm'
    argv TEXT NOT NULL,                -- JSON list: the command line after 'groklab'
    cwd TEXT,                          -- the folder it ran in (argv's relative paths)
    options TEXT NOT NULL,             -- JSON: how it trained (device, checkpoints, study)
    created REAL
);
CREATE TABLE invocation_specs (
    invocation INTEGER NOT NULL REFERENCES invocations(id),
    pos INTEGER NOT NULL,              -- the spec's place in the invocation's expansion
    run_id TEXT NOT NULL,
    spec TEXT NOT NULL,                -- the expanded spec as JSON (model_dump)
    PRIMARY KEY (invocation, pos)
);
"""


class StoreError(RuntimeError):
    """A store this code cannot open or migrate."""




def _migrate_0_to_1(db: sqlite3.Connection) -> None:
    """groklab 0.1 -> 1: claim columns, the ``metrics`` and ``id_migrations`` tables, and
    every run re-identified under the new identity rules as semantics version 1."""
    for column in ("semantics INTEGER", "owner TEXT", "heartbeat REAL"):
        db.execute(f"ALTER TABLE runs ADD COLUMN {column}")
    db.execute("CREATE TABLE metrics (run_id TEXT NOT NULL, step INTEGER NOT NULL, "
               "name TEXT NOT NULL, value REAL, PRIMARY KEY (run_id, step, name))")
    db.execute("CREATE TABLE id_migrations (old_id TEXT PRIMARY KEY, new_id TEXT, "
               "version INTEGER)")
    _reidentify(db, semantics=1, version=1)


def _reidentify(db: sqlite3.Connection, semantics: int, version: int) -> None:
    """Give every run the id its spec has with ``semantics`` added, recording old -> new.

    The new rules normalise settings a run ignores, so several old runs can become one: the
    finished one is kept (of several, the one finished last); the others' rows are dropped and
    their study memberships point at the kept run.
    """
    groups: dict[str, list[tuple[sqlite3.Row, dict[str, Any]]]] = defaultdict(list)
    for row in db.execute("SELECT id, spec, status, started, finished FROM runs").fetchall():
        spec = {**json.loads(row["spec"]), "semantics": semantics}
        try:
            new_id = stored_spec(spec).run_id
        except ValidationError as e:
            raise StoreError(f"run {row['id']} cannot be migrated: its spec is invalid under "
                             f"this groklab: {e}") from None
        groups[new_id].append((row, spec))
    db.executemany("INSERT INTO id_migrations VALUES (?, ?, ?)",
                   [(row["id"], new_id, version)
                    for new_id, members in groups.items() for row, _ in members])
    for new_id, members in groups.items():
        members.sort(key=lambda m: (m[0]["status"] == "finished", m[0]["finished"] or 0.0,
                                    m[0]["started"] or 0.0), reverse=True)
        (kept, spec), dropped = members[0], [row["id"] for row, _ in members[1:]]
        for old in dropped:
            db.execute("DELETE FROM curves WHERE run_id=?", (old,))
            db.execute("DELETE FROM runs WHERE id=?", (old,))
        _merge_memberships(db, new_id, [kept["id"], *dropped])
        db.execute("UPDATE runs SET id=?, spec=?, semantics=? WHERE id=?",
                   (new_id, json.dumps(spec), semantics, kept["id"]))
        db.execute("UPDATE curves SET run_id=? WHERE run_id=?", (new_id, kept["id"]))


def _merge_memberships(db: sqlite3.Connection, new_id: str, old_ids: list[str]) -> None:
    """Point study memberships of ``old_ids`` (kept run first) at ``new_id``, one per study:
    the kept run's own membership if it has one, else the first dropped run's."""
    if old_ids == [new_id]:
        return
    ids = list(dict.fromkeys([*old_ids, new_id]))
    rank = {rid: i for i, rid in enumerate(ids)}
    marks = ", ".join("?" * len(ids))
    rows = db.execute(f"SELECT study, pos, run_id, label FROM study_runs "
                      f"WHERE run_id IN ({marks})", ids).fetchall()
    keep: dict[str, tuple[int, str]] = {}
    for r in sorted(rows, key=lambda r: rank[r["run_id"]]):
        keep.setdefault(r["study"], (r["pos"], r["label"]))
    db.execute(f"DELETE FROM study_runs WHERE run_id IN ({marks})", ids)
    db.executemany("INSERT INTO study_runs VALUES (?, ?, ?, ?)",
                   [(study, pos, new_id, label) for study, (pos, label) in keep.items()])


def stored_curve(db: sqlite3.Connection, run_id: str) -> list[EvalRow]:
    """The run's evaluated steps in order, each with its named metrics as ``extra``."""
    extra: dict[int, dict[str, float]] = defaultdict(dict)
    for step, name, value in db.execute("SELECT step, name, value FROM metrics WHERE "
                                        "run_id=? ORDER BY step, name", (run_id,)):
        extra[step][name] = value
    rows = db.execute("SELECT step, train_loss, train_acc, val_loss, val_acc FROM curves "
                      "WHERE run_id=? ORDER BY step", (run_id,))
    return [EvalRow(*r, extra=extra.get(r[0], {})) for r in rows]


def add_summaries(db: sqlite3.Connection, version: int) -> None:
    """Add the ``runs`` columns of the summary metrics that store ``version`` adds
    (``records.Summary.added``) and fill them in for every finished run by each metric's
    definition over the run's stored curve (other runs keep NULL: they have no summary)."""
    new = [s for s in SUMMARIES if s.added == version]
    for s in new:
        db.execute(f"ALTER TABLE runs ADD COLUMN {s.name} {s.column_type}")
    assign = ", ".join(f"{s.name}=?" for s in new)
    for (run_id,) in db.execute("SELECT id FROM runs WHERE status='finished'").fetchall():
        curve = stored_curve(db, run_id)
        db.execute(f"UPDATE runs SET {assign} WHERE id=?",
                   (*(definition(s.name)(curve) for s in new), run_id))


def _migrate_1_to_2(db: sqlite3.Connection) -> None:
    """1 -> 2: the summary columns ``max_val_acc``, ``step_train_acc_99`` and
    ``grokking_delay``, filled in for finished runs from their stored curves."""
    add_summaries(db, 2)


def _migrate_2_to_3(db: sqlite3.Connection) -> None:
    """2 -> 3: the ``texts`` table (named text outputs of a run: a language model's sample)."""
    db.execute("CREATE TABLE texts (run_id TEXT NOT NULL, name TEXT NOT NULL, "
               "value TEXT NOT NULL, PRIMARY KEY (run_id, name))")


def _migrate_3_to_4(db: sqlite3.Connection) -> None:
    """3 -> 4: the summary column ``step_val_acc_99_held`` (records.held_step), filled in
    for finished runs from their stored curves."""
    add_summaries(db, 4)


def _migrate_4_to_5(db: sqlite3.Connection) -> None:
    """4 -> 5: the ``invocations`` and ``invocation_specs`` tables (every ``run``, ``study``,
    ``tune`` and ``lm`` command line and the specs it expanded: what ``groklab resume`` continues
    and ``groklab show`` quotes). Older invocations were not recorded: none is made up."""
    db.execute("CREATE TABLE invocations (id INTEGER PRIMARY KEY, command TEXT NOT NULL, "
               "argv TEXT NOT NULL, cwd TEXT, options TEXT NOT NULL, created REAL)")
    db.execute("CREATE TABLE invocation_specs (invocation INTEGER NOT NULL "
               "REFERENCES invocations(id), pos INTEGER NOT NULL, run_id TEXT NOT NULL, "
               "spec TEXT NOT NULL, PRIMARY KEY (invocation, pos))")


def _migrate_5_to_6(db: sqlite3.Connection) -> None:
    """5 -> 6: the status of a run a hook from outside its settings cut short, 'stopped', is
    ``HALTED`` ('halted_by_hook'): 'stopped' read as an early stop, whose runs are
    'finished'."""
    db.execute("UPDATE runs SET status=? WHERE status='stopped'", (HALTED,))


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_0_to_1, _migrate_1_to_2,
                                                          _migrate_2_to_3, _migrate_3_to_4,
                                                          _migrate_4_to_5, _migrate_5_to_6]
VERSION = len(MIGRATIONS)
