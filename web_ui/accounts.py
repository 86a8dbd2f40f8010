"""The dashboard (every account of the customer in every bank), opening an account, and
deposits and withdrawals at this bank, with a review step for large amounts."""
from __future__ import annotations

import re
import uuid
from decimal import Decimal

from flask import Blueprint, flash, g, redirect, request, url_for

from bank_node.context import node
from bank_node.domain import errors as E
from bank_node.domain.documents import normalize_cnpj, normalize_cpf
from bank_node.domain.money import parse_amount

from . import formatting as F
from .common import AMOUNT_CODES, KIND_LABELS, AmountError, by_bank, domain_message, limit_cents, read_amount, render
from .i18n import translate as _

bp = Blueprint("accounts", __name__)

# A deposit or withdrawal from this amount on is shown back to the customer before it is made:
# one mistyped digit should cost a second look, not ten times the money.
REVIEW_FROM = Decimal("1000.00")
# The dashboard does not wait longer than this for a bank that is down (it says which did not answer).
DASHBOARD_LOOKUP_MS = 1000


@bp.get("/painel")
def dashboard():
    found = node().transfers.lookup(g.user.cpf, g.user.cpf, ttl_ms=DASHBOARD_LOOKUP_MS)
    groups = by_bank(found)
    total = sum((Decimal(a["balance"]) for a in found["accounts"] if "balance" in a), Decimal(0))
    # Accounts here that name this customer and wait for every holder's acceptance: nothing
    # moves on them until then, and the customer's own acceptance is one click away.
    pending = [{**a, "mine_accepted": any(h["cpf"] == g.user.cpf and h["accepted"] for h in a["holders"])}
               for a in node().banking.accounts_of(g.user.cpf) if a.get("status") == "pending"]
    return render("dashboard.html", groups=groups, total=total, partial=bool(found.get("unreachable_banks")),
                  pending=pending)


@bp.post("/contas/<number>/aceitar")
def accept(number):
    """The customer agrees to be a holder of an account someone else opened naming them."""
    try:
        acc = node().banking.accept_account(g.user.cpf, number)
    except E.NotFound:
        flash(_("There is no account with this number among yours at this bank."), "error")
        return redirect(url_for("web_ui.accounts.dashboard"))
    if acc.get("status") == "open":
        flash(_("You accepted account %(number)s: it is open.", number=F.account_number(number)), "success")
    else:
        flash(_("You accepted account %(number)s; it opens when every holder has accepted it.",
                number=F.account_number(number)), "success")
    return redirect(url_for("web_ui.accounts.dashboard"))


@bp.route("/contas/nova", methods=["GET", "POST"])
def open_account():
    form = {k: request.form.get(k, "") for k in ("kind", "coholders", "cnpj", "company_name")}
    form["kind"] = form["kind"] or request.args.get("tipo", "individual")
    if request.method == "GET":
        return render("open_account.html", form=form, errors={}, idem=uuid.uuid4().hex)
    errors: dict[str, str] = {}
    kind = form["kind"] if form["kind"] in KIND_LABELS else None
    if kind is None:
        errors["kind"] = _("Choose the kind of account.")
    others: list[str] = []
    if kind in ("joint", "business"):
        for raw in re.split(r"[\s,;]+", form["coholders"].strip()):
            if not raw:
                continue
            try:
                c = normalize_cpf(raw)
            except E.InvalidDocument:
                errors["coholders"] = _("The CPF %(cpf)s is not valid.", cpf=raw)
                break
            if c != g.user.cpf and c not in others:
                others.append(c)
        else:
            missing = [c for c in others if node().banking.customer(c) is None]
            if missing:
                errors["coholders"] = _("Not a customer of this bank yet (every holder must register here "
                                        "first): %(cpfs)s", cpfs=", ".join(F.cpf(c) for c in missing))
        if kind == "joint" and not others and "coholders" not in errors:
            errors["coholders"] = _("A joint account needs the CPF of at least one co-holder.")
    cnpj = company = None
    if kind == "business":
        try:
            cnpj = normalize_cnpj(form["cnpj"])
        except E.InvalidDocument:
            errors["cnpj"] = _("This CNPJ is not valid: please check the number.")
        company = form["company_name"].strip()
        if len(company) < 2:
            errors["company_name"] = _("Write the company name.")
    if not errors:
        try:
            _status, acc = node().banking.open_account(g.user.cpf, kind, [g.user.cpf] + others, cnpj, company,
                                                       idem_key=request.form.get("idem") or None)
        except E.DomainError as e:
            errors["form"] = domain_message(e)
        else:
            if acc.get("status") == "pending":
                flash(_("Account %(number)s (%(kind)s) is waiting for the other holders to accept it at %(bank)s.",
                        number=F.account_number(acc["number"]), kind=_(KIND_LABELS[acc["kind"]]).lower(),
                        bank=node().bank.name), "success")
            else:
                flash(_("Account %(number)s (%(kind)s) is open at %(bank)s.", number=F.account_number(acc["number"]),
                        kind=_(KIND_LABELS[acc["kind"]]).lower(), bank=node().bank.name), "success")
            return redirect(url_for("web_ui.accounts.dashboard"))
    return render("open_account.html", 422, form=form, errors=errors, idem=uuid.uuid4().hex)


@bp.route("/movimentar", methods=["GET", "POST"])
def move():
    accounts = node().banking.accounts_of(g.user.cpf)
    op = request.values.get("op", "deposit")
    form = {"account": request.values.get("conta", request.form.get("account", "")),
            "op": op if op in ("deposit", "withdraw") else "deposit",
            "amount": request.form.get("amount", "")}
    idem = request.form.get("idem") or uuid.uuid4().hex
    if request.method == "GET":
        return render("move.html", accounts=accounts, form=form, errors={}, idem=idem)
    errors: dict[str, str] = {}
    if form["account"] not in {a["number"] for a in accounts}:
        errors["account"] = _("Choose one of your accounts at this bank.")
    amount = None
    reviewed = request.form.get("reviewed")
    if reviewed:
        # The review page sends back the amount it showed, in the contract's form.
        try:
            amount = F.format_cents(parse_amount(reviewed, limit_cents=limit_cents()))
        except E.InvalidAmount:
            errors["amount"] = _("Write the amount.")
    else:
        try:
            amount = read_amount(form["amount"])
        except AmountError as e:
            errors["amount"] = str(e)
    if not errors and not reviewed and Decimal(amount) >= REVIEW_FROM:
        account = next(a for a in accounts if a["number"] == form["account"])
        return render("move_review.html", form=form, amount=amount, account=account, idem=idem)
    if not errors:
        service = node().banking.deposit if form["op"] == "deposit" else node().banking.withdraw
        try:
            _status, acc = service(g.user.cpf, form["account"], amount, idem_key=idem)
        except E.InsufficientFunds:
            acc = node().banking.account(g.user.cpf, form["account"])
            errors["amount"] = _("Insufficient funds: the available amount of this account is %(available)s.",
                                 available=F.money(acc["available"], g.lang))
        except E.DomainError as e:
            errors["amount" if e.code in AMOUNT_CODES else "form"] = domain_message(e)
        else:
            done = F.money(amount, g.lang)
            what = (_("Deposit of %(amount)s done.", amount=done) if form["op"] == "deposit"
                    else _("Withdrawal of %(amount)s done.", amount=done))
            flash(what + " " + _("Balance: %(balance)s.", balance=F.money(acc["balance"], g.lang)), "success")
            return redirect(url_for("web_ui.statement.statement", number=form["account"]))
    if reviewed and amount:
        form["amount"] = F.amount_text(amount, g.lang)
    return render("move.html", 422, accounts=accounts, form=form, errors=errors, idem=uuid.uuid4().hex)
