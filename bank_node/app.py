"""The bank's WSGI application: the REST API and the web UI composed over one ``BankNode``.

This is the one place that knows both front ends: ``bank_node.api`` never imports the web UI
and ``web_ui`` never imports the API; each offers an ``init_app(app)`` that registers its
blueprints, as in Flask's tutorial. Nothing connects at import time: ``create_app(node)``
receives a ready node.
"""
from __future__ import annotations

import orjson
from flask import Flask, request
from flask.json.provider import DefaultJSONProvider

from .context import EXTENSION


class FastJSON(DefaultJSONProvider):
    """Flask's JSON, answers written by orjson (about a tenth of the standard library's time).
    Flask's own conversions stay (dates in HTTP form, dataclasses, ``Decimal`` as text, through
    ``default``); keys keep their order. Non-ASCII text is written as UTF-8 rather than escaped:
    the same JSON. Pretty-printing (debug mode) and what orjson refuses (an integer past 64
    bits) go to Flask's own writer. Reading stays the standard library's, exact for any number."""

    _OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_NON_STR_KEYS

    def dumps(self, obj, **kwargs) -> str:
        if kwargs.keys() <= {"separators"} and kwargs.get("separators", (",", ":")) == (",", ":") \
                and not self.sort_keys:
            try:
                return orjson.dumps(obj, default=self.default, option=self._OPTIONS).decode()
            except TypeError:
                pass
        return super().dumps(obj, **kwargs)


def create_app(node, *, testing: bool = False, with_ui: bool = True) -> Flask:
    from . import api
    app = Flask(__name__)
    app.json = FastJSON(app)
    app.config.update(
        TESTING=testing,
        MAX_CONTENT_LENGTH=node.config.limits.max_body_bytes,
        JSON_SORT_KEYS=False,
        SECRET_KEY=node.secret_key,
    )
    app.json.sort_keys = False
    app.extensions[EXTENSION] = node
    api.init_app(app)
    if with_ui:
        try:
            import web_ui
        except ImportError:  # pragma: no cover - an API-only image may leave the UI out
            web_ui = None
        if web_ui is not None:
            web_ui.init_app(app)

    @app.after_request
    def count_request(resp):
        rule = request.url_rule.rule if request.url_rule is not None else "(unmatched)"
        node.metrics.inc("http_requests", route=rule, method=request.method, status=str(resp.status_code))
        return resp

    @app.after_request
    def security_headers(resp):
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        resp.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
        if resp.mimetype in ("application/json", "application/problem+json"):
            resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    return app
