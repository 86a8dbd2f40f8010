"""Accounts at this bank and their operations; every route checks the caller is a holder."""
from __future__ import annotations

from flask import Blueprint, Response, g, jsonify, request, url_for

from ..domain import errors as E
from ..domain.calendar import day_end, day_start, parse_day
from ..services.statement_export import to_csv, to_ofx
from ..context import node
from .util import idempotency_key, json_body, login_required, query_params

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
@query_params("limit", "before", "from", "to", "format")
def statement(number):
    """One page of entries, newest first; ``next`` reads the page after (absent on the last).
    ``format=csv`` (or ``Accept: text/csv``) and ``format=ofx`` export the same page, with the
    next page's address in a ``Link`` header."""
    raw = request.args.get("limit", "100")
    # ASCII digits and a short string first: "²".isdigit() is true but int("²") raises, and
    # int() refuses strings of more than 4300 digits.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 4) or not (1 <= int(raw) <= 1000):
        raise E.InvalidInput("limit must be a whole number from 1 to 1000")
    bounds = {}
    for name in ("from", "to"):
        if name in request.args:
            day = parse_day(request.args[name])
            if day is None:
                raise E.InvalidInput(f"{name} must be a date such as 2026-03-05", code="invalid_date")
            bounds[name] = day
    if "from" in bounds and "to" in bounds and bounds["from"] > bounds["to"]:
        raise E.InvalidInput("from must not be after to", code="invalid_date")
    fmt = request.args.get("format")
    if fmt is None and request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv" \
            and request.accept_mimetypes["text/csv"] > request.accept_mimetypes["application/json"]:
        fmt = "csv"
    if fmt not in (None, "json", "csv", "ofx"):
        raise E.InvalidInput("format must be json, csv or ofx", code="invalid_format")
    st = node().banking.statement(g.cpf, number, int(raw), before=request.args.get("before"),
                                  since=day_start(bounds["from"]) if "from" in bounds else None,
                                  until=day_end(bounds["to"]) if "to" in bounds else None)
    if fmt in (None, "json"):
        return jsonify(st)
    if fmt == "csv":
        resp = Response(to_csv(st["entries"]), mimetype="text/csv")
        resp.headers["Content-Disposition"] = f'attachment; filename="extrato-{number}.csv"'
    else:
        resp = Response(to_ofx(node().bank_id, st["account"], st["entries"]), mimetype="application/x-ofx")
        resp.headers["Content-Disposition"] = f'attachment; filename="extrato-{number}.ofx"'
    resp.headers["Cache-Control"] = "no-store"
    if st.get("next"):
        args = {k: v for k, v in request.args.items() if k != "before"}
        resp.headers["Link"] = f'<{url_for("accounts.statement", number=number, **args, before=st["next"])}>; rel="next"'
    return resp


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
