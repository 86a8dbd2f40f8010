"""Storage is a port: services talk to ``Store``/``Tx``; ``sqlite.py`` is the adapter.

Every check-and-write of the ledger runs inside one ``Tx`` (BEGIN IMMEDIATE on SQLite), so
withdrawals and PREPAREs see each other's holds atomically (CONTRACT section 4, rule 8).
"""
from .port import StorageError, Store, Tx  # noqa: F401
