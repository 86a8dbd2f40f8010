"""Consents ("autorizações"): at the bank that keeps an account, its holder lets another bank of
the consortium start debits from it, with limits and an expiry, and revokes that at any time.

The link another bank shows when one of its transfers was refused for lack of consent
(``/mandates/new?bank=<that bank>&account=<number>``) lands here with the form filled in.
"""
from __future__ import annotations

import uuid

from flask import Blueprint, flash, g, redirect, request, url_for

from bank_node.context import node
from bank_node.domain import errors as E

from . import formatting as F
from .common import AmountError, domain_message, read_amount, render
from .i18n import translate as _

bp = Blueprint("mandates", __name__)


def _accounts() -> list[dict]:
    return [a for a in node().banking.accounts_of(g.user.cpf) if a.get("status") == "open"]


def _banks() -> list:
    return [b for b in node().config.banks if b.id != node().bank_id]


@bp.get("/mandates")
def mandates():
    return render("mandates.html", mandates=node().mandates.list(g.user.cpf)["mandates"], other_banks=_banks(),
                  accounts=_accounts(), form={}, errors={}, idem=uuid.uuid4().hex, new=False)


@bp.route("/mandates/new", methods=["GET", "POST"])
def new():
    form = {k: (request.form.get(k) if request.method == "POST" else request.args.get(k)) or ""
            for k in ("bank", "account", "max_per_transfer", "max_per_day", "expires_at")}
    ctx = dict(mandates=node().mandates.list(g.user.cpf)["mandates"], other_banks=_banks(), accounts=_accounts(),
               form=form, idem=request.form.get("idem") or uuid.uuid4().hex, new=True)
    if request.method == "GET":
        return render("mandates.html", errors={}, **ctx)
    errors: dict[str, str] = {}
    if form["bank"] not in {b.id for b in _banks()}:
        errors["bank"] = _("Choose the bank that may start the debits.")
    if form["account"] not in {a["number"] for a in ctx["accounts"]}:
        errors["account"] = _("Choose one of your accounts at this bank.")
    body = {"account": form["account"], "bank": form["bank"]}
    for field in ("max_per_transfer", "max_per_day"):
        if form[field].strip():
            try:
                body[field] = read_amount(form[field], node().bank_id)
            except AmountError as e:
                errors[field] = str(e)
    if form["expires_at"].strip():
        body["expires_at"] = form["expires_at"].strip()
    if not errors:
        try:
            m = node().mandates.grant(g.user.cpf, body, idem_key=f"ui-mandate:{ctx['idem']}")[1]
        except E.DomainError as e:
            errors["expires_at" if "expires_at" in e.detail else "form"] = domain_message(e)
        else:
            flash(_("%(bank)s may now start debits from account %(number)s.", bank=m["bank_name"],
                    number=F.account_number(m["account"])), "success")
            return redirect(url_for("web_ui.mandates.mandates"))
    return render("mandates.html", 422, errors=errors, **ctx)


@bp.post("/mandates/<mandate_id>/revoke")
def revoke(mandate_id):
    try:
        m = node().mandates.revoke(g.user.cpf, mandate_id)
    except E.NotFound:
        flash(_("There is no such consent among yours."), "error")
    else:
        flash(_("%(bank)s may no longer start debits from account %(number)s.", bank=m["bank_name"],
                number=F.account_number(m["account"])), "success")
    return redirect(url_for("web_ui.mandates.mandates"))
