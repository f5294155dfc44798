"""The embedded profile store: Pyroscope-compatible ingest and read APIs on SQLite."""

from hostprof.store.backend import Backend
from hostprof.store.backend import SQLiteBackend
from hostprof.store.server import create_app

__all__ = ["Backend", "SQLiteBackend", "create_app"]
