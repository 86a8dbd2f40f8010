"""GET /api/openapi.json: the REST API as an OpenAPI 3.0 document.

Written by hand, next to the routes it describes, so that it says what the contract
promises rather than what a framework guessed. It is kept true by tests: schemathesis sends
generated requests to every operation and checks every answer against it
(tests/unit/test_schemathesis.py), and a test fails when a route of the Flask app is missing
here or an operation here has no route.
"""
from __future__ import annotations

import copy

from flask import Blueprint, jsonify

from ..context import node

bp = Blueprint("openapi", __name__)

PROBLEM = "application/problem+json"

# --------------------------------------------------------------------------- building blocks
AMOUNT = {"type": "string", "pattern": r"^[ \t\r\n]*[0-9]{1,13}(\.[0-9]{1,2})?[ \t\r\n]*$", "example": "150.00",
          "description": "BRL as a string with at most two decimals, greater than zero and at most the bank's "
                         "per-operation limit. Never a JSON number."}
SIGNED_AMOUNT = {"type": "string", "pattern": r"^-?[0-9]+\.[0-9]{2}$", "example": "-30.00"}
MONEY = {"type": "string", "pattern": r"^-?[0-9]+\.[0-9]{2}$", "example": "1234.50"}
DIGITS = {"type": "string", "pattern": r"^[0-9]+$"}
CPF_IN = {"type": "string", "example": "529.982.247-25",
          "description": "11 digits with valid check digits; punctuation is optional"}
CPF = {"type": "string", "pattern": r"^[0-9]{11}$", "example": "52998224725"}
CNPJ = {"type": "string", "pattern": r"^[0-9]{14}$", "example": "11222333000181"}
TIMESTAMP = {"type": "string", "format": "date-time", "example": "2025-03-10T14:02:11.120Z"}
BANK_ID = {"type": "string", "pattern": r"^[a-z][a-z0-9_-]{0,31}$", "example": "alfa"}
KIND = {"type": "string", "enum": ["individual", "joint", "business"]}
TRANSFER_STATUS = {"type": "string", "enum": ["pending", "committed", "aborted"]}
NAME = {"type": "string", "minLength": 2, "description": "2 to 120 printable characters once runs of blanks "
                                                         "are collapsed"}
ACCOUNT_IN = {"type": "string", "minLength": 1, "maxLength": 32, "example": "123456785",
              "description": "an account number: digits"}


def obj(required: dict, optional: dict | None = None, *, extra: bool = False, **kw) -> dict:
    props = {**required, **(optional or {})}
    return {"type": "object", "required": sorted(required), "properties": props,
            "additionalProperties": extra, **kw}


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


SCHEMAS = {
    "Problem": obj({"type": {"type": "string"}, "title": {"type": "string"},
                    "status": {"type": "integer", "minimum": 400, "maximum": 599},
                    "detail": {"type": "string"}, "code": {"type": "string", "example": "insufficient_funds"}},
                   {"retry_after": {"type": "integer", "minimum": 1,
                                    "description": "with too_many_attempts: seconds to wait (also Retry-After)"},
                    "limit": MONEY, "remaining": MONEY},
                   extra=True,
                   description="RFC 9457 problem details with a stable `code`."),
    "Customer": obj({"bank": BANK_ID, "cpf": CPF, "name": {"type": "string"}}),
    "Session": obj({"token": {"type": "string", "minLength": 32}, "expires_at": TIMESTAMP, "cpf": CPF,
                    "name": {"type": "string"}}),
    "Holder": obj({"cpf": CPF, "name": {"type": "string"},
                   "accepted": {"type": "boolean", "description": "whether this holder has accepted the account; "
                                                                 "until then their name is masked"}}),
    "Account": obj({"bank": BANK_ID, "number": DIGITS, "kind": KIND,
                    "status": {"type": "string", "enum": ["pending", "open", "closed"],
                               "description": "`pending` until every holder has accepted the account "
                                              "(POST /api/accounts/{number}/accept): nothing moves on it"},
                    "holders": {"type": "array", "items": ref("Holder"), "minItems": 1},
                    "balance": MONEY, "available": MONEY},
                   {"cnpj": CNPJ, "company_name": {"type": "string"}},
                   description="`available` is `balance` minus the holds of pending transfers."),
    "AccountList": obj({"bank": BANK_ID, "accounts": {"type": "array", "items": ref("Account")}}),
    "Counterparty": obj({}, {"name": {"type": "string", "description": "masked, e.g. Bruno C*** L***"},
                             "document": {"type": "string", "description": "a masked CPF (***.982.247-**) or a CNPJ"},
                             "bank": BANK_ID, "account": DIGITS},
                        description="The other side of a transfer entry as far as this bank's records know it."),
    "Entry": obj({"at": TIMESTAMP, "kind": {"type": "string", "enum": ["deposit", "withdrawal", "transfer_in",
                                                                       "transfer_out"]},
                  "amount": SIGNED_AMOUNT, "balance_after": MONEY},
                 {"transfer_id": {"type": "string"}, "counterparty": ref("Counterparty")}),
    "Statement": obj({"account": ref("Account"), "entries": {"type": "array", "items": ref("Entry")}},
                     {"next": {"type": "string", "minLength": 1,
                               "description": "opaque cursor: give it as `before` for the next page; absent on the "
                                              "last page"}},
                     description="Entries newest first, one page."),
    "VerifiedAccount": obj({"bank": BANK_ID, "number": DIGITS, "kind": KIND,
                            "holder": {"type": "string", "description": "masked name(s), never a balance"}}),
    "ConsortiumAccount": obj({"bank": BANK_ID, "bank_name": {"type": "string"}, "number": DIGITS, "kind": KIND,
                              "holder": {"type": "string"}},
                             {"balance": MONEY, "available": MONEY, "company_name": {"type": "string"}},
                             description="Balances only for the caller's own CPF; else a masked holder name."),
    "ConsortiumAccounts": obj({"cpf": CPF, "full": {"type": "boolean"},
                               "accounts": {"type": "array", "items": ref("ConsortiumAccount")},
                               "unreachable_banks": {"type": "array", "items": BANK_ID,
                                                     "description": "banks whose accounts are missing: silent by "
                                                                    "the deadline, or limiting lookups"},
                               "limited_banks": {"type": "array", "items": BANK_ID,
                                                 "description": "those of them not asked, or refusing, because "
                                                                "this customer (or this bank) asked too often "
                                                                "for now: told at once, not at the deadline"}}),
    "TransferLeg": obj({"bank": BANK_ID, "account": DIGITS, "amount": MONEY,
                        "role": {"type": "string", "enum": ["source", "destination"]}},
                       {"reason": {"type": "string"}, "bank_name": {"type": "string"},
                        "holder": {"type": "string", "description": "masked: the caller's own accounts, and the "
                                                                     "destination of a committed transfer"}}),
    "TimelineEvent": obj({"at": TIMESTAMP, "event": {"type": "string", "enum": [
                              "created", "prepare_sent", "vote_yes", "vote_no", "decision_commit", "decision_abort",
                              "decision_sent", "decision_applied", "ack"]}},
                         {"bank": {"type": "string", "nullable": True}, "ms": {"type": "integer"},
                          "detail": {"type": "string"}},
                         description="One step of the transfer's two-phase commit, as the banks recorded it; "
                                     "`ms` since the transfer began."),
    "Failure": obj({"bank": {"type": "string"}, "account": {"type": "string"}, "reason": {"type": "string"}}),
    "Transfer": obj({"id": {"type": "string"}, "status": TRANSFER_STATUS, "coordinator": BANK_ID,
                     "created_at": TIMESTAMP, "legs": {"type": "array", "items": ref("TransferLeg")}},
                    {"amount": MONEY, "reason": {"type": "string", "example": "insufficient_funds"},
                     "failures": {"type": "array", "items": ref("Failure")}, "decided_at": TIMESTAMP,
                     "timeline": {"type": "array", "items": ref("TimelineEvent")}}),
    "TransferBatchResult": obj({"items": {"type": "array", "items": obj(
        {"id": {"type": "string"}, "status": TRANSFER_STATUS}, {"reason": {"type": "string"}})}}),
    "Mandate": obj({"id": {"type": "string"}, "account": DIGITS, "bank": BANK_ID, "bank_name": {"type": "string"},
                    "status": {"type": "string", "enum": ["active", "revoked", "expired"]}, "created_at": TIMESTAMP,
                    "granted_by": CPF, "used_today": MONEY},
                   {"max_per_transfer": MONEY, "max_per_day": MONEY, "expires_at": TIMESTAMP,
                    "revoked_at": TIMESTAMP},
                   description="A holder's consent, at this bank, for `bank` to initiate debits from the account."),
    "MandateList": obj({"bank": BANK_ID, "mandates": {"type": "array", "items": ref("Mandate")}}),
    "Health": obj({"bank": BANK_ID, "name": {"type": "string"}, "consortium": {"type": "string"},
                   "status": {"type": "string", "enum": ["ok", "degraded"]},
                   "broker": {"type": "string", "enum": ["connected", "disconnected", "disabled"]},
                   "database": {"type": "string", "enum": ["ok", "unavailable"]},
                   "schema_version": {"type": "integer", "nullable": True},
                   "in_doubt": {"type": "integer", "minimum": 0},
                   "unacknowledged_decisions": {"type": "integer", "minimum": 0},
                   "holds": {"type": "integer", "minimum": 0}},
                  {"process": obj({"pid": {"type": "integer"}, "resolver": {"type": "boolean"}},
                                  description="the process that answered (a bank may run several) and "
                                              "whether it is the bank's resolver")}),
    "OperatorOverview": obj({"bank": BANK_ID, "name": {"type": "string"}, "broker": {"type": "string"},
                             "coordinated_by_state": {"type": "object",
                                                      "additionalProperties": {"type": "integer"}},
                             "participations_by_state": {"type": "object",
                                                         "additionalProperties": {"type": "integer"}},
                             "in_doubt": {"type": "array", "items": {"type": "object"}},
                             "unacknowledged": {"type": "array", "items": {"type": "object"}},
                             "holds": {"type": "array", "items": {"type": "object"}}},
                            {"positions": {"type": "object", "additionalProperties": {"type": "integer"}},
                             "claims": {"type": "object", "additionalProperties": {"type": "integer"}}}),
}

REQUESTS = {
    "NewCustomer": obj({"cpf": CPF_IN, "name": NAME,
                        "password": {"type": "string", "minLength": 8, "maxLength": 256,
                                     "description": "not one of the most common passwords, and not "
                                                    "containing the CPF"}}),
    "Login": obj({"cpf": CPF_IN, "password": {"type": "string"}}),
    "NewAccount": obj({"kind": KIND, "holders": {"type": "array", "items": CPF_IN, "minItems": 1, "maxItems": 10,
                                                 "description": "CPFs of registered customers, the caller "
                                                                "among them"}},
                      {"cnpj": {"type": "string", "description": "business accounts only; punctuation optional"},
                       "company_name": NAME}),
    "Movement": obj({"amount": AMOUNT}),
    "NewMandate": obj({"account": ACCOUNT_IN, "bank": BANK_ID},
                      {"max_per_transfer": AMOUNT, "max_per_day": AMOUNT,
                       "expires_at": {"type": "string", "description": "ISO 8601 date or date-time, in the future"}}),
    "NewTransfer": obj({"sources": {"type": "array", "minItems": 1, "maxItems": 64,
                                    "items": obj({"bank": BANK_ID, "account": ACCOUNT_IN, "amount": AMOUNT})},
                        "destination": obj({"bank": BANK_ID, "account": ACCOUNT_IN})},
                       {"id": {"type": "string", "format": "uuid",
                               "description": "a client UUID; the same id again replays the first answer"}}),
}


def problem(description: str) -> dict:
    return {"description": description, "content": {PROBLEM: {"schema": ref("Problem")}}}


def json_response(description: str, schema: dict, headers: dict | None = None) -> dict:
    out = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


ERRORS = {
    "400": problem("the body is not valid JSON (`malformed_json`)"),
    "401": problem("no valid Bearer token (`unauthorized`), or wrong CPF or password (`invalid_credentials`)"),
    "403": problem("not allowed (`forbidden`)"),
    "404": problem("no such object among the caller's (`not_found`): someone else's looks exactly like a "
                   "missing one"),
    "409": problem("refused by the ledger's state: `insufficient_funds`, `daily_limit_exceeded`, "
                   "`already_exists`, `account_closed`, `account_pending`, `idempotency_key_reused`, `id_in_use`"),
    "413": problem("the body is over the configured size (`payload_too_large`)"),
    "415": problem("the body is not application/json (`unsupported_media_type`)"),
    "422": problem("invalid input, with a `code` such as `invalid_amount`, `invalid_document`, "
                   "`weak_password`, `common_password`, `password_contains_cpf`, `unknown_field`, "
                   "`missing_field`, `invalid_input`"),
    "429": {**problem("too many failed logins from this address, or for this CPF from this address; too many "
                      "registrations from this address; or too many answers \"no such account\" to this "
                      "customer (`too_many_attempts`)"),
            "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer",
                                                                                     "minimum": 1}}}},
    "503": problem("the ledger (`storage_unavailable`), the consortium (`bank_unreachable`) or the store of "
                   "the throttles (`throttle_unavailable`) is not available; nothing was changed"),
}


def errors(*codes: str) -> dict:
    return {c: ERRORS[c] for c in codes + ("503",)}


BODY_ERRORS = ("400", "413", "415", "422")
BEARER = [{"bearer": []}]
IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header", "required": False,
                   "description": "1 to 200 printable characters. The same key with the same body replays the "
                                  "first answer with no second effect; with another body it is a 409",
                   "schema": {"type": "string", "minLength": 1, "maxLength": 200}}
NUMBER = {"name": "number", "in": "path", "required": True, "description": "an account number at this bank",
          "schema": {"type": "string", "example": "123456785"}}


def body(name: str) -> dict:
    return {"required": True, "content": {"application/json": {"schema": ref(name)}}}


def build(bank_name: str = "", max_transfer_legs: int = 64) -> dict:
    account_ops = {
        "get": {"operationId": "getAccount", "summary": "One of the caller's accounts", "tags": ["accounts"],
                "security": BEARER, "parameters": [NUMBER],
                "responses": {"200": json_response("the account", ref("Account")), **errors("401", "404", "429")}},
    }
    movement = lambda op, what, conflict: {  # noqa: E731
        "post": {"operationId": op, "summary": what, "tags": ["accounts"], "security": BEARER,
                 "parameters": [NUMBER, IDEMPOTENCY_KEY], "requestBody": body("Movement"),
                 "responses": {"201": json_response("done: the account with its new balance", ref("Account")),
                               **errors("401", "404", *BODY_ERRORS, *conflict, "429")}}}
    paths = {
        "/api/customers": {"post": {
            "operationId": "register", "summary": "Register as a customer of this bank", "tags": ["customers"],
            "security": [],
            "parameters": [IDEMPOTENCY_KEY], "requestBody": body("NewCustomer"),
            "responses": {"201": json_response("registered", ref("Customer")),
                          **errors(*BODY_ERRORS, "409", "429")}}},
        "/api/sessions": {"post": {
            "operationId": "login", "summary": "Log in: a Bearer token", "tags": ["customers"], "security": [],
            "description": "Throttled per client address, and per CPF from that address with waits that grow "
                           "with the failures (never per CPF alone, so guesses from elsewhere do not lock the "
                           "customer out): 429 with Retry-After, whatever the password.",
            "requestBody": body("Login"),
            "responses": {"201": json_response("logged in", ref("Session")),
                          **errors(*BODY_ERRORS, "401", "429")}}},
        "/api/sessions/current": {"delete": {
            "operationId": "logout", "summary": "Log out: the token stops working", "tags": ["customers"],
            "security": BEARER, "responses": {"204": {"description": "logged out"}, **errors("401")}}},
        "/api/accounts": {
            "get": {"operationId": "listAccounts", "summary": "The caller's accounts at this bank",
                    "tags": ["accounts"], "security": BEARER,
                    "responses": {"200": json_response("the accounts", ref("AccountList")), **errors("401")}},
            "post": {"operationId": "openAccount", "summary": "Open an account of which the caller is a holder",
                     "tags": ["accounts"], "security": BEARER, "parameters": [IDEMPOTENCY_KEY],
                     "requestBody": body("NewAccount"),
                     "responses": {"201": json_response("opened", ref("Account")),
                                   **errors("401", "403", "409", *BODY_ERRORS)}}},
        "/api/accounts/{number}": account_ops,
        "/api/accounts/{number}/statement": {"get": {
            "operationId": "statement", "summary": "Entries of one of the caller's accounts, newest first, "
                                                   "one page at a time",
            "description": "`next` in the answer, given back as `before`, reads the page after, until the last "
                           "page (no `next`): every entry of the account can be read. `from`/`to` are days of "
                           "the consortium (America/Sao_Paulo), both included. `format=csv` (or `Accept: "
                           "text/csv`) and `format=ofx` export the same page; a `Link: <...>; rel=\"next\"` "
                           "header then gives the next page's address.",
            "tags": ["accounts"], "security": BEARER,
            "parameters": [NUMBER,
                           {"name": "limit", "in": "query", "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
                           {"name": "before", "in": "query", "required": False,
                            "description": "the `next` cursor of the page before", "schema": {"type": "string"}},
                           {"name": "from", "in": "query", "required": False,
                            "schema": {"type": "string", "format": "date", "example": "2026-03-01"}},
                           {"name": "to", "in": "query", "required": False,
                            "schema": {"type": "string", "format": "date", "example": "2026-03-31"}},
                           {"name": "format", "in": "query", "required": False,
                            "schema": {"type": "string", "enum": ["json", "csv", "ofx"], "default": "json"}}],
            "responses": {"200": {"description": "the statement (JSON), or its CSV or OFX export",
                                  "headers": {"Link": {"description": "exports: the next page, rel=\"next\"",
                                                       "schema": {"type": "string"}}},
                                  "content": {"application/json": {"schema": ref("Statement")},
                                              "text/csv": {"schema": {"type": "string"}},
                                              "application/x-ofx": {"schema": {"type": "string"}}}},
                          **errors("401", "404", "422", "429")}}},
        "/api/accounts/{number}/accept": {"post": {
            "operationId": "acceptAccount", "summary": "Accept an account another holder opened naming the caller",
            "tags": ["accounts"], "security": BEARER, "parameters": [NUMBER],
            "description": "An account that names holders other than its opener is `pending` until each of them "
                           "accepts it here; accepting again changes nothing. No body.",
            "responses": {"200": json_response("the account as it is now", ref("Account")),
                          **errors("401", "404", "422", "429")}}},
        "/api/accounts/{number}/deposits": movement("deposit", "Deposit", ("409",)),
        "/api/accounts/{number}/withdrawals": movement("withdraw", "Withdraw", ("409",)),
        "/api/transfers": {"post": {
            "operationId": "transfer", "summary": "Move money atomically from the caller's accounts in any banks "
                                                  "into one account in any bank (two-phase commit)",
            "tags": ["transfers"], "security": BEARER, "parameters": [IDEMPOTENCY_KEY],
            "requestBody": body("NewTransfer"),
            "responses": {"201": json_response("decided: committed, or aborted with a reason", ref("Transfer")),
                          "202": json_response("not decided yet: ask GET /api/transfers/{id}", ref("Transfer")),
                          **errors("401", "404", "409", *BODY_ERRORS, "429")}}},
        "/api/transfer-batches": {"post": {
            "operationId": "transferBatch", "summary": "Up to 500 independent transfers in one request, each "
                                                       "committing or aborting on its own",
            "tags": ["transfers"], "security": BEARER, "parameters": [IDEMPOTENCY_KEY],
            "requestBody": {"required": True, "content": {"application/json": {"schema": obj({"items": {
                "type": "array", "minItems": 1, "maxItems": 500, "items": ref("NewTransfer")}})}}},
            "responses": {"201": json_response("each item's outcome, in order", ref("TransferBatchResult")),
                          **errors("401", "404", "409", *BODY_ERRORS, "429")}}},
        "/api/mandates": {
            "get": {"operationId": "listMandates", "summary": "The mandates on the caller's accounts at this bank",
                    "tags": ["mandates"], "security": BEARER,
                    "responses": {"200": json_response("the mandates", ref("MandateList")), **errors("401")}},
            "post": {"operationId": "grantMandate",
                     "summary": "Consent for another bank to initiate debits from one of the caller's accounts",
                     "tags": ["mandates"], "security": BEARER, "parameters": [IDEMPOTENCY_KEY],
                     "requestBody": body("NewMandate"),
                     "responses": {"201": json_response("granted", ref("Mandate")),
                                   **errors("401", "404", "409", *BODY_ERRORS, "429")}}},
        "/api/mandates/{mandate_id}": {"delete": {
            "operationId": "revokeMandate", "summary": "Revoke a mandate: new debits under it stop at once",
            "tags": ["mandates"], "security": BEARER,
            "parameters": [{"name": "mandate_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": json_response("revoked", ref("Mandate")), **errors("401", "404")}}},
        "/api/transfers/{transfer_id}": {"get": {
            "operationId": "getTransfer", "summary": "A transfer, for its initiator or a holder of one of its legs",
            "tags": ["transfers"], "security": BEARER,
            "parameters": [{"name": "transfer_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": json_response("the transfer", ref("Transfer")), **errors("401", "404")}}},
        "/api/consortium/accounts": {"get": {
            "operationId": "consortiumAccounts", "summary": "Every account of a CPF in every bank",
            "tags": ["consortium"], "security": BEARER,
            "parameters": [{"name": "cpf", "in": "query", "required": False,
                            "description": "default: the caller's own", "schema": {**CPF_IN, "maxLength": 32}}],
            "responses": {"200": json_response("the accounts, and the banks that did not answer",
                                               ref("ConsortiumAccounts")), **errors("401", "422")}}},
        "/api/consortium/accounts/{bank}/{number}": {"get": {
            "operationId": "verifyAccount", "summary": "One open account of any bank of the consortium, its holder "
                                                       "masked: checked before a transfer to a typed account",
            "tags": ["consortium"], "security": BEARER,
            "parameters": [{"name": "bank", "in": "path", "required": True, "schema": BANK_ID},
                           {**NUMBER, "description": "an account number at that bank"}],
            "responses": {"200": json_response("the account exists", ref("VerifiedAccount")),
                          **errors("401", "404")}}},
        "/api/health": {"get": {
            "operationId": "health", "summary": "Bank id, broker and database state, transfers in doubt",
            "tags": ["operations"], "security": [],
            "responses": {"200": json_response("the bank's state", ref("Health"))}}},
        "/api/operator/overview": {"get": {
            "operationId": "operatorOverview", "summary": "Transfers by state, in doubt, and holds",
            "tags": ["operations"], "security": [{"operator": []}],
            "description": "Needs X-Operator-Token, the bank's CONSORCIO_OPERATOR_TOKEN (or a request through "
                           "the bank's operator socket); without it 403, from any address. Never cached.",
            "responses": {"200": json_response("the overview", ref("OperatorOverview")), **errors("403")}}},
        "/api/openapi.json": {"get": {
            "operationId": "openapi", "summary": "This document", "tags": ["operations"], "security": [],
            "responses": {"200": {"description": "OpenAPI 3.0",
                                  "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    }
    new_transfer = copy.deepcopy(REQUESTS["NewTransfer"])
    new_transfer["properties"]["sources"]["maxItems"] = max_transfer_legs
    return {
        "openapi": "3.0.3",
        "info": {"title": f"Consórcio bank API{' · ' + bank_name if bank_name else ''}", "version": "1",
                 "description": "The REST API every bank node of the consortium offers. "
                                "Errors are application/problem+json with a stable `code`."},
        "servers": [{"url": "/"}],
        "security": BEARER,
        "tags": [{"name": t} for t in ("customers", "accounts", "transfers", "mandates", "consortium", "operations")],
        "paths": paths,
        "components": {
            "schemas": {**SCHEMAS, **REQUESTS, "NewTransfer": new_transfer},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "the token of POST /api/sessions"},
                "operator": {"type": "apiKey", "in": "header", "name": "X-Operator-Token"},
            },
        },
    }


@bp.get("/openapi.json")
def openapi():
    n = node()
    return jsonify(build(n.bank.name, n.config.limits.max_transfer_legs))
