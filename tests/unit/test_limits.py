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

from bank_node.domain import participant as PT
from bank_node.domain.ledger import AccountFigures, Limits, debit_refusal
from bank_node.domain.transfer import Leg

from .conftest import assert_problem, make_config

DAY = 86400


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso).replace(tzinfo=timezone.utc).timestamp()


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
            at = time.time() - 2 * DAY
            tx.append_entry(number, "deposit", int(amount.replace(".", "")), at, day=node.banking.day(at))
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
    assert node.banking.day(clock.t) == node.banking.day(ts("2025-03-09T03:00:00"))
    assert node.banking.day(clock.t) != node.banking.day(ts("2025-03-09T02:59:59"))
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
    nodes.net.settle()   # beta applies the decisions a moment after alfa answers
    assert alfa_api.account(token, src)["balance"] == "700.00"
    assert beta_api.account(btoken, dest)["balance"] == "250.00"   # credits are not limited


def test_the_holding_bank_enforces_its_own_limits_whoever_coordinates(consortium):
    """beta coordinates; alfa holds the account: beta refuses at once what its copy of the
    consortium's rules already forbids (naming the limit), alfa refuses what depends on its ledger."""
    nodes = consortium(**limits_doc(alfa={"max_amount": "50.00", "daily_max_amount": "80.00"}))
    (alfa, alfa_api), (beta, beta_api) = nodes["alfa"], nodes["beta"]
    cpf, token, src = customer_with_money(alfa_api, alfa, "1000.00")
    beta_api.register(cpf)
    btoken = beta_api.login(cpf)
    dest = beta_api.open_account(btoken, [cpf])
    r = alfa_api.call("POST", "/api/mandates", {"account": src, "bank": "beta"}, token=token)
    assert r.status_code == 201, r.get_json()
    body = {"sources": [{"bank": "alfa", "account": src, "amount": "60.00"}], "destination": {"bank": "beta", "account": dest}}
    refused = assert_problem(beta_api.call("POST", "/api/transfers", body, token=btoken), 422, "invalid_amount")
    assert "50.00" in refused["detail"]
    assert transfer(beta_api, btoken, [("alfa", src, "50.00")], ("beta", dest))["status"] == "committed"
    out = transfer(beta_api, btoken, [("alfa", src, "30.01")], ("beta", dest))
    assert (out["status"], out["reason"]) == ("aborted", "daily_limit_exceeded")
    nodes.net.settle()
    assert alfa_api.account(token, src)["balance"] == "950.00"
    with alfa.store.transaction(write=False) as tx:
        assert tx.counts()["holds"] == 0


# ============================================================================ the pure check

@pytest.mark.parametrize("amount, debited, already, expected", [
    (100, 0, 0, None),
    (250, 0, 0, None),                           # exactly the operation limit
    (251, 0, 0, "amount_over_limit"),
    (200, 100, 0, None),                         # exactly the daily limit
    (201, 100, 0, "daily_limit_exceeded"),       # today's debits and holds count
    (2000, 0, 0, "insufficient_funds"),          # funds are checked first
    (150, 0, 150, None),
    (151, 0, 150, "daily_limit_exceeded"),       # an earlier leg of the same operation counts
    (950, 0, 100, "insufficient_funds"),
])
def test_debit_refusal_is_one_rule_for_withdrawals_and_transfer_legs(amount, debited, already, expected):
    figures = AccountFigures(balance=1000, held=0, debited_today=debited)
    assert debit_refusal(figures, amount, Limits(max_amount=250, daily_max_amount=300), already=already) == expected


def test_a_refused_leg_places_no_hold():
    rules = PT.Rules("alfa", ("alfa", "beta"), 8, 4000, lambda b: 200, Limits(200, 300))
    legs = (Leg("alfa", "1", 150, "debit"), Leg("beta", "2", 150, "credit"))
    account = PT.AccountView("1", "open", frozenset({"ana"}), AccountFigures(1000, 0, 200))
    d = PT.on_prepare(None, conflict=False, coordinator="alfa", initiator="ana", deadline_ms=10_000, legs=legs,
                      rules=rules, accounts={"1": account}, consents={}, exposure={}, now_ms=9_000, now=9.0)
    assert (d.vote.yes, d.vote.reasons, d.new_state, d.holds) == (False, (("1", "daily_limit_exceeded"),), "aborted", ())
