"""GET /api/consortium/accounts?cpf= : every account of a CPF (or CNPJ) in every bank (scatter-gather);
GET /api/consortium/accounts/{bank}/{number}: one account of any bank, verified, its holder masked."""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from ..domain import errors as E
from ..context import node
from .util import login_required, query_params

bp = Blueprint("consortium", __name__)


@bp.get("/consortium/accounts")
@login_required
@query_params("cpf")
def accounts():
    cpf = request.args.get("cpf") or g.cpf
    if len(cpf) > 32:
        raise E.InvalidDocument("CPF must have 11 digits (or a CNPJ 14)")
    return jsonify(node().transfers.lookup(g.cpf, cpf))


@bp.get("/consortium/accounts/<bank>/<number>")
@login_required
def verify_account(bank, number):
    """Before a transfer to a typed bank and account number: does it exist, and whose is it
    (masked)? Never a balance."""
    return jsonify(node().transfers.verify_account(g.cpf, bank, number))
