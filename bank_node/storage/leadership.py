"""Leadership: one process at a time holds a bank's role (its resolver), across every process
that serves the bank over one ledger.

Several processes of a bank share its ledger and compete on its queue; most of the work is safe
in any of them (every handler is idempotent, every decision a compare-and-set in the ledger).
The resolver is not work to do N times over: N processes re-sending every unacknowledged
decision and asking every outcome N times is load for nothing. So a process resolves only while
it holds the bank's leadership, a lock that the operating system or the database lets go of
when its holder dies, so that a survivor takes over by itself:

- ``FileLeadership`` (SQLite, processes on one machine): ``flock`` on a file beside the
  database. The kernel drops it when the holder's process dies, kill -9 included. ``flock``
  locks belong to an open file, not to a process, so two holders in one process exclude each
  other too (the unit tests run several nodes in one process).
- ``PostgresLeadership`` (a PostgreSQL ledger, processes anywhere): ``pg_try_advisory_lock``
  on a connection of its own, held as long as that session lives. Advisory locks belong to a
  database, and several banks' ledgers may share one in schemas of their own: the key is
  made of the role and the schema the ledger's URL selects. A holder whose connection
  dies has lost it (the server ends the session and frees the lock); it finds out at its next
  check and stops acting, and another process takes the lock.

Both answer ``try_acquire()`` (non-blocking, called about once a second by those who do not
hold it) and ``check()`` (is it still held? called as often by the holder). Between a holder's
death and the next check of a survivor, nobody resolves; between a lost PostgreSQL session and
the holder's next check, two may: both are harmless, since everything the resolver does is
idempotent and decided by compare-and-set in the ledger.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Protocol

log = logging.getLogger("storage")


class Leadership(Protocol):
    @property
    def held(self) -> bool: ...
    def try_acquire(self) -> bool:
        """Take the role if nobody holds it; True when this holder has it (now or already)."""
    def check(self) -> bool:
        """Whether this holder still has the role (False once it is lost)."""
    def release(self) -> None: ...


class FileLeadership:
    """``flock`` on ``path``; the file holds the holder's pid (for people, not for the lock)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd: int | None = None
        self._lock = threading.Lock()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        with self._lock:
            if self._fd is not None:
                return True
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            except OSError:
                os.close(fd)
                raise
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            self._fd = fd
            return True

    def check(self) -> bool:
        return self.held   # a lock on a local file is not lost while its holder lives

    def release(self) -> None:
        with self._lock:
            if self._fd is not None:
                fd, self._fd = self._fd, None
                os.close(fd)   # closing the only descriptor of the open file drops the lock


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_try_advisory_lock`` from a readable name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class PostgresLeadership:
    """``pg_try_advisory_lock`` on a dedicated autocommit connection (psycopg, no pool: the
    lock belongs to the session, which must live exactly as long as the role)."""

    def __init__(self, dsn: str, name: str, connect_timeout_s: int = 5):
        self.dsn = dsn
        self.name = name
        self.connect_timeout_s = connect_timeout_s
        self._conn = None
        self._lock = threading.Lock()

    @property
    def held(self) -> bool:
        return self._conn is not None

    def try_acquire(self) -> bool:
        import psycopg
        with self._lock:
            if self._conn is not None:
                return self._alive()
            try:
                conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=self.connect_timeout_s,
                                       application_name=f"consorcio leadership {self.name}"[:63])
            except psycopg.Error as e:
                log.warning("leadership %s: cannot reach the database (%s)", self.name, e)
                return False
            try:
                schema = conn.execute("SELECT current_schema()").fetchone()[0]
                key = advisory_key(f"{self.name}@{schema}")
                got = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]
            except psycopg.Error:
                conn.close()
                return False
            if not got:
                conn.close()
                return False
            self._conn = conn
            return True

    def check(self) -> bool:
        with self._lock:
            return self._conn is not None and self._alive()

    def _alive(self) -> bool:
        """The session still answers (so it still holds the lock); else the role is lost."""
        import psycopg
        try:
            self._conn.execute("SELECT 1").fetchone()
            return True
        except psycopg.Error as e:
            log.warning("leadership %s lost with its database session (%s)", self.name, e)
            self._drop()
            return False

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - already broken
            pass

    def release(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._drop()   # ending the session frees every advisory lock it held
