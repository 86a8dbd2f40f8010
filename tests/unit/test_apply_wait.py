"""Read-your-writes: a customer is answered once every other bank has applied her transfer, and
not later than that. An acknowledgement leaves a bank only after its ledger holds the decision,
so its arrival is what she waits for; the coordinator's own note of it (bookkeeping, written
without forcing the disk) may come after her answer."""
from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest



@pytest.fixture
def pair(consortium):
    return consortium(("alfa", "beta"), timeouts={"apply_wait_ms": 20_000})


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
    cpf, a_tok = a_api.customer("Ana Souza")
    b_api.register(cpf, "Ana Souza")
    b_tok = b_api.login(cpf)
    acc_a, acc_b = a_api.open_account(a_tok, [cpf]), b_api.open_account(b_tok, [cpf])
    assert a_api.deposit(a_tok, acc_a, "100.00").status_code == 201
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
