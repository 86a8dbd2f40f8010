"""Transfers across banks (two-phase commit): one, many at once, and their status."""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from ..context import node
from .util import idempotency_key, json_body, login_required

bp = Blueprint("transfers", __name__)


@bp.post("/transfers")
@login_required
def create_transfer():
    data = json_body({"id", "sources", "destination"}, {"sources", "destination"})
    status, body = node().transfers.submit(g.cpf, data, idempotency_key())
    return jsonify(body), status


@bp.post("/transfer-batches")
@login_required
def create_batch():
    """Payroll and supplier runs: up to 500 independent transfers, each committing or aborting
    on its own, answered item by item in order."""
    request.max_content_length = node().config.limits.max_batch_body_bytes
    data = json_body({"items"}, {"items"})
    status, body = node().transfers.submit_batch(g.cpf, data, idempotency_key())
    return jsonify(body), status


@bp.get("/transfers/<transfer_id>")
@login_required
def get_transfer(transfer_id):
    return jsonify(node().transfers.status(g.cpf, transfer_id))
