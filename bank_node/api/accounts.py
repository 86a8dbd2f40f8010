"""Accounts at this bank and their operations; every route checks the caller is a holder."""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from ..domain import errors as E
from .util import idempotency_key, json_body, login_required, node, query_params

bp = Blueprint("accounts", __name__)


@bp.post("/accounts")
@login_required
def open_account():
    data = json_body({"kind", "holders", "cnpj", "company_name"}, {"kind", "holders"})
    status, body = node().banking.open_account(g.cpf, data["kind"], data["holders"], data.get("cnpj"),
                                               data.get("company_name"), idempotency_key())
    return jsonify(body), status


@bp.get("/accounts")
@login_required
def list_accounts():
    return jsonify({"bank": node().bank_id, "accounts": node().banking.accounts_of(g.cpf)})


@bp.get("/accounts/<number>")
@login_required
def get_account(number):
    return jsonify(node().banking.account(g.cpf, number))


@bp.get("/accounts/<number>/statement")
@login_required
@query_params("limit")
def statement(number):
    raw = request.args.get("limit", "100")
    # ASCII digits and a short string first: "²".isdigit() is true but int("²") raises, and
    # int() refuses strings of more than 4300 digits.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 4) or not (1 <= int(raw) <= 1000):
        raise E.InvalidInput("limit must be a whole number from 1 to 1000")
    return jsonify(node().banking.statement(g.cpf, number, int(raw)))


@bp.post("/accounts/<number>/deposits")
@login_required
def deposit(number):
    data = json_body({"amount"}, {"amount"})
    status, body = node().banking.deposit(g.cpf, number, data["amount"], idempotency_key())
    return jsonify(body), status


@bp.post("/accounts/<number>/withdrawals")
@login_required
def withdraw(number):
    data = json_body({"amount"}, {"amount"})
    status, body = node().banking.withdraw(g.cpf, number, data["amount"], idempotency_key())
    return jsonify(body), status


@bp.post("/accounts/<number>/accept")
@login_required
def accept(number):
    """A holder named by the account's opener agrees to it (the account is pending until every
    holder has). No body; accepting again answers the same."""
    if request.get_data():
        raise E.InvalidInput("this request takes no body")
    return jsonify(node().banking.accept_account(g.cpf, number)), 200
