"""Per-object authorization, route by route: another customer's account number or
transfer id gives 404, exactly as one that does not exist, never data, and changes nothing.

The routes come from the Flask url_map: every /api route with a path argument must have a
row in ROUTES, so a new route without an authorization test fails here. Transfers are real
(two banks over the in-process loopback broker), so the legs of a transfer are checked by the
bank that holds each account, not only by the initiating bank.
"""
from __future__ import annotations

import uuid

import pytest


from .conftest import assert_problem

# (rule, method) -> (the path with someone else's object, JSON body or None)
ROUTES = {
    ("/api/accounts/<number>", "GET"): lambda o: (f"/api/accounts/{o['number']}", None),
    ("/api/accounts/<number>/statement", "GET"): lambda o: (f"/api/accounts/{o['number']}/statement", None),
    ("/api/accounts/<number>/deposits", "POST"): lambda o: (f"/api/accounts/{o['number']}/deposits",
                                                            {"amount": "1.00"}),
    ("/api/accounts/<number>/withdrawals", "POST"): lambda o: (f"/api/accounts/{o['number']}/withdrawals",
                                                               {"amount": "1.00"}),
    ("/api/accounts/<number>/accept", "POST"): lambda o: (f"/api/accounts/{o['number']}/accept", None),
    ("/api/transfers/<transfer_id>", "GET"): lambda o: (f"/api/transfers/{o['transfer_id']}", None),
    ("/api/mandates/<mandate_id>", "DELETE"): lambda o: (f"/api/mandates/{o['mandate_id']}", None),
}
# Routes with an account in their path that answer any logged-in customer on purpose, with a
# masked holder name only (what a payer checks before paying): each has its own test below.
PUBLIC_LOOKUPS = {("/api/consortium/accounts/<bank>/<number>", "GET")}
# Routes that take account numbers in their body rather than their path (not visible in the
# url_map's arguments): each has its own test below.
BODY_ROUTES = {("/api/transfers", "POST"), ("/api/accounts", "POST"), ("/api/mandates", "POST"),
               ("/api/transfer-batches", "POST")}


@pytest.fixture
def banks(consortium):
    return consortium(("alfa", "beta"))


@pytest.fixture
def world(banks):
    """Ana: an account with money at each bank and a committed transfer between them.
    Bob: a customer of both banks with an account of his own at each."""
    (alfa, a_api), (beta, b_api) = banks["alfa"], banks["beta"]
    ana_cpf, ana_a = a_api.customer("Ana Maria Souza")
    b_api.register(ana_cpf, "Ana Maria Souza")
    ana_b = b_api.login(ana_cpf)
    ana_acc_a = a_api.open_account(ana_a, [ana_cpf])
    ana_acc_b = b_api.open_account(ana_b, [ana_cpf])
    assert a_api.deposit(ana_a, ana_acc_a, "1000.00").status_code == 201
    r = a_api.call("POST", "/api/transfers", {"sources": [{"bank": "alfa", "account": ana_acc_a, "amount": "107.77"}],
                                              "destination": {"bank": "beta", "account": ana_acc_b}}, token=ana_a)
    assert r.status_code == 201 and r.get_json()["status"] == "committed", r.get_json()
    tid = r.get_json()["id"]
    bob_cpf, bob_a = a_api.customer("Roberto Lima")
    b_api.register(bob_cpf, "Roberto Lima")
    bob_b = b_api.login(bob_cpf)
    bob_acc_a = a_api.open_account(bob_a, [bob_cpf])
    bob_acc_b = b_api.open_account(bob_b, [bob_cpf])
    a_api.deposit(bob_a, bob_acc_a, "50.00")
    # Ana's consent, at each bank, for the other to debit her account there.
    mandates = {bank: api.call("POST", "/api/mandates", {"account": acc, "bank": other}, token=tok).get_json()["id"]
                for bank, api, acc, other, tok in (("alfa", a_api, ana_acc_a, "beta", ana_a),
                                                   ("beta", b_api, ana_acc_b, "alfa", ana_b))}
    return {"ana": {"cpf": ana_cpf, "alfa": ana_a, "beta": ana_b, "acc_alfa": ana_acc_a, "acc_beta": ana_acc_b,
                    "transfer_id": tid, "mandate_alfa": mandates["alfa"], "mandate_beta": mandates["beta"]},
            "bob": {"cpf": bob_cpf, "alfa": bob_a, "beta": bob_b, "acc_alfa": bob_acc_a, "acc_beta": bob_acc_b}}


def ledger(node) -> tuple:
    """Everything a refused request must leave as it was."""
    with node.store.transaction(write=False) as tx:
        c = tx.counts()
        return (c["balance_total"], c["journal_total"], c["holds"], c["prepared_legs"], c["accounts"])


def assert_no_data_of_ana(resp, world):
    text = resp.get_data(as_text=True)
    # Amounts as the API writes them (quoted strings), so that a timestamp's digits never match.
    for secret in (world["ana"]["cpf"], "Ana", "Souza", '"892.23"', '"1000.00"', '"107.77"', world["ana"]["acc_beta"]):
        assert secret not in text, (secret, text[:300])


def test_every_api_route_with_an_object_in_its_path_is_in_the_table(banks):
    app = banks["alfa"][1].client.application
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/") and rule.arguments:
            found |= {(rule.rule, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert found == set(ROUTES) | PUBLIC_LOOKUPS, \
        "a route takes an object id: add it to ROUTES (and check it is authorized)"
    routes = {(r.rule, m) for r in app.url_map.iter_rules() for m in r.methods}
    assert BODY_ROUTES <= routes


@pytest.mark.parametrize("route", sorted(ROUTES), ids=lambda r: f"{r[1]} {r[0]}")
@pytest.mark.parametrize("bank", ["alfa", "beta"])
def test_someone_elses_object_is_404_no_data_and_no_change(banks, world, route, bank):
    node, api = banks[bank]
    objects = {"number": world["ana"][f"acc_{bank}"], "transfer_id": world["ana"]["transfer_id"],
               "mandate_id": world["ana"][f"mandate_{bank}"]}
    missing = {"number": "000000000", "transfer_id": str(uuid.uuid4()), "mandate_id": uuid.uuid4().hex}
    before = ledger(node)
    for key in (None, "bob-idem-1"):
        path, body = ROUTES[route](objects)
        kw = {} if body is None else {"json": body}
        headers = {"Authorization": f"Bearer {world['bob'][bank]}", **({"Idempotency-Key": key} if key else {})}
        r = api.client.open(path, method=route[1], headers=headers, **kw)
        problem = assert_problem(r, r.status_code)
        assert (r.status_code, problem["code"]) == (404, "not_found"), problem
        assert_no_data_of_ana(r, world)
        # and it looks exactly like an object that does not exist: no oracle
        path, body = ROUTES[route](missing)
        r2 = api.client.open(path, method=route[1], headers=dict(headers, **({"Idempotency-Key": key + "-m"}
                                                                            if key else {})), **kw)
        assert (r2.status_code, r2.get_json()) == (r.status_code, r.get_json())
    assert ledger(node) == before
    # while its owner still reaches it (the 404 above is about Bob, not a broken route)
    path, body = ROUTES[route](objects)
    r = api.client.open(path, method=route[1], headers={"Authorization": f"Bearer {world['ana'][bank]}"},
                        **({} if body is None else {"json": body}))
    assert r.status_code in (200, 201), r.get_json()


def test_a_transfer_from_someone_elses_account_is_refused_by_the_bank_that_holds_it(banks, world):
    """Bob initiates at beta with Ana's account at alfa as a source: alfa, not only beta,
    refuses the leg, nothing moves anywhere, and the answer tells Bob nothing about Ana, not
    even that the account exists (the same reason as a missing account)."""
    (alfa, a_api), (beta, b_api) = banks["alfa"], banks["beta"]
    before = (ledger(alfa), ledger(beta))
    for initiator_bank, api in (("alfa", a_api), ("beta", b_api)):
        body = {"sources": [{"bank": "alfa", "account": world["ana"]["acc_alfa"], "amount": "10.00"}],
                "destination": {"bank": "beta", "account": world["bob"]["acc_beta"]}}
        r = api.call("POST", "/api/transfers", body, token=world["bob"][initiator_bank])
        assert r.status_code == 201, r.get_json()
        out = r.get_json()
        assert (out["status"], out["reason"]) == ("aborted", "not_found"), out
        assert_no_data_of_ana(r, world)
    assert (ledger(alfa), ledger(beta)) == before


def test_a_transfer_mixing_own_and_someone_elses_sources_moves_none_of_them(banks, world):
    (alfa, a_api), (beta, b_api) = banks["alfa"], banks["beta"]
    before = (ledger(alfa), ledger(beta))
    body = {"sources": [{"bank": "alfa", "account": world["bob"]["acc_alfa"], "amount": "5.00"},
                        {"bank": "alfa", "account": world["ana"]["acc_alfa"], "amount": "5.00"}],
            "destination": {"bank": "beta", "account": world["bob"]["acc_beta"]}}
    out = b_api.call("POST", "/api/transfers", body, token=world["bob"]["beta"]).get_json()
    assert out["status"] == "aborted"
    assert {(leg["account"], leg.get("reason")) for leg in out["legs"] if leg["role"] == "source"} >= {
        (world["ana"]["acc_alfa"], "not_found")}
    assert (ledger(alfa), ledger(beta)) == before


def test_a_participant_bank_shows_a_transfer_only_to_those_it_concerns(banks, world):
    """beta saw Ana's transfer only as a participant (its credit leg): Ana sees the whole
    transfer there (the PREPARE carried it), Bob gets 404."""
    (_, b_api) = banks["beta"]
    tid = world["ana"]["transfer_id"]
    r = b_api.call("GET", f"/api/transfers/{tid}", token=world["ana"]["beta"])
    body = r.get_json()
    assert r.status_code == 200 and (body["coordinator"], body["amount"], len(body["legs"])) == ("alfa", "107.77", 2)
    r = b_api.call("GET", f"/api/transfers/{tid}", token=world["bob"]["beta"])
    assert_problem(r, 404, "not_found")
    assert_no_data_of_ana(r, world)


def test_opening_an_account_in_someone_elses_name_is_refused(banks, world, new_cpf):
    node, api = banks["alfa"]
    carla, _ = api.customer("Carla Dias")
    before = ledger(node)
    for holders, kind in (([world["ana"]["cpf"]], "individual"), ([world["ana"]["cpf"], carla], "joint")):
        r = api.call("POST", "/api/accounts", {"kind": kind, "holders": holders}, token=world["bob"]["alfa"])
        assert_problem(r, 403, "forbidden")
        assert_no_data_of_ana(r, world)
    assert ledger(node) == before


@pytest.mark.parametrize("asker", ["alfa", "beta"])
def test_verifying_someone_elses_account_shows_a_masked_name_and_never_a_balance(banks, world, asker):
    """Bob checks Ana's account at alfa before paying her, from alfa itself and from beta (an
    inter-bank query): he learns the account exists and a masked name, nothing else."""
    node, api = banks[asker]
    before = ledger(banks["alfa"][0])
    r = api.call("GET", f"/api/consortium/accounts/alfa/{world['ana']['acc_alfa']}", token=world["bob"][asker])
    assert r.status_code == 200, r.get_json()
    assert r.get_json() == {"bank": "alfa", "number": world["ana"]["acc_alfa"], "kind": "individual",
                            "holder": "Ana M*** S***"}
    for secret in (world["ana"]["cpf"], "Maria", "Souza", '"892.23"', "balance", "available"):
        assert secret not in r.get_data(as_text=True), secret
    missing = api.call("GET", "/api/consortium/accounts/alfa/000000000", token=world["bob"][asker])
    assert_problem(missing, 404, "not_found")
    assert_problem(api.call("GET", "/api/consortium/accounts/zeta/000000000", token=world["bob"][asker]), 404)
    assert_problem(api.call("GET", f"/api/consortium/accounts/alfa/{world['ana']['acc_alfa']}"), 401)
    assert ledger(banks["alfa"][0]) == before
