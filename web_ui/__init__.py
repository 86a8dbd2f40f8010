"""The customers' web UI: a Flask blueprint over the same services as the API (no SQL, no pika)."""
from __future__ import annotations

from flask import Blueprint, current_app, redirect


def create_blueprint() -> Blueprint:
    bp = Blueprint("web_ui", __name__)

    @bp.get("/")
    def index():
        node = current_app.extensions["bank_node"]
        return (f"<!doctype html><title>{node.bank.name}</title><h1>{node.bank.name}</h1>"
                "<p>API under <code>/api</code>.</p>")

    _ = redirect
    return bp
