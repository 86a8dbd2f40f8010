"""Idempotency keys are scoped per caller: the same Idempotency-Key used by someone else is
never a conflict of yours (409), and never replays their answer to you.

Registration has no caller yet, so its keys are scoped by the CPF being registered. Every
write route of the API is in WRITES below (a new one fails the first test until it is)."""
from __future__ import annotations

from .conftest import PASSWORD, assert_problem
from .loopback import Loopback

KEY = "same-key-for-everyone"

# (rule, method) -> why it is covered
WRITES = {
    ("/api/customers", "POST"): "scoped by the CPF registered: test_another_persons_sign_up_with_your_key",
    ("/api/sessions", "POST"): "takes no Idempotency-Key: a login opens a new session each time",
    ("/api/sessions/current", "DELETE"): "takes no key: logging out twice is logging out",
    ("/api/accounts", "POST"): "scoped by the caller: test_two_customers_with_one_key_on_every_write",
    ("/api/accounts/<number>/deposits", "POST"): "scoped by the caller: the same test",
    ("/api/accounts/<number>/withdrawals", "POST"): "scoped by the caller: the same test",
    ("/api/accounts/<number>/accept", "POST"): "takes no key: accepting twice is accepting",
    ("/api/transfers", "POST"): "scoped by the initiator: the same test",
}


def test_every_write_route_is_covered(api):
    app = api.client.application
    writes = {(r.rule, m) for r in app.url_map.iter_rules() if r.rule.startswith("/api/")
              for m in r.methods & {"POST", "PUT", "PATCH", "DELETE"}}
    assert writes == set(WRITES), writes ^ set(WRITES)


def test_another_persons_sign_up_with_your_key_is_no_conflict(api, new_cpf):
    ana, bruno = new_cpf(), new_cpf()
    first = api.register(ana, "Ana Souza", key=KEY)
    assert first.status_code == 201
    other = api.register(bruno, "Bruno Lima", key=KEY)
    assert other.status_code == 201, other.get_json()
    assert other.get_json()["cpf"] == bruno                  # his own answer, not Ana's replayed
    again = api.register(ana, "Ana Souza", key=KEY)          # Ana's retry: her first answer
    assert (again.status_code, again.get_json()) == (201, first.get_json())
    assert_problem(api.register(ana, "Ana Maria", key=KEY), 409, "idempotency_key_reused")
    api.login(bruno)


def test_two_customers_with_one_key_on_every_write(api, node):
    Loopback().attach(node)   # transfers run two-phase commit, here over the in-process stand-in
    (ana, ana_t), (bob, bob_t) = api.customer("Ana Souza"), api.customer("Bob Reis")
    accounts = {}
    for cpf, token in ((ana, ana_t), (bob, bob_t)):
        r = api.call("POST", "/api/accounts", {"kind": "individual", "holders": [cpf]}, token=token, key=KEY)
        assert r.status_code == 201, r.get_json()
        accounts[cpf] = r.get_json()["number"]
    assert accounts[ana] != accounts[bob]
    for cpf, token in ((ana, ana_t), (bob, bob_t)):
        assert api.deposit(token, accounts[cpf], "10.00", key=KEY + "-d").status_code == 201
        assert api.withdraw(token, accounts[cpf], "1.00", key=KEY + "-w").status_code == 201
    for (cpf, token), dest in (((ana, ana_t), accounts[bob]), ((bob, bob_t), accounts[ana])):
        r = api.call("POST", "/api/transfers", {"sources": [{"bank": "alfa", "account": accounts[cpf],
                                                             "amount": "2.00"}],
                                                "destination": {"bank": "alfa", "account": dest}},
                     token=token, key=KEY + "-t")
        assert r.status_code == 201 and r.get_json()["status"] == "committed", r.get_json()
    assert api.account(ana_t, accounts[ana])["balance"] == api.account(bob_t, accounts[bob])["balance"] == "9.00"


def test_a_registration_refused_by_the_throttle_is_not_remembered_under_its_key(tmp_path, new_cpf):
    """A 429 says "not now": the same request with the same key after the wait registers."""
    from bank_node.app import create_app
    from bank_node.node import BankNode
    from .conftest import Api, make_config
    node = BankNode(make_config(security={"register_max_per_address": 1}), "alfa", tmp_path / "d",
                    connect_broker=False)
    try:
        api = Api(create_app(node, testing=True).test_client(), new_cpf)
        assert api.register(new_cpf(), key="a").status_code == 201
        cpf = new_cpf()
        assert_problem(api.register(cpf, key="b"), 429, "too_many_attempts")
        node.banking.throttles.storage.reset()                # the wait is over
        assert api.register(cpf, key="b").status_code == 201
        assert node.banking.login(cpf, PASSWORD)["cpf"] == cpf
    finally:
        node.stop()
