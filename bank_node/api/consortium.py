"""GET /api/consortium/accounts?cpf= : every account of a CPF in every bank (scatter-gather)."""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from ..domain import errors as E
from .util import login_required, node, query_params

bp = Blueprint("consortium", __name__)


@bp.get("/consortium/accounts")
@login_required
@query_params("cpf")
def accounts():
    cpf = request.args.get("cpf") or g.cpf
    if len(cpf) > 32:
        raise E.InvalidDocument("CPF must have 11 digits")
    return jsonify(node().transfers.lookup(g.cpf, cpf))
