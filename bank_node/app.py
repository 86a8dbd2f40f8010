"""The bank's WSGI application: the REST API and the web UI composed over one ``BankNode``.

This is the one place that knows both front ends: ``bank_node.api`` never imports the web UI
and ``web_ui`` never imports the API; each offers an ``init_app(app)`` that registers its
blueprints, as in Flask's tutorial. Nothing connects at import time: ``create_app(node)``
receives a ready node.
"""
from __future__ import annotations

from flask import Flask, request

from .context import EXTENSION


def create_app(node, *, testing: bool = False, with_ui: bool = True) -> Flask:
    from . import api
    app = Flask(__name__)
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
