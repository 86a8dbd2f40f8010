"""Minhas transferências: every transfer the customer started at this bank or that touched
their accounts here, with its outcome, filtered by period and outcome, a page at a time. A
refused transfer can always be found again."""
from __future__ import annotations

from flask import Blueprint, g, request

from bank_node.context import node
from bank_node.domain import errors as E

from .common import STATUS_LABELS, bank_of, period, render

bp = Blueprint("history", __name__)

PAGE = 20


@bp.get("/transferencias")
def history():
    bounds, values, errors = period()
    values["situacao"] = request.args.get("situacao", "")
    statuses = (values["situacao"],) if values["situacao"] in STATUS_LABELS else ()
    before = request.args.get("antes") or None
    try:
        page = node().banking.transfer_history(g.user.cpf, PAGE, statuses=statuses, before=before, **bounds)
    except E.InvalidInput:
        page = node().banking.transfer_history(g.user.cpf, PAGE, statuses=statuses, **bounds)
    for t in page["transfers"]:
        dest = next((l for l in t["legs"] if l["role"] == "destination"), None)
        t["dest_bank"] = bank_of(dest["bank"]) if dest else None
        t["dest_account"] = dest["account"] if dest else None
    query = {k: v for k, v in values.items() if v}
    return render("history.html", 422 if errors else 200, transfers=page["transfers"], next=page.get("next"),
                  paged=before is not None, values=values, errors=errors, query=query,
                  statuses=list(STATUS_LABELS))
