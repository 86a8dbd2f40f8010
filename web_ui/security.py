"""Who is asking, and did they mean to: the cookie session, login checks and CSRF tokens.

The cookie (HttpOnly, SameSite=Lax, signed with the bank's key: see ``bank_node.api``) holds
the same API token that ``Banking.login`` gives a REST client; every request is checked
again with ``Banking.authenticate``, so a logout or an expiry ends the UI session at once.
Every state-changing request must carry the session's random CSRF token in its form.
"""
from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import current_app, g, jsonify, redirect, request, session, url_for

from bank_node.domain.errors import Unauthorized

CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Endpoints a visitor may reach without logging in.
PUBLIC = frozenset({"web_ui.index", "web_ui.login", "web_ui.register", "web_ui.set_language",
                    "web_ui.static", "web_ui.bank_css"})
JSON_ENDPOINTS = frozenset({"web_ui.transfer_state"})


@dataclass(frozen=True)
class User:
    cpf: str
    name: str
    session: object   # bank_node.services.banking.Session, needed to log out


def csrf_token() -> str:
    """The session's CSRF token, made on first use (also for visitors not logged in yet:
    the login and register forms need one too)."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_ok() -> bool:
    """A POST is accepted only with the session's token, compared in constant time, and (when
    the browser says where it comes from) only from this very origin."""
    expected = session.get("csrf")
    sent = request.form.get(CSRF_FIELD, "")
    if not expected or not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
        return False
    origin = request.headers.get("Origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.host:
        return False
    return True


def start_session(login: dict) -> None:
    """A fresh session on login (no fixation): keep only the language, rotate the CSRF token."""
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
    session["token"] = login["token"]
    session["cpf"] = login["cpf"]
    session["name"] = login["name"]
    session["csrf"] = secrets.token_urlsafe(32)


def end_session() -> None:
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang


def load_user() -> None:
    """Sets ``g.user`` from the cookie, checking the token with the banking service."""
    g.user = None
    token = session.get("token")
    if not token:
        return
    node = current_app.extensions["bank_node"]
    try:
        s = node.banking.authenticate(token)
    except Unauthorized:
        end_session()
        return
    g.user = User(cpf=s.cpf, name=session.get("name", ""), session=s)


def login_redirect():
    """Where a visitor who is not logged in goes instead (a JSON endpoint answers 401)."""
    if request.endpoint in JSON_ENDPOINTS:
        return jsonify({"error": "unauthorized"}), 401
    nxt = request.full_path if request.method == "GET" else None
    if nxt and nxt.endswith("?"):
        nxt = nxt[:-1]
    return redirect(url_for("web_ui.login", next=nxt) if nxt and nxt != "/" else url_for("web_ui.login"))


def safe_next(target: str | None, default: str) -> str:
    """Only a path on this site: never ``//evil.example`` nor ``https://...`` (open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target
