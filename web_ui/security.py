"""Who is asking, and did they mean to: login checks, CSRF tokens, safe redirects.

The browser's session lives on the bank's side (``web_ui.sessions``); once logged in it holds
the hash of the API session that ``Banking.login`` opened, and every request checks that
session again with ``Banking.session_by_hash``, so a logout or an expiry ends the UI session at
once. Every state-changing request must carry the session's random CSRF token in its form.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import g, jsonify, redirect, request, session, url_for

from bank_node.context import node
from bank_node.domain.errors import Unauthorized

CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Endpoints a visitor may reach without logging in.
PUBLIC = frozenset({"web_ui.site.index", "web_ui.auth.login", "web_ui.auth.register", "web_ui.site.set_language",
                    "web_ui.static", "web_ui.site.bank_css", "web_ui.site.toggle_balance"})
JSON_ENDPOINTS = frozenset({"web_ui.transfers.state"})
# What a browser keeps across logout and login: its preferences, not its customer's data.
PREFERENCES = ("lang", "hide_balance")


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


def _keep_preferences() -> dict:
    return {k: session[k] for k in PREFERENCES if k in session}


def start_session(login: dict) -> None:
    """A fresh session on login (a new id: no fixation), with this browser's preferences and a
    new CSRF token. The bearer token itself is not kept, only its hash."""
    kept = _keep_preferences()
    session.clear()
    session.update(kept)
    session["auth"] = hashlib.sha256(login["token"].encode()).hexdigest()
    session["name"] = login["name"]
    session["csrf"] = secrets.token_urlsafe(32)
    regenerate = getattr(session, "regenerate", None)
    if regenerate:
        regenerate()


def end_session() -> None:
    kept = _keep_preferences()
    session.clear()
    session.update(kept)
    regenerate = getattr(session, "regenerate", None)
    if regenerate and kept:
        regenerate()


def load_user() -> None:
    """Sets ``g.user`` from the session, checking its API session with the banking service."""
    g.user = None
    th = session.get("auth")
    if not th:
        return
    try:
        s = node().banking.session_by_hash(th)
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
    return redirect(url_for("web_ui.auth.login", next=nxt) if nxt and nxt != "/" else url_for("web_ui.auth.login"))


def safe_next(target: str | None, default: str) -> str:
    """Only a path on this site: never ``//evil.example`` nor ``https://...`` (open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target
