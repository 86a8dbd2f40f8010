"""Registration and sessions: POST /api/customers, POST /api/sessions, DELETE /api/sessions/current."""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from ..context import node
from .util import idempotency_key, json_body, login_required

bp = Blueprint("customers", __name__)


@bp.post("/customers")
def register():
    data = json_body({"cpf", "name", "password"}, {"cpf", "name", "password"})
    status, body = node().banking.register(data["cpf"], data["name"], data["password"], idempotency_key(),
                                           client=request.remote_addr)
    return jsonify(body), status


@bp.post("/sessions")
def login():
    data = json_body({"cpf", "password"}, {"cpf", "password"})
    # The throttle (per CPF and per address) lives in the service, so the web UI gets it too.
    return jsonify(node().banking.login(data["cpf"], data["password"], client=request.remote_addr)), 201


@bp.delete("/sessions/current")
@login_required
def logout():
    node().banking.logout(g.session)
    return "", 204
