"""The existence oracle: whether an account number exists must not be learnt from any answer.
"No such account" and "not yours" are the same answer on every route that names an account
(transfers with a local source or destination included), and those answers are throttled per
customer, so that numbers cannot be enumerated: the attacker below guesses 30+ numbers."""
from __future__ import annotations

import pytest


from .conftest import assert_problem

GUESSES = 32


@pytest.fixture
def two_banks(consortium):
    return consortium(("alfa", "beta"), security={"unknown_account_answers": "10 per 10 minutes"})


@pytest.fixture
def world(two_banks, new_cpf):
    """Ana (an account with money at each bank) and Mallory (her own account at alfa)."""
    (_, a_api), (_, b_api) = two_banks["alfa"], two_banks["beta"]
    ana, mallory = new_cpf(), new_cpf()
    tok = {}
    for bank, api in (("alfa", a_api), ("beta", b_api)):
        for cpf, name in ((ana, "Ana Souza"), (mallory, "Mallory Reis")):
            api.register(cpf, name)
            tok[bank, cpf] = api.login(cpf)
    acc = {"ana_alfa": a_api.open_account(tok["alfa", ana], [ana]),
           "ana_beta": b_api.open_account(tok["beta", ana], [ana]),
           "mallory_alfa": a_api.open_account(tok["alfa", mallory], [mallory])}
    a_api.deposit(tok["alfa", ana], acc["ana_alfa"], "100.00")
    b_api.deposit(tok["beta", ana], acc["ana_beta"], "100.00")
    a_api.deposit(tok["alfa", mallory], acc["mallory_alfa"], "100.00")
    return {"ana": ana, "mallory": mallory, "tok": tok, "acc": acc}


def guesses(n: int) -> list[str]:
    """Well-formed account numbers (eight digits and the check digit) nobody holds."""
    from bank_node.services.banking import _check_digit
    return [f"{70000000 + i:08d}" + _check_digit(f"{70000000 + i:08d}") for i in range(n)]


def without_ids(body: dict, *numbers: str) -> str:
    """A transfer answer with what legitimately differs (its id, times, the numbers asked for) blanked;
    the timeline keeps its steps, not their clock times (nor the order of steps of different banks)."""
    import json
    kept = {k: v for k, v in body.items() if k not in ("id", "created_at", "decided_at", "timeline")}
    kept["timeline"] = sorted((e["bank"] or "", e["event"], e.get("detail") or "") for e in body.get("timeline", []))
    text = json.dumps(kept, sort_keys=True)
    for n in numbers:
        text = text.replace(n, "NUMBER")
    return text


def test_a_transfer_from_someone_elses_account_answers_like_one_from_a_missing_account(two_banks, world):
    """Local source (alfa) and remote source (beta): someone else's account and a missing one
    give the same answer, reason not_found, and nothing moves."""
    (_, a_api) = two_banks["alfa"]
    mallory, tok, acc = world["mallory"], world["tok"], world["acc"]
    missing = guesses(2)
    for bank, theirs, nobody in (("alfa", acc["ana_alfa"], missing[0]), ("beta", acc["ana_beta"], missing[1])):
        answers = []
        for number in (theirs, nobody):
            r = a_api.call("POST", "/api/transfers", {
                "sources": [{"bank": bank, "account": number, "amount": "1.00"}],
                "destination": {"bank": "alfa", "account": acc["mallory_alfa"]}}, token=tok["alfa", mallory])
            assert r.status_code == 201
            body = r.get_json()
            assert (body["status"], body["reason"]) == ("aborted", "not_found"), body
            answers.append(without_ids(body, number))
        assert answers[0] == answers[1]
    assert a_api.account(tok["alfa", world["ana"]], acc["ana_alfa"])["balance"] == "100.00"


def test_guessing_account_numbers_on_the_account_routes_is_refused_after_a_few(two_banks, world):
    (_, a_api) = two_banks["alfa"]
    t = world["tok"]["alfa", world["mallory"]]
    routes = [lambda n: a_api.call("GET", f"/api/accounts/{n}", token=t),
              lambda n: a_api.call("GET", f"/api/accounts/{n}/statement", token=t),
              lambda n: a_api.deposit(t, n, "1.00"),
              lambda n: a_api.withdraw(t, n, "1.00"),
              lambda n: a_api.call("POST", f"/api/accounts/{n}/accept", token=t)]
    numbers = guesses(GUESSES - 1) + [world["acc"]["ana_alfa"]]   # Ana's real account is among them
    codes = []
    for i, n in enumerate(numbers):
        r = routes[i % len(routes)](n)
        body = assert_problem(r, r.status_code)
        codes.append(body["code"])
        if r.status_code == 429:
            assert int(r.headers["Retry-After"]) >= 1 and "not yours" in body["detail"]
    assert codes[:10] == ["not_found"] * 10, codes
    assert codes[10:] == ["too_many_attempts"] * (GUESSES - 10), codes   # Ana's account answered 429 too
    # the refusal is Mallory's alone: Ana is not slowed down by his guessing
    ana_t = world["tok"]["alfa", world["ana"]]
    assert a_api.account(ana_t, world["acc"]["ana_alfa"])["balance"] == "100.00"


def test_guessing_destinations_of_transfers_is_refused_after_a_few(two_banks, world):
    """A transfer must say whether its destination exists (or money would go nowhere), so
    transfers are the oracle an attacker turns to: its not_found legs count like the rest."""
    (_, a_api) = two_banks["alfa"]
    mallory, tok, acc = world["mallory"], world["tok"], world["acc"]
    outcomes = []
    for i, n in enumerate(guesses(GUESSES)):
        r = a_api.call("POST", "/api/transfers", {
            "sources": [{"bank": "alfa", "account": acc["mallory_alfa"], "amount": "0.01"}],
            "destination": {"bank": ("alfa", "beta")[i % 2], "account": n}}, token=tok["alfa", mallory])
        outcomes.append(r.get_json().get("reason") if r.status_code == 201 else r.get_json()["code"])
    assert outcomes[:10] == ["not_found"] * 10, outcomes
    assert outcomes[10:] == ["too_many_attempts"] * (GUESSES - 10), outcomes
    # nothing moved, and the transfers refused by the throttle were not even recorded
    node = two_banks["alfa"][0]
    with node.store.transaction(write=False) as tx:
        c = tx.counts()
        snapshot = tx.ledger_snapshot()
    assert (c["balance_total"], c["holds"], c["prepared_legs"]) == (200_00, 0, 0)
    assert len(snapshot["coordinated"]) == 10


def test_malformed_numbers_cost_nothing_but_are_answered_the_same(two_banks, world):
    """A number that cannot be an account tells nothing: 404 as usual, without using up the
    customer's allowance (a mistyped link must not lock a customer out of their accounts)."""
    (_, a_api) = two_banks["alfa"]
    t = world["tok"]["alfa", world["mallory"]]
    for _ in range(GUESSES):
        assert_problem(a_api.call("GET", "/api/accounts/12ab", token=t), 404, "not_found")
    assert a_api.account(t, world["acc"]["mallory_alfa"])["balance"] == "100.00"
