"""Logging in and out, and becoming a customer of this bank."""
from __future__ import annotations

from flask import Blueprint, flash, g, redirect, request, url_for

from bank_node.context import node
from bank_node.domain import errors as E
from bank_node.domain.documents import normalize_cpf
from bank_node.domain.passwords import check_password

from .common import domain_message, refusal_status, render, with_retry_after
from .i18n import translate as _
from .security import end_session, safe_next, start_session

bp = Blueprint("auth", __name__)

# The password rules' refusals (bank_node.domain.passwords), shown under the password field.
PASSWORD_CODES = frozenset({"weak_password", "common_password", "password_contains_cpf"})


@bp.route("/entrar", methods=["GET", "POST"])
def login():
    nxt = safe_next(request.values.get("next"), url_for("web_ui.accounts.dashboard"))
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


def registration_errors(form: dict, password: str, password2: str) -> dict[str, str]:
    """Every field's problem at once (not one per try), checked with the domain's own rules
    before the service is called."""
    errors: dict[str, str] = {}
    cpf = None
    try:
        cpf = normalize_cpf(form["cpf"])
    except E.InvalidDocument:
        errors["cpf"] = _("This CPF is not valid: please check the number.")
    name = " ".join(form["name"].split())
    if not 2 <= len(name) <= 120 or not name.isprintable():
        errors["name"] = _("Write your full name (2 to 120 characters).")
    try:
        check_password(password, cpf)
    except E.DomainError as e:
        errors["password"] = domain_message(e)
    if password != password2:
        errors["password2"] = _("The two passwords are not the same.")
    return errors


@bp.route("/cadastro", methods=["GET", "POST"], endpoint="register")
def register_customer():
    form = {"cpf": request.form.get("cpf", ""), "name": request.form.get("name", "")}
    if request.method == "GET":
        return render("register.html", form=form, errors={})
    password = request.form.get("password", "")
    errors = registration_errors(form, password, request.form.get("password2", ""))
    refusal = None
    if not errors:
        try:
            node().banking.register(form["cpf"], form["name"], password, client=request.remote_addr)
            answer = node().banking.login(form["cpf"], password, client=request.remote_addr)
        except E.DomainError as e:
            refusal = e
            field = "password" if e.code in PASSWORD_CODES else {
                "invalid_document": "cpf", "already_exists": "cpf"}.get(e.code, "form")
            errors[field] = domain_message(e)
        else:
            start_session(answer)
            flash(_("Welcome, %(name)s! Your registration is done.", name=answer["name"]), "success")
            return redirect(url_for("web_ui.accounts.dashboard"))
    page = render("register.html", refusal_status(refusal, 422) if refusal else 422, form=form, errors=errors)
    return with_retry_after(page, refusal) if refusal else page


@bp.post("/sair")
def logout():
    if g.user:
        node().banking.logout(g.user.session)
    end_session()
    flash(_("You have logged out."), "success")
    return redirect(url_for("web_ui.auth.login"))
