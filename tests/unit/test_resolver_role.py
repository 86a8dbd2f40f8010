"""One resolver per bank, however many processes serve it: a second node over the same ledger
(another process of the bank, in production) does no resolving while the first holds the role,
and takes it over, with recovery, once the first is gone."""
from __future__ import annotations

import time
import uuid

from bank_node.app import create_app
from bank_node.node import BankNode
from bank_node.storage.port import StorageError

from .conftest import Api, make_config
from .loopback import Loopback


def test_only_the_holder_of_the_role_resolves_and_another_takes_it_over(tmp_path, new_cpf, monkeypatch):
    cfg = make_config(timeouts={"prepare_ttl_ms": 300})
    net = Loopback()
    nodes = {}
    for b in ("alfa", "beta"):
        nodes[b] = BankNode(cfg, b, tmp_path / b, connect_broker=False)
        net.attach(nodes[b])
    other = None
    try:
        alfa, beta = nodes["alfa"], nodes["beta"]
        a_api = Api(create_app(alfa, testing=True).test_client(), new_cpf)
        b_api = Api(create_app(beta, testing=True).test_client(), new_cpf)
        cpf, token = a_api.customer()
        src = a_api.open_account(token, [cpf])
        assert a_api.deposit(token, src, "50.00").status_code == 201
        b_api.register(cpf)
        dest = b_api.open_account(b_api.login(cpf), [cpf])
        assert alfa.transfers.resolver.claim()
        # A transfer left undecided (its decision could not be written): the resolver's to abort.
        coordinator = alfa.transfers.coordinator
        real_apply = coordinator._apply_own
        monkeypatch.setattr(coordinator, "_apply_own",
                            lambda tx, rec, now: (_ for _ in ()).throw(StorageError("disk full")))
        tid = str(uuid.uuid4())
        r = a_api.call("POST", "/api/transfers", {"id": tid, "sources": [{"bank": "alfa", "account": src,
                                                                           "amount": "10.00"}],
                                                  "destination": {"bank": "beta", "account": dest}}, token=token)
        assert r.get_json()["status"] == "pending", r.get_json()
        monkeypatch.setattr(coordinator, "_apply_own", real_apply)
        status = lambda: a_api.call("GET", f"/api/transfers/{tid}", token=token).get_json()["status"]  # noqa: E731

        other = BankNode(cfg, "alfa", tmp_path / "alfa", connect_broker=False)   # the bank's second process
        assert not other.transfers.resolver.claim()
        end = time.monotonic() + 1.5      # well past the deadline and the resolver's grace
        while time.monotonic() < end:
            other.transfers.resolver.resolve_once()
            time.sleep(0.05)
        assert status() == "pending", "a process without the resolver's role resolved"
        assert other.health()["process"]["resolver"] is False

        alfa.stop()                       # the holder is gone: the role is free
        end = time.monotonic() + 5
        while time.monotonic() < end and status() == "pending":
            other.transfers.resolver.resolve_once()
            time.sleep(0.05)
        assert status() == "aborted"
        assert other.transfers.resolver.leader
        assert a_api.account(token, src)["available"] == "50.00"
    finally:
        for n in [*nodes.values(), *([other] if other else [])]:
            n.stop()
