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
from typing import Any, Callable, Iterator

from ..concurrency import active as concurrency_active
from ..concurrency import off_loop
from ..domain.consent import Mandate
from ..domain.coordinator import CoordinatedTransfer
from ..domain.participant import Participation
from .leadership import FileLeadership
from .port import StorageError
from .records import coordinated_of, coordinated_row, mandate_of, participation_of, participation_row

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
    # 5: the trust protocol. Participations are named by (transfer id, coordinator), so that an
    # ABORT sent by a bank for an id it does not coordinate cannot block the real transfer of
    # that id; they keep the whole transfer (every leg with its bank) and the hashes of the
    # signed envelopes they acted on. Legs recorded before this version carry no bank: they
    # are this bank's own (bank "" when read back). Mandates (consent at the account's own
    # bank) and their daily use; claims on peers of pending credits, bilateral positions and
    # their append-only settlement journal (double entry between banks); signed envelopes kept
    # as evidence; running daily totals per account (the daily limits read one row, not the
    # day's entries).
    """
    CREATE TABLE participations_v3 (
        transfer_id TEXT NOT NULL,
        coordinator TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('prepared', 'committed', 'aborted')),
        deadline_ms INTEGER NOT NULL,
        initiator TEXT NOT NULL,
        legs TEXT NOT NULL,
        reasons TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        prepare_evidence TEXT,
        decision_evidence TEXT,
        PRIMARY KEY (transfer_id, coordinator)
    );
    INSERT INTO participations_v3 (transfer_id, coordinator, state, deadline_ms, initiator, legs, reasons,
                                   created_at, updated_at)
        SELECT transfer_id, coordinator, state, deadline_ms, initiator, legs, reasons, created_at, updated_at
        FROM participations;
    DROP TABLE participations;
    ALTER TABLE participations_v3 RENAME TO participations;
    -- the resolver lists prepared legs; the operator view counts by state
    CREATE INDEX participations_by_state ON participations(state, created_at);
    ALTER TABLE coordinated ADD COLUMN decision_sent_ms INTEGER;
    ALTER TABLE coordinated ADD COLUMN resend_stopped INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE mandates (
        id TEXT PRIMARY KEY,
        number TEXT NOT NULL REFERENCES accounts(number),
        bank TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at REAL NOT NULL,
        max_per_transfer INTEGER,
        max_per_day INTEGER,
        expires_at REAL,
        revoked_at REAL
    );
    -- a PREPARE looks up the mandate of (account, initiating bank)
    CREATE INDEX mandates_by_account_bank ON mandates(number, bank);
    CREATE TABLE mandate_uses (
        mandate_id TEXT NOT NULL REFERENCES mandates(id),
        transfer_id TEXT NOT NULL,
        number TEXT NOT NULL,
        amount INTEGER NOT NULL CHECK (amount > 0),
        day INTEGER NOT NULL,
        PRIMARY KEY (mandate_id, transfer_id)
    );
    -- the daily use of a mandate is summed per (mandate, day)
    CREATE INDEX mandate_uses_by_day ON mandate_uses(mandate_id, day);
    CREATE TABLE claims (
        transfer_id TEXT NOT NULL,
        coordinator TEXT NOT NULL,
        peer TEXT NOT NULL,
        amount INTEGER NOT NULL CHECK (amount > 0),
        PRIMARY KEY (transfer_id, coordinator, peer)
    );
    -- a peer's exposure sums its pending claims
    CREATE INDEX claims_by_peer ON claims(peer);
    CREATE TABLE positions (
        peer TEXT PRIMARY KEY,
        amount INTEGER NOT NULL
    );
    CREATE TABLE settlement_entries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        peer TEXT NOT NULL,
        transfer_id TEXT NOT NULL,
        amount INTEGER NOT NULL,
        at REAL NOT NULL
    );
    CREATE UNIQUE INDEX settlement_once_per_transfer ON settlement_entries(transfer_id, peer);
    CREATE TRIGGER settlement_append_only_u BEFORE UPDATE ON settlement_entries
        BEGIN SELECT RAISE(ABORT, 'settlement entries are append-only'); END;
    CREATE TRIGGER settlement_append_only_d BEFORE DELETE ON settlement_entries
        BEGIN SELECT RAISE(ABORT, 'settlement entries are append-only'); END;
    CREATE TABLE evidence (
        hash TEXT PRIMARY KEY,
        sender TEXT NOT NULL,
        body BLOB NOT NULL,
        signature TEXT NOT NULL,
        received_at REAL NOT NULL
    );
    CREATE TABLE daily_totals (
        number TEXT NOT NULL REFERENCES accounts(number),
        day INTEGER NOT NULL,
        deposits INTEGER NOT NULL DEFAULT 0,
        debits INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (number, day)
    );
    INSERT INTO daily_totals (number, day, deposits, debits)
        SELECT number, CAST((at - 10800) / 86400 AS INTEGER),
               COALESCE(SUM(CASE WHEN kind = 'deposit' THEN amount END), 0),
               COALESCE(SUM(CASE WHEN amount < 0 THEN -amount END), 0)
        FROM entries GROUP BY 1, 2;
    """,
    # 6: a bank with millions of accounts and transfers behind it. Every query of the transfer
    # and statement paths, and of the resolver's rounds, reads through an index
    # (tests/unit/test_query_plans.py asks SQLite for each one's plan).
    """
    -- "My transfers": the transfers a customer started at this bank, newest first
    -- (transfers_of_customer), a scan of every coordinated transfer without it.
    CREATE INDEX coordinated_by_initiator ON coordinated(initiator, created_at);
    """,
    # 7: every abort a participant applies releases its mandate uses by transfer id; without an
    # index that read the whole table, which only grows (PostgreSQL's schema has had it).
    """
    CREATE INDEX mandate_uses_by_transfer ON mandate_uses(transfer_id);
    """,
]


MMAP_BYTES = 1 << 30
"""How much of the ledger's file every connection reads through one shared memory map (1 GiB:
about two million accounts with their journal; the rest is read as usual)."""


def _row(cur: sqlite3.Cursor, row: tuple) -> dict:
    return {d[0]: v for d, v in zip(cur.description, row)}


class SqliteTx:
    """The ``Tx`` of the port on one sqlite3 connection inside an open transaction.

    Its SQL is kept to what PostgreSQL runs as well: the PostgreSQL adapter's ``Tx`` is this
    class over a psycopg connection, overriding only what differs (the holders'
    order)."""

    DB_ERROR: type[Exception] = sqlite3.Error
    HOLDER_ORDER = "rowid"   # account_holders in the order the holders were named

    def __init__(self, conn: sqlite3.Connection):
        self.c = conn
        self._sp = 0

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

    # "pending" is derived, never stored: an open account with a holder who has not accepted.
    ACCOUNT_STATUS = ("CASE WHEN accounts.status = 'open' AND EXISTS (SELECT 1 FROM account_holders h"
                      " WHERE h.number = accounts.number AND h.accepted_at IS NULL)"
                      " THEN 'pending' ELSE accounts.status END")

    def get_account(self, number):
        return self._one(
            f"SELECT number, kind, cnpj, company_name, balance, created_at, {self.ACCOUNT_STATUS} AS status"
            " FROM accounts WHERE number = ?", (number,))

    def holder_acceptances(self, number):
        return self._all(f"SELECT cpf, accepted_at FROM account_holders WHERE number = ? ORDER BY {self.HOLDER_ORDER}",
                         (number,))

    def accept_holder(self, number, cpf, now):
        cur = self.c.execute("UPDATE account_holders SET accepted_at = ? WHERE number = ? AND cpf = ?"
                             " AND accepted_at IS NULL", (now, number, cpf))
        return cur.rowcount == 1

    def account_numbers_of(self, cpf):
        return [r["number"] for r in self._all(
            "SELECT number FROM account_holders WHERE cpf = ? ORDER BY number", (cpf,))]

    def holders_of(self, number):
        return [r["cpf"] for r in self._all(
            f"SELECT cpf FROM account_holders WHERE number = ? ORDER BY {self.HOLDER_ORDER}", (number,))]

    def holds_total(self, number):
        r = self._one("SELECT COALESCE(SUM(amount), 0) AS s FROM holds WHERE number = ?", (number,))
        return int(r["s"])

    HOLDERS_LIST = "group_concat(cpf, ',')"   # the account's CPFs in one column (digits only)

    def account_standing(self, number, day: int):
        # Four reads in one statement: a PREPARE reads this for each of its legs here, and a
        # statement's round through the driver costs more than these indexed lookups.
        r = self.c.execute(
            f"SELECT balance, {self.ACCOUNT_STATUS},"
            f" (SELECT {self.HOLDERS_LIST} FROM account_holders h WHERE h.number = accounts.number),"
            " (SELECT COALESCE(SUM(amount), 0) FROM holds WHERE holds.number = accounts.number),"
            " (SELECT debits FROM daily_totals d WHERE d.number = accounts.number AND d.day = ?)"
            " FROM accounts WHERE number = ?", (day, number)).fetchone()
        if r is None:
            return None
        balance, status, holders, held, debits = r
        return {"balance": int(balance), "status": status, "holders": frozenset((holders or "").split(",")) - {""},
                "held": int(held), "debits": int(debits or 0)}

    def append_entry(self, number, kind, amount, now, transfer_id=None, *, day: int):
        """Journal one movement, move the cached balance with it and the account's running total
        of the day (``day``: the number of the limits' day), in the caller's transaction."""
        cur = self.c.execute("UPDATE accounts SET balance = balance + ? WHERE number = ? RETURNING balance",
                             (amount, number))
        row = cur.fetchone()
        if row is None:
            raise StorageError(f"account {number} vanished inside a transaction")
        self.c.execute("INSERT INTO entries (number, kind, amount, balance_after, transfer_id, at) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (number, kind, amount, row[0], transfer_id, now))
        deposit, debit = (amount, 0) if kind == "deposit" else (0, max(0, -amount))
        if deposit or debit:
            self.c.execute("INSERT INTO daily_totals VALUES (?, ?, ?, ?) ON CONFLICT (number, day) DO UPDATE SET"
                           " deposits = daily_totals.deposits + excluded.deposits,"
                           " debits = daily_totals.debits + excluded.debits",
                           (number, day, deposit, debit))
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

    def day_totals(self, number, day: int) -> dict:
        """Deposits and debits (withdrawals, transfers out) of one account on the limits' ``day``."""
        r = self._one("SELECT deposits, debits FROM daily_totals WHERE number = ? AND day = ?", (number, day))
        return {"deposits": int(r["deposits"]), "debits": int(r["debits"])} if r else {"deposits": 0, "debits": 0}

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
    def get_participant(self, transfer_id: str, coordinator: str) -> Participation | None:
        return participation_of(self._one("SELECT * FROM participations WHERE transfer_id = ? AND coordinator = ?",
                                          (transfer_id, coordinator)))

    def participations_of(self, transfer_id: str) -> list[Participation]:
        """Every participation of this id, whoever coordinated it (an id reused elsewhere)."""
        return [participation_of(r) for r in self._all(
            "SELECT * FROM participations WHERE transfer_id = ? ORDER BY created_at", (transfer_id,))]

    def put_participant(self, rec: Participation) -> None:
        self.c.execute(
            "INSERT INTO participations (transfer_id, coordinator, state, deadline_ms, initiator, legs, reasons,"
            " created_at, updated_at, prepare_evidence, decision_evidence) VALUES (:transfer_id, :coordinator,"
            " :state, :deadline_ms, :initiator, :legs, :reasons, :created_at, :updated_at, :prepare_evidence,"
            " :decision_evidence) ON CONFLICT (transfer_id, coordinator) DO UPDATE SET state = excluded.state,"
            " reasons = excluded.reasons, updated_at = excluded.updated_at,"
            " decision_evidence = excluded.decision_evidence", participation_row(rec))

    def participations_in(self, state: str, limit: int = 100_000,
                          deadline_before: int | None = None) -> list[Participation]:
        if deadline_before is None:
            return [participation_of(r) for r in self._all(
                "SELECT * FROM participations WHERE state = ? ORDER BY created_at LIMIT ?", (state, limit))]
        return [participation_of(r) for r in self._all(
            "SELECT * FROM participations WHERE state = ? AND deadline_ms < ? ORDER BY created_at LIMIT ?",
            (state, deadline_before, limit))]

    def get_coordinated(self, transfer_id: str) -> CoordinatedTransfer | None:
        return coordinated_of(self._one("SELECT * FROM coordinated WHERE transfer_id = ?", (transfer_id,)))

    def put_coordinated(self, rec: CoordinatedTransfer) -> None:
        self.c.execute(
            "INSERT INTO coordinated (transfer_id, initiator, request_hash, state, deadline_ms, legs, participants,"
            " failures, pending_acks, created_at, decided_at, decision_sent_ms, resend_stopped) VALUES"
            " (:transfer_id, :initiator, :request_hash, :state, :deadline_ms, :legs, :participants, :failures,"
            " :pending_acks, :created_at, :decided_at, :decision_sent_ms, :resend_stopped)"
            " ON CONFLICT (transfer_id) DO UPDATE SET state = excluded.state,"
            " participants = excluded.participants, failures = excluded.failures,"
            " pending_acks = excluded.pending_acks, decided_at = excluded.decided_at,"
            " decision_sent_ms = excluded.decision_sent_ms, resend_stopped = excluded.resend_stopped",
            coordinated_row(rec))

    def coordinated_preparing(self, deadline_before: int | None = None) -> list[CoordinatedTransfer]:
        return [coordinated_of(r) for r in self._all(
            "SELECT * FROM coordinated WHERE state = 'preparing' AND deadline_ms < ? ORDER BY created_at",
            (deadline_before if deadline_before is not None else 2 ** 62,))]

    def coordinated_unacknowledged(self, limit: int = 100_000,
                                   decided_before: float | None = None) -> list[CoordinatedTransfer]:
        """Decided transfers some participant has not acknowledged, whose re-sends go on. The
        states named, not "state != 'preparing'": the (state, pending_acks) index serves an IN
        list, not an inequality, and each round of the resolver would read every transfer ever
        coordinated."""
        return [coordinated_of(r) for r in self._all(
            "SELECT * FROM coordinated WHERE state IN ('committed', 'aborted') AND pending_acks > 0"
            " AND resend_stopped = 0 AND (decided_at IS NULL OR decided_at < ?) ORDER BY decided_at LIMIT ?",
            (decided_before if decided_before is not None else float("inf"), limit))]

    # mandates ------------------------------------------------------------------------------
    def insert_mandate(self, m: Mandate) -> None:
        self.c.execute("INSERT INTO mandates (id, number, bank, created_by, created_at, max_per_transfer,"
                       " max_per_day, expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (m.id, m.account, m.bank, m.created_by, m.created_at, m.max_per_transfer, m.max_per_day,
                        m.expires_at, m.revoked_at))

    def get_mandate(self, mandate_id: str) -> Mandate | None:
        return mandate_of(self._one("SELECT * FROM mandates WHERE id = ?", (mandate_id,)))

    def mandates_of_accounts(self, numbers: list[str]) -> list[Mandate]:
        if not numbers:
            return []
        marks = ",".join("?" * len(numbers))
        return [mandate_of(r) for r in self._all(
            f"SELECT * FROM mandates WHERE number IN ({marks}) ORDER BY created_at", tuple(numbers))]

    def active_mandate(self, number: str, bank: str, now: float) -> Mandate | None:
        """The newest mandate of this account for this bank that is neither revoked nor expired."""
        return mandate_of(self._one(
            "SELECT * FROM mandates WHERE number = ? AND bank = ? AND revoked_at IS NULL"
            " AND (expires_at IS NULL OR expires_at > ?) ORDER BY created_at DESC LIMIT 1", (number, bank, now)))

    def revoke_mandate(self, mandate_id: str, now: float) -> None:
        self.c.execute("UPDATE mandates SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now, mandate_id))

    def mandate_used(self, mandate_id: str, day: int) -> int:
        r = self._one("SELECT COALESCE(SUM(amount), 0) AS s FROM mandate_uses WHERE mandate_id = ? AND day = ?",
                      (mandate_id, day))
        return int(r["s"])

    def add_mandate_use(self, mandate_id: str, transfer_id: str, number: str, amount: int, day: int) -> None:
        self.c.execute("INSERT INTO mandate_uses VALUES (?, ?, ?, ?, ?)", (mandate_id, transfer_id, number, amount, day))

    def release_mandate_uses(self, transfer_id: str) -> None:
        """An aborted transfer used nothing of its mandates."""
        self.c.execute("DELETE FROM mandate_uses WHERE transfer_id = ?", (transfer_id,))

    # claims on peers and bilateral positions ------------------------------------------------
    def add_claim(self, transfer_id: str, coordinator: str, peer: str, amount: int) -> None:
        self.c.execute("INSERT INTO claims VALUES (?, ?, ?, ?)", (transfer_id, coordinator, peer, amount))

    def release_claims(self, transfer_id: str, coordinator: str) -> None:
        self.c.execute("DELETE FROM claims WHERE transfer_id = ? AND coordinator = ?", (transfer_id, coordinator))

    def exposure(self) -> dict[str, int]:
        """Per peer: its position (what it owes us) plus the claims of transfers still pending."""
        out = dict(self.c.execute("SELECT peer, amount FROM positions").fetchall())
        for peer, amount in self.c.execute("SELECT peer, SUM(amount) FROM claims GROUP BY peer").fetchall():
            out[peer] = out.get(peer, 0) + int(amount)
        return out

    def post_settlement(self, peer: str, transfer_id: str, amount: int, now: float) -> None:
        """One settlement entry against ``peer`` (positive: a claim on it), and its position."""
        self.c.execute("INSERT INTO settlement_entries (peer, transfer_id, amount, at) VALUES (?, ?, ?, ?)",
                       (peer, transfer_id, amount, now))
        self.c.execute("INSERT INTO positions VALUES (?, ?) ON CONFLICT (peer) DO UPDATE SET"
                       " amount = positions.amount + excluded.amount", (peer, amount))

    def positions(self) -> dict[str, int]:
        return dict(self.c.execute("SELECT peer, amount FROM positions ORDER BY peer").fetchall())

    # evidence --------------------------------------------------------------------------------
    def put_evidence(self, digest: str, sender: str, body: bytes, signature: str, now: float) -> None:
        self.c.execute("INSERT INTO evidence VALUES (?, ?, ?, ?, ?) ON CONFLICT (hash) DO NOTHING",
                       (digest, sender, body, signature, now))

    def get_evidence(self, digest: str) -> dict | None:
        return self._one("SELECT * FROM evidence WHERE hash = ?", (digest,))

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

    # bulk loading -------------------------------------------------------------------------------
    def is_empty(self) -> bool:
        return not self.c.execute("SELECT EXISTS (SELECT 1 FROM customers) OR EXISTS (SELECT 1 FROM accounts)"
                                  ).fetchone()[0]

    def seed_accounts(self, accounts, password_hash, opening_balance, now, day):
        """One executemany per table: the rows go through SQLite's prepared statement without a
        round of Python per statement. The connection's page cache grows to 256 MiB first: rows
        with random account numbers land all over five indexes, and with the default 2 MiB the
        transaction spills pages to the WAL as it goes (three times slower at 300,000 accounts)."""
        self.c.execute("PRAGMA cache_size = -262144")
        self.c.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)",
                           ((a.cpf, a.name, password_hash, now) for a in accounts))
        self.c.executemany("INSERT INTO accounts (number, kind, balance, created_at) VALUES (?, 'individual', ?, ?)",
                           ((a.number, opening_balance, now) for a in accounts))
        self.c.executemany("INSERT INTO account_holders (number, cpf, accepted_at) VALUES (?, ?, ?)",
                           ((a.number, a.cpf, now) for a in accounts))
        if opening_balance:
            self.c.executemany("INSERT INTO entries (number, kind, amount, balance_after, at)"
                               " VALUES (?, 'deposit', ?, ?, ?)",
                               ((a.number, opening_balance, opening_balance, now) for a in accounts))
            self.c.executemany("INSERT INTO daily_totals (number, day, deposits, debits) VALUES (?, ?, ?, 0)",
                               ((a.number, day, opening_balance) for a in accounts))

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
                    "age_s": now - (r["decided_at"] or r["created_at"]), "resend_stopped": bool(r["resend_stopped"])}
                   for r in self._all("SELECT transfer_id, state, pending_acks, decided_at, created_at, resend_stopped "
                                      "FROM coordinated WHERE state IN ('committed', 'aborted') AND pending_acks > 0 "
                                      "ORDER BY decided_at LIMIT 1000")]
        holds = [{"transfer_id": r["transfer_id"], "account": r["number"], "amount": r["amount"],
                  "age_s": now - r["created_at"]}
                 for r in self._all("SELECT transfer_id, number, amount, created_at FROM holds ORDER BY created_at")]
        return {
            "coordinated_by_state": by("SELECT state, COUNT(*) FROM coordinated GROUP BY state ORDER BY state"),
            "participations_by_state": by("SELECT state, COUNT(*) FROM participations GROUP BY state ORDER BY state"),
            "in_doubt": in_doubt, "unacknowledged": unacked, "holds": holds,
            "positions": self.positions(), "claims": by("SELECT peer, SUM(amount) FROM claims GROUP BY peer ORDER BY peer"),
        }

    def ledger_snapshot(self) -> dict:
        """Everything an invariant checker compares across banks, read in one transaction."""
        q = lambda sql: self.c.execute(sql).fetchall()  # noqa: E731
        return {
            "balances": dict(q("SELECT number, balance FROM accounts")),
            "journal": dict(q("SELECT number, SUM(amount) FROM entries GROUP BY number")),
            "holds": q("SELECT transfer_id, number, amount FROM holds"),
            # real participations only: an early ABORT remembered for some bank has no legs
            "participations": dict(q("SELECT transfer_id, state FROM participations WHERE legs != '[]'")),
            "coordinated": dict(q("SELECT transfer_id, state FROM coordinated")),
            "pending_acks": [r[0] for r in q("SELECT transfer_id FROM coordinated WHERE pending_acks > 0")],
            "transfer_entries": q("SELECT transfer_id, number, kind, amount FROM entries WHERE transfer_id IS NOT NULL"),
            "deposits": q("SELECT COALESCE(SUM(amount), 0) FROM entries WHERE kind = 'deposit'")[0][0],
            "withdrawals": q("SELECT COALESCE(-SUM(amount), 0) FROM entries WHERE kind = 'withdrawal'")[0][0],
            "positions": dict(q("SELECT peer, amount FROM positions")),
            "claims": q("SELECT transfer_id, coordinator, peer, amount FROM claims"),
            "settlement": dict(q("SELECT peer, SUM(amount) FROM settlement_entries GROUP BY peer")),
        }

    def in_flight(self) -> dict:
        one = lambda sql: int(self.c.execute(sql).fetchone()[0])  # noqa: E731
        return {
            "prepared_legs": one("SELECT COUNT(*) FROM participations WHERE state = 'prepared'"),
            "preparing": one("SELECT COUNT(*) FROM coordinated WHERE state = 'preparing'"),
            "unacknowledged_decisions": one("SELECT COUNT(*) FROM coordinated WHERE state IN ('committed', 'aborted')"
                                            " AND pending_acks > 0"),
            "holds": one("SELECT COUNT(*) FROM holds"),
        }

    def counts(self) -> dict:
        one = lambda sql: int(self.c.execute(sql).fetchone()[0])  # noqa: E731
        return {
            **self.in_flight(),
            "holds_total": one("SELECT COALESCE(SUM(amount), 0) FROM holds"),
            "accounts": one("SELECT COUNT(*) FROM accounts"),
            "balance_total": one("SELECT COALESCE(SUM(balance), 0) FROM accounts"),
            "deposits_total": one("SELECT COALESCE(SUM(amount), 0) FROM entries WHERE kind = 'deposit'"),
            "withdrawals_total": one("SELECT COALESCE(-SUM(amount), 0) FROM entries WHERE kind = 'withdrawal'"),
            "journal_total": one("SELECT COALESCE(SUM(amount), 0) FROM entries"),
            "transfers_in_total": one("SELECT COALESCE(SUM(amount), 0) FROM entries WHERE kind = 'transfer_in'"),
            "transfers_out_total": one("SELECT COALESCE(-SUM(amount), 0) FROM entries WHERE kind = 'transfer_out'"),
            "positions_total": one("SELECT COALESCE(SUM(amount), 0) FROM positions"),
            "claims_total": one("SELECT COALESCE(SUM(amount), 0) FROM claims"),
            "resend_stopped": one("SELECT COUNT(*) FROM coordinated WHERE resend_stopped != 0 AND pending_acks > 0"),
        }

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested unit inside the transaction: what it wrote is undone, and only that, when
        it raises (one item of a batch refused without losing the others). A domain error goes
        on unchanged; a database error comes out as ``StorageError``."""
        self._sp += 1
        name = f"sp{self._sp}"
        try:
            self.c.execute(f"SAVEPOINT {name}")
        except self.DB_ERROR as e:
            raise StorageError(f"cannot open a savepoint: {e}") from e
        try:
            yield
        except BaseException as failure:
            try:
                self.c.execute(f"ROLLBACK TO {name}")
                self.c.execute(f"RELEASE {name}")
            except self.DB_ERROR as e:
                raise StorageError(f"cannot roll back to a savepoint: {e}") from e
            if isinstance(failure, self.DB_ERROR):
                raise StorageError(str(failure)) from failure
            raise
        try:
            self.c.execute(f"RELEASE {name}")
        except self.DB_ERROR as e:
            raise StorageError(f"cannot release a savepoint: {e}") from e


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
            # Reads through a memory map of the file, shared by every connection, instead of a
            # read() per page into each connection's own 2 MiB cache, which WAL mode empties
            # whenever another connection has written (in a busy bank: before nearly every
            # transaction). With a million accounts the indexes no longer fit that cache, and
            # the statement pages' lookups took twice as long as with a thousand (tools/scale.py).
            c.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
            # A savepoint keeps the pages it changes in a statement journal, for a rollback to
            # it; by default in a temporary file (created, written and deleted in every write
            # transaction of the group-commit writer, which opens one savepoint per unit): more
            # than half of a busy bank's page writes went there. In memory instead: the journal
            # of one transaction is small, and it never had to survive anything (the WAL does).
            c.execute("PRAGMA temp_store=MEMORY")
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

    def leadership(self, role: str) -> FileLeadership:
        """``flock`` on a file beside the database: the processes sharing this file are on one
        machine, and the kernel frees the lock when its holder dies."""
        return FileLeadership(f"{self.path}.{role}.lock")

    def schema_version(self) -> int:
        return int(self._conn().execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def transaction(self, write: bool = True, durable: bool = True,
                    lock_timeout_s: float | None = None) -> Iterator[SqliteTx]:
        """One atomic unit of work. Writers of this process queue on a lock before BEGIN
        IMMEDIATE: SQLite's own busy handler makes a waiting writer sleep in steps of up to
        100 ms, which under load cost far more than the fsync (busy_timeout still covers other
        processes, such as a checker reading the file). ``lock_timeout_s`` changes nothing here:
        a write holds the whole database from BEGIN on, so nothing inside it waits on a lock."""
        if write:
            with self._write_lock:
                yield from self._transaction(True, durable)
        else:
            yield from self._transaction(False, True)

    def _transaction(self, write: bool, durable: bool) -> Iterator[SqliteTx]:
        """``durable=False`` commits without waiting for the disk (synchronous=NORMAL in WAL: the
        transaction is atomic, and a power cut may lose it): only for bookkeeping that the
        protocol can redo, such as a decision's acknowledgement (a lost one means a re-send)."""
        c = self._conn()
        if not durable:
            c.execute("PRAGMA synchronous=NORMAL")
        try:
            yield from self._run(c, write, durable)
        finally:
            if not durable:
                c.execute("PRAGMA synchronous=FULL")

    def _run(self, c: sqlite3.Connection, write: bool, durable: bool = True) -> Iterator[SqliteTx]:
        try:
            c.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.Error as e:
            raise StorageError(f"cannot start a transaction: {e}") from e
        # A durable write's COMMIT waits for the disk (fsync): on greenlets, through off_loop's
        # disk path (on an OS thread of its own when the disk is slow, so that the bank's other
        # tasks run meanwhile).
        commit = (lambda: off_loop(c.execute, "COMMIT", disk=True)) if write and durable and concurrency_active() \
            else None
        yield from run_unit(SqliteTx(c), lambda: _rollback(c), commit=commit)

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


def run_unit(tx: SqliteTx, rollback: Callable[[], None], describe: Callable[[BaseException], str] = str,
             commit: Callable[[], Any] | None = None) -> Iterator[SqliteTx]:
    """The body of a transaction already begun on ``tx``'s connection: hand out ``tx``, then
    COMMIT if the block ended normally, else roll back. The block's own exception goes on
    unchanged; a database error (``tx.DB_ERROR``), in the block or at COMMIT, as ``StorageError``.
    ``commit()`` instead of the connection's COMMIT, if given."""
    try:
        yield tx
    except tx.DB_ERROR as e:
        rollback()
        raise StorageError(describe(e)) from e
    except BaseException:
        rollback()
        raise
    try:
        commit() if commit is not None else tx.c.execute("COMMIT")
    except tx.DB_ERROR as e:
        rollback()
        raise StorageError(f"commit failed: {describe(e)}") from e


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
