"""Storage is a port: services talk to ``Store``/``Tx``; ``sqlite.py`` (the embedded default) and
``postgres.py`` (a database several processes of a bank share) are its adapters.

Every check-and-write of the ledger runs inside one ``Tx`` (BEGIN IMMEDIATE on SQLite, the
ledger's writer lock on PostgreSQL: one writer at a time either way), so withdrawals and PREPAREs see each other's holds atomically (docs/protocol.md,
rule 8).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping
from urllib.parse import quote, urlsplit, urlunsplit

from .port import StorageError, Store, Tx  # noqa: F401

POSTGRES_SCHEMES = ("postgresql", "postgres")


def is_postgres_url(location: object) -> bool:
    return isinstance(location, str) and urlsplit(location).scheme in POSTGRES_SCHEMES


def check_location(location: str) -> str:
    """A ledger's location as a setting: a PostgreSQL URL, or a file path (no other URL, and no
    libpq ``key=value`` connection string, which would otherwise open a SQLite file named after it)."""
    if not is_postgres_url(location) and re.search(r"(^|\s)(host|hostaddr|dbname|user|port)=", location):
        raise ValueError("storage must be a postgresql:// URL (e.g. postgresql://user@host:5432/db), "
                         "not a key=value connection string")
    if "://" in location and not is_postgres_url(location):
        raise ValueError(f"storage must be a postgresql:// URL or a SQLite file path, not {location.split('://')[0]}://...")
    return location


def ledger_location(bank_id: str, data_dir: str | Path, setting: str | None = None) -> str | Path:
    """Where a bank's ledger is: its ``storage`` setting if any, else ``<data_dir>/<bank>.sqlite3``."""
    return setting if setting else Path(data_dir) / f"{bank_id}.sqlite3"


def postgres_url(conninfo: str, dbname: str | None = None) -> str:
    """A ``postgresql://`` URL for a libpq connection string or URL (``dbname`` replacing its
    database): the form a bank's ``storage`` setting takes."""
    import psycopg
    p = psycopg.conninfo.conninfo_to_dict(conninfo)
    auth = quote(p.get("user", ""), safe="") + (f":{quote(p['password'], safe='')}" if p.get("password") else "")
    return f"postgresql://{auth}@{p.get('host', '127.0.0.1')}:{p.get('port', 5432)}/{dbname or p['dbname']}"


def open_store(location: str | Path, connections: int = 16) -> Store:
    """The store at ``location``: a ``postgresql://`` URL, else a SQLite file path.
    ``connections``: how many threads of this process may hold a transaction at once (the size
    of PostgreSQL's pool; SQLite gives each thread its own connection anyway)."""
    if is_postgres_url(location):
        from .postgres import PostgresStore
        return PostgresStore(str(location), max_size=connections)
    from .sqlite import SqliteStore
    return SqliteStore(location)


def storage_setting(bank, config_path: str | Path, env: Mapping[str, str] = os.environ) -> tuple[str | None, str]:
    """A bank's ledger setting and what set it, as the bank and its operator commands read it:
    ``BANK_DATABASE_URL``, else the bank's ``storage`` in the consortium file; (None, "its
    SQLite ledger") when neither says (the file in its data folder)."""
    if env.get("BANK_DATABASE_URL"):
        return env["BANK_DATABASE_URL"], "BANK_DATABASE_URL"
    if bank.storage:
        return bank.storage, f"storage of bank {bank.id} in {config_path}"
    return None, "its SQLite ledger"


def redacted(url: str) -> str:
    """The URL with its password masked, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))
