"""The screens. Every view calls the same services as the REST API (``node.banking`` and
``node.transfers``) with the CPF of the logged-in customer, and turns their answers and their
``DomainError`` codes into pages in the customer's language."""
from __future__ import annotations

import re
import uuid
from decimal import Decimal
from urllib.parse import quote

from flask import (Blueprint, Response, current_app, flash, g, jsonify, redirect, render_template, request,
                   session, url_for)

from bank_node.domain import errors as E
from bank_node.domain.documents import normalize_cnpj, normalize_cpf
from bank_node.domain.money import to_cents

from . import formatting as F
from .i18n import LANGS, current_lang, error_text, reason_text, wait_text
from .i18n import translate as _
from .security import end_session, safe_next, start_session

KIND_LABELS = {"individual": "Individual", "joint": "Joint", "business": "Business"}
ENTRY_LABELS = {"deposit": "Deposit", "withdrawal": "Withdrawal", "transfer_out": "Transfer sent",
                "transfer_in": "Transfer received"}
# Refusals about the amount typed, shown under the amount field.
AMOUNT_CODES = frozenset({"invalid_amount", "daily_limit_exceeded", "amount_over_limit"})
# The password rules' refusals (bank_node.domain.passwords), shown under the password field.
PASSWORD_CODES = {"weak_password": "password", "common_password": "password", "password_contains_cpf": "password"}
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def node():
    return current_app.extensions["bank_node"]


def render(template: str, status: int = 200, **ctx) -> tuple[str, int]:
    return render_template(f"web_ui/{template}", **ctx), status


def limit_cents() -> int:
    return to_cents(node().config.limits.max_amount)


def retry_after(e: E.DomainError) -> int | None:
    """The seconds a ``too_many_attempts`` refusal asks to wait, if it says."""
    value = getattr(e, "retry_after", None)
    if value is None:
        value = (e.extra or {}).get("retry_after")
    try:
        return max(1, int(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


def domain_message(e: E.DomainError) -> str:
    """A refusal of the services in the customer's words, with the figures it carries."""
    lang = current_lang()
    extra = e.extra or {}
    if e.code == "too_many_attempts" and retry_after(e) is not None:
        return _("Too many attempts: please wait {wait} and try again.", wait=wait_text(retry_after(e)))
    if e.code == "daily_limit_exceeded" and extra.get("limit") is not None and extra.get("remaining") is not None:
        try:
            return _("This amount is over the daily limit of this account: the limit is {limit} a day and "
                     "{remaining} is left for today.", limit=F.money(extra["limit"], lang),
                     remaining=F.money(extra["remaining"], lang))
        except (ArithmeticError, ValueError, TypeError):
            pass
    return error_text(e.code, e.detail, limit=F.money(node().config.limits.max_amount, lang))


def refusal_status(e: E.DomainError, default: int) -> int:
    """A throttled form is answered 429 (as the API does), any other refusal with ``default``."""
    return 429 if e.code == "too_many_attempts" else default


def with_retry_after(resp_status: tuple[str, int], e: E.DomainError):
    """The page, with a Retry-After header when the refusal says how long to wait."""
    body, status = resp_status
    wait = retry_after(e) if e.code == "too_many_attempts" else None
    return (body, status, {"Retry-After": str(wait)}) if wait is not None else (body, status)


def bank_of(bank_id: str):
    for b in node().config.banks:
        if b.id == bank_id:
            return b
    return None


def by_bank(lookup: dict) -> list[dict]:
    """The lookup's accounts grouped per bank of the consortium, in the consortium's order,
    with the banks that did not answer marked as such (never silently left out)."""
    here = node().bank_id
    unreachable = set(lookup.get("unreachable_banks", []))
    return [{"bank": b, "here": b.id == here, "unreachable": b.id in unreachable,
             "accounts": [a for a in lookup.get("accounts", []) if a["bank"] == b.id]}
            for b in node().config.banks]


def register(bp: Blueprint) -> None:  # noqa: C901 - one place lists every screen
    # ------------------------------------------------------------------ visitors
    @bp.get("/")
    def index():
        return redirect(url_for("web_ui.dashboard" if g.user else "web_ui.login"))

    @bp.route("/entrar", methods=["GET", "POST"])
    def login():
        nxt = safe_next(request.values.get("next"), url_for("web_ui.dashboard"))
        if g.user and request.method == "GET":
            return redirect(nxt)
        form = {"cpf": request.form.get("cpf", "")}
        if request.method == "POST":
            try:
                answer = node().banking.login(request.form.get("cpf", ""), request.form.get("password", ""),
                                              client=request.remote_addr)
            except E.DomainError as e:
                return with_retry_after(render("login.html", refusal_status(e, 401), form=form,
                                               error=domain_message(e), next=nxt), e)
            start_session(answer)
            return redirect(nxt)
        return render("login.html", form=form, error=None, next=nxt)

    @bp.route("/cadastro", methods=["GET", "POST"], endpoint="register")
    def register_customer():
        form = {"cpf": request.form.get("cpf", ""), "name": request.form.get("name", "")}
        if request.method == "POST":
            errors = {}
            refusal = None
            password = request.form.get("password", "")
            if password != request.form.get("password2", ""):
                errors["password2"] = _("The two passwords are not the same.")
            else:
                try:
                    node().banking.register(form["cpf"], form["name"], password, client=request.remote_addr)
                    answer = node().banking.login(form["cpf"], password, client=request.remote_addr)
                except E.DomainError as e:
                    refusal = e
                    field = PASSWORD_CODES.get(e.code) or {"invalid_document": "cpf", "already_exists": "cpf",
                                                           "too_many_attempts": "form"}.get(
                        e.code, "name" if "name" in e.detail else None)
                    errors[field or "form"] = domain_message(e)
                else:
                    start_session(answer)
                    flash(_("Welcome, {name}! Your registration is done.", name=answer["name"]), "success")
                    return redirect(url_for("web_ui.dashboard"))
            page = render("register.html", refusal_status(refusal, 422) if refusal else 422, form=form,
                          errors=errors)
            return with_retry_after(page, refusal) if refusal else page
        return render("register.html", form=form, errors={})

    @bp.post("/sair")
    def logout():
        if g.user:
            node().banking.logout(g.user.session)
        end_session()
        flash(_("You have logged out."), "success")
        return redirect(url_for("web_ui.login"))

    @bp.post("/idioma")
    def set_language():
        lang = request.form.get("lang")
        if lang in LANGS:
            session["lang"] = lang
        return redirect(safe_next(request.form.get("next"), url_for("web_ui.index")))

    @bp.get("/ui/banco.css")
    def bank_css():
        """The bank's colour from consorcio.yml, as a stylesheet (the CSP allows no inline style)."""
        color = node().bank.color
        css = "".join(f".bank-{b.id}{{--bank:{b.color};--on-bank:{F.text_on(b.color)}}}"
                      for b in node().config.banks)
        body = f":root{{--bank:{color};--on-bank:{F.text_on(color)}}}{css}\n"
        resp = Response(body, mimetype="text/css")
        resp.headers["Cache-Control"] = "public, max-age=300"
        return resp

    # ------------------------------------------------------------------ customers
    @bp.get("/painel")
    def dashboard():
        found = node().transfers.lookup(g.user.cpf, g.user.cpf)
        groups = by_bank(found)
        total = sum((Decimal(a["balance"]) for a in found["accounts"] if "balance" in a), Decimal(0))
        return render("dashboard.html", groups=groups, total=total,
                      partial=bool(found.get("unreachable_banks")))

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
                    errors["coholders"] = _("The CPF {cpf} is not valid.", cpf=raw)
                    break
                if c != g.user.cpf and c not in others:
                    others.append(c)
            else:
                missing = [c for c in others if node().banking.customer(c) is None]
                if missing:
                    errors["coholders"] = _("Not a customer of this bank yet (every holder must register here "
                                            "first): {cpfs}", cpfs=", ".join(F.cpf(c) for c in missing))
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
                flash(_("Account {number} ({kind}) is open at {bank}.", number=F.account_number(acc["number"]),
                        kind=_(KIND_LABELS[acc["kind"]]).lower(), bank=node().bank.name), "success")
                return redirect(url_for("web_ui.dashboard"))
        return render("open_account.html", 422, form=form, errors=errors, idem=uuid.uuid4().hex)

    @bp.get("/contas/<number>")
    def statement(number):
        try:
            st = node().banking.statement(g.user.cpf, number)
        except E.NotFound:
            return render("error.html", 404, title=_("Account not found"),
                          message=_("There is no account with this number among yours at this bank."))
        return render("statement.html", account=st["account"], entries=st["entries"])

    @bp.route("/movimentar", methods=["GET", "POST"])
    def move():
        accounts = node().banking.accounts_of(g.user.cpf)
        op = request.values.get("op", "deposit")
        form = {"account": request.values.get("conta", request.form.get("account", "")),
                "op": op if op in ("deposit", "withdraw") else "deposit",
                "amount": request.form.get("amount", "")}
        if request.method == "GET":
            return render("move.html", accounts=accounts, form=form, errors={}, idem=uuid.uuid4().hex)
        errors: dict[str, str] = {}
        if form["account"] not in {a["number"] for a in accounts}:
            errors["account"] = _("Choose one of your accounts at this bank.")
        try:
            amount = F.parse_user_amount(form["amount"], limit_cents())
            if amount is None:
                errors["amount"] = _("Write the amount.")
        except E.InvalidAmount as e:
            errors["amount"] = domain_message(e)
        if not errors:
            service = node().banking.deposit if form["op"] == "deposit" else node().banking.withdraw
            try:
                _status, acc = service(g.user.cpf, form["account"], amount,
                                       idem_key=request.form.get("idem") or None)
            except E.InsufficientFunds:
                acc = node().banking.account(g.user.cpf, form["account"])
                errors["amount"] = _("Insufficient funds: the available amount of this account is {available}.",
                                     available=F.money(acc["available"], g.lang))
            except E.DomainError as e:
                errors["amount" if e.code in AMOUNT_CODES else "form"] = domain_message(e)
            else:
                what = _("Deposit of {amount} done.") if form["op"] == "deposit" else _("Withdrawal of {amount} done.")
                flash(what.format(amount=F.money(amount, g.lang)) + " "
                      + _("Balance: {balance}.", balance=F.money(acc["balance"], g.lang)), "success")
                return redirect(url_for("web_ui.statement", number=form["account"]))
        return render("move.html", 422, accounts=accounts, form=form, errors=errors, idem=uuid.uuid4().hex)

    # ------------------------------------------------------------------ transfers
    def transfer_form(values: dict, errors: dict, status: int = 200):
        mine = node().transfers.lookup(g.user.cpf, g.user.cpf)
        dest_cpf = values.get("dest_cpf", "").strip()
        candidates, dest_unreachable = None, []
        if dest_cpf:
            try:
                found = node().transfers.lookup(g.user.cpf, dest_cpf)
            except E.InvalidDocument:
                errors.setdefault("dest_cpf", _("This CPF is not valid: please check the number."))
            else:
                candidates = found["accounts"]
                dest_unreachable = [bank_of(b) for b in found.get("unreachable_banks", [])]
        return render("transfer.html", status, groups=by_bank(mine), values=values, errors=errors,
                      candidates=candidates, dest_unreachable=dest_unreachable,
                      dest_cpf=dest_cpf, max_legs=node().config.limits.max_transfer_legs)

    @bp.get("/transferir")
    def transfer():
        values = {"dest_cpf": request.args.get("cpf", ""), "amounts": {}}
        return transfer_form(values, {})

    def read_transfer(form) -> tuple[dict, dict, list, dict | None]:
        """The transfer form as the service's sources and destination, or errors per field."""
        values = {"dest_cpf": form.get("dest_cpf", ""), "destination": form.get("destination", ""),
                  "dest_bank": form.get("dest_bank", ""), "dest_account": form.get("dest_account", ""),
                  "amounts": {k[len("amount."):]: v for k, v in form.items() if k.startswith("amount.")}}
        errors: dict[str, str] = {}
        sources = []
        for key, raw in values["amounts"].items():
            bank, _sep, number = key.partition(".")
            try:
                amount = F.parse_user_amount(raw, limit_cents())
            except E.InvalidAmount as e:
                errors["amount." + key] = domain_message(e)
                continue
            if amount is not None:
                sources.append({"bank": bank, "account": number, "amount": amount})
        if not sources and not errors:
            errors["sources"] = _("Write the amount to take from at least one of your accounts.")
        max_legs = node().config.limits.max_transfer_legs
        if len(sources) > max_legs:
            errors["sources"] = _("A transfer has at most {n} source accounts.", n=max_legs)
        choice = values["destination"]
        if choice and choice != "manual":
            dbank, _sep, daccount = choice.partition(".")
        else:
            dbank, daccount = values["dest_bank"], F.account_digits(values["dest_account"])
        destination = None
        if not dbank and not daccount:
            errors["destination"] = _("Choose the destination account.")
        elif bank_of(dbank) is None:
            errors["dest_bank"] = _("Choose the destination bank.")
        elif not daccount.isdigit() or len(daccount) > 32:
            errors["dest_account"] = _("Write the destination account number.")
        elif any(s["bank"] == dbank and s["account"] == daccount for s in sources):
            errors["destination"] = _("The destination cannot also be a source.")
        else:
            destination = {"bank": dbank, "account": daccount}
        for s in sources:
            if bank_of(s["bank"]) is None or not s["account"].isdigit():
                errors["sources"] = _("Choose the source accounts from the list.")
        return values, errors, sources, destination

    @bp.post("/transferir/revisar")
    def transfer_review():
        values, errors, sources, destination = read_transfer(request.form)
        if errors:
            return transfer_form(values, errors, 422)
        holder = None
        if values["dest_cpf"].strip() and values["destination"] not in ("", "manual"):
            try:
                found = node().transfers.lookup(g.user.cpf, values["dest_cpf"])
            except E.InvalidDocument:
                found = {"accounts": []}
            holder = next((a["holder"] for a in found["accounts"]
                           if (a["bank"], a["number"]) == (destination["bank"], destination["account"])), None)
        total = sum(Decimal(s["amount"]) for s in sources)
        draft = {"id": str(uuid.uuid4()), "sources": sources, "destination": destination, "holder": holder,
                 "total": str(total)}
        session["draft"] = draft
        return render("transfer_review.html", draft=draft, values=values)

    @bp.post("/transferir/confirmar")
    def transfer_confirm():
        draft = session.get("draft")
        sent = request.form.get("draft", "")
        if not draft or draft.get("id") != sent:
            # Sent twice, or from an old page: the transfer id makes it safe to show what happened.
            if _UUID.fullmatch(sent):
                try:
                    node().transfers.status(g.user.cpf, sent)
                    return redirect(url_for("web_ui.transfer_status", transfer_id=sent))
                except E.NotFound:
                    pass
            flash(_("This confirmation has expired: please review the transfer again."), "error")
            return redirect(url_for("web_ui.transfer"))
        body = {"id": draft["id"], "sources": draft["sources"], "destination": draft["destination"]}
        try:
            _status, view = node().transfers.submit(g.user.cpf, body)
        except E.DomainError as e:
            session.pop("draft", None)
            flash(domain_message(e), "error")
            return redirect(url_for("web_ui.transfer"))
        session.pop("draft", None)
        return redirect(url_for("web_ui.transfer_status", transfer_id=view["id"]))

    @bp.get("/transferencias/<transfer_id>")
    def transfer_status(transfer_id):
        try:
            view = node().transfers.status(g.user.cpf, transfer_id)
        except E.NotFound:
            elsewhere = []
            if _UUID.fullmatch(transfer_id):
                elsewhere = [{"bank": b, "url": f"{b.url}/transferencias/{quote(transfer_id)}"}
                             for b in node().config.banks if b.id != node().bank_id]
            return render("transfer_elsewhere.html", 404, transfer_id=transfer_id, elsewhere=elsewhere)
        legs = [{**leg, "bank_obj": bank_of(leg["bank"]),
                 "reason_text": reason_text(leg["reason"]) if leg.get("reason") else None}
                for leg in view["legs"]]
        leg_reasons = any(leg.get("reason") for leg in view["legs"])
        general = reason_text(view.get("reason")) if view["status"] == "aborted" and not leg_reasons else None
        return render("transfer_status.html", view=view, legs=legs, general_reason=general)

    @bp.get("/transferencias/<transfer_id>/estado")
    def transfer_state(transfer_id):
        """What the status page polls while a transfer is pending."""
        try:
            view = node().transfers.status(g.user.cpf, transfer_id)
        except E.NotFound:
            return jsonify({"error": "not_found"}), 404
        return jsonify({"id": view["id"], "status": view["status"]})
