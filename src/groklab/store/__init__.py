"""The run store (one SQLite file per output folder), its migrations and the runs' saved
weights: the single source of truth for reports (docs/design.md, decision 6)."""

from groklab.store.migrations import MIGRATIONS, VERSION, StoreError
from groklab.store.store import STALE_S, STORE_NAME, Store, UnknownRun, writable

__all__ = ["MIGRATIONS", "STALE_S", "STORE_NAME", "VERSION", "Store", "StoreError", "UnknownRun",
           "writable"]
