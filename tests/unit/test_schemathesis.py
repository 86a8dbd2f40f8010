"""Hostile input against the whole REST API, generated from its own OpenAPI document.

schemathesis reads GET /api/openapi.json from the Flask app (WSGI, no network, no broker) and
sends a bounded number of generated requests to every operation, as a logged-in customer
who owns one account with money and one transfer. Every answer must be a documented status
with a body matching its documented schema, and never a server error. The examples in the
document are filled with that customer's real account number and transfer id, so the
generated requests reach the ledger and not only the 404 path.
"""
from __future__ import annotations

import copy
import uuid

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from schemathesis.specs.openapi.checks import positive_data_acceptance

from bank_node.app import create_app
from bank_node.node import BankNode

from .conftest import PASSWORD, make_config

EXAMPLES_PER_OPERATION = 60
OPERATOR_TOKEN = "operator-token-for-tests"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One bank with no broker, and a customer with an account, money and a transfer."""
    from bank_node.domain.documents import make_cpf
    mp = pytest.MonkeyPatch()
    mp.setenv("CONSORCIO_OPERATOR_TOKEN", OPERATOR_TOKEN)
    # Generated requests name many accounts that are not this customer's: a throttle that
    # refused them all after a few would leave the ledger paths untested.
    node = BankNode(make_config(security={"unknown_account_answers": "1000000 per 1 second"}), "alfa",
                    tmp_path_factory.mktemp("schemathesis"), connect_broker=False)
    app = create_app(node, testing=True)
    c = app.test_client()
    cpf = make_cpf("987654321")
    assert c.post("/api/customers", json={"cpf": cpf, "name": "Ana Souza", "password": PASSWORD}).status_code == 201
    token = c.post("/api/sessions", json={"cpf": cpf, "password": PASSWORD}).get_json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    number = c.post("/api/accounts", json={"kind": "individual", "holders": [cpf]}, headers=auth).get_json()["number"]
    assert c.post(f"/api/accounts/{number}/deposits", json={"amount": "500.00"}, headers=auth).status_code == 201
    tid = str(uuid.uuid4())
    r = c.post("/api/transfers", headers=auth, json={
        "id": tid, "sources": [{"bank": "alfa", "account": number, "amount": "1.00"}],
        "destination": {"bank": "beta", "account": "123456785"}})
    assert r.status_code == 201, r.get_json()
    yield {"node": node, "app": app, "auth": auth, "cpf": cpf, "number": number, "transfer_id": tid}
    node.stop()
    mp.undo()


@pytest.fixture(scope="module")
def api_schema(world):
    doc = copy.deepcopy(world["app"].test_client().get("/api/openapi.json").get_json())
    for item in doc["paths"].values():
        for op in item.values():
            for p in op.get("parameters", []):
                if p["name"] == "number":
                    p["schema"] = {**p["schema"], "example": world["number"]}
                elif p["name"] == "transfer_id":
                    p["schema"] = {**p["schema"], "example": world["transfer_id"]}
                elif p["name"] == "cpf":
                    p["schema"] = {**p["schema"], "example": world["cpf"]}
    schema = schemathesis.openapi.from_dict(doc)
    schema.app = world["app"]
    schema.location = "/api/openapi.json"
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_documented_and_never_with_a_server_error(case, world):
    # Every check schemathesis has, but one: "schema-valid data must be accepted" cannot hold
    # for rules no JSON schema can say (CPF check digits, the common-password list, the
    # caller among the holders, the day's limit already used...). The opposite check,
    # "schema-invalid data is refused", stays on.
    headers = dict(world["auth"], **{"X-Operator-Token": OPERATOR_TOKEN})
    if case.operation.path == "/api/sessions/current":  # logging out: not the token the others use
        c = world["app"].test_client()
        token = c.post("/api/sessions", json={"cpf": world["cpf"], "password": PASSWORD}).get_json()["token"]
        headers["Authorization"] = f"Bearer {token}"
    case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])


def test_every_api_route_is_documented_and_every_documented_operation_exists(world):
    doc = world["app"].test_client().get("/api/openapi.json").get_json()
    documented = {(path, method.upper()) for path, item in doc["paths"].items() for method in item}
    routed = set()
    for rule in world["app"].url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            path = rule.rule.replace("<", "{").replace(">", "}")
            routed |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert routed == documented
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert any(code.startswith("2") for code in op["responses"]), (method, path)
            errors = [c for c in op["responses"] if c[0] in "45"]
            for code in errors:
                assert "application/problem+json" in op["responses"][code]["content"], (method, path, code)
            security = op.get("security", doc["security"])
            if security == [{"bearer": []}]:
                assert "401" in op["responses"], (method, path)


def test_the_document_declares_bearer_security():
    from bank_node.api.openapi import build
    doc = build()
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "the token of POST /api/sessions"}
    assert doc["security"] == [{"bearer": []}]                       # by default, every operation
    for public in (("/api/sessions", "post"), ("/api/customers", "post"), ("/api/health", "get")):
        assert doc["paths"][public[0]][public[1]]["security"] == [], public


# ----------------------------------------------------------------------------- found by schemathesis

def test_unknown_query_parameters_are_refused_like_unknown_body_fields(world):
    c = world["app"].test_client()
    for path in ("/api/accounts", f"/api/accounts/{world['number']}", "/api/consortium/accounts",
                 f"/api/accounts/{world['number']}/statement", "/api/health"):
        r = c.get(f"{path}?limit=5&admin=1", headers=world["auth"])
        body = r.get_json()
        assert (r.status_code, body["code"]) == (422, "unknown_parameter"), (path, body)
        assert "admin" in body["detail"]
    assert c.get(f"/api/accounts/{world['number']}/statement?limit=5", headers=world["auth"]).status_code == 200
    assert c.get(f"/api/consortium/accounts?cpf={world['cpf']}", headers=world["auth"]).status_code == 200


def test_every_route_checks_the_idempotency_key_alike(world):
    """POST /api/transfers with an id in the body used to store a key of any length."""
    c = world["app"].test_client()
    body = {"id": str(uuid.uuid4()), "sources": [{"bank": "alfa", "account": world["number"], "amount": "1.00"}],
            "destination": {"bank": "beta", "account": "123456785"}}
    for key in ("k" * 201, "tab\there"):
        for path, payload in (("/api/transfers", body), (f"/api/accounts/{world['number']}/deposits",
                                                          {"amount": "1.00"})):
            r = c.post(path, json=payload, headers={**world["auth"], "Idempotency-Key": key})
            assert (r.status_code, r.get_json()["code"]) == (422, "invalid_input"), (path, key)
