"""Amount limits per operation and per day per account, configurable per bank.

Deposits and withdrawals are checked by the bank's service; transfer debits by the bank that
holds the debited account, while it prepares its leg (participant.check_legs), with the holds
of transfers still pending counted as already spent.
"""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

import pytest

from bank_node.app import create_app
from bank_node.domain import participant as PT
from bank_node.node import BankNode

from .conftest import Api, assert_problem, make_config
from .loopback import Loopback

DAY = 86400


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso).replace(tzinfo=timezone.utc).timestamp()


@pytest.fixture
def consortium(tmp_path, new_cpf):
    """Factory: nodes for some banks of one config, wired by a loopback broker, each with an Api."""
    made = []

    def make(run=("alfa", "beta"), **overrides):
        cfg = make_config(**overrides)
        net = Loopback()
        out = {}
        for b in run:
            node = BankNode(cfg, b, tmp_path / b, connect_broker=False)
            made.append(node)
            net.attach(node)
            out[b] = (node, Api(create_app(node, testing=True).test_client(), new_cpf))
        return out
    yield make
    for n in made:
        n.stop()


def limits_doc(max_amount="200.00", daily="300.00", **bank_limits):
    banks = [{"id": b, "name": f"Banco {b}", "port": 18001 + i, **({"limits": bank_limits[b]} if b in bank_limits
                                                                   else {})}
             for i, b in enumerate(("alfa", "beta", "gama"))]
    return {"limits": {"max_amount": max_amount, "daily_max_amount": daily}, "banks": banks}


def customer_with_money(api, node, amount="0.00"):
    cpf, token = api.customer()
    number = api.open_account(token, [cpf])
    if amount != "0.00":
        with node.store.transaction() as tx:  # seed the ledger: a deposit would count toward today
            tx.append_entry(number, "deposit", int(amount.replace(".", "")), time.time() - 2 * DAY)
    return cpf, token, number


# ============================================================================ deposits and withdrawals

def test_deposits_over_the_days_allowance_are_409_with_what_is_left(consortium):
    node, api = consortium(**limits_doc())["alfa"]
    _, token, number = customer_with_money(api, node)
    assert api.deposit(token, number, "200.00").status_code == 201
    assert api.deposit(token, number, "99.99").status_code == 201
    body = assert_problem(api.deposit(token, number, "0.02"), 409, "daily_limit_exceeded")
    assert "300.00 a day" in body["detail"] and "299.99 already used" in body["detail"] \
        and "0.01 left" in body["detail"]
    assert (body["limit"], body["remaining"]) == ("300.00", "0.01")
    assert api.deposit(token, number, "0.01").status_code == 201
    assert api.account(token, number)["balance"] == "300.00"


def test_withdrawals_and_pending_holds_share_the_debit_allowance(consortium):
    node, api = consortium(**limits_doc())["alfa"]
    _, token, number = customer_with_money(api, node, "1000.00")
    assert api.withdraw(token, number, "150.00").status_code == 201
    with node.store.transaction() as tx:  # a pending transfer's hold counts as spent today
        tx.place_hold("pending-1", number, 100_00, time.time())
    body = assert_problem(api.withdraw(token, number, "50.01"), 409, "daily_limit_exceeded")
    assert "250.00 already used" in body["detail"] and "50.00 left" in body["detail"]
    assert api.withdraw(token, number, "50.00").status_code == 201
    # deposits have their own allowance: spending does not use it up
    assert api.deposit(token, number, "200.00").status_code == 201


def test_a_refused_daily_limit_is_remembered_under_its_idempotency_key(consortium):
    node, api = consortium(**limits_doc())["alfa"]
    _, token, number = customer_with_money(api, node, "1000.00")
    assert api.withdraw(token, number, "200.00").status_code == 201
    first = api.withdraw(token, number, "150.00", key="w-1")
    assert_problem(first, 409, "daily_limit_exceeded")
    again = api.withdraw(token, number, "150.00", key="w-1")
    assert (again.status_code, again.get_json()) == (first.status_code, first.get_json())


def test_the_day_starts_at_midnight_brasilia_time_by_default(consortium, monkeypatch):
    node, api = consortium(**limits_doc())["alfa"]
    clock = Clock(ts("2025-03-10T02:30:00"))          # 23:30 on the 9th in Brasília
    monkeypatch.setattr(node.banking, "clock", clock)
    assert node.banking.day_start(clock.t) == ts("2025-03-09T03:00:00")
    _, token, number = customer_with_money(api, node)
    assert api.deposit(token, number, "200.00").status_code == 201
    assert api.deposit(token, number, "100.00").status_code == 201
    assert_problem(api.deposit(token, number, "1.00"), 409, "daily_limit_exceeded")
    clock.t = ts("2025-03-10T03:00:00")                # midnight in Brasília: a new day
    assert api.deposit(token, number, "200.00").status_code == 201


def test_a_bank_can_have_its_own_limits(consortium):
    doc = limits_doc(alfa={"max_amount": "50.00", "daily_max_amount": "80.00"}, beta={"daily_max_amount": "1000.00"})
    nodes = consortium(run=("alfa", "beta", "gama"), **doc)
    alfa, beta, gama = (nodes[b] for b in ("alfa", "beta", "gama"))
    assert (alfa[0].banking.limit_cents, alfa[0].banking.daily_limit_cents) == (50_00, 80_00)
    assert (beta[0].banking.limit_cents, beta[0].banking.daily_limit_cents) == (200_00, 1000_00)
    assert (gama[0].banking.limit_cents, gama[0].banking.daily_limit_cents) == (200_00, 300_00)
    _, token, number = customer_with_money(alfa[1], alfa[0])
    body = assert_problem(alfa[1].deposit(token, number, "50.01"), 422, "invalid_amount")
    assert "50.00" in body["detail"]
    assert alfa[1].deposit(token, number, "50.00").status_code == 201
    assert_problem(alfa[1].deposit(token, number, "30.01"), 409, "daily_limit_exceeded")
    _, token, number = customer_with_money(beta[1], beta[0])
    for _ in range(5):
        assert beta[1].deposit(token, number, "200.00").status_code == 201


def test_a_bank_limit_below_its_operation_limit_is_a_config_error():
    with pytest.raises(ValueError, match="daily_max_amount"):
        make_config(**limits_doc(alfa={"daily_max_amount": "10.00"}))


# ============================================================================ transfer debits (PREPARE)

def transfer(api, token, sources, dest):
    body = {"id": str(uuid.uuid4()),
            "sources": [{"bank": b, "account": a, "amount": amt} for b, a, amt in sources],
            "destination": {"bank": dest[0], "account": dest[1]}}
    r = api.call("POST", "/api/transfers", body, token=token)
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def test_transfer_debits_count_toward_the_daily_limit_of_the_bank_holding_the_account(consortium):
    nodes = consortium(**limits_doc())
    (alfa, alfa_api), (beta, beta_api) = nodes["alfa"], nodes["beta"]
    cpf, token, src = customer_with_money(alfa_api, alfa, "1000.00")
    _, btoken, dest = customer_with_money(beta_api, beta)
    assert transfer(alfa_api, token, [("alfa", src, "200.00")], ("beta", dest))["status"] == "committed"
    assert alfa_api.withdraw(token, src, "50.00").status_code == 201
    out = transfer(alfa_api, token, [("alfa", src, "50.01")], ("beta", dest))
    assert (out["status"], out["reason"]) == ("aborted", "daily_limit_exceeded")
    assert out["legs"][0]["reason"] == "daily_limit_exceeded"
    assert transfer(alfa_api, token, [("alfa", src, "50.00")], ("beta", dest))["status"] == "committed"
    assert alfa_api.account(token, src)["balance"] == "700.00"
    assert beta_api.account(btoken, dest)["balance"] == "250.00"   # credits are not limited


def test_the_holding_bank_enforces_its_own_limits_whoever_coordinates(consortium):
    """beta coordinates (its limits are the consortium's); alfa holds the account and says no."""
    nodes = consortium(**limits_doc(alfa={"max_amount": "50.00", "daily_max_amount": "80.00"}))
    (alfa, alfa_api), (beta, beta_api) = nodes["alfa"], nodes["beta"]
    cpf, token, src = customer_with_money(alfa_api, alfa, "1000.00")
    beta_api.register(cpf)
    btoken = beta_api.login(cpf)
    dest = beta_api.open_account(btoken, [cpf])
    out = transfer(beta_api, btoken, [("alfa", src, "60.00")], ("beta", dest))
    assert (out["status"], out["reason"]) == ("aborted", "amount_over_limit")
    assert transfer(beta_api, btoken, [("alfa", src, "50.00")], ("beta", dest))["status"] == "committed"
    out = transfer(beta_api, btoken, [("alfa", src, "30.01")], ("beta", dest))
    assert (out["status"], out["reason"]) == ("aborted", "daily_limit_exceeded")
    assert alfa_api.account(token, src)["balance"] == "950.00"
    with alfa.store.transaction(write=False) as tx:
        assert tx.counts()["holds"] == 0


# ============================================================================ the pure check

def view(available=1000, debited_today=0, holders=("ana",)):
    return PT.AccountView("1", "open", frozenset(holders), available, debited_today)


@pytest.mark.parametrize("legs, debited, max_amount, expected", [
    ([("1", 100, "debit")], 0, None, []),
    ([("1", 300, "debit")], 0, None, []),                                  # exactly the daily limit
    ([("1", 301, "debit")], 0, None, [("1", "daily_limit_exceeded")]),
    ([("1", 100, "debit")], 200, None, []),
    ([("1", 101, "debit")], 200, None, [("1", "daily_limit_exceeded")]),  # today's debits and holds count
    ([("1", 5000, "credit")], 300, None, []),                             # credits are not limited
    ([("1", 200, "debit")], 0, 200, []),                                  # exactly the operation limit
    ([("1", 201, "debit")], 0, 200, [("1", "amount_over_limit")]),
    ([("1", 2000, "debit")], 0, 200, [("1", "insufficient_funds")]),     # funds are checked first
])
def test_check_legs_limits(legs, debited, max_amount, expected):
    accounts = {"1": view(debited_today=debited)}
    got = PT.check_legs([PT.Leg(a, amt, d) for a, amt, d in legs], accounts, "ana", max_amount=max_amount,
                        daily_limit=300)
    assert got == expected


def test_check_legs_without_limits_keeps_its_old_meaning():
    assert PT.check_legs([PT.Leg("1", 10**9, "debit")], {"1": view(available=10**9, debited_today=10**9)}, "ana") == []


def test_on_prepare_votes_no_with_the_limit_reason_and_places_no_hold():
    d = PT.on_prepare(None, [], [PT.Leg("1", 150, "debit")], "ana", 10_000, 0, {"1": view(debited_today=200)},
                      max_amount=200, daily_limit=300)
    assert (d.vote.yes, d.vote.reasons, d.new_state, d.holds) == (False, (("1", "daily_limit_exceeded"),), "aborted", ())


# ============================================================================ found by the property tests

@pytest.mark.parametrize("legs", [
    [("1", 10, "debit"), ("1", 10, "debit")],
    [("1", 10, "credit"), ("1", 10, "credit")],
])
def test_a_prepare_naming_an_account_twice_in_one_direction_is_no_not_a_crash(legs):
    """Two debits of one account used to be held twice (a UNIQUE violation in the handler);
    two credits would have been prepared and then failed at every COMMIT."""
    d = PT.on_prepare(None, [], [PT.Leg(a, amt, dr) for a, amt, dr in legs], "ana", 10_000, 0, {"1": view()})
    assert (d.vote.yes, d.vote.reasons, d.new_state, d.holds) == (False, (("1", "duplicate_leg"),), "aborted", ())


def test_a_debit_and_a_credit_of_one_account_are_still_fine():
    d = PT.on_prepare(None, [], [PT.Leg("1", 10, "debit"), PT.Leg("1", 10, "credit")], "ana", 10_000, 0,
                      {"1": view()})
    assert d.vote.yes and d.holds == (("1", 10),)
