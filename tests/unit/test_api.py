"""The REST API of one bank through Flask's test client, with no broker.

Every route that does not need another bank, every error code, authorization per object,
Idempotency-Key, and a batch of hostile bodies that must never produce a 500: on a SQLite ledger
and on a PostgreSQL one.
"""
from __future__ import annotations

import json
import time
import uuid
from datetime import datetime

import pytest

from bank_node.app import create_app
from bank_node.domain.documents import make_cnpj
from bank_node.node import BankNode

from .conftest import PASSWORD, assert_problem, make_config

pytestmark = pytest.mark.both_backends

CNPJ = "11222333000181"


@pytest.fixture
def ana(api):
    cpf, token = api.customer("Ana Maria Souza")
    return {"cpf": cpf, "token": token}


@pytest.fixture
def bob(api):
    cpf, token = api.customer("Roberto Lima")
    return {"cpf": cpf, "token": token}


@pytest.fixture
def ana_acc(api, ana):
    """Ana's individual account with 100.00."""
    number = api.open_account(ana["token"], [ana["cpf"]])
    assert api.deposit(ana["token"], number, "100.00").status_code == 201
    return number


def punctuate(cpf: str) -> str:
    return f"{cpf[:3]}.{cpf[3:6]}.{cpf[6:9]}-{cpf[9:]}"


# ============================================================================ customers

def test_register_returns_201_and_stores_the_cpf_as_digits(api, new_cpf):
    cpf = new_cpf()
    r = api.register(punctuate(cpf), "  Ana   Souza ")
    assert r.status_code == 201
    body = r.get_json()
    assert body == {"bank": "alfa", "cpf": cpf, "name": "Ana Souza"}
    assert "password" not in r.get_data(as_text=True)
    api.login(cpf)  # the plain-digit form logs in


def test_register_twice_is_409_already_exists_in_any_punctuation(api, new_cpf):
    cpf = new_cpf()
    assert api.register(cpf).status_code == 201
    assert_problem(api.register(punctuate(cpf), "Outra Pessoa"), 409, "already_exists")
    api.login(cpf)  # the first password still works: nothing was overwritten


@pytest.mark.parametrize("body, code", [
    ({"cpf": "123.456.789-00", "name": "Ana Souza", "password": PASSWORD}, "invalid_document"),
    ({"cpf": "111.111.111-11", "name": "Ana Souza", "password": PASSWORD}, "invalid_document"),
    ({"cpf": 52998224725, "name": "Ana Souza", "password": PASSWORD}, "invalid_document"),
    ({"cpf": "VALID", "name": "Ana Souza", "password": "curta"}, "weak_password"),
    ({"cpf": "VALID", "name": "Ana Souza", "password": "x" * 257}, "weak_password"),
    ({"cpf": "VALID", "name": "Ana Souza", "password": 12345678}, "invalid_input"),
    ({"cpf": "VALID", "name": "A", "password": PASSWORD}, "invalid_input"),
    ({"cpf": "VALID", "name": "   ", "password": PASSWORD}, "invalid_input"),
    ({"cpf": "VALID", "name": "x" * 121, "password": PASSWORD}, "invalid_input"),
    ({"cpf": "VALID", "name": "Ana\x00Souza", "password": PASSWORD}, "invalid_input"),
    ({"cpf": "VALID", "name": ["Ana"], "password": PASSWORD}, "invalid_input"),
    ({"cpf": "VALID", "name": None, "password": PASSWORD}, "invalid_input"),
    ({"cpf": "VALID", "name": "Ana Souza"}, "missing_field"),
    ({"cpf": "VALID", "name": "Ana Souza", "password": PASSWORD, "is_admin": True}, "unknown_field"),
    ({"cpf": "VALID", "name": "Ana Souza", "password": PASSWORD, "balance": "1000000.00"}, "unknown_field"),
])
def test_register_refusals_are_422_and_create_nothing(api, new_cpf, body, code):
    cpf = new_cpf()
    body = {k: (cpf if v == "VALID" else v) for k, v in body.items()}
    assert_problem(api.call("POST", "/api/customers", body), 422, code)
    assert api.register(cpf).status_code == 201, "nothing was created by the refused request"


# ============================================================================ sessions

def test_login_gives_a_bearer_token_with_an_expiry(api, node):
    cpf, _ = api.customer()
    before = time.time()
    r = api.call("POST", "/api/sessions", {"cpf": punctuate(cpf), "password": PASSWORD})
    assert r.status_code == 201
    body = r.get_json()
    assert isinstance(body["token"], str) and len(body["token"]) >= 32
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00")).timestamp()
    ttl = node.config.security.session_ttl_s
    assert before + ttl - 5 <= expires <= time.time() + ttl + 5
    assert api.call("GET", "/api/accounts", token=body["token"]).status_code == 200


def test_two_logins_give_two_different_tokens(api):
    cpf, t1 = api.customer()
    assert api.login(cpf) != t1


@pytest.mark.parametrize("cpf_kind, password", [("known", "senha-errada!"), ("unknown", PASSWORD),
                                                ("invalid", PASSWORD), ("known", "")])
def test_wrong_credentials_are_one_401_that_does_not_say_which_part_is_wrong(api, new_cpf, cpf_kind, password):
    cpf, _ = api.customer()
    login_cpf = {"known": cpf, "unknown": new_cpf(), "invalid": "12345678900"}[cpf_kind]
    body = assert_problem(api.call("POST", "/api/sessions", {"cpf": login_cpf, "password": password}),
                          401, "invalid_credentials")
    assert body["detail"] == "CPF or password is wrong"


@pytest.mark.parametrize("body, status", [
    ({"cpf": "52998224725"}, 422),
    ({"password": PASSWORD}, 422),
    ({"cpf": "52998224725", "password": PASSWORD, "remember": True}, 422),
    ({"cpf": "52998224725", "password": None}, 422),
    ({"cpf": "52998224725", "password": ["x"]}, 422),
    ({"cpf": None, "password": PASSWORD}, 401),
    ({"cpf": ["52998224725"], "password": PASSWORD}, 401),
])
def test_login_refusals_are_4xx_problems(api, body, status):
    assert_problem(api.call("POST", "/api/sessions", body), status)


def test_logout_revokes_the_token_and_only_that_token(api):
    cpf, t1 = api.customer()
    t2 = api.login(cpf)
    r = api.call("DELETE", "/api/sessions/current", token=t1)
    assert r.status_code == 204
    assert_problem(api.call("GET", "/api/accounts", token=t1), 401, "unauthorized")
    assert_problem(api.call("DELETE", "/api/sessions/current", token=t1), 401, "unauthorized")
    assert api.call("GET", "/api/accounts", token=t2).status_code == 200


def test_an_expired_token_stops_working(api, node, monkeypatch):
    _, token = api.customer()
    assert api.call("GET", "/api/accounts", token=token).status_code == 200
    later = time.time() + node.config.security.session_ttl_s + 1
    monkeypatch.setattr(node.banking, "clock", lambda: later)
    assert_problem(api.call("GET", "/api/accounts", token=token), 401, "unauthorized")


BAD_AUTH = [None, "", "Bearer", "Bearer ", "Bearer not-a-token", "Basic YW5hOnNlbmhh", "Token abc",
            "Bearer " + "x" * 5000, "bearer \u00e9\u00e8"]


def test_requests_without_a_valid_token_are_401(api, ana_acc, subtests):
    for header in BAD_AUTH:
        with subtests.test(header=(header or "")[:20]):
            _all_routes_refuse(api, ana_acc, header)


def _all_routes_refuse(api, ana_acc, header):
    headers = {} if header is None else {"Authorization": header}
    for method, path, body in [("GET", "/api/accounts", None), ("POST", "/api/accounts",
                                                                 {"kind": "individual", "holders": []}),
                               ("GET", f"/api/accounts/{ana_acc}", None),
                               ("GET", f"/api/accounts/{ana_acc}/statement", None),
                               ("POST", f"/api/accounts/{ana_acc}/deposits", {"amount": "1.00"}),
                               ("POST", f"/api/accounts/{ana_acc}/withdrawals", {"amount": "1.00"}),
                               ("DELETE", "/api/sessions/current", None),
                               ("GET", "/api/consortium/accounts", None),
                               ("POST", "/api/transfers", {"sources": [], "destination": {}}),
                               ("GET", f"/api/transfers/{uuid.uuid4()}", None)]:
        kw = {} if body is None else {"json": body}
        r = api.client.open(path, method=method, headers=headers, **kw)
        assert_problem(r, 401, "unauthorized")


# ============================================================================ accounts

def test_open_an_individual_account(api, ana):
    r = api.call("POST", "/api/accounts", {"kind": "individual", "holders": [punctuate(ana["cpf"])]},
                 token=ana["token"])
    assert r.status_code == 201
    body = r.get_json()
    assert {k: body[k] for k in ("bank", "kind", "balance", "available")} == {
        "bank": "alfa", "kind": "individual", "balance": "0.00", "available": "0.00"}
    assert body["number"].isdigit()
    assert [h["cpf"] for h in body["holders"]] == [ana["cpf"]]
    assert api.account(ana["token"], body["number"])["number"] == body["number"]


def test_open_a_joint_account_that_every_holder_can_use(api, ana, bob):
    number = api.open_account(ana["token"], [ana["cpf"], punctuate(bob["cpf"])], kind="joint")
    acc = api.account(bob["token"], number)
    assert acc["kind"] == "joint"
    assert sorted(h["cpf"] for h in acc["holders"]) == sorted([ana["cpf"], bob["cpf"]])
    assert_problem(api.deposit(bob["token"], number, "10.00"), 409, "account_pending")
    assert api.accept(bob["token"], number)["status"] == "open"
    assert api.deposit(bob["token"], number, "10.00").status_code == 201
    assert api.withdraw(ana["token"], number, "4.00").status_code == 201
    assert api.account(bob["token"], number)["balance"] == "6.00"
    assert [a["number"] for a in api.call("GET", "/api/accounts", token=bob["token"]).get_json()["accounts"]] \
        == [number]


def test_open_a_business_account_operated_by_its_representatives(api, ana, bob):
    r = api.call("POST", "/api/accounts", {"kind": "business", "holders": [ana["cpf"], bob["cpf"]],
                                           "cnpj": "11.222.333/0001-81", "company_name": "Padaria Pão Quente"},
                 token=ana["token"])
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert (body["kind"], body["cnpj"], body["company_name"]) == ("business", CNPJ, "Padaria Pão Quente")
    assert (body["status"], body["holders"][1]["accepted"]) == ("pending", False)
    assert_problem(api.deposit(bob["token"], body["number"], "50.00"), 409, "account_pending")
    api.accept(bob["token"], body["number"])       # a representative accepts like any co-holder
    assert api.deposit(bob["token"], body["number"], "50.00").status_code == 201


@pytest.mark.parametrize("make_body, status, code", [
    (lambda a, b, x: {"kind": "individual", "holders": [b]}, 403, "forbidden"),
    (lambda a, b, x: {"kind": "joint", "holders": [b, x]}, 403, "forbidden"),
    (lambda a, b, x: {"kind": "individual", "holders": [a, b]}, 422, "invalid_input"),
    (lambda a, b, x: {"kind": "joint", "holders": [a]}, 422, "invalid_input"),
    (lambda a, b, x: {"kind": "joint", "holders": [a, x]}, 422, "holder_not_registered"),
    (lambda a, b, x: {"kind": "joint", "holders": [a, punctuate(a)]}, 422, "invalid_input"),
    (lambda a, b, x: {"kind": "joint", "holders": [a, "123.456.789-00"]}, 422, "invalid_document"),
    (lambda a, b, x: {"kind": "individual", "holders": [a], "cnpj": CNPJ}, 422, "invalid_input"),
    (lambda a, b, x: {"kind": "individual", "holders": [a], "company_name": "ACME"}, 422, "invalid_input"),
    (lambda a, b, x: {"kind": "business", "holders": [a], "company_name": "ACME"}, 422, "invalid_input"),
    (lambda a, b, x: {"kind": "business", "holders": [a], "cnpj": CNPJ}, 422, "invalid_input"),
    (lambda a, b, x: {"kind": "business", "holders": [a], "cnpj": "11222333000180", "company_name": "ACME"},
     422, "invalid_document"),
    (lambda a, b, x: {"kind": "business", "holders": [a], "cnpj": 11222333000181, "company_name": "ACME"},
     422, "invalid_document"),
    (lambda a, b, x: {"kind": "business", "holders": [a], "cnpj": CNPJ, "company_name": ""}, 422, "invalid_input"),
    (lambda a, b, x: {"kind": "business", "holders": [a], "cnpj": CNPJ, "company_name": 7}, 422, "invalid_input"),
    (lambda a, b, x: {"kind": "savings", "holders": [a]}, 422, "invalid_input"),
    (lambda a, b, x: {"kind": ["individual"], "holders": [a]}, 422, "invalid_input"),
    (lambda a, b, x: {"kind": None, "holders": [a]}, 422, "invalid_input"),
    (lambda a, b, x: {"kind": "individual", "holders": a}, 422, "invalid_input"),
    (lambda a, b, x: {"kind": "individual", "holders": []}, 422, "invalid_input"),
    (lambda a, b, x: {"kind": "individual", "holders": {"cpf": a}}, 422, "invalid_input"),
    (lambda a, b, x: {"kind": "individual", "holders": [[a]]}, 422, "invalid_document"),
    (lambda a, b, x: {"kind": "individual", "holders": [None]}, 422, "invalid_document"),
    (lambda a, b, x: {"kind": "joint", "holders": [a] * 11}, 422, "invalid_input"),
    (lambda a, b, x: {"kind": "individual"}, 422, "missing_field"),
    (lambda a, b, x: {"holders": [a]}, 422, "missing_field"),
    (lambda a, b, x: {"kind": "individual", "holders": [a], "balance": "1000.00"}, 422, "unknown_field"),
    (lambda a, b, x: {"kind": "individual", "holders": [a], "number": "000000001"}, 422, "unknown_field"),
    (lambda a, b, x: {"kind": "individual", "holders": [a], "status": "open"}, 422, "unknown_field"),
])
def test_open_account_refusals(api, ana, bob, new_cpf, make_body, status, code):
    unregistered = new_cpf()
    body = make_body(ana["cpf"], bob["cpf"], unregistered)
    assert_problem(api.call("POST", "/api/accounts", body, token=ana["token"]), status, code)
    for who in (ana, bob):
        assert api.call("GET", "/api/accounts", token=who["token"]).get_json()["accounts"] == [], \
            "a refused request opens nothing"


def test_list_shows_only_the_callers_accounts_with_balances(api, ana, bob, ana_acc):
    bob_acc = api.open_account(bob["token"], [bob["cpf"]])
    second = api.open_account(ana["token"], [ana["cpf"]])
    body = api.call("GET", "/api/accounts", token=ana["token"]).get_json()
    assert body["bank"] == "alfa"
    got = {a["number"]: (a["balance"], a["available"]) for a in body["accounts"]}
    assert got == {ana_acc: ("100.00", "100.00"), second: ("0.00", "0.00")}
    assert bob_acc not in got


def test_account_numbers_are_not_sequential(api, ana):
    numbers = [api.open_account(ana["token"], [ana["cpf"]]) for _ in range(8)]
    assert len(set(numbers)) == 8
    assert all(n.isdigit() and len(n) >= 9 for n in numbers)
    ints = sorted(int(n) for n in numbers)
    assert min(b - a for a, b in zip(ints, ints[1:])) > 1, numbers
    # and counting up from one of them finds nothing
    for n in numbers[:3]:
        assert_problem(api.call("GET", f"/api/accounts/{int(n) + 1:0{len(n)}d}", token=ana["token"]), 404)


def test_available_is_balance_minus_holds_and_withdrawals_respect_it(api, node, ana, ana_acc):
    with node.store.transaction() as tx:
        tx.place_hold("t-hold", ana_acc, 60_00, time.time())
    acc = api.account(ana["token"], ana_acc)
    assert (acc["balance"], acc["available"]) == ("100.00", "40.00")
    body = assert_problem(api.withdraw(ana["token"], ana_acc, "40.01"), 409, "insufficient_funds")
    assert "40.00" in body["detail"]
    assert api.withdraw(ana["token"], ana_acc, "40.00").status_code == 201
    acc = api.account(ana["token"], ana_acc)
    assert (acc["balance"], acc["available"]) == ("60.00", "0.00")


# ============================================================================ deposits and withdrawals

def test_deposit_and_withdrawal_return_201_with_the_new_balance(api, ana, ana_acc):
    r = api.deposit(ana["token"], ana_acc, "0.01")
    assert r.status_code == 201
    assert (r.get_json()["number"], r.get_json()["balance"], r.get_json()["available"]) == (ana_acc, "100.01",
                                                                                         "100.01")
    r = api.withdraw(ana["token"], ana_acc, "99.99")
    assert r.status_code == 201
    assert r.get_json()["balance"] == "0.02"
    assert api.account(ana["token"], ana_acc)["balance"] == "0.02"


def test_withdrawing_more_than_the_balance_is_409_and_changes_nothing(api, ana, ana_acc):
    body = assert_problem(api.withdraw(ana["token"], ana_acc, "100.01"), 409, "insufficient_funds")
    assert "100.00" in body["detail"]
    assert api.account(ana["token"], ana_acc)["balance"] == "100.00"
    assert len(api.statement(ana["token"], ana_acc)) == 1
    assert api.withdraw(ana["token"], ana_acc, "100.00").status_code == 201
    assert api.account(ana["token"], ana_acc)["balance"] == "0.00"


BAD_AMOUNTS = ["-1.00", "-0.01", "0", "0.00", "NaN", "nan", "Infinity", "-Infinity", "1e3", "1E2", "1.001",
               "0.001", "100000.01", "99999999999999", "", " ", "abc", "1,00", "R$ 1,00", "１０.００", "0x10",
               10, 10.5, 0.1, 1e3, True, False, None, [], ["1.00"], {"value": "1.00"}]


@pytest.mark.parametrize("op", ["deposits", "withdrawals"])
def test_bad_amounts_are_422_invalid_amount_and_change_nothing(api, ana, ana_acc, op, subtests):
    for amount in BAD_AMOUNTS:  # subtests: one account for all, each amount reported on its own
        with subtests.test(amount=amount):
            r = api.call("POST", f"/api/accounts/{ana_acc}/{op}", {"amount": amount}, token=ana["token"])
            body = assert_problem(r, 422, "invalid_amount")
            assert "amount" in body["detail"]
    assert api.account(ana["token"], ana_acc)["balance"] == "100.00"
    assert len(api.statement(ana["token"], ana_acc)) == 1


def test_non_finite_json_numbers_are_refused(api, ana, ana_acc):
    for raw in ('{"amount": NaN}', '{"amount": Infinity}', '{"amount": -Infinity}', '{"amount": 1e999}'):
        r = api.client.post(f"/api/accounts/{ana_acc}/deposits", data=raw, content_type="application/json",
                            headers={"Authorization": f"Bearer {ana['token']}"})
        assert r.status_code in (400, 422), raw
        assert_problem(r, r.status_code)
    assert api.account(ana["token"], ana_acc)["balance"] == "100.00"


def test_the_limit_comes_from_the_configuration(tmp_path, new_cpf):
    cfg = make_config(limits={"max_amount": "50.00"})
    node = BankNode(cfg, "alfa", tmp_path / "d", connect_broker=False)
    try:
        from .conftest import Api
        api = Api(create_app(node, testing=True).test_client(), new_cpf)
        cpf, token = api.customer()
        number = api.open_account(token, [cpf])
        assert api.deposit(token, number, "50.00").status_code == 201
        body = assert_problem(api.deposit(token, number, "50.01"), 422, "invalid_amount")
        assert "50.00" in body["detail"]
        assert_problem(api.withdraw(token, number, "50.01"), 422, "invalid_amount")
    finally:
        node.stop()


@pytest.mark.parametrize("body, code", [({}, "missing_field"), ({"amount": "1.00", "note": "x"}, "unknown_field"),
                                        ({"amount": "1.00", "balance": "0.00"}, "unknown_field")])
def test_deposit_body_must_be_exactly_amount(api, ana, ana_acc, body, code):
    assert_problem(api.call("POST", f"/api/accounts/{ana_acc}/deposits", body, token=ana["token"]), 422, code)
    assert api.account(ana["token"], ana_acc)["balance"] == "100.00"


# ============================================================================ statement

def test_statement_is_newest_first_with_signed_amounts_and_balance_after(api, ana, ana_acc):
    api.withdraw(ana["token"], ana_acc, "30.00")
    api.deposit(ana["token"], ana_acc, "5.50")
    r = api.call("GET", f"/api/accounts/{ana_acc}/statement", token=ana["token"])
    assert r.status_code == 200
    body = r.get_json()
    assert body["account"]["balance"] == "75.50"
    entries = body["entries"]
    assert [(e["kind"], e["amount"], e["balance_after"]) for e in entries] == [
        ("deposit", "5.50", "75.50"), ("withdrawal", "-30.00", "70.00"), ("deposit", "100.00", "100.00")]
    assert all("transfer_id" not in e for e in entries)
    times = [datetime.fromisoformat(e["at"].replace("Z", "+00:00")) for e in entries]
    assert times == sorted(times, reverse=True)


def test_statement_limit(api, ana, ana_acc):
    for _ in range(3):
        api.deposit(ana["token"], ana_acc, "1.00")
    r = api.call("GET", f"/api/accounts/{ana_acc}/statement?limit=2", token=ana["token"])
    assert [e["balance_after"] for e in r.get_json()["entries"]] == ["103.00", "102.00"]


BAD_LIMITS = ["0", "1001", "-1", "abc", "1.5", "", "²", "١", "9" * 5000, "10%00", "0001000000"]


@pytest.mark.parametrize("limit", BAD_LIMITS, ids=[repr(x[:12]) for x in BAD_LIMITS])
def test_statement_bad_limit_is_422(api, ana, ana_acc, limit):
    r = api.client.get(f"/api/accounts/{ana_acc}/statement", query_string={"limit": limit},
                       headers={"Authorization": f"Bearer {ana['token']}"})
    assert_problem(r, 422, "invalid_input")


# ============================================================================ health

def test_health(client, node):
    r = client.get("/api/health")
    assert r.status_code == 200
    body = r.get_json()
    assert {k: body[k] for k in ("bank", "database", "broker", "in_doubt", "holds")} == {
        "bank": "alfa", "database": "ok", "broker": "disabled", "in_doubt": 0, "holds": 0}
    assert body["name"] == "Banco Alfa"
    assert body["schema_version"] == node.store.schema_version() >= 1
    assert r.headers["Cache-Control"] == "no-store"


# ============================================================================ authorization

def test_another_customer_can_never_read_or_move_an_account_that_is_not_theirs(api, ana, bob, ana_acc):
    before = api.statement(ana["token"], ana_acc)
    t = bob["token"]
    answers = [
        api.call("GET", f"/api/accounts/{ana_acc}", token=t),
        api.call("GET", f"/api/accounts/{ana_acc}/statement", token=t),
        api.deposit(t, ana_acc, "10.00"),
        api.withdraw(t, ana_acc, "10.00"),
        api.deposit(t, ana_acc, "10.00", key="bob-1"),
        api.withdraw(t, ana_acc, "1.00", key="bob-2"),
    ]
    for r in answers:
        body = assert_problem(r, r.status_code)
        assert r.status_code in (403, 404) and body["code"] in ("forbidden", "not_found")
        assert "100.00" not in r.get_data(as_text=True) and ana["cpf"] not in r.get_data(as_text=True)
    assert api.call("GET", "/api/accounts", token=t).get_json()["accounts"] == []
    assert api.statement(ana["token"], ana_acc) == before
    assert api.account(ana["token"], ana_acc)["balance"] == "100.00"


def test_someone_elses_account_looks_exactly_like_a_missing_one(api, bob, ana_acc):
    missing = "000000000"
    for suffix in ("", "/statement"):
        a = api.call("GET", f"/api/accounts/{ana_acc}{suffix}", token=bob["token"])
        b = api.call("GET", f"/api/accounts/{missing}{suffix}", token=bob["token"])
        assert (a.status_code, a.get_json()) == (b.status_code, b.get_json())


def test_odd_account_numbers_are_404(api, ana, subtests):
    for number in ["abc", "1" * 40, "12%2F34", "%20", "１２３", "-1", "0x1F", "00000000%00"]:
        for method, suffix, body in [("GET", "", None), ("GET", "/statement", None),
                                     ("POST", "/deposits", {"amount": "1.00"}),
                                     ("POST", "/withdrawals", {"amount": "1.00"})]:
            with subtests.test(number=number, route=suffix):
                kw = {} if body is None else {"json": body}
                r = api.client.open(f"/api/accounts/{number}{suffix}", method=method,
                                    headers={"Authorization": f"Bearer {ana['token']}"}, **kw)
                assert_problem(r, 404, "not_found")


def test_a_co_holder_sees_the_joint_account_but_not_the_individual_one(api, ana, bob, ana_acc):
    joint = api.open_account(ana["token"], [ana["cpf"], bob["cpf"]], kind="joint")
    assert api.account(bob["token"], joint)["number"] == joint
    assert_problem(api.call("GET", f"/api/accounts/{ana_acc}", token=bob["token"]), 404)


# ============================================================================ idempotency

def test_same_key_same_body_replays_the_first_answer_with_no_second_effect(api, ana, ana_acc):
    first = api.deposit(ana["token"], ana_acc, "10.00", key="dep-1")
    again = api.deposit(ana["token"], ana_acc, "10.00", key="dep-1")
    assert first.status_code == again.status_code == 201
    assert first.get_json() == again.get_json()
    assert api.account(ana["token"], ana_acc)["balance"] == "110.00"
    assert len(api.statement(ana["token"], ana_acc)) == 2
    w1 = api.withdraw(ana["token"], ana_acc, "5.00", key="wd-1")
    api.deposit(ana["token"], ana_acc, "1.00")
    w2 = api.withdraw(ana["token"], ana_acc, "5.00", key="wd-1")
    assert (w2.status_code, w2.get_json()) == (w1.status_code, w1.get_json()) == (201, w1.get_json())
    assert api.account(ana["token"], ana_acc)["balance"] == "106.00"


def test_same_key_another_body_is_409_and_changes_nothing(api, ana, ana_acc):
    assert api.deposit(ana["token"], ana_acc, "10.00", key="k").status_code == 201
    assert_problem(api.deposit(ana["token"], ana_acc, "11.00", key="k"), 409, "idempotency_key_reused")
    assert_problem(api.withdraw(ana["token"], ana_acc, "10.00", key="k"), 409, "idempotency_key_reused")
    other = api.open_account(ana["token"], [ana["cpf"]])
    assert_problem(api.deposit(ana["token"], other, "10.00", key="k"), 409, "idempotency_key_reused")
    assert api.account(ana["token"], ana_acc)["balance"] == "110.00"
    assert api.account(ana["token"], other)["balance"] == "0.00"


def test_the_same_amount_written_differently_is_the_same_request(api, ana, ana_acc):
    a = api.deposit(ana["token"], ana_acc, "10", key="fmt")
    b = api.deposit(ana["token"], ana_acc, "10.00", key="fmt")
    assert (a.status_code, a.get_json()) == (b.status_code, b.get_json())
    assert api.account(ana["token"], ana_acc)["balance"] == "110.00"


def test_keys_belong_to_their_customer(api, ana, bob, ana_acc):
    bob_acc = api.open_account(bob["token"], [bob["cpf"]])
    assert api.deposit(ana["token"], ana_acc, "10.00", key="shared").status_code == 201
    r = api.deposit(bob["token"], bob_acc, "10.00", key="shared")
    assert r.status_code == 201 and r.get_json()["number"] == bob_acc
    assert api.account(bob["token"], bob_acc)["balance"] == "10.00"


def test_a_refusal_is_the_first_answer_too(api, ana, ana_acc):
    """The same key and body give the first answer again: a refused withdrawal stays refused
    even after money arrives, so a late retry can never move money the customer was told it
    would not move."""
    first = api.withdraw(ana["token"], ana_acc, "150.00", key="big")
    assert_problem(first, 409, "insufficient_funds")
    assert api.deposit(ana["token"], ana_acc, "100.00").status_code == 201
    again = api.withdraw(ana["token"], ana_acc, "150.00", key="big")
    assert (again.status_code, again.get_json()) == (first.status_code, first.get_json())
    assert api.account(ana["token"], ana_acc)["balance"] == "200.00"
    assert api.withdraw(ana["token"], ana_acc, "150.00", key="big-2").status_code == 201


def test_register_and_open_account_replay_too(api, ana, new_cpf):
    cpf = new_cpf()
    r1 = api.register(cpf, key="reg-1")
    r2 = api.register(cpf, key="reg-1")
    assert (r1.status_code, r1.get_json()) == (r2.status_code, r2.get_json()) == (201, r1.get_json())
    assert_problem(api.register(cpf, "Outro Nome", key="reg-1"), 409, "idempotency_key_reused")
    body = {"kind": "individual", "holders": [ana["cpf"]]}
    a1 = api.call("POST", "/api/accounts", body, token=ana["token"], key="open-1")
    a2 = api.call("POST", "/api/accounts", body, token=ana["token"], key="open-1")
    assert a1.status_code == a2.status_code == 201
    assert a1.get_json()["number"] == a2.get_json()["number"]
    assert len(api.call("GET", "/api/accounts", token=ana["token"]).get_json()["accounts"]) == 1


@pytest.mark.parametrize("key", ["", "x" * 201, "tab\there", "\u00a0"])
def test_bad_idempotency_keys_are_422(api, ana, ana_acc, key):
    r = api.client.post(f"/api/accounts/{ana_acc}/deposits", json={"amount": "1.00"},
                        headers={"Authorization": f"Bearer {ana['token']}", "Idempotency-Key": key})
    assert_problem(r, 422, "invalid_input")
    assert api.account(ana["token"], ana_acc)["balance"] == "100.00"


def test_keys_survive_a_restart_of_the_node(config, data_dir, node, api, ana, ana_acc, new_cpf):
    from .conftest import Api
    first = api.deposit(ana["token"], ana_acc, "10.00", key="durable")
    assert first.status_code == 201
    node.stop()
    reborn = BankNode(config, "alfa", data_dir, connect_broker=False, storage=str(node.ledger))
    try:
        api2 = Api(create_app(reborn, testing=True).test_client(), new_cpf)
        again = api2.deposit(ana["token"], ana_acc, "10.00", key="durable")  # the session survived too
        assert (again.status_code, again.get_json()) == (201, first.get_json())
        assert_problem(api2.deposit(ana["token"], ana_acc, "20.00", key="durable"), 409, "idempotency_key_reused")
        assert api2.account(ana["token"], ana_acc)["balance"] == "110.00"
        assert len(api2.statement(ana["token"], ana_acc)) == 2
    finally:
        reborn.stop()


# ============================================================================ errors and hostile input

def test_unknown_route_and_wrong_method_are_problems(client):
    assert_problem(client.get("/api/nope"), 404, "not_found")
    r = client.put("/api/health")
    assert_problem(r, 405, "method_not_allowed")
    assert "GET" in r.headers.get("Allow", "")


def test_malformed_json_is_400(api, ana, ana_acc):
    for raw in ['{"amount": "1.00"', "{'amount': '1.00'}", "amount=1.00", "", "\xff\xfe", '{"amount": "1.00"} x']:
        r = api.client.post(f"/api/accounts/{ana_acc}/deposits", data=raw.encode("latin-1"),
                            content_type="application/json", headers={"Authorization": f"Bearer {ana['token']}"})
        assert_problem(r, 400, "malformed_json")
    assert api.account(ana["token"], ana_acc)["balance"] == "100.00"


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/xml", "text/json",
                                          "application/problem+json"])
def test_wrong_content_type_is_415(api, new_cpf, content_type):
    body = json.dumps({"cpf": new_cpf(), "name": "Ana Souza", "password": PASSWORD})
    kw = {"content_type": content_type} if content_type else {}
    r = api.client.post("/api/customers", data=body, **kw)
    assert_problem(r, 415, "unsupported_media_type")


def test_json_with_a_charset_is_fine(api, new_cpf):
    body = json.dumps({"cpf": new_cpf(), "name": "Ana Souza", "password": PASSWORD})
    assert api.client.post("/api/customers", data=body, content_type="application/json; charset=utf-8") \
        .status_code == 201


@pytest.mark.parametrize("raw", ["[]", '"text"', "42", "null", "true", '[{"amount": "1.00"}]'])
def test_a_body_that_is_not_an_object_is_refused(api, ana, ana_acc, raw):
    r = api.client.post(f"/api/accounts/{ana_acc}/deposits", data=raw, content_type="application/json",
                        headers={"Authorization": f"Bearer {ana['token']}"})
    assert_problem(r, r.status_code)
    assert r.status_code in (400, 422)


def test_oversized_body_is_413_and_writes_nothing(api, node, new_cpf):
    cpf = new_cpf()
    big = {"cpf": cpf, "name": "Ana Souza", "password": PASSWORD, "pad": "x" * node.config.limits.max_body_bytes}
    assert_problem(api.call("POST", "/api/customers", big), 413, "payload_too_large")
    assert api.register(cpf).status_code == 201


def test_deeply_nested_json_is_refused_not_a_crash(api, ana, ana_acc):
    for raw in ["[" * 20000 + "]" * 20000, '{"amount": ' + "[" * 30000 + "]" * 30000 + "}",
                '{"a":' * 5000 + "1" + "}" * 5000]:
        r = api.client.post(f"/api/accounts/{ana_acc}/deposits", data=raw, content_type="application/json",
                            headers={"Authorization": f"Bearer {ana['token']}"})
        assert 400 <= r.status_code < 500
        assert_problem(r, r.status_code)


def test_unencodable_passwords_are_refused_not_a_crash(api, new_cpf):
    cpf = new_cpf()
    raw = '{"cpf": "%s", "name": "Ana Souza", "password": "senha-\\ud800-boa"}' % cpf
    r = api.client.post("/api/customers", data=raw, content_type="application/json")
    assert_problem(r, 422)
    assert api.register(cpf).status_code == 201
    raw = '{"cpf": "%s", "password": "\\udfff\\udfff\\udfff\\udfff"}' % cpf
    assert_problem(api.client.post("/api/sessions", data=raw, content_type="application/json"), 401,
                   "invalid_credentials")


HOSTILE_VALUES = [None, True, 0, -1, 1.5, 1e308, 10 ** 40, "", " ", "0", "-1", "NaN", "\x00", "\ud800", "🦀" * 50,
                  "' OR 1=1 --", "<script>alert(1)</script>", "../../etc/passwd", "%s%n", "x" * 5000,
                  [], [None], [[]], {}, {"$gt": ""}, {"__proto__": {}}]


def _hostile_bodies(base: dict) -> list:
    out: list = [{}, [], None, "x", 0, [base], {**base, "extra": 1}]
    for field in base:
        for v in HOSTILE_VALUES:
            out.append({**base, field: v})
    return out


def test_no_hostile_body_gives_a_500_or_changes_anything(api, node, ana, bob, ana_acc):
    t = ana["token"]
    routes = [
        ("/api/customers", {"cpf": "52998224725", "name": "Ana", "password": PASSWORD}, None),
        ("/api/sessions", {"cpf": ana["cpf"], "password": PASSWORD}, None),
        ("/api/accounts", {"kind": "joint", "holders": [ana["cpf"], bob["cpf"]], "cnpj": CNPJ,
                           "company_name": "ACME"}, t),
        (f"/api/accounts/{ana_acc}/deposits", {"amount": "1.00"}, t),
        (f"/api/accounts/{ana_acc}/withdrawals", {"amount": "1.00"}, t),
        ("/api/transfers", {"id": str(uuid.uuid4()), "sources": [{"bank": "alfa", "account": ana_acc,
                                                                    "amount": "1.00"}],
                            "destination": {"bank": "beta", "account": "123456789"}}, t),
    ]
    seen_statuses = set()
    for path, base, token in routes:
        for body in _hostile_bodies(base):
            raw = json.dumps(body)
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            r = api.client.post(path, data=raw, content_type="application/json", headers=headers)
            seen_statuses.add(r.status_code)
            assert r.status_code < 500, (path, raw[:200], r.get_data(as_text=True)[:300])
            if r.status_code >= 400:
                assert_problem(r, r.status_code)
    assert seen_statuses & {400, 413, 415, 422}
    # nothing moved: the balance is untouched and no hold was placed by any of it
    acc = api.account(t, ana_acc)
    assert (acc["balance"], acc["available"]) == ("100.00", "100.00")
    assert len(api.statement(t, ana_acc)) == 1


def test_problem_details_never_leak_internals(api, ana, ana_acc):
    r = api.client.post(f"/api/accounts/{ana_acc}/deposits", data="{", content_type="application/json",
                        headers={"Authorization": f"Bearer {ana['token']}"})
    text = r.get_data(as_text=True)
    for leak in ("Traceback", "sqlite", "File \"", "werkzeug"):
        assert leak not in text


# ============================================================================ consortium lookup, no broker

def test_consortium_lookup_without_a_broker_answers_for_this_bank_and_names_the_others(api, ana, bob, ana_acc):
    own = api.call("GET", "/api/consortium/accounts", token=ana["token"]).get_json()
    assert own["full"] is True
    assert [(a["bank"], a["number"], a["balance"]) for a in own["accounts"]] == [("alfa", ana_acc, "100.00")]
    assert own["unreachable_banks"] == ["beta", "gama"]
    other = api.call("GET", f"/api/consortium/accounts?cpf={punctuate(ana['cpf'])}", token=bob["token"])
    body = other.get_json()
    assert body["full"] is False
    [acc] = body["accounts"]
    assert (acc["bank"], acc["number"], acc["kind"]) == ("alfa", ana_acc, "individual")
    assert acc["holder"] == "Ana M*** S***"
    assert "balance" not in acc and "available" not in acc
    assert "Souza" not in other.get_data(as_text=True) and "100.00" not in other.get_data(as_text=True)
    assert_problem(api.call("GET", "/api/consortium/accounts?cpf=12345678900", token=bob["token"]), 422,
                   "invalid_document")


# ============================================================================ transfers, no broker

def _transfer(api, token, source, dest_bank="beta", dest="123456789", amount="10.00", tid=None):
    body = {"id": tid or str(uuid.uuid4()), "sources": [{"bank": "alfa", "account": source, "amount": amount}],
            "destination": {"bank": dest_bank, "account": dest}}
    return api.call("POST", "/api/transfers", body, token=token), body["id"]


def test_transfer_without_a_broker_is_a_clean_abort_and_leaves_no_hold(api, node, ana, bob, ana_acc):
    r, tid = _transfer(api, ana["token"], ana_acc)
    if r.status_code == 503:
        assert_problem(r, 503, "bank_unreachable")
    else:
        assert r.status_code == 201, r.get_json()
        body = r.get_json()
        assert (body["id"], body["status"], body["reason"]) == (tid, "aborted", "bank_unreachable")
        got = api.call("GET", f"/api/transfers/{tid}", token=ana["token"])
        assert (got.status_code, got.get_json()["status"]) == (200, "aborted")
        assert_problem(api.call("GET", f"/api/transfers/{tid}", token=bob["token"]), 404, "not_found")
    acc = api.account(ana["token"], ana_acc)
    assert (acc["balance"], acc["available"]) == ("100.00", "100.00")
    assert client_health(api)["holds"] == 0
    with node.store.transaction(write=False) as tx:
        assert tx.counts()["holds"] == 0 and tx.counts()["prepared_legs"] == 0


def test_transfer_between_accounts_of_this_bank_needs_no_broker(api, node, ana, ana_acc):
    """Every leg is here: prepared, decided and applied in one local transaction, no broker."""
    other = api.open_account(ana["token"], [ana["cpf"]])
    r, tid = _transfer(api, ana["token"], ana_acc, dest_bank="alfa", dest=other)
    assert (r.status_code, r.get_json()["status"]) == (201, "committed"), r.get_json()
    assert api.account(ana["token"], ana_acc)["balance"] == "90.00"
    assert api.account(ana["token"], other)["balance"] == "10.00"
    with node.store.transaction(write=False) as tx:
        assert tx.counts()["holds"] == 0 and tx.counts()["prepared_legs"] == 0
        assert tx.positions() == {}   # no other bank owes anything for a transfer within one bank


def test_transfer_replay_with_the_same_id_gives_the_same_answer(api, ana, ana_acc):
    r1, tid = _transfer(api, ana["token"], ana_acc)
    r2, _ = _transfer(api, ana["token"], ana_acc, tid=tid)
    assert (r1.status_code, r1.get_json()) == (r2.status_code, r2.get_json())
    r3, _ = _transfer(api, ana["token"], ana_acc, amount="11.00", tid=tid)
    assert_problem(r3, 409, "idempotency_key_reused")


@pytest.mark.parametrize("mutate, status, code", [
    (lambda b: b["sources"][0].update(amount="-1.00"), 422, "invalid_amount"),
    (lambda b: b["sources"][0].update(amount=10), 422, "invalid_amount"),
    (lambda b: b["sources"][0].update(bank="zeta"), 404, "unknown_bank"),
    (lambda b: b["destination"].update(bank="zeta"), 404, "unknown_bank"),
    (lambda b: b["destination"].update(account="../x"), 422, "invalid_input"),
    (lambda b: b.update(sources=[]), 422, "invalid_input"),
    (lambda b: b.update(sources=b["sources"] * 2), 422, "invalid_input"),
    (lambda b: b.update(id="not-a-uuid"), 422, "invalid_input"),
    (lambda b: b.update(status="committed"), 422, "unknown_field"),
    (lambda b: b["sources"][0].update(owner="x"), 422, "invalid_input"),
])
def test_transfer_validation(api, ana, ana_acc, mutate, status, code):
    body = {"id": str(uuid.uuid4()), "sources": [{"bank": "alfa", "account": ana_acc, "amount": "1.00"}],
            "destination": {"bank": "beta", "account": "123456789"}}
    mutate(body)
    assert_problem(api.call("POST", "/api/transfers", body, token=ana["token"]), status, code)


def test_unknown_transfer_is_404(api, ana):
    assert_problem(api.call("GET", f"/api/transfers/{uuid.uuid4()}", token=ana["token"]), 404, "not_found")


def client_health(api) -> dict:
    r = api.client.get("/api/health")
    assert r.status_code == 200
    return r.get_json()


def test_transfer_without_a_broker_answers_at_once(tmp_path, new_cpf):
    from .conftest import Api
    node = BankNode(make_config(), "alfa", tmp_path / "d", connect_broker=False)
    try:
        api = Api(create_app(node, testing=True).test_client(), new_cpf)
        cpf, token = api.customer()
        number = api.open_account(token, [cpf])
        api.deposit(token, number, "10.00")
        started = time.monotonic()
        r, _ = _transfer(api, token, number, amount="1.00")
        assert r.status_code in (201, 503)
        assert time.monotonic() - started < 1.0
    finally:
        node.stop()


def test_make_cnpj_used_in_business_accounts_is_accepted(api, ana):
    number = api.open_account(ana["token"], [ana["cpf"]], kind="business", cnpj=make_cnpj("987654320001"),
                              company_name="Oficina Dois Irmãos")
    assert api.account(ana["token"], number)["cnpj"] == make_cnpj("987654320001")


# ============================================================================ the remaining error codes

def test_a_closed_account_refuses_deposits_and_withdrawals(api, node, ana, ana_acc):
    with node.store.transaction() as tx:  # no route closes accounts yet: close it in the ledger
        tx.c.execute("UPDATE accounts SET status = 'closed' WHERE number = ?", (ana_acc,))
    assert_problem(api.deposit(ana["token"], ana_acc, "1.00"), 409, "account_closed")
    assert_problem(api.withdraw(ana["token"], ana_acc, "1.00"), 409, "account_closed")
    assert api.account(ana["token"], ana_acc)["balance"] == "100.00"


def test_a_storage_failure_is_a_503_problem_and_says_nothing_changed(api, node, ana, ana_acc, monkeypatch):
    from bank_node.storage.port import StorageError

    def broken(*a, **kw):
        raise StorageError("disk I/O error")
    monkeypatch.setattr(node.store, "transaction", broken)
    body = assert_problem(api.call("GET", "/api/accounts", token=ana["token"]), 503, "storage_unavailable")
    assert "disk" not in body["detail"] and "nothing was changed" in body["detail"]


def test_an_unexpected_error_is_a_500_problem_without_internals(api, node, ana, monkeypatch):
    def boom(*a, **kw):
        raise RuntimeError("secret internal state /etc/passwd")
    monkeypatch.setattr(node.banking, "accounts_of", boom)
    r = api.call("GET", "/api/accounts", token=ana["token"])
    assert_problem(r, 500, "internal_error")
    assert "secret" not in r.get_data(as_text=True)


def test_a_broker_failure_is_a_503_bank_unreachable_problem(api, node, ana, monkeypatch):
    from broker import BrokerError

    def down(*a, **kw):
        raise BrokerError("connection refused")
    monkeypatch.setattr(node.transfers, "lookup", down)
    assert_problem(api.call("GET", "/api/consortium/accounts", token=ana["token"]), 503, "bank_unreachable")


def test_transfer_same_idempotency_key_with_another_body_is_409(api, ana, ana_acc):
    body = {"id": str(uuid.uuid4()), "sources": [{"bank": "alfa", "account": ana_acc, "amount": "2.00"}],
            "destination": {"bank": "beta", "account": "123456789"}}
    a = api.call("POST", "/api/transfers", body, token=ana["token"], key="t-key")
    b = api.call("POST", "/api/transfers", {**body, "id": str(uuid.uuid4())}, token=ana["token"], key="t-key")
    assert a.status_code in (201, 503)
    assert_problem(b, 409, "idempotency_key_reused")


def test_answers_are_written_as_flasks_own_json_would_be():
    """Answers are written by orjson (bank_node.app.FastJSON): the same JSON as Flask's own
    writer, its conversions included, keys in their order, and pretty-printed in debug mode."""
    from decimal import Decimal
    from datetime import timezone

    from flask import Flask
    from flask.json.provider import DefaultJSONProvider

    from bank_node.app import FastJSON

    value = {"name": "João da Conceição", "when": datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc),
             "amount": Decimal("1234.50"), "id": uuid.UUID(int=7), "big": 2 ** 70, "z": [1, None, True], "a": 1.5}
    app = Flask("answers")
    app.json = FastJSON(app)
    app.json.sort_keys = False
    flasks = DefaultJSONProvider(app)
    flasks.sort_keys = False
    with app.app_context():
        ours = app.json.response(value).get_data(as_text=True)
        theirs = flasks.response(value).get_data(as_text=True)
        assert json.loads(ours) == json.loads(theirs)
        assert list(json.loads(ours)) == list(value), "keys keep their order"
        assert ours.endswith("\n")
        without_big = {k: v for k, v in value.items() if k != "big"}
        ours = app.json.response(without_big).get_data(as_text=True)
        assert json.loads(ours) == json.loads(flasks.response(without_big).get_data(as_text=True))
        assert "João" in ours, "written by orjson (UTF-8), not by the standard library (escapes)"
        app.debug = True
        assert app.json.response(value).get_data(as_text=True) == flasks.response(value).get_data(as_text=True)
