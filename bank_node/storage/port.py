"""The storage port: what the services need from a durable store, nothing about SQL.

Split by role, so that each service reads as what it touches: customers and sessions, accounts
and their journal, idempotency, mandates, settlement between banks, two-phase-commit records
and their evidence, and the operator's figures. ``Tx`` is all of them inside one transaction.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Collection, NamedTuple, Protocol, Sequence

from ..domain.consent import Mandate
from ..domain.coordinator import CoordinatedTransfer
from ..domain.participant import Participation
from .leadership import Leadership


class StorageError(Exception):
    """The database failed (disk, lock timeout, corruption); never a domain refusal."""


class CustomerRecords(Protocol):
    def get_customer(self, cpf: str) -> dict | None: ...
    def insert_customer(self, cpf: str, name: str, password_hash: str, now: float) -> None: ...
    def update_password_hash(self, cpf: str, password_hash: str) -> None: ...
    def insert_session(self, token_hash: str, cpf: str, now: float, expires_at: float) -> None: ...
    def get_session(self, token_hash: str) -> dict | None: ...
    def revoke_session(self, token_hash: str, now: float) -> None: ...


class AccountRecords(Protocol):
    """Accounts, their append-only journal, holds (one per transfer and account) and the
    running daily totals of the limits."""
    def insert_account(self, number: str, kind: str, holders: list[str], cnpj: str | None,
                       company_name: str | None, now: float, accepted: Collection[str]) -> None:
        """``accepted``: the holders who agreed to the account as it is opened (its opener);
        every other holder must accept it later (``accept_holder``)."""
    def get_account(self, number: str) -> dict | None:
        """The account; its ``status`` is "pending" while a holder has not accepted it, else as
        stored ("open" or "closed")."""
    def holder_acceptances(self, number: str) -> list[dict]:
        """[{cpf, accepted_at}] of every holder, in the order named; accepted_at None: not yet."""
    def accept_holder(self, number: str, cpf: str, now: float) -> bool:
        """Record that ``cpf`` accepts the account; False when it already had (or is no holder)."""
    def account_numbers_of(self, cpf: str) -> list[str]: ...
    def holders_of(self, number: str) -> list[str]: ...
    def holds_total(self, number: str) -> int: ...
    def account_standing(self, number: str, day: int) -> dict | None:
        """What a PREPARE's checks read of one account, in one statement: its ``status`` (as
        ``get_account``), ``balance``, ``holders`` (a set of CPFs), ``held`` (cents on hold) and
        ``debits`` (cents debited on the limits' ``day``, holds not included); None: no such account."""
    def append_entry(self, number: str, kind: str, amount: int, now: float,
                     transfer_id: str | None = None, *, day: int) -> int: ...
    def statement(self, number: str, limit: int) -> list[dict]: ...
    def statement_page(self, number: str, limit: int, before_id: int | None = None,
                       since: float | None = None, until: float | None = None) -> list[dict]:
        """Up to ``limit`` entries of one account, newest first, each with its ``id``: only
        those with ``id < before_id`` (the next page) and ``since <= at < until``."""
    def account_numbers_by_cnpj(self, cnpj: str) -> list[str]: ...
    def journal_sum(self, number: str) -> int: ...
    def day_totals(self, number: str, day: int) -> dict:
        """{"deposits": cents, "debits": cents} of one account on the limits' ``day`` (debits
        are withdrawals and transfers out, as positive cents)."""
    def place_hold(self, transfer_id: str, number: str, amount: int, now: float) -> None: ...
    def holds_of_transfer(self, transfer_id: str) -> list[dict]: ...
    def release_holds(self, transfer_id: str) -> None: ...


class IdempotencyRecords(Protocol):
    def get_idempotent(self, scope: str, key: str) -> dict | None: ...
    def put_idempotent(self, scope: str, key: str, request_hash: str, status: int,
                       body: Any, now: float) -> None: ...


class MandateRecords(Protocol):
    def insert_mandate(self, mandate: Mandate) -> None: ...
    def get_mandate(self, mandate_id: str) -> Mandate | None: ...
    def mandates_of_accounts(self, numbers: list[str]) -> list[Mandate]: ...
    def active_mandate(self, number: str, bank: str, now: float) -> Mandate | None: ...
    def revoke_mandate(self, mandate_id: str, now: float) -> None: ...
    def mandate_used(self, mandate_id: str, day: int) -> int: ...
    def add_mandate_use(self, mandate_id: str, transfer_id: str, number: str, amount: int, day: int) -> None: ...
    def release_mandate_uses(self, transfer_id: str) -> None: ...


class SettlementRecords(Protocol):
    """Claims on peers of pending credits, and the bilateral positions of committed ones."""
    def add_claim(self, transfer_id: str, coordinator: str, peer: str, amount: int) -> None: ...
    def release_claims(self, transfer_id: str, coordinator: str) -> None: ...
    def exposure(self) -> dict[str, int]: ...
    def post_settlement(self, peer: str, transfer_id: str, amount: int, now: float) -> None: ...
    def positions(self) -> dict[str, int]: ...


class TransferRecords(Protocol):
    """Two-phase-commit records (coordinator and participant) and signed evidence."""
    def get_participant(self, transfer_id: str, coordinator: str) -> Participation | None: ...
    def participations_of(self, transfer_id: str) -> list[Participation]: ...
    def put_participant(self, rec: Participation) -> None: ...
    def participations_in(self, state: str, limit: int = 100_000,
                          deadline_before: int | None = None) -> list[Participation]:
        """Participations in ``state``, oldest first (only those whose deadline, in ms, is
        before ``deadline_before``, if given)."""
    def get_coordinated(self, transfer_id: str) -> CoordinatedTransfer | None: ...
    def put_coordinated(self, rec: CoordinatedTransfer) -> None: ...
    def coordinated_preparing(self, deadline_before: int | None = None) -> list[CoordinatedTransfer]:
        """Undecided transfers this bank coordinates (those whose deadline, in ms, is before
        ``deadline_before``, if given)."""

    def coordinated_unacknowledged(self, limit: int = 100_000,
                                   decided_before: float | None = None) -> list[CoordinatedTransfer]:
        """Decided transfers still owed an acknowledgement whose re-sends go on, oldest
        decision first (only those decided before ``decided_before``, in seconds, if given)."""
    def put_evidence(self, digest: str, sender: str, body: bytes, signature: str, now: float) -> None: ...
    def get_evidence(self, digest: str) -> dict | None: ...
    # what the customer's screens read: the parties of transfers, the transfers of a customer
    def transfer_records(self, transfer_ids: list[str]) -> dict[str, dict]:
        """{transfer_id: {"initiator", "legs", "coordinated": bool, "state", "created_at"}} from
        this bank's own records (its coordinated transfer if any, else its participation)."""
    def transfers_of_customer(self, cpf: str, limit: int, since: float | None = None,
                              until: float | None = None, statuses: tuple[str, ...] = (),
                              before: tuple[float, str] | None = None) -> list[dict]:
        """Transfers this bank knows that ``cpf`` started here or that touched one of their
        accounts here, newest first: {transfer_id, status (pending|committed|aborted), role
        (coordinator|participant), created_at, initiator, legs}; paged by (created_at, id)."""


class UiSessionRecords(Protocol):
    """The web UI's server-side sessions (the cookie holds only a random id)."""
    def get_ui_session(self, id_hash: str, now: float) -> dict | None: ...
    def put_ui_session(self, id_hash: str, data: str, now: float, expires_at: float) -> None: ...
    def delete_ui_session(self, id_hash: str) -> None: ...
    def purge_ui_sessions(self, now: float) -> int: ...


class OperatorFigures(Protocol):
    def in_flight(self) -> dict:
        """{prepared_legs, preparing, unacknowledged_decisions, holds}: the two-phase-commit work
        in progress, read through indexes (health checks and metrics ask for it all the time)."""
    def counts(self) -> dict:
        """``in_flight`` and the ledger's totals (accounts, balances, deposits, ...), which read
        every account and entry: for audits, not for every health check."""
    def operator_view(self, now: float) -> dict: ...
    def ledger_snapshot(self) -> dict:
        """Balances, journal sums, holds, 2PC states, transfer entries and positions: what the
        chaos checker and the tests compare across banks."""


class SeededAccount(NamedTuple):
    """A customer of a seed and their one individual account."""
    cpf: str
    name: str
    number: str


class BulkRecords(Protocol):
    """Many customers at once: the seed of a load test (``bank_node/services/seed.py``), in
    bulk statements (executemany on SQLite, COPY on PostgreSQL) rather than row by row."""
    def is_empty(self) -> bool:
        """No customer and no account: a ledger a seed may fill."""
    def seed_accounts(self, accounts: Sequence[SeededAccount], password_hash: str, opening_balance: int,
                      now: float, day: int) -> None:
        """Each customer (all with the one ``password_hash``) with their individual account, open
        and accepted; an ``opening_balance`` > 0 (cents) is a deposit journalled as the API's
        would be, entry and the limits' running total of ``day`` included."""


class Tx(CustomerRecords, AccountRecords, IdempotencyRecords, MandateRecords, SettlementRecords,
         TransferRecords, UiSessionRecords, OperatorFigures, BulkRecords, Protocol):
    """One atomic unit of work. Leaving the ``with`` block normally commits it durably."""

    def savepoint(self) -> AbstractContextManager[None]:
        """A nested unit: what it wrote is undone, and only that, when it raises."""


class Store(Protocol):
    def transaction(self, write: bool = True, durable: bool = True,
                    lock_timeout_s: float | None = None) -> AbstractContextManager[Tx]:
        """One atomic unit of work: all of it commits when the block ends normally, none of it
        when the block raises (the exception goes on unchanged; a database failure comes out as
        ``StorageError``). Write transactions that check and write the same things are
        serialized, also against other processes on the same database. ``durable=False`` may skip
        waiting for the disk: only for bookkeeping the protocol redoes after a loss.
        ``lock_timeout_s``: the longest a statement inside waits on a lock another transaction
        holds before failing with ``StorageError`` (the adapter's default if None)."""
    def leadership(self, role: str) -> Leadership:
        """A lock on ``role`` (e.g. "resolver") shared by every process of this ledger: one
        holder at a time, given up when its holder dies (``storage/leadership.py``)."""
    def schema_version(self) -> int: ...
    def ping(self) -> bool: ...
    def close(self) -> None: ...
