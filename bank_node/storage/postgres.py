"""The PostgreSQL adapter of the storage port: one bank's ledger in a PostgreSQL database that
several processes of the bank share.

Psycopg 3 over a ``psycopg_pool`` connection pool; every transaction takes a connection from
the pool for its whole length. The ``Tx`` is the SQLite adapter's, whose SQL PostgreSQL runs as
well (a thin cursor turns its ``?`` and ``:name`` placeholders into psycopg's); only what differs
is here: the schema and its migrations, the writer lock, the transaction's settings.

**One writer at a time, as on SQLite, not SERIALIZABLE.** A check-and-write of the ledger (a
withdrawal, a PREPARE placing holds, a day's limits, a mandate's daily use, a peer's room under
its cap, an idempotency key) is written by the services as a plain ``with store.transaction()
as tx:`` block, which cannot be run a second time after a serialization failure. So every write
transaction first takes one transaction-scoped advisory lock of the ledger (keyed by its
schema): the writers of every process of a bank take turns, exactly as SQLite's ``BEGIN
IMMEDIATE`` makes them, and each check sees every write committed before it (READ COMMITTED).
Finer locks (the account's row, the caps, the key) were tried first and deadlocked: a group
commit puts many units in one transaction, so a batch applying a COMMIT (holding that account's
row) and then preparing another transfer (wanting the caps' lock) waited on another process's
batch holding them the other way round, and with two processes per bank under load most
transfers aborted. A write waits for the lock at most ``lock_timeout`` (a batch of the group
commit only ``BatchWriter``'s short one, and then every unit of it fails), then fails with
``StorageError``: a PREPARE becomes a NO vote (or no vote: presumed abort) and a decision is
applied again when it is re-sent; nothing is left in doubt.

**Durable before the answer.** ``synchronous_commit`` is on for every transaction: COMMIT
returns once the WAL is flushed, so a reply, vote or acknowledgement sent after it reports
something that survives a crash of the database server. ``durable=False`` turns it off for that
transaction alone (``SET LOCAL``). Reads run at REPEATABLE READ, READ ONLY: a snapshot taken
once, so the ledger's figures read in one transaction agree with each other.

Integer cents are BIGINT; times are seconds since the epoch as double precision, as SQLite's REAL.
"""
from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from decimal import Decimal
from functools import lru_cache
from typing import Iterator, Mapping

import psycopg
from psycopg.types.numeric import NumericLoader
from psycopg_pool import ConnectionPool

from . import is_postgres_url, redacted
from .leadership import PostgresLeadership
from .port import StorageError
from .sqlite import SqliteTx, run_unit

log = logging.getLogger("storage")

DEFAULT_LOCK_TIMEOUT_S = 10.0
"""How long a write waits on a lock before giving up with ``StorageError``, unless told otherwise."""

# Versioned migrations: index i upgrades schema version i to i+1. Never edit a released one.
# Each index names the query that needs it.
MIGRATIONS: list[str] = [
    r"""
    CREATE FUNCTION consorcio_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
    END $$;

    CREATE TABLE customers (
        cpf TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        cpf TEXT NOT NULL REFERENCES customers(cpf),
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        revoked_at DOUBLE PRECISION
    );
    CREATE TABLE accounts (
        number TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('individual', 'joint', 'business')),
        cnpj TEXT,
        company_name TEXT,
        status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
        balance BIGINT NOT NULL DEFAULT 0 CHECK (balance >= 0),
        created_at DOUBLE PRECISION NOT NULL
    );
    -- account_numbers_by_cnpj: a business account found by its CNPJ as a transfer's recipient
    CREATE INDEX accounts_by_cnpj ON accounts(cnpj) WHERE cnpj IS NOT NULL;
    CREATE TABLE account_holders (
        number TEXT NOT NULL REFERENCES accounts(number),
        cpf TEXT NOT NULL,
        accepted_at DOUBLE PRECISION,
        position BIGINT GENERATED ALWAYS AS IDENTITY,   -- the order the holders were named in
        PRIMARY KEY (number, cpf)
    );
    -- account_numbers_of and transfers_of_customer: a customer's accounts
    CREATE INDEX account_holders_by_cpf ON account_holders(cpf);
    -- Append-only journal: the balance is re-derivable as the sum of amounts.
    CREATE TABLE entries (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        number TEXT NOT NULL REFERENCES accounts(number),
        kind TEXT NOT NULL,
        amount BIGINT NOT NULL,
        balance_after BIGINT NOT NULL CHECK (balance_after >= 0),
        transfer_id TEXT,
        at DOUBLE PRECISION NOT NULL
    );
    -- statement_page and journal_sum: one account's entries, newest first by id
    CREATE INDEX entries_by_account ON entries(number, id);
    -- a redelivered COMMIT moves an account once: one entry per (transfer, account, kind)
    CREATE UNIQUE INDEX entries_once_per_transfer ON entries(transfer_id, number, kind)
        WHERE transfer_id IS NOT NULL;
    CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON entries
        FOR EACH ROW EXECUTE FUNCTION consorcio_append_only();
    CREATE TABLE holds (
        transfer_id TEXT NOT NULL,
        number TEXT NOT NULL REFERENCES accounts(number),
        amount BIGINT NOT NULL CHECK (amount > 0),
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (transfer_id, number)   -- holds_of_transfer, release_holds
    );
    -- holds_total: what an account has on hold, read by every debit's check
    CREATE INDEX holds_by_account ON holds(number);
    CREATE TABLE idempotency (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        status INTEGER NOT NULL,
        body TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (scope, key)
    );
    -- Two-phase commit: this bank as a participant, named by (transfer id, coordinator).
    CREATE TABLE participations (
        transfer_id TEXT NOT NULL,
        coordinator TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('prepared', 'committed', 'aborted')),
        deadline_ms BIGINT NOT NULL,
        initiator TEXT NOT NULL,
        legs TEXT NOT NULL,
        reasons TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        prepare_evidence TEXT,
        decision_evidence TEXT,
        PRIMARY KEY (transfer_id, coordinator)
    );
    -- participations_in (the resolver's prepared legs, oldest first), the operator's counts by state
    CREATE INDEX participations_by_state ON participations(state, created_at);
    -- Two-phase commit: transfers this bank coordinates.
    CREATE TABLE coordinated (
        transfer_id TEXT PRIMARY KEY,
        initiator TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('preparing', 'committed', 'aborted')),
        deadline_ms BIGINT NOT NULL,
        legs TEXT NOT NULL,
        participants TEXT NOT NULL,
        failures TEXT NOT NULL,
        pending_acks INTEGER NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        decided_at DOUBLE PRECISION,
        decision_sent_ms BIGINT,
        resend_stopped INTEGER NOT NULL DEFAULT 0
    );
    -- coordinated_preparing: the resolver's undecided transfers past their deadline
    CREATE INDEX coordinated_preparing ON coordinated(deadline_ms) WHERE state = 'preparing';
    -- coordinated_unacknowledged: decisions still re-sent, oldest decision first
    CREATE INDEX coordinated_unacknowledged ON coordinated(decided_at)
        WHERE state <> 'preparing' AND pending_acks > 0;
    -- transfers_of_customer: the transfers a customer started here, newest first
    CREATE INDEX coordinated_by_initiator ON coordinated(initiator, created_at);
    CREATE TABLE ui_sessions (
        id_hash TEXT PRIMARY KEY,
        data TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    );
    -- purge_ui_sessions: the expired ones
    CREATE INDEX ui_sessions_by_expiry ON ui_sessions(expires_at);
    CREATE TABLE mandates (
        id TEXT PRIMARY KEY,
        number TEXT NOT NULL REFERENCES accounts(number),
        bank TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        max_per_transfer BIGINT,
        max_per_day BIGINT,
        expires_at DOUBLE PRECISION,
        revoked_at DOUBLE PRECISION
    );
    -- active_mandate: a PREPARE looks up the mandate of (account, initiating bank)
    CREATE INDEX mandates_by_account_bank ON mandates(number, bank);
    CREATE TABLE mandate_uses (
        mandate_id TEXT NOT NULL REFERENCES mandates(id),
        transfer_id TEXT NOT NULL,
        number TEXT NOT NULL,
        amount BIGINT NOT NULL CHECK (amount > 0),
        day INTEGER NOT NULL,
        PRIMARY KEY (mandate_id, transfer_id)
    );
    -- mandate_used: the daily use of a mandate is summed per (mandate, day)
    CREATE INDEX mandate_uses_by_day ON mandate_uses(mandate_id, day);
    -- release_mandate_uses: an aborted transfer's uses
    CREATE INDEX mandate_uses_by_transfer ON mandate_uses(transfer_id);
    CREATE TABLE claims (
        transfer_id TEXT NOT NULL,
        coordinator TEXT NOT NULL,
        peer TEXT NOT NULL,
        amount BIGINT NOT NULL CHECK (amount > 0),
        PRIMARY KEY (transfer_id, coordinator, peer)   -- release_claims
    );
    CREATE TABLE positions (
        peer TEXT PRIMARY KEY,
        amount BIGINT NOT NULL
    );
    CREATE TABLE settlement_entries (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        peer TEXT NOT NULL,
        transfer_id TEXT NOT NULL,
        amount BIGINT NOT NULL,
        at DOUBLE PRECISION NOT NULL
    );
    -- a redelivered COMMIT settles once per (transfer, peer)
    CREATE UNIQUE INDEX settlement_once_per_transfer ON settlement_entries(transfer_id, peer);
    CREATE TRIGGER settlement_append_only BEFORE UPDATE OR DELETE ON settlement_entries
        FOR EACH ROW EXECUTE FUNCTION consorcio_append_only();
    CREATE TABLE evidence (
        hash TEXT PRIMARY KEY,
        sender TEXT NOT NULL,
        body BYTEA NOT NULL,
        signature TEXT NOT NULL,
        received_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE daily_totals (
        number TEXT NOT NULL REFERENCES accounts(number),
        day INTEGER NOT NULL,
        deposits BIGINT NOT NULL DEFAULT 0,
        debits BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (number, day)   -- day_totals: one row per account and day
    );
    """,
    # 2: a statement between two dates (statement_page with since/until) finds the account's
    # entries of those days through an index, as on SQLite, instead of walking all of them.
    """
    CREATE INDEX entries_by_account_time ON entries(number, at);
    """,
]

# Transaction-scoped advisory locks: (class, object) pairs of int4, the class naming the rule.
_LOCK_MIGRATIONS = 0x636f6e00        # "con\0": one process migrates at a time
_LOCK_WRITER = 0x636f6e03            # one write transaction of a ledger (a schema) at a time


class _IntNumericLoader(NumericLoader):
    """SUM() of BIGINT is NUMERIC in PostgreSQL: integral values come back as int (cents), as
    SQLite gives them; the schema has no NUMERIC column of its own."""

    def load(self, data):
        value = super().load(data)
        return int(value) if isinstance(value, Decimal) and value == value.to_integral_value() else value


@lru_cache(maxsize=1024)
def _translate(sql: str, named: bool) -> str:
    """SQLite's placeholders as psycopg's: ``?`` -> ``%s``, ``:name`` -> ``%(name)s``; a
    literal ``%`` doubled. (The SQL has no ``?`` or ``:`` inside its string literals.)"""
    sql = sql.replace("%", "%%")
    if named:
        return re.sub(r"(?<![:\w]):([A-Za-z_]\w*)", r"%(\1)s", sql)
    return sql.replace("?", "%s")


class _Connection:
    """The few calls ``SqliteTx`` makes of a sqlite3 connection, on a psycopg one."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn

    def execute(self, sql: str, args: tuple | Mapping = ()) -> psycopg.Cursor:
        named = isinstance(args, Mapping)
        return self.conn.execute(_translate(sql, named), args)

    def executemany(self, sql: str, rows) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(_translate(sql, False), rows)


class PostgresTx(SqliteTx):
    """The ``Tx`` of the port on one pooled connection inside an open transaction."""

    DB_ERROR = psycopg.Error
    HOLDER_ORDER = "position"
    HOLDERS_LIST = "string_agg(cpf, ',')"

    def __init__(self, conn: psycopg.Connection):
        super().__init__(_Connection(conn))  # type: ignore[arg-type]

    def seed_accounts(self, accounts, password_hash, opening_balance, now, day):
        """COPY, one per table: the rows stream to the server in PostgreSQL's bulk format, with
        no statement (nor round trip) per row."""
        tables = [("customers (cpf, name, password_hash, created_at)", lambda a: (a.cpf, a.name, password_hash, now)),
                  ("accounts (number, kind, balance, created_at)", lambda a: (a.number, "individual", opening_balance, now)),
                  ("account_holders (number, cpf, accepted_at)", lambda a: (a.number, a.cpf, now))]
        if opening_balance:
            tables += [("entries (number, kind, amount, balance_after, at)",
                        lambda a: (a.number, "deposit", opening_balance, opening_balance, now)),
                       ("daily_totals (number, day, deposits, debits)", lambda a: (a.number, day, opening_balance, 0))]
        with self.c.conn.cursor() as cur:
            for table, row in tables:
                with cur.copy(f"COPY {table} FROM STDIN") as copy:
                    for a in accounts:
                        copy.write_row(row(a))


class PostgresStore:
    """A pool of connections to one bank's PostgreSQL database, for every thread of the process."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 16, connect_timeout_s: float = 10.0,
                 lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S):
        if not is_postgres_url(url):
            raise StorageError(f"not a PostgreSQL URL: {redacted(str(url))}")
        self.url = url
        self.lock_timeout_s = lock_timeout_s
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(connect_timeout_s))) as c:
                self._migrate(c)
                if c.execute("SHOW fsync").fetchone()[0] != "on":
                    log.warning("the ledger's PostgreSQL server runs with fsync off: a crash of that server "
                                "may lose transactions this bank already reported")
        except (psycopg.Error, ValueError) as e:   # ValueError: a URL psycopg cannot parse
            raise StorageError(f"cannot open the ledger at {redacted(url)}: {_first_line(e)}") from e
        # check: a connection the server dropped (a restart, an operator's terminate) is replaced
        # when it is taken, instead of failing the next transaction that gets it.
        self._pool = ConnectionPool(url, min_size=min_size, max_size=max_size, open=False, timeout=30,
                                    kwargs={"autocommit": True}, configure=self._configure,
                                    check=ConnectionPool.check_connection, name="ledger")
        self._pool.open()

    @staticmethod
    def _configure(conn: psycopg.Connection) -> None:
        conn.adapters.register_loader("numeric", _IntNumericLoader)
        conn.execute("SET synchronous_commit = on")

    @staticmethod
    def _migrate(c: psycopg.Connection) -> None:
        """Bring the schema to the latest version in one transaction; processes starting
        together take turns (an advisory lock), the second finding nothing to do."""
        with c.transaction():
            c.execute("SELECT pg_advisory_xact_lock(%s, 0)", (_LOCK_MIGRATIONS,))
            c.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = c.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                c.execute("INSERT INTO schema_version VALUES (0)")
            version = row[0] if row else 0
            for i in range(version, len(MIGRATIONS)):
                c.execute(MIGRATIONS[i])
                c.execute("UPDATE schema_version SET version = %s", (i + 1,))

    def leadership(self, role: str) -> PostgresLeadership:
        """``pg_try_advisory_lock`` on a session of its own: the processes sharing this ledger
        may be on several machines, and the server frees the lock when its holder's session
        ends (its process died, or its connection did)."""
        return PostgresLeadership(self.url, role)

    def schema_version(self) -> int:
        try:
            with self._pool.connection() as c:
                return int(c.execute("SELECT version FROM schema_version").fetchone()[0])
        except psycopg.Error as e:
            raise StorageError(f"cannot read the schema version: {_first_line(e)}") from e

    @contextmanager
    def transaction(self, write: bool = True, durable: bool = True,
                    lock_timeout_s: float | None = None) -> Iterator[PostgresTx]:
        """One atomic unit of work on one pooled connection. ``lock_timeout_s``: the longest
        any statement of it waits on a lock (default ``DEFAULT_LOCK_TIMEOUT_S``)."""
        try:
            conn_cm = self._pool.connection()
            conn = conn_cm.__enter__()
        except psycopg.Error as e:   # the pool's timeout is one too
            raise StorageError(f"no connection to the ledger: {_first_line(e)}") from e
        try:
            yield from self._run(conn, write, durable, lock_timeout_s)
        finally:
            conn_cm.__exit__(None, None, None)

    def _run(self, conn: psycopg.Connection, write: bool, durable: bool,
             lock_timeout_s: float | None) -> Iterator[PostgresTx]:
        try:
            if write:
                # One round trip (numbers only, inlined: no parameters, so one simple query): the
                # transaction, its lock wait, its durability, then the writer lock before any read.
                # coalesce: with its schema gone, current_schema() is NULL and a NULL key locks nothing.
                wait_ms = max(1, int(1000 * (self.lock_timeout_s if lock_timeout_s is None else lock_timeout_s)))
                conn.execute(f"BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL lock_timeout = {wait_ms};"
                             f"{'' if durable else ' SET LOCAL synchronous_commit = off;'}"
                             f" SELECT pg_advisory_xact_lock({_LOCK_WRITER}, coalesce(hashtext(current_schema()), 0))")
            else:
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        except psycopg.Error as e:
            _rollback(conn)
            raise StorageError(f"cannot start a transaction: {_first_line(e)}") from e
        yield from run_unit(PostgresTx(conn), lambda: _rollback(conn), _first_line)

    def ping(self) -> bool:
        try:
            with self._pool.connection(timeout=5) as c:
                c.execute("SELECT 1").fetchone()
            return True
        except psycopg.Error:
            return False

    def close(self) -> None:
        self._pool.close()


def _rollback(conn: psycopg.Connection) -> None:
    """Roll back if a transaction is still open; a broken connection is left to the pool, which
    throws it away when it comes back."""
    try:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.execute("ROLLBACK")
    except psycopg.Error:
        pass


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]
