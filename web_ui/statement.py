"""The extrato: an account's entries grouped by day (the consortium's day, in Brasília), the
other side of each transfer (masked), a period filter, pages read through the service's cursor,
and the CSV and OFX exports."""
from __future__ import annotations

from itertools import groupby

from flask import Blueprint, Response, g, request

from bank_node.context import node
from bank_node.domain import errors as E
from bank_node.services.statement_export import to_csv, to_ofx

from . import formatting as F
from .common import period, render
from .i18n import translate as _

bp = Blueprint("statement", __name__)

PAGE = 50
EXPORT_MAX = 10_000   # entries in one export file; a longer period is exported in parts


def not_found():
    return render("error.html", 404, title=_("Account not found"),
                  message=_("There is no account with this number among yours at this bank."))


@bp.get("/contas/<number>")
def statement(number):
    bounds, values, errors = period()
    before = request.args.get("antes") or None
    try:
        st = node().banking.statement(g.user.cpf, number, PAGE, before=before, **({} if errors else bounds))
    except E.NotFound:
        return not_found()
    except E.InvalidInput:   # a cursor that is not one of ours: start again from the newest
        st = node().banking.statement(g.user.cpf, number, PAGE, **({} if errors else bounds))
    days = [{"day": day, "title": F.day_title(day, g.lang), "entries": list(entries)}
            for day, entries in groupby(st["entries"], key=lambda e: F.local_day(e["at"]))]
    query = {k: v for k, v in values.items() if v}
    return render("statement.html", 422 if errors else 200, account=st["account"], days=days,
                  entries=st["entries"], next=st.get("next"), paged=before is not None, values=values,
                  errors=errors, query=query)


@bp.get("/contas/<number>/extrato.<fmt>")
def export(number, fmt):
    """Every entry of the period (at most EXPORT_MAX), read page by page through the cursor."""
    if fmt not in ("csv", "ofx"):
        return not_found()
    bounds, _values, errors = period()
    if errors:
        bounds = {}
    entries, before, st = [], None, None
    try:
        while len(entries) < EXPORT_MAX:
            st = node().banking.statement(g.user.cpf, number, 1000, before=before, **bounds)
            entries += st["entries"]
            before = st.get("next")
            if not before:
                break
    except E.NotFound:
        return not_found()
    entries = entries[:EXPORT_MAX]
    if fmt == "csv":
        resp = Response(to_csv(entries), mimetype="text/csv")
    else:
        resp = Response(to_ofx(node().bank_id, st["account"], entries), mimetype="application/x-ofx")
    resp.headers["Content-Disposition"] = f'attachment; filename="extrato-{node().bank_id}-{number}.{fmt}"'
    return resp
