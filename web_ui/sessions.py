"""Browser sessions kept by the bank, not in the cookie.

The cookie carries one random id (256 bits) and nothing else: no bearer token, no CPF, no name.
What the session holds (who is logged in, as the hash of their API session's token; the CSRF
token; the language; a transfer being prepared) is a row of the bank's own database, keyed by
the SHA-256 of that id, so it works with several processes per bank and a copied database
reveals no usable cookie. The cookie is HttpOnly and SameSite=Lax; over HTTPS it is also
Secure and named with the ``__Host-`` prefix, which the browser only accepts from a secure page
for this very host (no Domain, Path=/): another bank on a sibling host name cannot plant or
receive it.
"""
from __future__ import annotations

import hashlib
import json
import secrets
import time

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict

from bank_node.context import EXTENSION

# Where a session is never opened: the API (bearer tokens only) and the static files.
_SESSIONLESS = ("/api/", "/ui/static/")


class StoredSession(CallbackDict, SessionMixin):
    def __init__(self, data: dict | None = None, sid: str | None = None):
        def on_update(self):
            self.modified = True
        super().__init__(data or {}, on_update)
        self.sid = sid
        self.modified = False
        self.rotate = False   # set on login: a new id, so a planted id is worth nothing

    def regenerate(self) -> None:
        self.rotate = True
        self.modified = True


def _hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def cookie_name(app: Flask, secure: bool) -> str:
    base = f"consorcio_{app.extensions[EXTENSION].bank_id}"
    return f"__Host-{base}" if secure else base


class StoredSessionInterface(SessionInterface):
    """Flask's session, stored in the bank's ledger database through the storage port."""

    def _node(self, app: Flask):
        return app.extensions[EXTENSION]

    def open_session(self, app: Flask, request: Request) -> StoredSession | None:
        if request.path.startswith(_SESSIONLESS) or request.path == "/api":
            return self.make_null_session(app)
        sid = request.cookies.get(cookie_name(app, request.is_secure))
        if sid and 20 <= len(sid) <= 100 and sid.isascii():
            with self._node(app).store.transaction(write=False) as tx:
                row = tx.get_ui_session(_hash(sid), time.time())
            if row is not None:
                try:
                    return StoredSession(json.loads(row["data"]), sid)
                except ValueError:
                    pass
        return StoredSession()

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not isinstance(session, StoredSession):
            return
        from flask import request
        secure = request.is_secure
        name = cookie_name(app, secure)
        store = self._node(app).store
        if not session:
            if session.sid is not None:
                with store.transaction() as tx:
                    tx.delete_ui_session(_hash(session.sid))
                response.delete_cookie(name, path="/", secure=secure, httponly=True, samesite="Lax")
            return
        if not session.modified:
            return
        now = time.time()
        ttl = self._node(app).config.security.session_ttl_s
        old = session.sid
        if old is None or session.rotate:
            session.sid = secrets.token_urlsafe(32)
        with store.transaction() as tx:
            if old is not None and old != session.sid:
                tx.delete_ui_session(_hash(old))
            if old is None:
                tx.purge_ui_sessions(now)   # new sessions sweep the expired ones
            tx.put_ui_session(_hash(session.sid), json.dumps(dict(session)), now, now + ttl)
        response.set_cookie(name, session.sid, path="/", secure=secure, httponly=True, samesite="Lax")
        response.vary.add("Cookie")
