"""Mandates: a holder's consent, at this bank, for another bank to initiate debits."""
from __future__ import annotations

from flask import Blueprint, g, jsonify

from .util import idempotency_key, json_body, login_required, node

bp = Blueprint("mandates", __name__)


@bp.post("/mandates")
@login_required
def grant():
    data = json_body({"account", "bank", "max_per_transfer", "max_per_day", "expires_at"}, {"account", "bank"})
    status, body = node().mandates.grant(g.cpf, data, idempotency_key())
    return jsonify(body), status


@bp.get("/mandates")
@login_required
def list_mandates():
    return jsonify(node().mandates.list(g.cpf))


@bp.delete("/mandates/<mandate_id>")
@login_required
def revoke(mandate_id):
    return jsonify(node().mandates.revoke(g.cpf, mandate_id))
