"""Every error leaves as application/problem+json with a stable ``code``; never a stack trace.

Domain and storage errors are translated here, at the edge; anything unexpected is logged
with its traceback and answered as a plain 500 problem.
"""
from __future__ import annotations

import logging

from flask import Flask, Response, json, request
from werkzeug.exceptions import HTTPException

from broker import BrokerError
from ..domain.errors import DomainError, TooManyAttempts
from ..storage.port import StorageError

log = logging.getLogger("api")

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 413: "payload_too_large",
               415: "unsupported_media_type", 422: "invalid_input", 429: "too_many_requests"}


def problem(status: int, code: str, title: str, detail: str, **extra) -> Response:
    body = {"type": f"https://consorcio.example/problems/{code}", "title": title, "status": status,
            "detail": detail, "code": code, **extra}
    # Ends with a newline like every JSON answer of Flask's, so a terminal prompt is not glued to it.
    return Response(json.dumps(body) + "\n", status=status, mimetype="application/problem+json")


def _is_api(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _domain(e: DomainError):
        resp = problem(e.status, e.code, e.title, e.detail, **e.extra)
        if isinstance(e, TooManyAttempts):
            resp.headers["Retry-After"] = str(e.retry_after)
        return resp

    @app.errorhandler(StorageError)
    def _storage(e: StorageError):
        log.error("storage error: %s", e)
        return problem(503, "storage_unavailable", "Storage unavailable",
                       "the bank's ledger is not available right now; nothing was changed")

    @app.errorhandler(BrokerError)
    def _broker(e: BrokerError):
        return problem(503, "bank_unreachable", "Consortium unreachable", str(e))

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException):
        # A mistyped address outside /api gets the web UI's HTML page, if the UI is there.
        page = app.extensions.get("web_ui_error_page")
        if page is not None and e.code in (404, 405) and not _is_api(request.path):
            return page(e)
        code = _HTTP_CODES.get(e.code or 500, "http_error")
        detail = e.description or e.name
        if e.code == 413:
            detail = "the request body is too large"
        resp = problem(e.code or 500, code, e.name, detail)
        for name, value in e.get_headers():  # e.g. Allow on a 405
            if name.lower() != "content-type":
                resp.headers[name] = value
        return resp

    @app.errorhandler(Exception)
    def _unexpected(e: Exception):
        log.exception("unexpected error")
        return problem(500, "internal_error", "Internal error",
                       "something went wrong on our side; nothing was changed, please try again")
