"""Request helpers shared by the blueprints: strict JSON bodies, authentication, idempotency."""
from __future__ import annotations

from functools import wraps
from typing import Any

from flask import current_app, g, request

from ..context import node
from ..domain import errors as E


def json_body(allowed: set[str], required: set[str] = frozenset()) -> dict:
    """Parse a JSON object body strictly: right content type, valid JSON, no unknown fields
    (never mass-assigned), every required field present."""
    if request.mimetype != "application/json":
        raise E.DomainError("send the body as application/json", code="unsupported_media_type", status=415)
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # "[[[[..." nested deeper than the parser's stack: not JSON we accept
        data = None
    if data is None:
        raise E.DomainError("the body is not valid JSON", code="malformed_json", status=400)
    if not isinstance(data, dict):
        raise E.InvalidInput("the body must be a JSON object")
    unknown = set(data) - allowed
    if unknown:
        raise E.InvalidInput(f"unknown fields: {', '.join(sorted(unknown))}", code="unknown_field")
    missing = required - set(data)
    if missing:
        raise E.InvalidInput(f"missing fields: {', '.join(sorted(missing))}", code="missing_field")
    return data


def query_params(*names: str):
    """Declare the query parameters a route reads; any other one is refused (422
    ``unknown_parameter``) by ``refuse_unknown_query_params``, as unknown body fields are."""
    def mark(view):
        view.query_params = frozenset(names)
        return view
    return mark


def refuse_unknown_query_params() -> None:
    """before_request of the API: the query string holds only what the route declared."""
    view = current_app.view_functions.get(request.endpoint or "")
    if view is None or not request.args:
        return
    unknown = set(request.args) - getattr(view, "query_params", frozenset())
    if unknown:
        shown = ", ".join(sorted(repr(u[:40]) for u in unknown)[:5])
        raise E.InvalidInput(f"unknown query parameters: {shown}", code="unknown_parameter")


def idempotency_key() -> str | None:
    """The Idempotency-Key header, checked here for every route alike (1 to 200 printable
    characters), so that no service stores a key it would refuse elsewhere."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and (not (1 <= len(key) <= 200) or not key.isprintable()):
        raise E.InvalidInput("Idempotency-Key must be 1 to 200 printable characters")
    return key


def bearer_token() -> str | None:
    h = request.headers.get("Authorization", "")
    if h[:7].lower() == "bearer ":
        return h[7:].strip()
    return None


def login_required(view):
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any):
        token = bearer_token()
        if token is None:
            raise E.Unauthorized("log in first: send Authorization: Bearer <token>")
        g.session = node().banking.authenticate(token)
        g.cpf = g.session.cpf
        return view(*args, **kwargs)
    return wrapper
