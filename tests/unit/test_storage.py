"""Contract test of the storage port (``bank_node/storage/port.py``).

Every adapter runs the same contract (the ``backend`` fixture: SQLite and PostgreSQL): atomic
transactions, an append-only journal the balance can be re-derived from, holds, idempotency
records, 2PC records, data that survives reopening, check-and-writes that no other writer (in
this process or another) can race. Facts of one adapter (pragmas, locks, migrations) are
tested at the end.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import replace

import pytest

from bank_node.domain.consent import Mandate
from bank_node.domain.coordinator import CoordinatedTransfer, Failure, Peer
from bank_node.domain.participant import Participation
from bank_node.domain.transfer import Leg
from bank_node.storage import open_store, postgres as postgres_adapter, sqlite as sqlite_adapter
from bank_node.storage.port import StorageError
from bank_node.storage.sqlite import MIGRATIONS, SqliteStore

pytestmark = pytest.mark.both_backends

ANA, BOB = "52998224725", "11144477735"

MIGRATIONS_OF = {"sqlite": sqlite_adapter.MIGRATIONS, "postgres": postgres_adapter.MIGRATIONS}


@pytest.fixture
def location(backend, tmp_path):
    """Where this test's ledger is: a SQLite file, or a PostgreSQL schema of its own."""
    return backend.location(tmp_path, "ledger")


@pytest.fixture
def store(location):
    s = open_store(location)
    yield s
    s.close()


def open_account(store, number="100000001", holders=(ANA,), kind="individual"):
    with store.transaction() as tx:
        for cpf in holders:
            if tx.get_customer(cpf) is None:
                tx.insert_customer(cpf, f"Cliente {cpf[:3]}", "hash", 1.0)
        tx.insert_account(number, kind, list(holders), None, None, 1.0, accepted=holders)
    return number


def balance(store, number):
    with store.transaction(write=False) as tx:
        return tx.get_account(number)["balance"]


# --- customers, sessions, accounts -----------------------------------------------------------

def test_customer_round_trip(store):
    with store.transaction() as tx:
        assert tx.get_customer(ANA) is None
        tx.insert_customer(ANA, "Ana Souza", "argon2-hash", 5.0)
    with store.transaction(write=False) as tx:
        c = tx.get_customer(ANA)
    assert (c["cpf"], c["name"], c["password_hash"]) == (ANA, "Ana Souza", "argon2-hash")
    with store.transaction() as tx:
        tx.update_password_hash(ANA, "new-hash")
    with store.transaction(write=False) as tx:
        assert tx.get_customer(ANA)["password_hash"] == "new-hash"


def test_duplicate_customer_is_a_storage_error(store):
    with store.transaction() as tx:
        tx.insert_customer(ANA, "Ana", "h", 1.0)
    with pytest.raises(StorageError):
        with store.transaction() as tx:
            tx.insert_customer(ANA, "Ana de novo", "h", 1.0)
    with store.transaction(write=False) as tx:
        assert tx.get_customer(ANA)["name"] == "Ana"


def test_sessions_are_revocable_once(store):
    with store.transaction() as tx:
        tx.insert_customer(ANA, "Ana", "h", 1.0)
        tx.insert_session("tok", ANA, 1.0, 100.0)
    with store.transaction() as tx:
        s = tx.get_session("tok")
        assert (s["cpf"], s["expires_at"], s["revoked_at"]) == (ANA, 100.0, None)
        tx.revoke_session("tok", 7.0)
        tx.revoke_session("tok", 9.0)  # a second logout keeps the first time
    with store.transaction(write=False) as tx:
        assert tx.get_session("tok")["revoked_at"] == 7.0
        assert tx.get_session("other") is None


def test_accounts_and_holders(store):
    open_account(store, "100000001", (ANA, BOB), kind="joint")
    open_account(store, "100000002", (BOB,))
    with store.transaction(write=False) as tx:
        acc = tx.get_account("100000001")
        assert (acc["kind"], acc["status"], acc["balance"]) == ("joint", "open", 0)
        assert tx.holders_of("100000001") == [ANA, BOB]
        assert tx.account_numbers_of(ANA) == ["100000001"]
        assert tx.account_numbers_of(BOB) == ["100000001", "100000002"]
        assert tx.get_account("999") is None


# --- journal ----------------------------------------------------------------------------------

def test_balance_equals_the_sum_of_the_journal(store):
    n = open_account(store)
    moves = [("deposit", 100_00), ("withdrawal", -30_00), ("deposit", 5_55), ("transfer_out", -1_00),
             ("transfer_in", 20_00)]
    afters = []
    with store.transaction() as tx:
        for kind, amount in moves:
            afters.append(tx.append_entry(n, kind, amount, 2.0, "t-1" if kind.startswith("transfer") else None, day=0))
    assert afters == [100_00, 70_00, 75_55, 74_55, 94_55]
    with store.transaction(write=False) as tx:
        assert tx.get_account(n)["balance"] == 94_55
        assert tx.journal_sum(n) == 94_55
        entries = tx.statement(n, 100)
    assert sum(e["amount"] for e in entries) == 94_55
    assert [e["balance_after"] for e in entries] == list(reversed(afters)), "newest first"
    assert [e["kind"] for e in entries][:2] == ["transfer_in", "transfer_out"]
    assert entries[0]["transfer_id"] == "t-1" and entries[-1]["transfer_id"] is None


def test_statement_limit_keeps_the_newest(store):
    n = open_account(store)
    with store.transaction() as tx:
        for i in range(1, 6):
            tx.append_entry(n, "deposit", i, float(i), day=0)
    with store.transaction(write=False) as tx:
        assert [e["amount"] for e in tx.statement(n, 2)] == [5, 4]


def test_balance_never_goes_negative_in_storage(store):
    n = open_account(store)
    with store.transaction() as tx:
        tx.append_entry(n, "deposit", 10_00, 1.0, day=0)
    with pytest.raises(StorageError):
        with store.transaction() as tx:
            tx.append_entry(n, "withdrawal", -10_01, 2.0, day=0)
    with store.transaction(write=False) as tx:
        assert tx.get_account(n)["balance"] == 10_00
        assert tx.journal_sum(n) == 10_00


def test_a_transfer_moves_an_account_at_most_once_per_kind(store):
    n = open_account(store)
    with store.transaction() as tx:
        tx.append_entry(n, "transfer_in", 5_00, 1.0, "t-9", day=0)
    with pytest.raises(StorageError):
        with store.transaction() as tx:
            tx.append_entry(n, "transfer_in", 5_00, 2.0, "t-9", day=0)
    assert balance(store, n) == 5_00


def test_entry_on_a_missing_account_is_refused(store):
    with pytest.raises(StorageError):
        with store.transaction() as tx:
            tx.append_entry("404", "deposit", 1_00, 1.0, day=0)


# --- holds ------------------------------------------------------------------------------------

def test_holds_per_transfer_and_account(store):
    a, b = open_account(store, "100000001"), open_account(store, "100000002")
    with store.transaction() as tx:
        tx.place_hold("t-1", a, 10_00, 1.0)
        tx.place_hold("t-1", b, 3_00, 1.0)
        tx.place_hold("t-2", a, 2_50, 1.0)
    with store.transaction(write=False) as tx:
        assert tx.holds_total(a) == 12_50
        assert tx.holds_total(b) == 3_00
        assert sorted((h["number"], h["amount"]) for h in tx.holds_of_transfer("t-1")) == [(a, 10_00), (b, 3_00)]
        assert tx.counts()["holds"] == 3
    with store.transaction() as tx:
        tx.release_holds("t-1")
        tx.release_holds("t-1")  # releasing twice is harmless
    with store.transaction(write=False) as tx:
        assert (tx.holds_total(a), tx.holds_total(b)) == (2_50, 0)
        assert tx.holds_of_transfer("t-1") == []



def test_an_accounts_standing_in_one_read_matches_its_parts(store):
    """What a PREPARE reads of an account in one statement is what the separate reads say."""
    joint = open_account(store, "100000003", holders=(ANA, BOB))
    with store.transaction() as tx:
        tx.append_entry(joint, "deposit", 90_00, 1.0, day=7)
        tx.append_entry(joint, "transfer_out", -5_00, 2.0, "t-0", day=7)
        tx.place_hold("t-1", joint, 10_00, 3.0)
        tx.place_hold("t-2", joint, 2_50, 3.0)
        tx.insert_customer("39053344705", "Cliente 390", "hash", 1.0)
        tx.insert_account("100000004", "joint", [ANA, "39053344705"], None, None, 1.0, accepted=[ANA])
    with store.transaction(write=False) as tx:
        assert tx.account_standing(joint, 7) == {"balance": 85_00, "status": "open", "holders": {ANA, BOB},
                                                 "held": 12_50, "debits": 5_00}
        assert tx.account_standing(joint, 8)["debits"] == 0   # another day: nothing debited yet
        pending = tx.account_standing("100000004", 7)
        assert pending == {"balance": 0, "status": "pending", "holders": {ANA, "39053344705"}, "held": 0,
                           "debits": 0}
        assert pending["status"] == tx.get_account("100000004")["status"]
        assert tx.account_standing("100000099", 7) is None

def test_one_hold_per_transfer_and_account(store):
    a = open_account(store)
    with store.transaction() as tx:
        tx.place_hold("t-1", a, 10_00, 1.0)
    with pytest.raises(StorageError):
        with store.transaction() as tx:
            tx.place_hold("t-1", a, 10_00, 2.0)
    with store.transaction(write=False) as tx:
        assert tx.holds_total(a) == 10_00


@pytest.mark.parametrize("amount", [0, -1])
def test_a_hold_is_positive(store, amount):
    a = open_account(store)
    with pytest.raises(StorageError):
        with store.transaction() as tx:
            tx.place_hold("t-1", a, amount, 1.0)


# --- idempotency ------------------------------------------------------------------------------

def test_idempotency_records(store):
    body = {"number": "123", "balance": "10.00", "holders": [{"cpf": ANA, "name": "Ana"}]}
    with store.transaction() as tx:
        assert tx.get_idempotent(ANA, "k1") is None
        tx.put_idempotent(ANA, "k1", "hash-1", 201, body, 1.0)
    with store.transaction(write=False) as tx:
        r = tx.get_idempotent(ANA, "k1")
        assert (r["request_hash"], r["status"], r["body"]) == ("hash-1", 201, body)
        assert tx.get_idempotent(BOB, "k1") is None, "keys are scoped"
    with pytest.raises(StorageError):
        with store.transaction() as tx:
            tx.put_idempotent(ANA, "k1", "hash-2", 201, {}, 2.0)
    with store.transaction(write=False) as tx:
        assert tx.get_idempotent(ANA, "k1")["request_hash"] == "hash-1"


# --- two-phase commit records -----------------------------------------------------------------

LEGS = (Leg("beta", "1", 5, "debit"), Leg("gama", "2", 5, "credit"))


def participation(state="prepared", **kw):
    return Participation(**{"transfer_id": "t-1", "coordinator": "alfa", "state": state, "deadline_ms": 1000,
                            "initiator": ANA, "legs": LEGS, "reasons": (), "created_at": 1.0, "updated_at": 1.0,
                            "prepare_evidence": "e-1", **kw})


def coordination(state="preparing", **kw):
    return CoordinatedTransfer(**{"transfer_id": "t-1", "initiator": ANA, "request_hash": "h", "state": state,
                                  "deadline_ms": 1000, "legs": LEGS,
                                  "participants": {"beta": Peer(), "gama": Peer()}, "created_at": 1.0, **kw})


def test_participation_round_trip_and_upsert(store):
    with store.transaction() as tx:
        tx.put_participant(participation())
    with store.transaction() as tx:
        assert tx.get_participant("t-1", "alfa") == participation()
        assert [p.transfer_id for p in tx.participations_in("prepared")] == ["t-1"]
        tx.put_participant(participation("committed", updated_at=2.0, decision_evidence="e-2"))
    with store.transaction(write=False) as tx:
        assert tx.get_participant("t-1", "alfa") == participation("committed", updated_at=2.0, decision_evidence="e-2")
        assert tx.participations_in("prepared") == []
        assert tx.get_participant("t-2", "alfa") is None


def test_participations_are_named_by_transfer_id_and_coordinator(store):
    """An ABORT some bank sends for an id remembers an abort under that bank only."""
    with store.transaction() as tx:
        tx.put_participant(participation())
        tx.put_participant(participation("aborted", coordinator="gama", legs=(), reasons=(("*", "aborted"),)))
    with store.transaction(write=False) as tx:
        assert tx.get_participant("t-1", "alfa").state == "prepared"
        assert tx.get_participant("t-1", "gama").state == "aborted"
        assert sorted(p.coordinator for p in tx.participations_of("t-1")) == ["alfa", "gama"]
        assert tx.ledger_snapshot()["participations"] == {"t-1": "prepared"}, "an early abort is no participation"


def test_coordinated_round_trip_and_upsert(store):
    with store.transaction() as tx:
        tx.put_coordinated(coordination())
    with store.transaction() as tx:
        assert tx.get_coordinated("t-1") == coordination()
        assert [r.transfer_id for r in tx.coordinated_preparing()] == ["t-1"]
        decided = coordination("committed", decided_at=3.0, participants={
            "beta": Peer(vote="yes", acked=True, sent_ms=10, vote_ms=12, ack_ms=20, evidence="v-1"),
            "gama": Peer(vote="yes", sent_ms=10, vote_ms=13)}, failures=(Failure("*", "*", "none"),))
        tx.put_coordinated(decided)
    with store.transaction(write=False) as tx:
        rec = tx.get_coordinated("t-1")
        assert rec == decided and rec.pending_acks == 1
        assert tx.coordinated_preparing() == []
        assert [r.transfer_id for r in tx.coordinated_unacknowledged()] == ["t-1"]
    with store.transaction() as tx:
        tx.put_coordinated(replace(decided, resend_stopped=True))
    with store.transaction(write=False) as tx:
        assert tx.coordinated_unacknowledged() == [], "a decision whose re-sends stopped is not re-sent"
        assert tx.counts()["resend_stopped"] == 1


@pytest.mark.parametrize("reason", ["insufficient_funds", "saldo_insuficiente_ção", "lone_\ud800_surrogate", 2**70])
def test_a_records_text_is_written_whatever_a_peer_put_in_it(store, reason):
    """A vote's reasons come from another bank: whatever text or number the envelope's schema let
    through is written and read back, never a failed write (a decision that cannot be written
    leaves its transfer pending)."""
    failures = (Failure("beta", "1", reason),)
    with store.transaction() as tx:
        tx.put_coordinated(coordination("aborted", decided_at=3.0, failures=failures))
        tx.put_participant(participation("aborted", reasons=(("1", reason),)))
    with store.transaction(write=False) as tx:
        assert tx.get_coordinated("t-1").failures == failures
        assert tx.get_participant("t-1", "alfa").reasons == (("1", reason),)


# --- mandates, settlement, evidence ----------------------------------------------------------

def test_mandates_round_trip_revoke_and_daily_use(store):
    n = open_account(store)
    m = Mandate("m-1", n, "beta", ANA, 1.0, max_per_transfer=10_00, max_per_day=20_00, expires_at=100.0)
    with store.transaction() as tx:
        tx.insert_mandate(m)
        tx.insert_mandate(Mandate("m-2", n, "gama", ANA, 2.0))
    with store.transaction() as tx:
        assert tx.get_mandate("m-1") == m
        assert tx.active_mandate(n, "beta", 50.0) == m
        assert tx.active_mandate(n, "beta", 100.0) is None, "expired"
        assert [x.id for x in tx.mandates_of_accounts([n])] == ["m-1", "m-2"]
        tx.add_mandate_use("m-1", "t-1", n, 5_00, 7)
        tx.add_mandate_use("m-1", "t-2", n, 3_00, 7)
        tx.add_mandate_use("m-1", "t-3", n, 1_00, 8)
        assert (tx.mandate_used("m-1", 7), tx.mandate_used("m-1", 8)) == (8_00, 1_00)
        tx.release_mandate_uses("t-2")
        assert tx.mandate_used("m-1", 7) == 5_00
        tx.revoke_mandate("m-2", 3.0)
        assert tx.active_mandate(n, "gama", 4.0) is None and tx.get_mandate("m-2").revoked_at == 3.0


def test_claims_positions_and_the_settlement_journal(store):
    with store.transaction() as tx:
        tx.add_claim("t-1", "alfa", "beta", 10_00)
        tx.add_claim("t-2", "alfa", "beta", 5_00)
        tx.post_settlement("beta", "t-0", 20_00, 1.0)
        tx.post_settlement("gama", "t-0", -7_00, 1.0)
        assert tx.exposure() == {"beta": 35_00, "gama": -7_00}
        tx.release_claims("t-1", "alfa")
        assert tx.exposure() == {"beta": 25_00, "gama": -7_00}
        assert tx.positions() == {"beta": 20_00, "gama": -7_00}
        c = tx.counts()
        assert (c["positions_total"], c["claims_total"]) == (13_00, 5_00)
    with pytest.raises(StorageError):
        with store.transaction() as tx:
            tx.post_settlement("beta", "t-0", 1, 2.0)   # once per transfer and peer


def test_evidence_is_kept_once_per_envelope(store):
    with store.transaction() as tx:
        tx.put_evidence("h-1", "alfa", b'{"v":2}', "sig==", 1.0)
        tx.put_evidence("h-1", "alfa", b'{"v":2}', "sig==", 2.0)   # the same envelope again: no error
    with store.transaction(write=False) as tx:
        ev = tx.get_evidence("h-1")
        assert (ev["sender"], bytes(ev["body"]), ev["signature"]) == ("alfa", b'{"v":2}', "sig==")


def test_daily_totals_run_with_the_entries(store):
    n = open_account(store)
    with store.transaction() as tx:
        tx.append_entry(n, "deposit", 50_00, 1.0, day=7)
        tx.append_entry(n, "withdrawal", -10_00, 2.0, day=7)
        tx.append_entry(n, "transfer_out", -5_00, 3.0, "t-1", day=7)
        tx.append_entry(n, "transfer_in", 4_00, 4.0, "t-2", day=7)
        tx.append_entry(n, "withdrawal", -1_00, 5.0, day=8)
    with store.transaction(write=False) as tx:
        assert tx.day_totals(n, 7) == {"deposits": 50_00, "debits": 15_00}
        assert tx.day_totals(n, 8) == {"deposits": 0, "debits": 1_00}
        assert tx.day_totals(n, 9) == {"deposits": 0, "debits": 0}


def test_a_savepoint_undoes_only_its_own_writes(store):
    n = open_account(store)
    with store.transaction() as tx:
        tx.append_entry(n, "deposit", 10_00, 1.0, day=0)
        with pytest.raises(Boom):
            with tx.savepoint():
                tx.append_entry(n, "deposit", 99_00, 1.0, day=0)
                raise Boom()
        with tx.savepoint():
            tx.place_hold("t-1", n, 1_00, 1.0)
    assert balance(store, n) == 10_00
    with store.transaction(write=False) as tx:
        assert tx.holds_total(n) == 1_00


def test_a_transaction_that_need_not_be_durable_still_commits_atomically(store):
    n = open_account(store)
    with store.transaction(durable=False) as tx:
        tx.append_entry(n, "deposit", 3_00, 1.0, day=0)
    assert balance(store, n) == 3_00


# --- what the customer's app reads ---------------------------------------------------------------

def test_statement_pages_by_entry_id_and_time(store):
    n = open_account(store)
    with store.transaction() as tx:
        for i in range(1, 8):
            tx.append_entry(n, "deposit", i * 100, float(i * 10), day=0)
    with store.transaction(write=False) as tx:
        first = tx.statement_page(n, 3)
        assert [e["amount"] for e in first] == [700, 600, 500]
        second = tx.statement_page(n, 3, before_id=first[-1]["id"])
        assert [e["amount"] for e in second] == [400, 300, 200]
        assert [e["amount"] for e in tx.statement_page(n, 10, since=30.0, until=60.0)] == [500, 400, 300]
        assert [e["amount"] for e in tx.statement_page(n, 10, before_id=second[0]["id"], since=30.0)] == [300]
        assert tx.statement_page("999999999", 10) == []


def test_business_accounts_are_found_by_cnpj(store):
    with store.transaction() as tx:
        tx.insert_customer(ANA, "Ana", "hash", 1.0)
        tx.insert_account("100000002", "business", [ANA], "11222333000181", "Padaria", 1.0, accepted=[ANA])
    with store.transaction(write=False) as tx:
        assert tx.account_numbers_by_cnpj("11222333000181") == ["100000002"]
        assert tx.account_numbers_by_cnpj("11444777000161") == []


def test_transfers_of_a_customer_started_here_or_touching_their_accounts(store):
    mine = open_account(store, "100000001", (ANA,))
    other = open_account(store, "100000005", (BOB,))
    with store.transaction() as tx:
        # Ana started t-1 here (and this bank holds its debit leg too): listed once, as coordinator.
        t1 = (Leg("alfa", mine, 5, "debit"), Leg("beta", "9", 5, "credit"))
        tx.put_coordinated(coordination("committed", transfer_id="t-1", created_at=1.0, legs=t1))
        tx.put_participant(participation("committed", transfer_id="t-1", coordinator="alfa", created_at=1.0, legs=t1))
        # Bob paid Ana from another bank: Ana's credit leg is here (and the debit at beta).
        t2 = (Leg("beta", "8", 7, "debit"), Leg("alfa", mine, 7, "credit"))
        tx.put_participant(participation("aborted", transfer_id="t-2", coordinator="beta", initiator=BOB,
                                         created_at=2.0, legs=t2))
        # Bob's own business, nothing of Ana's.
        tx.put_participant(participation("prepared", transfer_id="t-3", coordinator="beta", initiator=BOB,
                                         created_at=3.0, legs=(Leg("alfa", other, 9, "debit"), Leg("beta", "8", 9, "credit"))))
    with store.transaction(write=False) as tx:
        rows = tx.transfers_of_customer(ANA, 10)
        assert [(r["transfer_id"], r["status"], r["role"]) for r in rows] == [
            ("t-2", "aborted", "participant"), ("t-1", "committed", "coordinator")]
        assert rows[0]["legs"] == [{"bank": "beta", "account": "8", "amount": 7, "direction": "debit"},
                                   {"bank": "alfa", "account": mine, "amount": 7, "direction": "credit"}]
        assert [r["transfer_id"] for r in tx.transfers_of_customer(ANA, 1, before=(2.0, "t-2"))] == ["t-1"]
        assert [r["transfer_id"] for r in tx.transfers_of_customer(ANA, 10, statuses=("committed",))] == ["t-1"]
        assert [r["transfer_id"] for r in tx.transfers_of_customer(ANA, 10, since=1.5, until=2.5)] == ["t-2"]
        assert [(r["transfer_id"], r["status"]) for r in tx.transfers_of_customer(BOB, 10)] == [("t-3", "pending")]
        records = tx.transfer_records(["t-1", "t-2", "t-9"])
        assert set(records) == {"t-1", "t-2"} and records["t-1"]["coordinated"] is True
        assert records["t-2"]["initiator"] == BOB and records["t-2"]["coordinated"] is False
        assert tx.transfer_records([]) == {}


def test_ui_sessions_expire_update_and_are_deleted(store):
    with store.transaction() as tx:
        tx.put_ui_session("h1", '{"lang": "en"}', 10.0, 100.0)
        tx.put_ui_session("h2", "{}", 10.0, 20.0)
    with store.transaction() as tx:
        assert tx.get_ui_session("h1", 50.0)["data"] == '{"lang": "en"}'
        assert tx.get_ui_session("h2", 50.0) is None            # expired
        tx.put_ui_session("h1", '{"lang": "pt-BR"}', 60.0, 200.0)
        assert tx.purge_ui_sessions(50.0) == 1
    with store.transaction() as tx:
        row = tx.get_ui_session("h1", 150.0)
        assert (row["data"], row["created_at"], row["expires_at"]) == ('{"lang": "pt-BR"}', 10.0, 200.0)
        tx.delete_ui_session("h1")
        assert tx.get_ui_session("h1", 0.0) is None


# --- bulk loading (the seed of a load test) ------------------------------------------------------

def test_seeded_accounts_read_as_accounts_opened_and_funded_one_by_one(store):
    from bank_node.storage.port import SeededAccount
    with store.transaction(write=False) as tx:
        assert tx.is_empty()
    rows = [SeededAccount(ANA, "Ana Souza", "100000001"), SeededAccount(BOB, "Bob Lima", "100000002")]
    with store.transaction() as tx:
        tx.seed_accounts(rows, "one-hash", 150_00, 10.0, day=7)
    with store.transaction(write=False) as tx:
        assert not tx.is_empty()
        assert tx.get_customer(BOB) == {"cpf": BOB, "name": "Bob Lima", "password_hash": "one-hash", "created_at": 10.0}
        acc = tx.get_account("100000002")
        assert (acc["kind"], acc["status"], acc["balance"]) == ("individual", "open", 150_00)
        assert tx.holder_acceptances("100000002") == [{"cpf": BOB, "accepted_at": 10.0}]
        assert tx.account_numbers_of(ANA) == ["100000001"]
        assert [(e["kind"], e["amount"], e["balance_after"]) for e in tx.statement_page("100000001", 10)] == \
            [("deposit", 150_00, 150_00)]
        assert tx.journal_sum("100000001") == 150_00
        assert tx.day_totals("100000001", 7) == {"deposits": 150_00, "debits": 0}
        snap = tx.ledger_snapshot()
        assert snap["balances"] == snap["journal"] == {"100000001": 150_00, "100000002": 150_00}
        assert snap["deposits"] == 300_00
    # a seeded account then moves money as any other
    with store.transaction() as tx:
        assert tx.append_entry("100000001", "withdrawal", -50_00, 11.0, day=7) == 100_00
        assert tx.day_totals("100000001", 7) == {"deposits": 150_00, "debits": 50_00}


def test_seeding_without_an_opening_balance_writes_no_entry(store):
    from bank_node.storage.port import SeededAccount
    with store.transaction() as tx:
        tx.seed_accounts([SeededAccount(ANA, "Ana Souza", "100000001")], "h", 0, 10.0, day=7)
    with store.transaction(write=False) as tx:
        assert tx.get_account("100000001")["balance"] == 0
        assert tx.statement_page("100000001", 10) == []
        assert tx.day_totals("100000001", 7) == {"deposits": 0, "debits": 0}


def test_a_ledger_with_only_a_customer_is_not_empty(store):
    with store.transaction() as tx:
        tx.insert_customer(ANA, "Ana Souza", "h", 1.0)
    with store.transaction(write=False) as tx:
        assert not tx.is_empty()


def test_a_seed_row_that_collides_undoes_its_whole_transaction(store):
    from bank_node.storage.port import SeededAccount
    open_account(store, "100000001", (ANA,))
    with pytest.raises(StorageError):
        with store.transaction() as tx:
            tx.seed_accounts([SeededAccount(BOB, "Bob Lima", "100000009"), SeededAccount(ANA, "Ana", "100000010")],
                             "h", 100, 10.0, day=7)
    with store.transaction(write=False) as tx:
        assert tx.get_customer(BOB) is None and tx.get_account("100000009") is None


# --- atomicity ----------------------------------------------------------------------------------

class Boom(Exception):
    pass


def test_a_transaction_that_raises_rolls_back_everything(store):
    n = open_account(store)
    with pytest.raises(Boom):  # the caller's exception goes on unchanged, not wrapped
        with store.transaction() as tx:
            tx.insert_customer(BOB, "Bob", "h", 1.0)
            tx.insert_account("100000009", "individual", [BOB], None, None, 1.0, accepted=[BOB])
            tx.append_entry(n, "deposit", 50_00, 1.0, day=0)
            tx.place_hold("t-1", n, 10_00, 1.0)
            tx.put_idempotent(ANA, "k", "h", 201, {}, 1.0)
            tx.put_participant(participation())
            tx.put_coordinated(coordination())
            raise Boom()
    with store.transaction(write=False) as tx:
        assert tx.get_customer(BOB) is None
        assert tx.get_account("100000009") is None
        assert tx.get_account(n)["balance"] == 0 and tx.statement(n, 10) == []
        assert tx.holds_total(n) == 0
        assert tx.get_idempotent(ANA, "k") is None
        assert tx.get_participant("t-1", "alfa") is None and tx.get_coordinated("t-1") is None


def test_a_database_error_mid_transaction_rolls_back_the_earlier_writes(store):
    n = open_account(store)
    with pytest.raises(StorageError):
        with store.transaction() as tx:
            tx.append_entry(n, "deposit", 50_00, 1.0, day=0)
            tx.insert_customer(ANA, "Ana again", "h", 1.0)  # duplicate key
    assert balance(store, n) == 0
    with store.transaction() as tx:  # and the store is usable afterwards
        tx.append_entry(n, "deposit", 1_00, 2.0, day=0)
    assert balance(store, n) == 1_00


def test_a_write_transaction_is_visible_to_other_threads_once_committed(store):
    n = open_account(store)
    with store.transaction() as tx:
        tx.append_entry(n, "deposit", 7_00, 1.0, day=0)
    seen = []
    t = threading.Thread(target=lambda: seen.append(balance(store, n)))
    t.start()
    t.join(10)
    assert seen == [7_00]


# --- durability ---------------------------------------------------------------------------------

def test_reopening_keeps_the_data(location, backend):
    s = open_store(location)
    n = open_account(s)
    with s.transaction() as tx:
        tx.append_entry(n, "deposit", 123_45, 1.0, day=0)
        tx.place_hold("t-1", n, 3_00, 1.0)
        tx.put_idempotent(ANA, "k", "h", 201, {"balance": "123.45"}, 1.0)
        tx.insert_session("tok", ANA, 1.0, 99.0)
    s.close()
    s = open_store(location)
    try:
        with s.transaction(write=False) as tx:
            assert tx.get_account(n)["balance"] == 123_45
            assert tx.journal_sum(n) == 123_45
            assert tx.holds_total(n) == 3_00
            assert tx.get_idempotent(ANA, "k")["body"] == {"balance": "123.45"}
            assert tx.get_session("tok")["cpf"] == ANA
        assert s.schema_version() == len(MIGRATIONS_OF[backend.name])
    finally:
        s.close()


def test_fresh_database_is_at_the_latest_schema_version(store, backend):
    assert store.schema_version() == len(MIGRATIONS_OF[backend.name])


def test_reopening_does_not_rerun_migrations(location, backend):
    open_store(location).close()
    s = open_store(location)  # would fail with "table customers already exists"
    assert s.schema_version() == len(MIGRATIONS_OF[backend.name])
    s.close()


def test_entries_and_settlement_entries_are_append_only(store):
    n = open_account(store)
    with store.transaction() as tx:
        tx.append_entry(n, "deposit", 10_00, 1.0, day=0)
        tx.post_settlement("beta", "t-1", 5_00, 1.0)
    for sql in ("UPDATE entries SET amount = 999999", "DELETE FROM entries",
                "UPDATE entries SET balance_after = 0 WHERE number = ?",
                "UPDATE settlement_entries SET amount = 0", "DELETE FROM settlement_entries"):
        with pytest.raises(StorageError, match="append-only"):
            with store.transaction() as tx:
                tx.c.execute(sql, (n,) if "?" in sql else ())
    with store.transaction(write=False) as tx:
        assert [(e["amount"], e["balance_after"]) for e in tx.statement(n, 10)] == [(10_00, 10_00)]
        assert tx.ledger_snapshot()["settlement"] == {"beta": 5_00}


def test_a_hold_on_a_missing_account_is_refused(store):
    with pytest.raises(StorageError):
        with store.transaction() as tx:
            tx.place_hold("t-1", "404", 1_00, 1.0)


def test_a_database_error_inside_a_savepoint_is_a_storage_error_and_undoes_only_that_savepoint(store):
    n = open_account(store)
    with store.transaction() as tx:
        tx.append_entry(n, "deposit", 10_00, 1.0, day=0)
        with pytest.raises(StorageError):
            with tx.savepoint():
                tx.place_hold("t-1", n, 1_00, 1.0)
                tx.place_hold("t-1", n, 2_00, 1.0)   # one hold per transfer and account
        with tx.savepoint():
            tx.place_hold("t-2", n, 3_00, 1.0)      # the transaction goes on after it
    with store.transaction(write=False) as tx:
        assert tx.get_account(n)["balance"] == 10_00
        assert tx.holds_of_transfer("t-1") == [] and tx.holds_total(n) == 3_00


# --- SQLite only ---------------------------------------------------------------------------------

@pytest.fixture
def sqlite_store(tmp_path):
    s = SqliteStore(tmp_path / "ledger.sqlite3")
    yield s
    s.close()


def test_a_new_migration_upgrades_an_existing_database_and_keeps_its_data(tmp_path, monkeypatch):
    s = SqliteStore(tmp_path / "l.sqlite3")
    n = open_account(s)
    with s.transaction() as tx:
        tx.append_entry(n, "deposit", 9_00, 1.0, day=0)
    s.close()
    monkeypatch.setattr(sqlite_adapter, "MIGRATIONS",
                        MIGRATIONS + ["CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL);"])
    s = SqliteStore(tmp_path / "l.sqlite3")
    try:
        assert s.schema_version() == len(MIGRATIONS) + 1
        assert balance(s, n) == 9_00
        with s.transaction() as tx:
            tx.c.execute("INSERT INTO notes (text) VALUES ('ok')")
    finally:
        s.close()


def test_a_failing_migration_changes_nothing(tmp_path, monkeypatch):
    SqliteStore(tmp_path / "l.sqlite3").close()
    monkeypatch.setattr(sqlite_adapter, "MIGRATIONS",
                        MIGRATIONS + ["CREATE TABLE half (x INTEGER);\nCREATE TABLE broken (;"])
    with pytest.raises(StorageError):
        SqliteStore(tmp_path / "l.sqlite3")
    monkeypatch.setattr(sqlite_adapter, "MIGRATIONS", MIGRATIONS)
    s = SqliteStore(tmp_path / "l.sqlite3")
    try:
        assert s.schema_version() == len(MIGRATIONS)
        with s.transaction(write=False) as tx:
            assert tx.c.execute("SELECT name FROM sqlite_master WHERE name = 'half'").fetchone() is None
    finally:
        s.close()


def _pragmas(store) -> tuple:
    with store.transaction(write=False) as tx:
        return (tx.c.execute("PRAGMA journal_mode").fetchone()[0],
                tx.c.execute("PRAGMA synchronous").fetchone()[0],
                tx.c.execute("PRAGMA foreign_keys").fetchone()[0],
                tx.c.execute("PRAGMA mmap_size").fetchone()[0],
                tx.c.execute("PRAGMA temp_store").fetchone()[0])


def test_wal_and_synchronous_full_on_every_connection(sqlite_store, tmp_path):
    # synchronous: 2 is FULL; reads through a memory map; temp_store 2: savepoints' statement
    # journals in memory, not in a temporary file per write transaction
    configured = ("wal", 2, 1, sqlite_adapter.MMAP_BYTES, 2)
    assert _pragmas(sqlite_store) == configured
    other = []
    t = threading.Thread(target=lambda: other.append(_pragmas(sqlite_store)))
    t.start()
    t.join(10)
    assert other == [configured], "each thread's own connection is configured too"
    open_account(sqlite_store)
    assert (tmp_path / "ledger.sqlite3-wal").exists()


def test_ping_and_close(sqlite_store):
    assert sqlite_store.ping() is True
    sqlite_store.close()
    assert sqlite_store.ping() is True, "a closed store reopens its connection on demand"


def test_a_failure_that_already_ended_the_transaction_still_comes_out_as_storage_error(sqlite_store):
    """SQLite rolls back by itself on disk full or I/O errors; the port must still answer with
    StorageError (a 503 at the API), never a bare sqlite3 error, and stay usable."""
    n = open_account(sqlite_store)
    with pytest.raises(StorageError):
        with sqlite_store.transaction() as tx:
            tx.append_entry(n, "deposit", 5_00, 1.0, day=0)
            tx.c.execute("ROLLBACK")              # what SQLite does on SQLITE_FULL / SQLITE_IOERR
            tx.c.execute("SELECT * FROM no_such_table")
    with pytest.raises(StorageError):
        with sqlite_store.transaction() as tx:
            tx.append_entry(n, "deposit", 5_00, 1.0, day=0)
            tx.c.execute("ROLLBACK")              # and the block then ends normally: COMMIT fails
    with pytest.raises(Boom):
        with sqlite_store.transaction() as tx:
            tx.c.execute("ROLLBACK")
            raise Boom()                          # the caller's own exception is not hidden
    assert balance(sqlite_store, n) == 0
    with sqlite_store.transaction() as tx:
        tx.append_entry(n, "deposit", 1_00, 2.0, day=0)
    assert balance(sqlite_store, n) == 1_00


def test_a_version_2_ledger_upgrades_to_the_trust_protocol_keeping_its_transfers(tmp_path):
    """Participations get their coordinator in their key and their legs keep meaning "ours";
    the running daily totals are built from the day's entries."""
    path = tmp_path / "old.sqlite3"
    c = sqlite3.connect(path, isolation_level=None)
    for i in range(2):
        for stmt in sqlite_adapter._split_sql(MIGRATIONS[i]):
            c.execute(stmt)
    c.execute("PRAGMA user_version = 2")
    c.execute("INSERT INTO customers VALUES (?, 'Ana', 'h', 1.0)", (ANA,))
    c.execute("INSERT INTO accounts (number, kind, created_at) VALUES ('1', 'individual', 1.0)")
    c.execute("INSERT INTO account_holders VALUES ('1', ?)", (ANA,))
    at = 20_000 * 86400 + 12 * 3600   # noon UTC: the same day in Brasília
    c.execute("INSERT INTO entries (number, kind, amount, balance_after, at) VALUES ('1', 'deposit', 900, 900, ?)", (at,))
    c.execute("INSERT INTO entries (number, kind, amount, balance_after, at) VALUES ('1', 'withdrawal', -100, 800, ?)",
              (at + 60,))
    c.execute("UPDATE accounts SET balance = 800")
    c.execute("INSERT INTO participations VALUES ('t-1', 'alfa', 'prepared', 5, ?, ?, '[]', '[\"alfa\"]', 1.0, 1.0)",
              (ANA, '[{"account": "1", "amount": 5, "direction": "debit"}]'))
    c.close()
    s = SqliteStore(path)
    try:
        assert s.schema_version() == len(MIGRATIONS)
        with s.transaction(write=False) as tx:
            rec = tx.get_participant("t-1", "alfa")
            assert (rec.state, rec.legs) == ("prepared", (Leg("", "1", 5, "debit"),))
            assert tx.day_totals("1", (at - 10800) // 86400) == {"deposits": 900, "debits": 100}
    finally:
        s.close()


# --- check-and-write against other connections and processes -------------------------------------

def _spend_all(location: str, number: str, how: str, ready, think_s: float) -> bool:
    """In its own process: one check-and-write as the services do it (read the account, what
    is held, decide, write), with time to think between the check and the write. True if it spent."""
    s = open_store(location)
    try:
        ready.wait(30)
        with s.transaction() as tx:
            acc = tx.get_account(number)
            available = acc["balance"] - tx.holds_total(number)
            time.sleep(think_s)   # noqa: the window another writer would slip into
            if available < 100_00:
                return False
            if how == "hold":
                tx.place_hold(f"t-{how}", number, 100_00, 1.0)
            else:
                tx.append_entry(number, "withdrawal", -100_00, 1.0, day=0)
            return True
    finally:
        s.close()


def test_two_processes_cannot_both_spend_the_same_balance(location):
    """A PREPARE's hold in one process and a withdrawal in another, both checking the same
    100.00 at the same moment: one of them spends it, the other sees it gone."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    n = open_account(store := open_store(location))
    with store.transaction() as tx:
        tx.append_entry(n, "deposit", 100_00, 1.0, day=0)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ProcessPoolExecutor(2, mp_context=ctx) as pool:
        ready = manager.Barrier(2)
        spent = [f.result(60) for f in [pool.submit(_spend_all, str(location), n, how, ready, 0.3)
                                        for how in ("hold", "withdraw")]]
    with store.transaction(write=False) as tx:
        balance_, held = tx.get_account(n)["balance"], tx.holds_total(n)
    store.close()
    assert sorted(spent) == [False, True], spent
    assert held <= balance_, (balance_, held)


def test_two_checks_of_a_peers_exposure_take_turns(location):
    """Two PREPAREs crediting on one peer's word, from two connections: the second reads the
    exposure only once the first has added its claim, so both cannot fit under the same cap."""
    first, second = open_store(location), open_store(location)
    checked, seen = threading.Event(), []

    def claim():
        with first.transaction() as tx:
            tx.exposure()
            checked.set()
            seen.append(("first", tx.exposure()))
            time.sleep(0.3)   # noqa: the window another check would slip into
            tx.add_claim("t-1", "beta", "beta", 100_00)
    t = threading.Thread(target=claim)
    t.start()
    try:
        assert checked.wait(10)
        with second.transaction() as tx:
            seen.append(("second", tx.exposure()))
    finally:
        t.join(10)
        first.close()
        second.close()
    assert seen == [("first", {}), ("second", {"beta": 100_00})]


# --- PostgreSQL only ------------------------------------------------------------------------------

@pytest.fixture
def pg_backend(pg_schemas):
    from tests.conftest import Backend
    b = Backend("postgres", pg_schemas)
    yield b
    b.release()


@pytest.fixture
def pg_location(pg_backend, tmp_path):
    return pg_backend.location(tmp_path, "ledger")


def test_postgres_commits_are_durable_unless_told_otherwise_for_that_transaction(pg_location):
    s = open_store(pg_location)
    try:
        setting = lambda tx: tx.c.execute("SHOW synchronous_commit").fetchone()[0]  # noqa: E731
        with s.transaction() as tx:
            assert setting(tx) == "on"
        with s.transaction(durable=False) as tx:
            assert setting(tx) == "off"
        for write in (True, False):
            with s.transaction(write=write) as tx:
                assert setting(tx) == "on", "durable=False lasts one transaction"
    finally:
        s.close()


def test_postgres_a_write_held_open_elsewhere_is_waited_on_for_a_bounded_time(pg_location):
    """Another process holds a write transaction open: a write here (one writer at a time, as
    on SQLite) gives up after its lock_timeout with StorageError, a batch of the group commit
    gives up after its short one (every unit of it fails, none waits for the other process), and
    once the other commits, writes go through again."""
    from bank_node.storage.batch import LOCK_TIMEOUT_S, BatchWriter
    mine, other = open_store(pg_location), open_store(pg_location)
    x = open_account(mine, "100000001")
    y = open_account(mine, "100000002", (BOB,))
    held, release = threading.Event(), threading.Event()

    def hold_x():
        with other.transaction() as tx:
            tx.get_account(x)
            held.set()
            release.wait(30)
    t = threading.Thread(target=hold_x)
    t.start()
    writer = BatchWriter(mine)
    try:
        assert held.wait(10)
        start = time.monotonic()
        with pytest.raises(StorageError, match="lock"):
            with mine.transaction(lock_timeout_s=0.2) as tx:
                tx.get_account(y)
        assert time.monotonic() - start < 5
        futures = [writer.submit(lambda tx: tx.append_entry(y, "deposit", 1_00, 1.0, day=0)),
                   writer.submit(lambda tx: tx.get_account(x))]
        for f in futures:
            with pytest.raises(StorageError):
                f.result(10 * LOCK_TIMEOUT_S)
        assert not release.is_set() and time.monotonic() - start < 10, "none of it waited for the other process"
        release.set()
        t.join(10)
        assert writer.submit(lambda tx: tx.append_entry(y, "deposit", 2_00, 1.0, day=0)).result(10) == 2_00
    finally:
        release.set()
        t.join(10)
        writer.stop()
        mine.close()
        other.close()


def test_postgres_processes_starting_together_migrate_once(pg_backend, tmp_path):
    pg_location = pg_backend.location(tmp_path, "ledger", fresh=True)
    stores, errors = [], []

    def start():
        try:
            stores.append(open_store(pg_location))
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert errors == [] and [s.schema_version() for s in stores] == [len(postgres_adapter.MIGRATIONS)] * 3
    finally:
        for s in stores:
            s.close()


def test_postgres_writers_of_two_accounts_in_opposite_orders_take_turns(pg_location):
    """Two processes write two accounts in opposite orders at once (a group commit's batch can
    hold one account's row and then want another's): writers take turns on the ledger, so there
    is no deadlock for PostgreSQL to break, and both commit everything."""
    stores = [open_store(pg_location), open_store(pg_location)]
    x = open_account(stores[0], "100000001")
    y = open_account(stores[0], "100000002", (BOB,))
    start = threading.Barrier(2)
    outcome: dict[int, object] = {}

    def write(i, first, second):
        try:
            start.wait(10)
            with stores[i].transaction() as tx:
                tx.get_account(first)
                tx.append_entry(first, "deposit", (i + 1) * 100, 1.0, day=0)
                time.sleep(0.05)           # the other writer is at its door meanwhile
                tx.get_account(second)
                tx.append_entry(second, "deposit", (i + 1) * 100, 1.0, day=0)
            outcome[i] = "committed"
        except StorageError as e:
            outcome[i] = e
    threads = [threading.Thread(target=write, args=(0, x, y)), threading.Thread(target=write, args=(1, y, x))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert outcome == {0: "committed", 1: "committed"}, outcome
        assert (balance(stores[0], x), balance(stores[0], y)) == (300, 300)
    finally:
        for s in stores:
            s.close()


def test_postgres_connections_the_server_drops_are_replaced(pg_location, pg_database):
    """The server ends every connection of the store (a restart, an operator's terminate): the
    next transactions run on new ones, and a transaction cut in the middle is a StorageError
    with none of its writes kept. (The session's database is this test's alone meanwhile.)"""
    import psycopg
    s = open_store(pg_location)
    n = open_account(s)

    def drop_all():
        with psycopg.connect(pg_database, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                          " WHERE datname = current_database() AND pid <> pg_backend_pid()")
    try:
        with pytest.raises(StorageError):
            with s.transaction() as tx:
                tx.append_entry(n, "deposit", 5_00, 1.0, day=0)
                drop_all()
                tx.append_entry(n, "deposit", 6_00, 1.0, day=0)
        drop_all()
        with s.transaction() as tx:
            tx.append_entry(n, "deposit", 1_00, 1.0, day=0)
        assert balance(s, n) == 1_00
    finally:
        s.close()
