"""Co-holders who never agreed: an account that names holders other than its opener stays
pending until each of them accepts it at that bank. Until then nothing moves on it (deposits,
withdrawals, transfer legs at this bank and from other banks), and those who have not accepted
show only a masked name. Each test is the attack: Ana names people who never agreed."""
from __future__ import annotations

import sqlite3

import pytest

from bank_node.storage.sqlite import MIGRATIONS, SqliteStore

from .conftest import assert_problem

CNPJ = "11222333000181"


@pytest.fixture
def people(api):
    ana, ana_t = api.customer("Ana Maria Souza")
    bruno, bruno_t = api.customer("Bruno Lima")
    carla, carla_t = api.customer("Carla Dias")
    return {"ana": (ana, ana_t), "bruno": (bruno, bruno_t), "carla": (carla, carla_t)}


def holders(view) -> dict:
    return {h["cpf"]: (h["name"], h["accepted"]) for h in view["holders"]}


def test_a_joint_account_is_pending_and_unusable_until_every_holder_accepts(api, people):
    (ana, ana_t), (bruno, bruno_t), (carla, carla_t) = people["ana"], people["bruno"], people["carla"]
    r = api.call("POST", "/api/accounts", {"kind": "joint", "holders": [ana, bruno, carla]}, token=ana_t)
    assert r.status_code == 201
    acc = r.get_json()
    number = acc["number"]
    assert acc["status"] == "pending"
    assert holders(acc) == {ana: ("Ana Maria Souza", True), bruno: ("Bruno L***", False),
                            carla: ("Carla D***", False)}
    for who, token in (("ana", ana_t), ("bruno", bruno_t)):
        assert_problem(api.deposit(token, number, "10.00"), 409, "account_pending")
        assert_problem(api.withdraw(token, number, "1.00"), 409, "account_pending")
    # every named holder finds it in GET /api/accounts, so they can accept it
    for token in (bruno_t, carla_t):
        listed = api.call("GET", "/api/accounts", token=token).get_json()["accounts"]
        assert [(a["number"], a["status"]) for a in listed] == [(number, "pending")]
    after_bruno = api.accept(bruno_t, number)
    assert after_bruno["status"] == "pending"          # Carla has not accepted yet
    assert holders(api.account(ana_t, number))[bruno] == ("Bruno Lima", True)
    assert holders(api.account(ana_t, number))[carla] == ("Carla D***", False)
    assert_problem(api.deposit(ana_t, number, "10.00"), 409, "account_pending")
    assert api.accept(carla_t, number)["status"] == "open"
    assert api.deposit(ana_t, number, "10.00").status_code == 201
    assert api.withdraw(carla_t, number, "4.00").status_code == 201
    assert api.account(bruno_t, number)["balance"] == "6.00"


def test_the_names_of_those_who_never_accepted_never_leave_the_bank(api, people):
    """Opening an account naming a CPF must not be a way to learn that person's name."""
    (ana, ana_t), (bruno, _) = people["ana"], people["bruno"]
    r = api.call("POST", "/api/accounts", {"kind": "joint", "holders": [ana, bruno]}, token=ana_t, key="k1")
    number = r.get_json()["number"]
    answers = [r, api.call("POST", "/api/accounts", {"kind": "joint", "holders": [ana, bruno]}, token=ana_t,
                           key="k1"),
               api.call("GET", f"/api/accounts/{number}", token=ana_t),
               api.call("GET", "/api/accounts", token=ana_t),
               api.call("GET", f"/api/accounts/{number}/statement", token=ana_t),
               api.deposit(ana_t, number, "1.00"),
               api.call("GET", f"/api/consortium/accounts?cpf={bruno}", token=ana_t)]
    for resp in answers:
        assert "Lima" not in resp.get_data(as_text=True), resp.get_data(as_text=True)[:300]


def test_a_business_accounts_representatives_accept_the_same_way(api, people):
    (ana, ana_t), (bruno, bruno_t) = people["ana"], people["bruno"]
    r = api.call("POST", "/api/accounts", {"kind": "business", "holders": [ana, bruno], "cnpj": CNPJ,
                                           "company_name": "Padaria Pão Quente"}, token=ana_t)
    acc = r.get_json()
    assert (acc["status"], holders(acc)[bruno]) == ("pending", ("Bruno L***", False))
    assert_problem(api.deposit(ana_t, acc["number"], "5.00"), 409, "account_pending")
    assert api.accept(bruno_t, acc["number"])["status"] == "open"
    assert api.deposit(bruno_t, acc["number"], "5.00").status_code == 201


def test_an_individual_account_and_its_opener_need_no_acceptance(api, people):
    ana, ana_t = people["ana"]
    number = api.open_account(ana_t, [ana])
    assert api.account(ana_t, number)["status"] == "open"
    assert api.accept(ana_t, number)["status"] == "open"     # accepting again changes nothing
    assert api.deposit(ana_t, number, "1.00").status_code == 201


def test_only_a_named_holder_can_accept(api, people):
    (ana, ana_t), (bruno, bruno_t), (carla, carla_t) = people["ana"], people["bruno"], people["carla"]
    number = api.open_account(ana_t, [ana, bruno], kind="joint")
    missing = api.call("POST", "/api/accounts/000000000/accept", token=carla_t)
    r = api.call("POST", f"/api/accounts/{number}/accept", token=carla_t)
    assert_problem(r, 404, "not_found")
    assert (r.status_code, r.get_json()) == (missing.status_code, missing.get_json())
    assert api.account(ana_t, number)["status"] == "pending"
    assert_problem(api.call("POST", f"/api/accounts/{number}/accept"), 401)
    assert api.accept(bruno_t, number) == api.accept(bruno_t, number)      # twice: the same answer


def test_the_ui_can_accept_through_the_service(node, people):
    (ana, _), (bruno, _) = people["ana"], people["bruno"]
    _, acc = node.banking.open_account(ana, "joint", [ana, bruno])
    assert node.banking.accept_account(bruno, acc["number"])["status"] == "open"


# ------------------------------------------------------------------------ transfer legs, any bank

@pytest.fixture
def two_banks(consortium):
    return consortium(("alfa", "beta"))


def test_a_transfer_leg_on_a_pending_account_is_voted_no_by_its_bank(two_banks, new_cpf):
    (alfa, a_api), (beta, b_api) = two_banks["alfa"], two_banks["beta"]
    ana, bruno = new_cpf(), new_cpf()
    tokens = {}
    for bank, api in (("alfa", a_api), ("beta", b_api)):
        for cpf, name in ((ana, "Ana Souza"), (bruno, "Bruno Lima")):
            api.register(cpf, name)
            tokens[bank, cpf] = api.login(cpf)
    ana_alfa = a_api.open_account(tokens["alfa", ana], [ana])
    assert a_api.deposit(tokens["alfa", ana], ana_alfa, "100.00").status_code == 201
    joint_beta = b_api.open_account(tokens["beta", ana], [ana, bruno], kind="joint")
    joint_alfa = a_api.open_account(tokens["alfa", ana], [ana, bruno], kind="joint")

    def transfer(sources, dest):
        r = a_api.call("POST", "/api/transfers", {"sources": [{"bank": b, "account": n, "amount": "10.00"}
                                                              for b, n in sources],
                                                  "destination": {"bank": dest[0], "account": dest[1]}},
                       token=tokens["alfa", ana])
        assert r.status_code == 201, r.get_json()
        return r.get_json()
    # into a pending account at another bank: beta votes NO
    out = transfer([("alfa", ana_alfa)], ("beta", joint_beta))
    assert (out["status"], out["reason"]) == ("aborted", "account_pending"), out
    assert {"bank": "beta", "account": joint_beta, "reason": "account_pending"} in out["failures"]
    # into, and out of, a pending account at the coordinating bank itself
    out = transfer([("alfa", ana_alfa)], ("alfa", joint_alfa))
    assert (out["status"], out["reason"]) == ("aborted", "account_pending"), out
    out = transfer([("alfa", joint_alfa)], ("alfa", ana_alfa))
    assert (out["status"], out["reason"]) == ("aborted", "account_pending"), out
    assert a_api.account(tokens["alfa", ana], ana_alfa)["balance"] == "100.00"
    # once Bruno accepts, the same transfer commits
    b_api.accept(tokens["beta", bruno], joint_beta)
    assert transfer([("alfa", ana_alfa)], ("beta", joint_beta))["status"] == "committed"
    alfa.broker.net.settle()   # beta applies the decision a moment after alfa answers
    assert b_api.account(tokens["beta", bruno], joint_beta)["balance"] == "10.00"


# ------------------------------------------------------------------------------------ the ledger

def test_accounts_opened_before_acceptance_existed_stay_open(tmp_path):
    """Migration: the holders of existing accounts agreed when they were opened."""
    path = tmp_path / "old.sqlite3"
    c = sqlite3.connect(path, isolation_level=None)
    for script in MIGRATIONS[:2]:
        c.executescript(script)
    c.execute("PRAGMA user_version = 2")
    c.execute("INSERT INTO accounts (number, kind, created_at) VALUES ('100000001', 'joint', 5.0)")
    c.executemany("INSERT INTO account_holders VALUES (?, ?)", [("100000001", "1"), ("100000001", "2")])
    c.close()
    store = SqliteStore(path)
    try:
        with store.transaction(write=False) as tx:
            assert tx.get_account("100000001")["status"] == "open"
            assert [h["accepted_at"] for h in tx.holder_acceptances("100000001")] == [5.0, 5.0]
        with store.transaction() as tx:
            tx.insert_account("100000002", "joint", ["1", "2"], None, None, 6.0, accepted=["1"])
            assert tx.get_account("100000002")["status"] == "pending"
            assert tx.accept_holder("100000002", "2", 7.0) is True
            assert tx.accept_holder("100000002", "2", 8.0) is False
            assert tx.get_account("100000002")["status"] == "open"
    finally:
        store.close()
