"""The pages every visitor reaches: the start, the language switch, the bank's colours, and
the hide-balance preference."""
from __future__ import annotations

from flask import Blueprint, Response, g, redirect, request, session, url_for

from bank_node.context import node

from . import formatting as F
from .i18n import LANGS
from .security import safe_next

bp = Blueprint("site", __name__)


@bp.get("/")
def index():
    return redirect(url_for("web_ui.accounts.dashboard" if g.user else "web_ui.auth.login"))


@bp.post("/idioma")
def set_language():
    lang = request.form.get("lang")
    if lang in LANGS:
        session["lang"] = lang
    return redirect(safe_next(request.form.get("next"), url_for("web_ui.site.index")))


@bp.post("/preferencias/saldos")
def toggle_balance():
    """Hide or show balances on every page, remembered by this browser (also across logins):
    a customer on a bus should not have to show their balance to get to the transfer button."""
    session["hide_balance"] = request.form.get("hide") == "1"
    return redirect(safe_next(request.form.get("next"), url_for("web_ui.site.index")))


@bp.get("/ui/banco.css")
def bank_css():
    """The bank's colour from consorcio.yml, as a stylesheet (the CSP allows no inline style),
    with the focus ring chosen to stand out against it."""
    n = node()
    color = n.bank.color
    css = "".join(f".bank-{b.id}{{--bank:{b.color};--on-bank:{F.text_on(b.color)}}}" for b in n.config.banks)
    body = f":root{{--bank:{color};--on-bank:{F.text_on(color)};--focus-on-bank:{F.focus_on(color)}}}{css}\n"
    resp = Response(body, mimetype="text/css")
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp
