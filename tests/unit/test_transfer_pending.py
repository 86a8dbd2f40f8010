"""POST /api/transfers answers 202 pending when the outcome is not known within the request:
here the coordinator cannot write its decision. Presumed abort then settles it: the resolver
aborts the transfer after its deadline, and every hold is released. Only the process holding
the bank's resolver role does so, however many processes serve the bank."""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import pytest

from bank_node.app import create_app
from bank_node.node import BankNode
from bank_node.storage.port import StorageError

from .conftest import Api, make_config
from .loopback import Loopback


@dataclass
class Undecided:
    """A transfer alfa could not write the decision of, answered 202 pending."""
    cfg: object
    alfa: BankNode
    api: Api
    token: str
    source: str
    transfer_id: str

    def status(self) -> str:
        return self.api.call("GET", f"/api/transfers/{self.transfer_id}", token=self.token).get_json()["status"]

    def available(self) -> str:
        return self.api.account(self.token, self.source)["available"]


@pytest.fixture
def undecided(tmp_path, new_cpf, monkeypatch):
    cfg = make_config(timeouts={"prepare_ttl_ms": 300})
    net = Loopback()
    nodes = {}
    for b in ("alfa", "beta"):
        nodes[b] = BankNode(cfg, b, tmp_path / b, connect_broker=False)
        net.attach(nodes[b])
    try:
        alfa, beta = nodes["alfa"], nodes["beta"]
        a_api = Api(create_app(alfa, testing=True).test_client(), new_cpf)
        b_api = Api(create_app(beta, testing=True).test_client(), new_cpf)
        cpf, token = a_api.customer()
        src = a_api.open_account(token, [cpf])
        assert a_api.deposit(token, src, "50.00").status_code == 201
        b_api.register(cpf)
        btoken = b_api.login(cpf)
        dest = b_api.open_account(btoken, [cpf])

        coordinator = alfa.transfers.coordinator
        real_apply = coordinator._apply_own
        monkeypatch.setattr(coordinator, "_apply_own",
                            lambda tx, rec, now: (_ for _ in ()).throw(StorageError("disk full")))
        tid = str(uuid.uuid4())
        r = a_api.call("POST", "/api/transfers", {"id": tid, "sources": [{"bank": "alfa", "account": src,
                                                                           "amount": "10.00"}],
                                                  "destination": {"bank": "beta", "account": dest}}, token=token)
        assert r.status_code == 202 and r.get_json()["status"] == "pending", r.get_json()
        monkeypatch.setattr(coordinator, "_apply_own", real_apply)
        yield Undecided(cfg, alfa, a_api, token, src, tid)
    finally:
        for n in nodes.values():
            n.stop()


def resolve_while_pending(node: BankNode, t: Undecided, seconds: float) -> None:
    """What the resolver thread does every 200 ms, for up to ``seconds`` while it is pending."""
    end = time.monotonic() + seconds
    while time.monotonic() < end and t.status() == "pending":
        node.transfers.resolver.resolve_once()
        time.sleep(0.05)


def test_decision_not_written_is_202_pending_then_presumed_abort(undecided):
    t = undecided
    assert t.status() == "pending"
    assert t.available() == "40.00"  # held while in doubt
    resolve_while_pending(t.alfa, t, 10)
    assert t.status() == "aborted"
    assert t.available() == "50.00"
    assert t.api.account(t.token, t.source)["balance"] == "50.00"


def test_only_the_holder_of_the_resolver_role_resolves_and_another_takes_it_over(undecided, tmp_path):
    """A second node over the same ledger (another process of the bank, in production) does no
    resolving while the first holds the role, and takes it over, with recovery, once it stops."""
    t = undecided
    assert t.alfa.transfers.resolver.claim()
    other = BankNode(t.cfg, "alfa", tmp_path / "alfa", connect_broker=False)
    try:
        assert not other.transfers.resolver.claim()
        resolve_while_pending(other, t, 1.5)      # well past the deadline and the resolver's grace
        assert t.status() == "pending", "a process without the resolver's role resolved"
        assert other.health()["process"]["resolver"] is False
        t.alfa.stop()                             # the holder is gone: the role is free
        resolve_while_pending(other, t, 5)
        assert t.status() == "aborted"
        assert other.transfers.resolver.leader
        assert t.available() == "50.00"
    finally:
        other.stop()


class _QueueCounts:
    """A broker that only answers how many consumers each bank's queue has."""

    def __init__(self, counts: dict[str, int]):
        self.counts = counts
        self.connected = True

    def consumer_count(self, bank: str):
        from concurrent.futures import Future
        f: Future = Future()
        f.set_result(self.counts.get(bank))
        return f


def test_a_process_learns_from_its_queue_that_other_processes_of_its_bank_take_acknowledgements(node):
    """Processes started by hand, here or on other machines, are not workers of one parent: the
    resolver sees them as consumers of the bank's own queue, and a request waiting for its
    acknowledgements then looks for them in the ledger soon."""
    resolver, rt = node.transfers.resolver, node.transfers.rt
    assert rt.siblings is False
    rt.broker = _QueueCounts({"alfa": 2, "beta": 1})
    try:
        resolver._check_consumers()
        assert rt.siblings is True and resolver.reachable("beta")
        rt.broker.counts["alfa"] = 1
        resolver._checked_at = 0.0
        resolver._check_consumers()
        assert rt.siblings is False
    finally:
        rt.broker = None
