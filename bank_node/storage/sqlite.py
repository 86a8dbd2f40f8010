"""The SQLite adapter of the storage port: the embedded, durable default ledger.

WAL mode with ``synchronous=FULL``: a transaction that returned from COMMIT is on disk, so a
reply, vote or acknowledgement sent after it reports something that survives kill -9
(docs/protocol.md, rule 1). Writes open with ``BEGIN IMMEDIATE`` so a check-and-write never
races another writer. Each thread has its own connection (sqlite3 objects are not shareable).
"""
from __future__ import annotations

import json
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .port import StorageError

# Versioned migrations: index i upgrades schema version i to i+1. Never edit a released one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE customers (
        cpf TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        cpf TEXT NOT NULL REFERENCES customers(cpf),
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE TABLE accounts (
        number TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('individual', 'joint', 'business')),
        cnpj TEXT,
        company_name TEXT,
        status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
        balance INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0),
        created_at REAL NOT NULL
    );
    CREATE TABLE account_holders (
        number TEXT NOT NULL REFERENCES accounts(number),
        cpf TEXT NOT NULL,
        PRIMARY KEY (number, cpf)
    );
    CREATE INDEX account_holders_by_cpf ON account_holders(cpf);
    -- Append-only journal: the balance is re-derivable as the sum of amounts.
    CREATE TABLE entries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        number TEXT NOT NULL REFERENCES accounts(number),
        kind TEXT NOT NULL,
        amount INTEGER NOT NULL,
        balance_after INTEGER NOT NULL CHECK (balance_after >= 0),
        transfer_id TEXT,
        at REAL NOT NULL
    );
    CREATE INDEX entries_by_account ON entries(number, id);
    CREATE UNIQUE INDEX entries_once_per_transfer ON entries(transfer_id, number, kind)
        WHERE transfer_id IS NOT NULL;
    CREATE TRIGGER entries_append_only_u BEFORE UPDATE ON entries
        BEGIN SELECT RAISE(ABORT, 'entries are append-only'); END;
    CREATE TRIGGER entries_append_only_d BEFORE DELETE ON entries
        BEGIN SELECT RAISE(ABORT, 'entries are append-only'); END;
    CREATE TABLE holds (
        transfer_id TEXT NOT NULL,
        number TEXT NOT NULL REFERENCES accounts(number),
        amount INTEGER NOT NULL CHECK (amount > 0),
        created_at REAL NOT NULL,
        PRIMARY KEY (transfer_id, number)
    );
    CREATE INDEX holds_by_account ON holds(number);
    CREATE TABLE idempotency (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        status INTEGER NOT NULL,
        body TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (scope, key)
    );
    -- Two-phase commit: this bank as a participant (one row per transfer it was asked about).
    CREATE TABLE participations (
        transfer_id TEXT PRIMARY KEY,
        coordinator TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('prepared', 'committed', 'aborted')),
        deadline_ms INTEGER NOT NULL,
        initiator TEXT NOT NULL,
        legs TEXT NOT NULL,
        reasons TEXT NOT NULL,
        peers TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX participations_by_state ON participations(state);
    -- Two-phase commit: transfers this bank coordinated.
    CREATE TABLE coordinated (
        transfer_id TEXT PRIMARY KEY,
        initiator TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('preparing', 'committed', 'aborted')),
        deadline_ms INTEGER NOT NULL,
        legs TEXT NOT NULL,
        participants TEXT NOT NULL,
        failures TEXT NOT NULL,
        pending_acks INTEGER NOT NULL,
        created_at REAL NOT NULL,
        decided_at REAL
    );
    CREATE INDEX coordinated_by_state ON coordinated(state, pending_acks);
    """,
    # 2: the daily limits sum an account's entries since midnight.
    """
    CREATE INDEX entries_by_account_time ON entries(number, at);
    """,
    # 3: co-holders who never agreed. A holder named by someone else has not accepted yet
    # (accepted_at NULL) and the account stays pending until every holder accepted; the
    # accounts opened before this existed were agreed to when they were opened.
    """
    ALTER TABLE account_holders ADD COLUMN accepted_at REAL;
    UPDATE account_holders SET accepted_at =
        (SELECT created_at FROM accounts WHERE accounts.number = account_holders.number);
    """,
    # 4: the customer's app: web UI sessions kept by the bank (the cookie holds only a random
    # id), and business accounts found by their CNPJ as a transfer's recipient key.
    """
    CREATE TABLE ui_sessions (
        id_hash TEXT PRIMARY KEY,
        data TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE INDEX ui_sessions_by_expiry ON ui_sessions(expires_at);
    CREATE INDEX accounts_by_cnpj ON accounts(cnpj);
    """,
]


def _row(cur: sqlite3.Cursor, row: tuple) -> dict:
    return {d[0]: v for d, v in zip(cur.description, row)}


class SqliteTx:
    """The ``Tx`` of the port on one sqlite3 connection inside an open transaction."""

    def __init__(self, conn: sqlite3.Connection):
        self.c = conn

    def _one(self, sql: str, args: tuple = ()) -> dict | None:
        cur = self.c.execute(sql, args)
        r = cur.fetchone()
        return _row(cur, r) if r else None

    def _all(self, sql: str, args: tuple = ()) -> list[dict]:
        cur = self.c.execute(sql, args)
        return [_row(cur, r) for r in cur.fetchall()]

    # customers and sessions -------------------------------------------------------------
    def get_customer(self, cpf):
        return self._one("SELECT * FROM customers WHERE cpf = ?", (cpf,))

    def insert_customer(self, cpf, name, password_hash, now):
        self.c.execute("INSERT INTO customers VALUES (?, ?, ?, ?)", (cpf, name, password_hash, now))

    def update_password_hash(self, cpf, password_hash):
        self.c.execute("UPDATE customers SET password_hash = ? WHERE cpf = ?", (password_hash, cpf))

    def insert_session(self, token_hash, cpf, now, expires_at):
        self.c.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, NULL)", (token_hash, cpf, now, expires_at))

    def get_session(self, token_hash):
        return self._one("SELECT * FROM sessions WHERE token_hash = ?", (token_hash,))

    def revoke_session(self, token_hash, now):
        self.c.execute("UPDATE sessions SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL",
                       (now, token_hash))

    # accounts ----------------------------------------------------------------------------
    def insert_account(self, number, kind, holders, cnpj, company_name, now, accepted):
        self.c.execute("INSERT INTO accounts (number, kind, cnpj, company_name, created_at) VALUES (?, ?, ?, ?, ?)",
                       (number, kind, cnpj, company_name, now))
        self.c.executemany("INSERT INTO account_holders (number, cpf, accepted_at) VALUES (?, ?, ?)",
                           [(number, h, now if h in accepted else None) for h in holders])

    def get_account(self, number):
        # "pending" is derived, never stored: an open account with a holder who has not accepted.
        return self._one(
            "SELECT number, kind, cnpj, company_name, balance, created_at,"
            " CASE WHEN status = 'open' AND EXISTS (SELECT 1 FROM account_holders h"
            "  WHERE h.number = accounts.number AND h.accepted_at IS NULL) THEN 'pending' ELSE status END AS status"
            " FROM accounts WHERE number = ?", (number,))

    def holder_acceptances(self, number):
        return self._all("SELECT cpf, accepted_at FROM account_holders WHERE number = ? ORDER BY rowid", (number,))

    def accept_holder(self, number, cpf, now):
        cur = self.c.execute("UPDATE account_holders SET accepted_at = ? WHERE number = ? AND cpf = ?"
                             " AND accepted_at IS NULL", (now, number, cpf))
        return cur.rowcount == 1

    def account_numbers_of(self, cpf):
        return [r["number"] for r in self._all(
            "SELECT number FROM account_holders WHERE cpf = ? ORDER BY number", (cpf,))]

    def holders_of(self, number):
        return [r["cpf"] for r in self._all(
            "SELECT cpf FROM account_holders WHERE number = ? ORDER BY rowid", (number,))]

    def holds_total(self, number):
        r = self._one("SELECT COALESCE(SUM(amount), 0) AS s FROM holds WHERE number = ?", (number,))
        return int(r["s"])

    def append_entry(self, number, kind, amount, now, transfer_id=None):
        """Journal one movement and move the cached balance with it, in the caller's transaction."""
        cur = self.c.execute("UPDATE accounts SET balance = balance + ? WHERE number = ? RETURNING balance",
                             (amount, number))
        row = cur.fetchone()
        if row is None:
            raise StorageError(f"account {number} vanished inside a transaction")
        self.c.execute("INSERT INTO entries (number, kind, amount, balance_after, transfer_id, at) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (number, kind, amount, row[0], transfer_id, now))
        return int(row[0])

    def statement(self, number, limit):
        return self._all("SELECT id, at, kind, amount, balance_after, transfer_id FROM entries "
                         "WHERE number = ? ORDER BY id DESC LIMIT ?", (number, limit))

    def statement_page(self, number, limit, before_id=None, since=None, until=None):
        sql = "SELECT id, at, kind, amount, balance_after, transfer_id FROM entries WHERE number = ?"
        args: list = [number]
        if before_id is not None:
            sql += " AND id < ?"
            args.append(before_id)
        if since is not None:
            sql += " AND at >= ?"
            args.append(since)
        if until is not None:
            sql += " AND at < ?"
            args.append(until)
        return self._all(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))

    def account_numbers_by_cnpj(self, cnpj):
        return [r["number"] for r in self._all("SELECT number FROM accounts WHERE cnpj = ? ORDER BY number", (cnpj,))]

    def day_totals(self, number, since) -> dict:
        """Deposits and debits (withdrawals, transfers out) of one account since ``since``."""
        r = self._one("SELECT COALESCE(SUM(CASE WHEN kind = 'deposit' THEN amount END), 0) AS deposits,"
                      " COALESCE(SUM(CASE WHEN amount < 0 THEN -amount END), 0) AS debits"
                      " FROM entries WHERE number = ? AND at >= ?", (number, since))
        return {"deposits": int(r["deposits"]), "debits": int(r["debits"])}

    def journal_sum(self, number) -> int:
        r = self._one("SELECT COALESCE(SUM(amount), 0) AS s FROM entries WHERE number = ?", (number,))
        return int(r["s"])

    # holds -------------------------------------------------------------------------------
    def place_hold(self, transfer_id, number, amount, now):
        self.c.execute("INSERT INTO holds VALUES (?, ?, ?, ?)", (transfer_id, number, amount, now))

    def holds_of_transfer(self, transfer_id):
        return self._all("SELECT number, amount FROM holds WHERE transfer_id = ?", (transfer_id,))

    def release_holds(self, transfer_id):
        self.c.execute("DELETE FROM holds WHERE transfer_id = ?", (transfer_id,))

    # idempotency -------------------------------------------------------------------------
    def get_idempotent(self, scope, key):
        r = self._one("SELECT * FROM idempotency WHERE scope = ? AND key = ?", (scope, key))
        if r:
            r["body"] = json.loads(r["body"])
        return r

    def put_idempotent(self, scope, key, request_hash, status, body, now):
        self.c.execute("INSERT INTO idempotency VALUES (?, ?, ?, ?, ?, ?)",
                       (scope, key, request_hash, status, json.dumps(body), now))

    # two-phase commit ----------------------------------------------------------------------
    _JSON_P = ("legs", "reasons", "peers")
    _JSON_C = ("legs", "participants", "failures")

    def get_participant(self, transfer_id):
        r = self._one("SELECT * FROM participations WHERE transfer_id = ?", (transfer_id,))
        return _decode(r, self._JSON_P)

    def put_participant(self, rec):
        self.c.execute(
            "INSERT INTO participations VALUES (:transfer_id, :coordinator, :state, :deadline_ms, :initiator,"
            " :legs, :reasons, :peers, :created_at, :updated_at) ON CONFLICT (transfer_id) DO UPDATE SET"
            " state = excluded.state, reasons = excluded.reasons, updated_at = excluded.updated_at",
            _encode(rec, self._JSON_P))

    def participations_in(self, state: str) -> list[dict]:
        return [_decode(r, self._JSON_P) for r in self._all(
            "SELECT * FROM participations WHERE state = ? ORDER BY created_at", (state,))]

    def get_coordinated(self, transfer_id):
        r = self._one("SELECT * FROM coordinated WHERE transfer_id = ?", (transfer_id,))
        return _decode(r, self._JSON_C)

    def put_coordinated(self, rec):
        self.c.execute(
            "INSERT INTO coordinated VALUES (:transfer_id, :initiator, :request_hash, :state, :deadline_ms,"
            " :legs, :participants, :failures, :pending_acks, :created_at, :decided_at)"
            " ON CONFLICT (transfer_id) DO UPDATE SET state = excluded.state,"
            " participants = excluded.participants, failures = excluded.failures,"
            " pending_acks = excluded.pending_acks, decided_at = excluded.decided_at",
            _encode(rec, self._JSON_C))

    def coordinated_preparing(self) -> list[dict]:
        return [_decode(r, self._JSON_C) for r in self._all(
            "SELECT * FROM coordinated WHERE state = 'preparing' ORDER BY created_at")]

    def coordinated_unacknowledged(self) -> list[dict]:
        return [_decode(r, self._JSON_C) for r in self._all(
            "SELECT * FROM coordinated WHERE state != 'preparing' AND pending_acks > 0 ORDER BY decided_at")]

    # the customer's screens -------------------------------------------------------------------
    def transfer_records(self, transfer_ids):
        ids = list(dict.fromkeys(transfer_ids))
        if not ids:
            return {}
        marks = ", ".join("?" * len(ids))
        out = {r["transfer_id"]: {"initiator": r["initiator"], "legs": json.loads(r["legs"]), "coordinated": False,
                                  "state": r["state"], "created_at": r["created_at"]}
               for r in self._all("SELECT transfer_id, initiator, legs, state, created_at FROM participations"
                                  f" WHERE transfer_id IN ({marks})", tuple(ids))}
        for r in self._all("SELECT transfer_id, initiator, legs, state, created_at FROM coordinated"
                           f" WHERE transfer_id IN ({marks})", tuple(ids)):
            out[r["transfer_id"]] = {"initiator": r["initiator"], "legs": json.loads(r["legs"]), "coordinated": True,
                                     "state": r["state"], "created_at": r["created_at"]}
        return out

    # A participation's legs are JSON text; its accounts are matched with LIKE on the quoted
    # number (the only quoted digit strings in it), plain SQL that PostgreSQL runs as well.
    _CUSTOMER_TRANSFERS = """
        SELECT transfer_id, status, role, created_at, initiator, legs FROM (
            SELECT c.transfer_id AS transfer_id,
                   CASE c.state WHEN 'preparing' THEN 'pending' ELSE c.state END AS status,
                   'coordinator' AS role, c.created_at AS created_at, c.initiator AS initiator, c.legs AS legs
              FROM coordinated c WHERE c.initiator = ?
            UNION ALL
            SELECT p.transfer_id, CASE p.state WHEN 'prepared' THEN 'pending' ELSE p.state END,
                   'participant', p.created_at, p.initiator, p.legs
              FROM participations p
             WHERE EXISTS (SELECT 1 FROM account_holders h WHERE h.cpf = ? AND p.legs LIKE '%"' || h.number || '"%')
               AND NOT EXISTS (SELECT 1 FROM coordinated c2 WHERE c2.transfer_id = p.transfer_id
                                                               AND c2.initiator = ?)
        ) t WHERE 1 = 1"""

    def transfers_of_customer(self, cpf, limit, since=None, until=None, statuses=(), before=None):
        sql, args = self._CUSTOMER_TRANSFERS, [cpf, cpf, cpf]
        if since is not None:
            sql += " AND created_at >= ?"
            args.append(since)
        if until is not None:
            sql += " AND created_at < ?"
            args.append(until)
        if statuses:
            sql += f" AND status IN ({', '.join('?' * len(statuses))})"
            args += list(statuses)
        if before is not None:
            sql += " AND (created_at < ? OR (created_at = ? AND transfer_id < ?))"
            args += [before[0], before[0], before[1]]
        rows = self._all(sql + " ORDER BY created_at DESC, transfer_id DESC LIMIT ?", (*args, limit))
        for r in rows:
            r["legs"] = json.loads(r["legs"])
        return rows

    # web UI sessions --------------------------------------------------------------------------
    def get_ui_session(self, id_hash, now):
        return self._one("SELECT data, created_at, expires_at FROM ui_sessions WHERE id_hash = ? AND expires_at > ?",
                         (id_hash, now))

    def put_ui_session(self, id_hash, data, now, expires_at):
        self.c.execute("INSERT INTO ui_sessions (id_hash, data, created_at, expires_at) VALUES (?, ?, ?, ?)"
                       " ON CONFLICT (id_hash) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at",
                       (id_hash, data, now, expires_at))

    def delete_ui_session(self, id_hash):
        self.c.execute("DELETE FROM ui_sessions WHERE id_hash = ?", (id_hash,))

    def purge_ui_sessions(self, now):
        return self.c.execute("DELETE FROM ui_sessions WHERE expires_at <= ?", (now,)).rowcount

    # operator figures -----------------------------------------------------------------------
    def operator_view(self, now: float) -> dict:
        """Transfers by state, what is in doubt (with its age) and the holds in place."""
        by = lambda sql: dict(self.c.execute(sql).fetchall())  # noqa: E731
        in_doubt = [{"transfer_id": r["transfer_id"], "role": "coordinator", "state": r["state"],
                     "age_s": now - r["created_at"], "coordinator": "(this bank)"}
                    for r in self._all("SELECT transfer_id, state, created_at FROM coordinated "
                                       "WHERE state = 'preparing' ORDER BY created_at")]
        in_doubt += [{"transfer_id": r["transfer_id"], "role": "participant", "state": r["state"],
                      "age_s": now - r["created_at"], "coordinator": r["coordinator"]}
                     for r in self._all("SELECT transfer_id, state, created_at, coordinator FROM participations "
                                        "WHERE state = 'prepared' ORDER BY created_at")]
        unacked = [{"transfer_id": r["transfer_id"], "state": r["state"], "pending_acks": r["pending_acks"],
                    "age_s": now - (r["decided_at"] or r["created_at"])}
                   for r in self._all("SELECT transfer_id, state, pending_acks, decided_at, created_at "
                                      "FROM coordinated WHERE state != 'preparing' AND pending_acks > 0 "
                                      "ORDER BY decided_at LIMIT 1000")]
        holds = [{"transfer_id": r["transfer_id"], "account": r["number"], "amount": r["amount"],
                  "age_s": now - r["created_at"]}
                 for r in self._all("SELECT transfer_id, number, amount, created_at FROM holds ORDER BY created_at")]
        return {
            "coordinated_by_state": by("SELECT state, COUNT(*) FROM coordinated GROUP BY state ORDER BY state"),
            "participations_by_state": by("SELECT state, COUNT(*) FROM participations GROUP BY state ORDER BY state"),
            "in_doubt": in_doubt, "unacknowledged": unacked, "holds": holds,
        }

    def ledger_snapshot(self) -> dict:
        """Everything an invariant checker compares across banks, read in one transaction."""
        q = lambda sql: self.c.execute(sql).fetchall()  # noqa: E731
        return {
            "balances": dict(q("SELECT number, balance FROM accounts")),
            "journal": dict(q("SELECT number, SUM(amount) FROM entries GROUP BY number")),
            "holds": q("SELECT transfer_id, number, amount FROM holds"),
            "participations": dict(q("SELECT transfer_id, state FROM participations")),
            "coordinated": dict(q("SELECT transfer_id, state FROM coordinated")),
            "pending_acks": [r[0] for r in q("SELECT transfer_id FROM coordinated WHERE pending_acks > 0")],
            "transfer_entries": q("SELECT transfer_id, number, kind, amount FROM entries WHERE transfer_id IS NOT NULL"),
            "deposits": q("SELECT COALESCE(SUM(amount), 0) FROM entries WHERE kind = 'deposit'")[0][0],
            "withdrawals": q("SELECT COALESCE(-SUM(amount), 0) FROM entries WHERE kind = 'withdrawal'")[0][0],
        }

    def counts(self) -> dict:
        one = lambda sql: int(self.c.execute(sql).fetchone()[0])  # noqa: E731
        return {
            "prepared_legs": one("SELECT COUNT(*) FROM participations WHERE state = 'prepared'"),
            "preparing": one("SELECT COUNT(*) FROM coordinated WHERE state = 'preparing'"),
            "unacknowledged_decisions": one("SELECT COUNT(*) FROM coordinated WHERE state != 'preparing'"
                                            " AND pending_acks > 0"),
            "holds": one("SELECT COUNT(*) FROM holds"),
            "holds_total": one("SELECT COALESCE(SUM(amount), 0) FROM holds"),
            "accounts": one("SELECT COUNT(*) FROM accounts"),
            "balance_total": one("SELECT COALESCE(SUM(balance), 0) FROM accounts"),
            "deposits_total": one("SELECT COALESCE(SUM(amount), 0) FROM entries WHERE kind = 'deposit'"),
            "withdrawals_total": one("SELECT COALESCE(-SUM(amount), 0) FROM entries WHERE kind = 'withdrawal'"),
            "journal_total": one("SELECT COALESCE(SUM(amount), 0) FROM entries"),
            "transfers_in_total": one("SELECT COALESCE(SUM(amount), 0) FROM entries WHERE kind = 'transfer_in'"),
            "transfers_out_total": one("SELECT COALESCE(-SUM(amount), 0) FROM entries WHERE kind = 'transfer_out'"),
        }


def _encode(rec: dict, json_fields: tuple) -> dict:
    out = dict(rec)
    for f in json_fields:
        out[f] = json.dumps(out[f], sort_keys=True)
    return out


def _decode(rec: dict | None, json_fields: tuple) -> dict | None:
    if rec is None:
        return None
    for f in json_fields:
        rec[f] = json.loads(rec[f])
    return rec


class SqliteStore:
    """Thread-safe handle on one bank's database file."""

    def __init__(self, path: str | Path, busy_timeout_ms: int = 30_000):
        self.path = str(path)
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._all_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._migrate(self._conn())
        except sqlite3.Error as e:
            raise StorageError(f"cannot open the ledger at {self.path}: {e}") from e

    def _conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                timeout=self.busy_timeout_ms / 1000)
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=FULL")
            c.execute("PRAGMA foreign_keys=ON")
            c.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
            self._local.conn = c
            with self._lock:
                self._all_conns.append(c)
        return c

    @staticmethod
    def _migrate(c: sqlite3.Connection) -> None:
        c.execute("BEGIN IMMEDIATE")
        try:
            version = c.execute("PRAGMA user_version").fetchone()[0]
            for i in range(version, len(MIGRATIONS)):
                for stmt in _split_sql(MIGRATIONS[i]):
                    c.execute(stmt)
                c.execute(f"PRAGMA user_version = {i + 1}")
            c.execute("COMMIT")
        except BaseException:
            _rollback(c)
            raise

    def schema_version(self) -> int:
        return int(self._conn().execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[SqliteTx]:
        """One atomic unit of work. Writers of this process queue on a lock before BEGIN
        IMMEDIATE: SQLite's own busy handler makes a waiting writer sleep in steps of up to
        100 ms, which under load cost far more than the fsync (busy_timeout still covers other
        processes, such as a checker reading the file)."""
        if write:
            with self._write_lock:
                yield from self._transaction(True)
        else:
            yield from self._transaction(False)

    def _transaction(self, write: bool) -> Iterator[SqliteTx]:
        c = self._conn()
        try:
            c.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.Error as e:
            raise StorageError(f"cannot start a transaction: {e}") from e
        try:
            yield SqliteTx(c)
        except sqlite3.Error as e:
            _rollback(c)
            raise StorageError(str(e)) from e
        except BaseException:
            _rollback(c)
            raise
        try:
            c.execute("COMMIT")
        except sqlite3.Error as e:
            _rollback(c)
            raise StorageError(f"commit failed: {e}") from e

    def ping(self) -> bool:
        try:
            self._conn().execute("SELECT 1").fetchone()
            return True
        except sqlite3.Error:
            return False

    def close(self) -> None:
        with self._lock:
            for c in self._all_conns:
                try:
                    c.close()
                except sqlite3.Error:
                    pass
            self._all_conns.clear()
        self._local = threading.local()


def _rollback(c: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open. SQLite ends the transaction by itself on some
    failures (disk full, I/O error, interrupt); a second ROLLBACK would then raise a bare
    sqlite3 error that hides the real one and escapes the port untranslated."""
    try:
        if c.in_transaction:
            c.execute("ROLLBACK")
    except sqlite3.Error:
        pass


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies (BEGIN ... END;) whole."""
    out, buf = [], ""
    for line in script.splitlines():
        buf += line + "\n"
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
