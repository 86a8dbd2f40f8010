"""Every query of the transfer and statement paths uses an index, so that their cost does not
grow with the number of accounts, customers or transfers a bank holds.

The test records every statement a seeded bank and its peer run while customers log in, pay
each other across the two banks (either bank coordinating) and page through their statements,
and while the resolver looks for overdue work and the health check counts what is in flight,
then asks SQLite how it would run each one (EXPLAIN QUERY PLAN): a full scan of a table that
grows (``SCAN accounts``, or ``SCAN entries USING INDEX ...``, which reads the whole index) is a
failure that names the statement. Only tables bounded by the number of peer banks or by the
transfers in flight may be scanned.
"""
from __future__ import annotations

import re
import sqlite3
import uuid
from datetime import datetime

import pytest

from bank_node.domain.calendar import CONSORTIUM_TZ
from bank_node.services.seed import seed, seeded_cpf
from bank_node.storage.sqlite import SqliteStore, SqliteTx

PASSWORD = "senha-de-carga-1"
BOUNDED = {
    "positions": "one row per peer bank",
    "claims": "the claims of transfers still pending only",
    "holds": "the holds of transfers still pending only",
}
_CONTROL = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|PRAGMA)\b", re.I)


@pytest.fixture
def recorded(monkeypatch):
    """Every SQL statement run by any SqliteStore connection while ``recorded.on`` is set, with
    its parameters in place (sqlite3's trace callback expands them)."""
    class Recorder:
        on = False
        statements: set[str] = set()
    rec = Recorder()
    hooked: dict[int, sqlite3.Connection] = {}
    original = SqliteStore._conn

    def conn(self):
        c = original(self)
        if id(c) not in hooked:
            hooked[id(c)] = c
            c.set_trace_callback(lambda sql: rec.statements.add(sql) if rec.on else None)
        return c
    monkeypatch.setattr(SqliteStore, "_conn", conn)
    return rec


def full_scans(db: sqlite3.Connection, sql: str) -> list[str]:
    plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql)]
    return [step for step in plan if step.startswith("SCAN ") and step.split()[1] not in ("CONSTANT", *BOUNDED)]


def test_transfers_and_statements_read_only_through_indexes(consortium, recorded, tmp_path):
    nodes = consortium(("alfa", "beta"))
    alfa, a_api = nodes["alfa"]
    beta, b_api = nodes["beta"]
    seed(alfa.banking, 300, PASSWORD, "500.00")
    payer, payee = seeded_cpf(17), seeded_cpf(230)
    b_cpf = b_api.new_cpf()
    assert b_api.register(b_cpf).status_code == 201
    b_token = b_api.login(b_cpf)
    b_acc = b_api.open_account(b_token, [b_cpf])
    assert b_api.deposit(b_token, b_acc, "80.00").status_code == 201
    recorded.on = True

    token = a_api.login(payer, PASSWORD)
    (acc,) = a_api.call("GET", "/api/accounts", token=token).get_json()["accounts"]
    payee_acc = a_api.call("GET", "/api/accounts", token=a_api.login(payee, PASSWORD)).get_json()["accounts"][0]
    for body, api, tok in (
            # alfa coordinates: a debit at alfa, a credit at beta
            ({"sources": [{"bank": "alfa", "account": acc["number"], "amount": "10.00"}],
              "destination": {"bank": "beta", "account": b_acc}}, a_api, token),
            # alfa coordinates a transfer between two of its own customers
            ({"sources": [{"bank": "alfa", "account": acc["number"], "amount": "5.00"}],
              "destination": {"bank": "alfa", "account": payee_acc["number"]}}, a_api, token),
            # beta coordinates: alfa is a participant holding the credit
            ({"sources": [{"bank": "beta", "account": b_acc, "amount": "7.00"}],
              "destination": {"bank": "alfa", "account": acc["number"]}}, b_api, b_token)):
        r = api.call("POST", "/api/transfers", {"id": str(uuid.uuid4()), **body}, token=tok)
        assert r.status_code == 201 and r.get_json()["status"] == "committed", r.get_json()
        assert api.call("GET", f"/api/transfers/{r.get_json()['id']}", token=tok).status_code == 200
    # alfa coordinates a transfer that beta refuses (a debit there of an account the payer does
    # not hold): alfa releases its own leg's hold and mandate uses
    aborted = a_api.call("POST", "/api/transfers", {
        "id": str(uuid.uuid4()), "destination": {"bank": "alfa", "account": payee_acc["number"]},
        "sources": [{"bank": "alfa", "account": acc["number"], "amount": "3.00"},
                    {"bank": "beta", "account": b_acc, "amount": "1.00"}]}, token=token)
    assert aborted.get_json()["status"] == "aborted", aborted.get_json()
    nodes.net.settle()
    a_api.call("GET", "/api/transfers", token=token)
    page = a_api.call("GET", f"/api/accounts/{acc['number']}/statement?limit=2", token=token).get_json()
    assert len(page["entries"]) == 2 and page["next"]
    rest = a_api.call("GET", f"/api/accounts/{acc['number']}/statement?limit=2&before={page['next']}",
                      token=token).get_json()
    assert [e["kind"] for e in rest["entries"]] == ["transfer_out", "deposit"]
    # The entry's day in the consortium's calendar (Brasília), not its UTC date: from 21:00 in
    # Brasília on, the two differ.
    today = datetime.fromisoformat(page["entries"][0]["at"].replace("Z", "+00:00")) \
        .astimezone(CONSORTIUM_TZ).date().isoformat()
    dated = a_api.call("GET", f"/api/accounts/{acc['number']}/statement?limit=2&from={today}&to={today}",
                       token=token)
    assert dated.status_code == 200 and dated.get_json()["entries"]
    assert a_api.call("GET", f"/api/accounts/{acc['number']}/statement?format=csv", token=token).status_code == 200
    # what runs beside every transfer: the resolver's rounds and the health check
    with alfa.store.transaction(write=False) as tx:
        tx.participations_in("prepared", deadline_before=2 ** 62)
        tx.coordinated_preparing(deadline_before=2 ** 62)
        tx.coordinated_unacknowledged(decided_before=2e9)
    assert alfa.transfers.in_flight()["holds"] == 0
    recorded.on = False

    assert_no_full_scans(alfa.store.path, recorded.statements,
                         must_see=("FROM entries", "FROM holds", "pending_acks > 0 AND resend_stopped",
                                   "DELETE FROM mandate_uses WHERE transfer_id"))


def test_the_health_check_reads_no_whole_table(node, client, recorded):
    """Docker and the launcher poll /api/health every few seconds: with a million accounts,
    summing the ledger's balances and entries there took a second, and would miss the
    healthcheck's timeout a few millions later."""
    seed(node.banking, 50, PASSWORD, "10.00")
    recorded.on = True
    assert client.get("/api/health").status_code in (200, 503)
    recorded.on = False
    assert_no_full_scans(node.store.path, recorded.statements, must_see=("FROM participations",))


def assert_no_full_scans(path, statements, must_see: tuple[str, ...]) -> None:
    queries = sorted(s for s in statements if not _CONTROL.match(s))
    for seen in must_see:
        assert any(seen in q for q in queries), f"the recording missed {seen!r}"
    db = sqlite3.connect(path)
    try:
        scans = {q: found for q in queries if (found := full_scans(db, q))}
    finally:
        db.close()
    assert not scans, "full scans of growing tables:\n" + "\n".join(f"{s}\n    <- {q}" for q, s in scans.items())


def test_my_transfers_finds_those_a_customer_started_through_an_index(node):
    """The web UI's "my transfers" (transfers_of_customer): its transfers started here are found
    by initiator. (Those of other banks that touched the customer's accounts are still found by
    reading this bank's participations: their legs are JSON text.)"""
    db = sqlite3.connect(node.store.path)
    try:
        plan = [r[3] for r in db.execute("EXPLAIN QUERY PLAN " + SqliteTx._CUSTOMER_TRANSFERS,
                                         ("52998224725",) * 3)]
    finally:
        db.close()
    assert any(step.startswith("SEARCH c USING INDEX coordinated_by_initiator") for step in plan), plan
