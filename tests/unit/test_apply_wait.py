"""Read-your-writes: a customer is answered once every other bank has applied her transfer, and
not later than that. An acknowledgement leaves a bank only after its ledger holds the decision,
so its arrival is what she waits for; the coordinator's own note of it (bookkeeping, written
without forcing the disk) may come after her answer."""
from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest

from bank_node import protocol as P
from tests.support import wait_until


@pytest.fixture
def pair(consortium):
    return consortium(("alfa", "beta"), timeouts={"apply_wait_ms": 20_000})


def ana_with_accounts(a_api, b_api) -> tuple[str, str, str, str]:
    """Ana, a customer of alfa (100.00 in her account there) and of beta: her tokens and accounts."""
    cpf, a_tok = a_api.customer("Ana Souza")
    b_api.register(cpf, "Ana Souza")
    b_tok = b_api.login(cpf)
    acc_a, acc_b = a_api.open_account(a_tok, [cpf]), b_api.open_account(b_tok, [cpf])
    assert a_api.deposit(a_tok, acc_a, "100.00").status_code == 201
    return a_tok, b_tok, acc_a, acc_b


def hold_back_bookkeeping(node, gate: threading.Event) -> list:
    """Units the writer may write without forcing the disk (the acknowledgements' bookkeeping)
    reach the writer only once ``gate`` is set; durable units go as before."""
    writer, held = node.transfers.coordinator.rt.writer, []
    submit = writer.submit

    def submit_later(fn, *, durable: bool = True) -> Future:
        if durable:
            return submit(fn, durable=durable)
        out: Future = Future()
        held.append(fn)

        def later() -> None:
            gate.wait(30)
            inner = submit(fn, durable=durable)
            inner.add_done_callback(lambda f: out.set_exception(f.exception()) if f.exception()
                                    else out.set_result(f.result()))
        threading.Thread(target=later, daemon=True).start()
        return out
    writer.submit = submit_later
    return held


def test_the_customer_is_answered_when_the_acknowledgements_arrive_not_when_they_are_noted(pair):
    (alfa, a_api), (beta, b_api) = pair["alfa"], pair["beta"]
    a_tok, b_tok, acc_a, acc_b = ana_with_accounts(a_api, b_api)
    gate = threading.Event()
    held = hold_back_bookkeeping(alfa, gate)
    answer: list = []
    asking = threading.Thread(target=lambda: answer.append(a_api.call(
        "POST", "/api/transfers", {"sources": [{"bank": "alfa", "account": acc_a, "amount": "30.00"}],
                                   "destination": {"bank": "beta", "account": acc_b}}, token=a_tok)))
    try:
        asking.start()
        asking.join(10)   # the wait allowed is 20 s: only the acknowledgement's arrival can end it sooner
        assert answer, "the customer still waits while the acknowledgement's bookkeeping is held back"
        assert held, "the acknowledgement's bookkeeping was not held back: the test proves nothing"
        r = answer[0]
        assert (r.status_code, r.get_json()["status"]) == (201, "committed"), r.get_json()
        # What she was promised: beta's ledger already holds the credit.
        assert b_api.call("GET", f"/api/accounts/{acc_b}", token=b_tok).get_json()["balance"] == "30.00"
        with alfa.store.transaction(write=False) as tx:
            assert tx.get_coordinated(r.get_json()["id"]).pending_acks == 1   # not noted yet
    finally:
        gate.set()
        asking.join(10)
    pair.net.settle()
    with alfa.store.transaction(write=False) as tx:
        assert tx.get_coordinated(answer[0].get_json()["id"]).pending_acks == 0   # and noted afterwards


def test_an_acknowledgement_of_the_wrong_outcome_does_not_end_her_wait(pair):
    """A dishonest beta acknowledges the committed transfer as aborted (its real acknowledgement
    withheld): alfa must not tell Ana that beta has applied it. The right one then ends the wait."""
    (alfa, a_api), (beta, b_api) = pair["alfa"], pair["beta"]
    a_tok, _, acc_a, acc_b = ana_with_accounts(a_api, b_api)
    gate = threading.Event()
    held = hold_back_bookkeeping(alfa, gate)   # only the acknowledgements' arrival may end her wait
    withheld: list = []
    outbox = beta.transfers.coordinator.outbox
    queue_item = outbox.queue
    outbox.queue = lambda bank, item, proofs=(): withheld.append(item) if isinstance(item, P.DecisionAck) \
        else queue_item(bank, item, proofs)
    tid = "6f0d3f0e-9a43-4f3b-8a57-0c1d2e3f4a5b"
    answer: list = []
    asking = threading.Thread(target=lambda: answer.append(a_api.call(
        "POST", "/api/transfers", {"id": tid, "sources": [{"bank": "alfa", "account": acc_a, "amount": "30.00"}],
                                   "destination": {"bank": "beta", "account": acc_b}}, token=a_tok)))
    try:
        asking.start()
        wait_until(lambda: withheld, 10, "beta's acknowledgement, withheld")
        pair.net.settle()
        assert [(a.transfer_id, a.outcome) for a in withheld] == [(tid, "commit")]

        def from_beta(outcome: str) -> None:
            """Sealed and signed by beta, as beta's own acknowledgements are."""
            body, headers = beta.transfers.rt.seal(P.DecisionAck(transfer_id=tid, bank="beta", outcome=outcome))
            pair.net.deliver("beta", "alfa", body, headers=dict(headers or {}))
        from_beta("abort")
        wait_until(lambda: held, 10, "alfa handling beta's acknowledgement of an abort")
        asking.join(1)
        assert not answer, "an acknowledgement of another outcome ended the wait"
        gate.set()   # alfa's queue takes the next message once this one's bookkeeping is written
        from_beta("commit")
        asking.join(10)
        assert answer and (answer[0].status_code, answer[0].get_json()["status"]) == (201, "committed")
    finally:
        gate.set()
        asking.join(10)


def test_a_transfer_still_undecided_is_answered_pending_with_its_id_and_leaves_no_wait_behind(consortium, monkeypatch):
    """A decision that takes longer than the PREPAREs' time to live (and a grace) is answered
    202 "pending" with the id the transfer was begun with, though the request named none, so
    that she can ask for it; and nobody is left waiting for its acknowledgements in memory."""
    from bank_node.services import transfers as T
    pair = consortium(("alfa", "beta"), timeouts={"apply_wait_ms": 20_000, "prepare_ttl_ms": 100})
    (alfa, a_api), (beta, b_api) = pair["alfa"], pair["beta"]
    a_tok, _b_tok, acc_a, acc_b = ana_with_accounts(a_api, b_api)
    coordinator = alfa.transfers.coordinator
    monkeypatch.setattr(T, "ANSWER_GRACE_S", 0.2)
    monkeypatch.setattr(coordinator, "post", lambda fn: None)   # the coordinator never gets to it
    r = a_api.call("POST", "/api/transfers", {"sources": [{"bank": "alfa", "account": acc_a, "amount": "30.00"}],
                                              "destination": {"bank": "beta", "account": acc_b}}, token=a_tok)
    body = r.get_json()
    assert (r.status_code, body["status"]) == (202, "pending"), body
    with alfa.store.transaction(write=False) as tx:
        assert tx.get_coordinated(body["id"]).state == "preparing"   # the id is the transfer's own
    assert coordinator._applied == {}


def test_a_request_that_fails_after_its_transfers_started_leaves_no_wait_behind(pair, monkeypatch):
    (alfa, a_api), (beta, b_api) = pair["alfa"], pair["beta"]
    a_tok, _b_tok, acc_a, acc_b = ana_with_accounts(a_api, b_api)
    transfers, coordinator = alfa.transfers, alfa.transfers.coordinator

    def broken(runs, requests, started):
        raise RuntimeError("something failed while the answers were collected")
    monkeypatch.setattr(transfers, "_collect", broken)
    r = a_api.call("POST", "/api/transfers", {"sources": [{"bank": "alfa", "account": acc_a, "amount": "30.00"}],
                                              "destination": {"bank": "beta", "account": acc_b}}, token=a_tok)
    assert r.status_code == 500
    assert coordinator._applied == {}
