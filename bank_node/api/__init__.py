"""The REST API: a Flask app factory and one blueprint per feature.

Nothing connects at import time: ``create_app(node)`` receives a ready ``BankNode``.
"""
from __future__ import annotations

from flask import Flask, request

from .errors import register_error_handlers
from .util import refuse_unknown_query_params


def create_app(node, *, testing: bool = False) -> Flask:
    from . import accounts, consortium, customers, health, mandates, openapi, operator, transfers
    app = Flask(__name__)
    app.config.update(
        TESTING=testing,
        MAX_CONTENT_LENGTH=node.config.limits.max_body_bytes,
        JSON_SORT_KEYS=False,
        SECRET_KEY=node.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME=f"consorcio_{node.bank_id}",
    )
    app.json.sort_keys = False
    app.extensions["bank_node"] = node
    register_error_handlers(app)
    api = (customers.bp, accounts.bp, transfers.bp, mandates.bp, consortium.bp, health.bp, operator.bp, openapi.bp)
    for bp in api:
        app.register_blueprint(bp, url_prefix="/api")
    api_names = {bp.name for bp in api}

    @app.before_request
    def strict_query_string():
        if request.blueprint in api_names:
            refuse_unknown_query_params()
    app.register_blueprint(operator.pages)
    try:
        from web_ui import create_blueprint
    except ImportError:  # pragma: no cover - the UI is optional for API-only deployments
        create_blueprint = None
    if create_blueprint is not None:
        app.register_blueprint(create_blueprint())

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
