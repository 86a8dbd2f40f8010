"""Storage is a port: services talk to ``Store``/``Tx``; ``sqlite.py`` is the adapter.

Every check-and-write of the ledger runs inside one ``Tx`` (BEGIN IMMEDIATE on SQLite), so
withdrawals and PREPAREs see each other's holds atomically (docs/protocol.md, rule 8).
"""
from __future__ import annotations

from pathlib import Path

from .port import StorageError, Store, Tx  # noqa: F401


def open_store(location: str | Path) -> Store:
    """The store at ``location``: a SQLite file path (the embedded default)."""
    from .sqlite import SqliteStore
    return SqliteStore(location)


def open_ledger(bank_id: str, data_dir: str | Path) -> Store:
    """A bank's ledger in its data folder: what the bank opens, and its operator commands too."""
    return open_store(Path(data_dir) / f"{bank_id}.sqlite3")
