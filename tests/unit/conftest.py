"""Unit fixtures: a bank node with no broker, on its own temporary folder, and Flask's test client.

Argon2 is made cheap here (the real cost is a config setting), so the API suite stays fast.
"""
from __future__ import annotations

from typing import Any

import pytest

from bank_node.app import create_app
from bank_node.config import ConsortiumConfig
from bank_node.node import BankNode

from .loopback import Loopback

PASSWORD = "senha-muito-boa"


def make_config(**overrides: Any) -> ConsortiumConfig:
    doc: dict[str, Any] = {
        "consortium": "unit",
        "broker_url": "amqp://guest:guest@127.0.0.1:1/%2F",   # never dialled: connect_broker=False
        "security": {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "allow_weak_hashing_for_tests": True},
        "banks": [{"id": "alfa", "name": "Banco Alfa", "port": 18001},
                  {"id": "beta", "name": "Banco Beta", "port": 18002},
                  {"id": "gama", "name": "Banco Gama", "port": 18003}],
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    return ConsortiumConfig.model_validate(doc)


@pytest.fixture
def config():
    return make_config()


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def node(config, data_dir, backend):
    """Bank alfa with no broker, its ledger on the test's ``backend``."""
    n = BankNode(config, "alfa", data_dir, connect_broker=False, storage=str(backend.location(data_dir, "alfa")))
    yield n
    n.stop()


@pytest.fixture
def client(node):
    return create_app(node, testing=True).test_client()


_MISSING = object()


class Api:
    """Thin helper over the test client: JSON in, (status, body) and the raw response out."""

    def __init__(self, client, new_cpf):
        self.client = client
        self.new_cpf = new_cpf

    def call(self, method: str, path: str, body: Any = _MISSING, *, token: str | None = None,
             key: str | None = None, headers: dict | None = None):
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        if key is not None:
            h["Idempotency-Key"] = key
        kw = {} if body is _MISSING else {"json": body}
        return self.client.open(path, method=method, headers=h, **kw)

    def register(self, cpf: str, name: str = "Ana Souza", password: str = PASSWORD, key: str | None = None):
        return self.call("POST", "/api/customers", {"cpf": cpf, "name": name, "password": password}, key=key)

    def login(self, cpf: str, password: str = PASSWORD) -> str:
        r = self.call("POST", "/api/sessions", {"cpf": cpf, "password": password})
        assert r.status_code == 201, r.get_json()
        return r.get_json()["token"]

    def customer(self, name: str = "Ana Souza") -> tuple[str, str]:
        """A newly registered, logged-in customer: (cpf, token)."""
        cpf = self.new_cpf()
        r = self.register(cpf, name)
        assert r.status_code == 201, r.get_json()
        return cpf, self.login(cpf)

    def open_account(self, token: str, holders: list[str], kind: str = "individual", **extra) -> str:
        r = self.call("POST", "/api/accounts", {"kind": kind, "holders": holders, **extra}, token=token)
        assert r.status_code == 201, r.get_json()
        return r.get_json()["number"]

    def accept(self, token: str, number: str) -> dict:
        """A co-holder agrees to an account another holder opened naming them."""
        r = self.call("POST", f"/api/accounts/{number}/accept", token=token)
        assert r.status_code == 200, r.get_json()
        return r.get_json()

    def account(self, token: str, number: str) -> dict:
        r = self.call("GET", f"/api/accounts/{number}", token=token)
        assert r.status_code == 200, r.get_json()
        return r.get_json()

    def deposit(self, token: str, number: str, amount: Any, key: str | None = None):
        return self.call("POST", f"/api/accounts/{number}/deposits", {"amount": amount}, token=token, key=key)

    def withdraw(self, token: str, number: str, amount: Any, key: str | None = None):
        return self.call("POST", f"/api/accounts/{number}/withdrawals", {"amount": amount}, token=token, key=key)

    def statement(self, token: str, number: str) -> list[dict]:
        r = self.call("GET", f"/api/accounts/{number}/statement", token=token)
        assert r.status_code == 200, r.get_json()
        return r.get_json()["entries"]


@pytest.fixture
def api(client, new_cpf):
    return Api(client, new_cpf)


def assert_problem(resp, status: int, code: str | None = None) -> dict:
    """An error is application/problem+json with {type, title, status, detail, code}."""
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True)[:500])
    assert resp.mimetype == "application/problem+json", resp.mimetype
    body = resp.get_json(force=True)
    assert {"type", "title", "status", "detail", "code"} <= set(body), body
    assert body["status"] == status
    assert all(isinstance(body[k], str) and body[k] for k in ("type", "title", "detail", "code")), body
    if code is not None:
        assert body["code"] == code, body
    assert "Traceback" not in resp.get_data(as_text=True)
    return body


class Nodes(dict):
    """bank id -> (node, Api), and ``net``: the loopback broker between them."""
    net: Loopback


@pytest.fixture
def consortium(tmp_path, new_cpf, backend):
    """Factory: nodes for some banks of one config (``make_config`` overrides), wired by a
    loopback broker, each with an Api: ``consortium(("alfa", "beta"))["beta"] == (node, api)``."""
    made = []

    def make(run=("alfa", "beta"), **overrides):
        cfg = make_config(**overrides)
        net = Loopback()
        out = Nodes()
        out.net = net
        for b in run:
            node = BankNode(cfg, b, tmp_path / b, connect_broker=False, storage=str(backend.location(tmp_path / b, b)))
            made.append(node)
            net.attach(node)
            out[b] = (node, Api(create_app(node, testing=True).test_client(), new_cpf))
        return out
    yield make
    for n in made:
        n.stop()
