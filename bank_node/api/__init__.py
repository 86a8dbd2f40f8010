"""The REST API: one blueprint per feature under ``/api``, errors as application/problem+json.

``init_app(app)`` registers them on the application that ``bank_node.app.create_app`` builds
(together with the web UI, which this package never imports).
"""
from __future__ import annotations

from flask import Flask, request

from .errors import register_error_handlers
from .util import refuse_unknown_query_params


def init_app(app: Flask) -> None:
    from . import accounts, consortium, customers, health, openapi, operator, transfers
    register_error_handlers(app)
    api = (customers.bp, accounts.bp, transfers.bp, consortium.bp, health.bp, operator.bp, openapi.bp)
    for bp in api:
        app.register_blueprint(bp, url_prefix="/api")
    api_names = {bp.name for bp in api}

    @app.before_request
    def strict_query_string():
        if request.blueprint in api_names:
            refuse_unknown_query_params()
    app.register_blueprint(operator.pages)
