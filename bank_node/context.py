"""The bank node serving the current request: one typed accessor for the REST API and the web UI.

Both front ends are Flask blueprints over the same ``BankNode`` (its ``banking`` and
``transfers`` services, its configuration); the app factory (``bank_node.app``) puts the node
in ``app.extensions`` once, and every view reaches it through ``node()`` rather than through an
untyped dictionary lookup of its own.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, cast

from flask import current_app

if TYPE_CHECKING:  # the node imports the broker and the storage: not needed to name its type
    from .node import BankNode

EXTENSION = "bank_node"


def node() -> "BankNode":
    return cast("BankNode", current_app.extensions[EXTENSION])
