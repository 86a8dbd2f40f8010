"""GET /api/health: bank id, broker and database state, and the transfers in doubt."""
from __future__ import annotations

from flask import Blueprint, jsonify

from ..context import node

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    return jsonify(node().health())
