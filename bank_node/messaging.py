"""How a bank uses the broker, from consorcio.yml: the client it connects with, and the
consortium's topology that the operator provisions (``broker.topology``).

The broker layer knows nothing about money; this is where the consortium's settings become its
bytes, user ids and limits.
"""
from __future__ import annotations

import json
from typing import Callable

from broker import BrokerClient, Delivery
from broker.dispatch import SenderLimits
from broker.topology import QueueBounds, Topology

from .config import ConsortiumConfig
from .identity import broker_url_for


def topology_of(config: ConsortiumConfig) -> Topology:
    """The exchanges, queues (with their bounds) and bindings this consortium needs."""
    b = config.broker
    return Topology(config.consortium, tuple(config.bank_ids),
                    QueueBounds(max_length=b.queue_max_length, max_length_bytes=b.queue_max_bytes,
                                delivery_limit=b.delivery_limit, dead_letter_max_length=b.dead_letter_max_length))


def items_in(body: bytes) -> int:
    """How many protocol items an envelope carries, for its sender's budget: JSON only, no
    validation (a body that is not an envelope counts one, and the handler refuses it)."""
    try:
        items = json.loads(body).get("items")
    except (ValueError, AttributeError):
        return 1
    return len(items) if isinstance(items, list) and items else 1


MESSAGE_WORKERS = 8
"""Threads of a bank's broker client that handle deliveries (each may hold a ledger transaction)."""


def client_for(config: ConsortiumConfig, principal: str, handler: Callable[[Delivery], None] | None = None, *,
               own_queue: bool = True, on_refused: Callable[[str, str | None], None] | None = None) -> BrokerClient:
    """This bank's (or the auditor's) broker client. Per-sender budgets only where the broker
    tells banks apart (``per_bank``): with one shared user, every bank would share one budget."""
    b = config.broker
    limits = SenderLimits(b.sender_items_per_s, b.sender_burst_items, b.sender_workers) \
        if config.broker_auth.mode == "per_bank" else None
    return BrokerClient(broker_url_for(config, principal), config.consortium, principal, handler,
                        own_queue=own_queue, heartbeat=b.heartbeat_s, max_message_bytes=b.max_message_bytes,
                        sender_limits=limits, weigh=items_in, on_refused=on_refused,
                        probe_interval_s=b.probe_interval_s, workers=MESSAGE_WORKERS)
