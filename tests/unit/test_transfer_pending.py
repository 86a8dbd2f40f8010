"""POST /api/transfers answers 202 pending when the outcome is not known within the request:
here the coordinator cannot write its decision. Presumed abort then settles it: the resolver
aborts the transfer after its deadline, and every hold is released."""
from __future__ import annotations

import time
import uuid

from bank_node.app import create_app
from bank_node.node import BankNode
from bank_node.storage.port import StorageError

from .conftest import Api, make_config
from .loopback import Loopback


def test_decision_not_written_is_202_pending_then_presumed_abort(tmp_path, new_cpf, monkeypatch):
    cfg = make_config(timeouts={"prepare_ttl_ms": 200, "apply_wait_ms": 0})
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

        real_decide = alfa.transfers._decide
        monkeypatch.setattr(alfa.transfers, "_decide",
                            lambda rec, effects: (_ for _ in ()).throw(StorageError("disk full")))
        tid = str(uuid.uuid4())
        r = a_api.call("POST", "/api/transfers", {"id": tid, "sources": [{"bank": "alfa", "account": src,
                                                                           "amount": "10.00"}],
                                                  "destination": {"bank": "beta", "account": dest}}, token=token)
        assert r.status_code == 202 and r.get_json()["status"] == "pending", r.get_json()
        assert a_api.call("GET", f"/api/transfers/{tid}", token=token).get_json()["status"] == "pending"
        assert a_api.account(token, src)["available"] == "40.00"  # held while in doubt

        monkeypatch.setattr(alfa.transfers, "_decide", real_decide)
        end = time.monotonic() + 10
        while time.monotonic() < end and \
                a_api.call("GET", f"/api/transfers/{tid}", token=token).get_json()["status"] == "pending":
            alfa.transfers.resolve_once()   # what the resolver thread does every 200 ms
            time.sleep(0.05)
        assert a_api.call("GET", f"/api/transfers/{tid}", token=token).get_json()["status"] == "aborted"
        assert a_api.account(token, src)["available"] == "50.00"
        assert a_api.account(token, src)["balance"] == "50.00"
    finally:
        for n in nodes.values():
            n.stop()
