"""POST /api/transfers (two-phase commit across banks) and GET /api/transfers/{id}."""
from __future__ import annotations

from flask import Blueprint, g, jsonify

from ..context import node
from .util import idempotency_key, json_body, login_required

bp = Blueprint("transfers", __name__)


@bp.post("/transfers")
@login_required
def create_transfer():
    data = json_body({"id", "sources", "destination"}, {"sources", "destination"})
    status, body = node().transfers.submit(g.cpf, data, idempotency_key())
    return jsonify(body), status


@bp.get("/transfers/<transfer_id>")
@login_required
def get_transfer(transfer_id):
    return jsonify(node().transfers.status(g.cpf, transfer_id))
