"""Sending money, the way Brazilian bank apps do it, and following it to its receipt.

1. the recipient's key (CPF or CNPJ), or a bank and account number typed (verified at once);
2. one of the recipient's accounts, picked by the customer (none pre-selected);
3. the amount from each source account, with its available balance, checked before review;
4. the review: the recipient's masked name, masked CPF and bank;
5. confirm (the button says it is processing), then the transfer's page: the outcome, the
   comprovante with its PDF, and the two-phase commit of that transfer as a timeline.

The transfer being prepared lives in the browser's server-side session; nothing reaches the
transfers service before the confirmation.
"""
from __future__ import annotations

import re
import uuid
from decimal import Decimal
from urllib.parse import quote, urlencode

from flask import Blueprint, Response, flash, g, jsonify, redirect, request, session, url_for

from bank_node.context import node
from bank_node.domain import errors as E
from bank_node.domain.documents import normalize_key

from . import formatting as F
from . import receipt
from .common import AmountError, bank_of, by_bank, domain_message, read_amount, render
from .i18n import N_, ngettext, reason_text
from .i18n import translate as _

bp = Blueprint("transfers", __name__)

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# A screen of the flow waits at most this long for the other banks: a bank that is down is
# named on the page ("did not answer") instead of holding the customer for seconds.
LOOKUP_MS = 800
DRAFT = "transfer"


def draft() -> dict:
    return session.get(DRAFT) or {}


def save_draft(d: dict) -> None:
    session[DRAFT] = d


# ----------------------------------------------------------------------------- 1. the recipient
@bp.get("/transferir")
def start():
    return render("transfer_key.html", key=request.args.get("chave", ""), errors={},
                  typed={"bank": "", "account": ""})


@bp.post("/transferir/chave")
def find_recipient():
    """The recipient's key, sent in a form (never in an address, where it would stay in the
    browser's history): their accounts in every bank, kept for the next step."""
    raw = request.form.get("chave", "")
    try:
        key = normalize_key(raw)
    except E.InvalidDocument:
        return render("transfer_key.html", 422, key=raw, typed={"bank": "", "account": ""},
                      errors={"key": _("This is not a valid CPF or CNPJ: please check the number.")})
    found = node().transfers.lookup(g.user.cpf, key, ttl_ms=LOOKUP_MS)
    candidates = [{k: a[k] for k in ("bank", "bank_name", "number", "kind", "holder")} for a in found["accounts"]]
    save_draft({"key": key, "candidates": candidates, "unreachable": found.get("unreachable_banks", [])})
    return redirect(url_for("web_ui.transfers.destination"))


@bp.get("/transferir/destino")
def destination():
    d = draft()
    if "candidates" not in d:
        return redirect(url_for("web_ui.transfers.start"))
    return render("transfer_destination.html", key=d["key"], candidates=d["candidates"], errors={},
                  unreachable=[bank_of(b) for b in d.get("unreachable", [])])


@bp.post("/transferir/destino")
def choose_destination():
    d = draft()
    choice = request.form.get("destination", "")
    picked = next((c for c in d.get("candidates", []) if f"{c['bank']}.{c['number']}" == choice), None)
    if not d.get("candidates"):
        return redirect(url_for("web_ui.transfers.start"))
    if picked is None:
        return render("transfer_destination.html", 422, key=d["key"], candidates=d["candidates"],
                      unreachable=[bank_of(b) for b in d.get("unreachable", [])],
                      errors={"destination": _("Choose which of these accounts receives the money.")})
    save_draft({"key": d["key"], "dest": {**picked, "document": d["key"]}})
    return redirect(url_for("web_ui.transfers.amounts"))


@bp.post("/transferir/conta")
def typed_account():
    """A bank and account number typed by the customer: verified before anything else, so the
    next screens show whose account it is (masked)."""
    typed = {"bank": request.form.get("bank", ""), "account": F.account_digits(request.form.get("account", ""))}
    errors = {}
    if bank_of(typed["bank"]) is None:
        errors["bank"] = _("Choose the destination bank.")
    if not typed["account"].isdigit() or len(typed["account"]) > 32:
        errors["account"] = _("Write the destination account number.")
    if not errors:
        try:
            info = node().transfers.verify_account(g.user.cpf, typed["bank"], typed["account"])
        except E.NotFound:
            errors["account"] = _("There is no open account %(number)s at %(bank)s: please check the number.",
                                  number=F.account_number(typed["account"]), bank=bank_of(typed["bank"]).name)
        except E.BankUnreachable:
            errors["account"] = _("%(bank)s did not answer, so the account cannot be checked now. Please try again "
                                  "in a moment.", bank=bank_of(typed["bank"]).name)
        else:
            save_draft({"dest": {"bank": info["bank"], "bank_name": bank_of(info["bank"]).name,
                                 "number": info["number"], "kind": info["kind"], "holder": info["holder"],
                                 "document": None}})
            return redirect(url_for("web_ui.transfers.amounts"))
    return render("transfer_key.html", 422, key="", typed=typed, errors=errors)


# ----------------------------------------------------------------------------- 2. the amounts
def _own_accounts(d: dict) -> dict:
    mine = node().transfers.lookup(g.user.cpf, g.user.cpf, ttl_ms=LOOKUP_MS)
    dest = d["dest"]
    mine["accounts"] = [a for a in mine["accounts"] if (a["bank"], a["number"]) != (dest["bank"], dest["number"])]
    return mine


@bp.get("/transferir/valores")
def amounts():
    d = draft()
    if "dest" not in d:
        return redirect(url_for("web_ui.transfers.start"))
    mine = _own_accounts(d)
    d["mine"] = mine
    save_draft(d)
    values = {f"{s['bank']}.{s['account']}": F.amount_text(s["amount"], g.lang) for s in d.get("sources", [])}
    return render("transfer_amounts.html", dest=d["dest"], groups=by_bank(mine), values=values, errors={},
                  max_legs=node().config.limits.max_transfer_legs)


@bp.post("/transferir/valores")
def check_amounts():
    """Each amount read in the customer's language, within the limit of the bank holding the
    account and within its available balance: refused here, before the review, not after."""
    d = draft()
    if "dest" not in d or "mine" not in d:
        return redirect(url_for("web_ui.transfers.start"))
    available = {f"{a['bank']}.{a['number']}": a for a in d["mine"]["accounts"]}
    values = {k[len("amount."):]: v for k, v in request.form.items() if k.startswith("amount.")}
    errors: dict[str, str] = {}
    sources = []
    for key, raw in values.items():
        acc = available.get(key)
        if acc is None:
            errors["sources"] = _("Choose the source accounts from the list.")
            continue
        try:
            amount = read_amount(raw, acc["bank"], required=False)
        except AmountError as e:
            errors["amount." + key] = str(e)
            continue
        if amount is None:
            continue
        if Decimal(amount) > Decimal(acc["available"]):
            errors["amount." + key] = _("More than this account has available (%(available)s).",
                                        available=F.money(acc["available"], g.lang))
            continue
        sources.append({"bank": acc["bank"], "account": acc["number"], "amount": amount})
    if not sources and not errors:
        errors["sources"] = _("Write the amount to take from at least one of your accounts.")
    max_legs = node().config.limits.max_transfer_legs
    if len(sources) > max_legs:
        errors["sources"] = ngettext("A transfer has at most %(num)d source account.",
                                     "A transfer has at most %(num)d source accounts.", max_legs)
    if errors:
        return render("transfer_amounts.html", 422, dest=d["dest"], groups=by_bank(d["mine"]), values=values,
                      errors=errors, max_legs=max_legs)
    d.update(sources=sources, id=str(uuid.uuid4()))
    save_draft(d)
    return redirect(url_for("web_ui.transfers.review"))


# ----------------------------------------------------------------------------- 3. review and confirm
@bp.get("/transferir/revisar")
def review():
    d = draft()
    if not d.get("sources") or not d.get("id"):
        return redirect(url_for("web_ui.transfers.amounts" if d.get("dest") else "web_ui.transfers.start"))
    total = sum(Decimal(s["amount"]) for s in d["sources"])
    return render("transfer_review.html", d=d, dest=d["dest"], total=total)


@bp.post("/transferir/confirmar")
def confirm():
    d = draft()
    sent = request.form.get("draft", "")
    if not d.get("id") or d["id"] != sent or not d.get("sources"):
        # Sent twice, or from an old page: the transfer id makes it safe to show what happened.
        if _UUID.fullmatch(sent):
            try:
                node().transfers.status(g.user.cpf, sent)
                return redirect(url_for("web_ui.transfers.status", transfer_id=sent))
            except E.NotFound:
                pass
        flash(_("This confirmation has expired: please review the transfer again."), "error")
        return redirect(url_for("web_ui.transfers.start"))
    dest = d["dest"]
    body = {"id": d["id"], "sources": [{k: s[k] for k in ("bank", "account", "amount")} for s in d["sources"]],
            "destination": {"bank": dest["bank"], "account": dest["number"]}}
    try:
        _status, view = node().transfers.submit(g.user.cpf, body)
    except E.DomainError as e:
        session.pop(DRAFT, None)
        flash(domain_message(e), "error")
        return redirect(url_for("web_ui.transfers.start"))
    session.pop(DRAFT, None)
    # Who was paid, as the customer chose them: the receipt names them even when the bank
    # holding the destination is not this one.
    payees = dict(session.get("payees") or {})
    payees[view["id"]] = {"holder": dest.get("holder"), "document": dest.get("document")}
    session["payees"] = dict(list(payees.items())[-20:])
    return redirect(url_for("web_ui.transfers.status", transfer_id=view["id"]))


# ----------------------------------------------------------------------------- 4. the transfer's page
def transfer_amount(view: dict) -> str:
    """The amount of the transfer: the credit to the destination, else what this bank's legs
    show (a participant bank may only know its own legs)."""
    if view.get("amount"):
        return view["amount"]
    legs = view.get("legs", [])
    credit = [Decimal(l["amount"]) for l in legs if l.get("role") == "destination"]
    return str(sum(credit) if credit else sum(Decimal(l["amount"]) for l in legs))


def mandate_url(leg: dict) -> str | None:
    """Where the holder of a leg refused for lack of consent gives it: the holding bank's page."""
    b = bank_of(leg["bank"])
    if b is None:
        return None
    return f"{b.url}/mandates/new?{urlencode({'bank': node().bank_id, 'account': leg['account']})}"


def describe(view: dict) -> dict:
    """Everything the transfer's page, its receipt and its PDF show, from the service's answer
    and this bank's own knowledge of the accounts (masked names only)."""
    payee = (session.get("payees") or {}).get(view["id"], {})
    legs = []
    for leg in view.get("legs", []):
        holder = leg.get("holder")
        if holder is None and leg["bank"] == node().bank_id:
            try:
                holder = node().transfers.verify_account(g.user.cpf, leg["bank"], leg["account"])["holder"]
            except E.DomainError:
                holder = None
        if holder is None and leg.get("role") == "destination":
            holder = payee.get("holder")
        item = {**leg, "bank_obj": bank_of(leg["bank"]), "holder": holder,
                "reason_text": reason_text(leg["reason"]) if leg.get("reason") else None}
        if leg.get("reason") == "no_mandate":
            item["mandate_url"] = mandate_url(leg)
        legs.append(item)
    sources = [l for l in legs if l.get("role") == "source"]
    dests = [l for l in legs if l.get("role") == "destination"]
    payers = list(dict.fromkeys(l["holder"] for l in sources if l.get("holder")))
    leg_reasons = any(l.get("reason") for l in legs)
    status = view["status"]
    return {
        "view": view, "legs": legs, "sources": sources, "destination": dests[0] if dests else None,
        "amount": transfer_amount(view), "payers": payers,
        "payee_document": F.mask_document(payee.get("document")) if payee.get("document") else None,
        "general_reason": reason_text(view.get("reason")) if status == "aborted" and not leg_reasons else None,
        "timeline": timeline_rows(view.get("timeline") or []),
        "final": status in ("committed", "aborted"),
    }


EVENTS = {
    "prepare_sent": N_("PREPARE sent to %(bank)s"),
    "vote_yes": N_("%(bank)s voted YES: the money is held"),
    "vote_no": N_("%(bank)s voted NO"),
    "decision_commit": N_("COMMIT decided and written to disk"),
    "decision_abort": N_("ABORT decided and written to disk"),
    "decision_sent": N_("Decision sent to %(bank)s"),
    "decision_applied": N_("%(bank)s applied the decision"),
    "ack": N_("%(bank)s acknowledged the decision"),
}


def timeline_rows(events: list[dict]) -> list[dict]:
    """The two-phase commit of one transfer, as the banks recorded it, in words."""
    rows = []
    for ev in events:
        b = bank_of(ev.get("bank", ""))
        name = b.name if b else ev.get("bank", "")
        label = EVENTS.get(ev.get("event", ""))
        text = _(label, bank=name) if label else ev.get("event", "")
        detail = ev.get("detail")
        if ev.get("event") == "vote_no" and detail:
            detail = reason_text(detail)
        rows.append({"at": ev.get("at"), "bank": ev.get("bank"), "bank_obj": b, "event": ev.get("event"),
                     "text": text, "ms": ev.get("ms"), "detail": detail})
    return rows


def _view_or_elsewhere(transfer_id: str):
    try:
        return node().transfers.status(g.user.cpf, transfer_id), None
    except E.NotFound:
        elsewhere = []
        if _UUID.fullmatch(transfer_id):
            elsewhere = [{"bank": b, "url": f"{b.url}/transferencias/{quote(transfer_id)}"}
                         for b in node().config.banks if b.id != node().bank_id]
        return None, render("transfer_elsewhere.html", 404, transfer_id=transfer_id, elsewhere=elsewhere)


@bp.get("/transferencias/<transfer_id>")
def status(transfer_id):
    view, elsewhere = _view_or_elsewhere(transfer_id)
    if view is None:
        return elsewhere
    return render("transfer_status.html", **describe(view))


@bp.get("/transferencias/<transfer_id>/comprovante.pdf")
def receipt_pdf(transfer_id):
    view, elsewhere = _view_or_elsewhere(transfer_id)
    if view is None:
        return elsewhere
    info = describe(view)
    if not info["final"]:
        return redirect(url_for("web_ui.transfers.status", transfer_id=transfer_id))
    pdf = receipt.render_pdf(info, node().bank, g.lang)
    resp = Response(pdf, mimetype="application/pdf")
    resp.headers["Content-Disposition"] = f'attachment; filename="comprovante-{transfer_id}.pdf"'
    return resp


@bp.get("/transferencias/<transfer_id>/estado", endpoint="state")
def transfer_state(transfer_id):
    """What the status page polls while a transfer is pending."""
    try:
        view = node().transfers.status(g.user.cpf, transfer_id)
    except E.NotFound:
        return jsonify({"error": "not_found"}), 404
    return jsonify({"id": view["id"], "status": view["status"]})
