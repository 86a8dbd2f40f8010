"""What a consortium needs on the broker: its exchanges, its queues and their bounds, the bindings.

One description serves every way of setting it up: declared over AMQP by the operator's
provisioning (``broker.provision.provision_topology``: the launcher, the tests, ``python -m
tools.ops provision``), and written into RabbitMQ's definitions file for docker compose. Banks
never declare anything: their broker users may not (see ``broker.provision.permissions``).

Every bank's queue and the dead-letter queue are quorum queues: replicated on every node of a
cluster (a majority must agree before a message is confirmed), so losing one broker node loses
no decision and no acknowledgement. A bank's queue is bounded in messages and bytes, refusing
new messages when full (``reject-publish``: the publisher's confirm is a nack, so the sender
learns it at once), and gives up on a message delivered ``delivery_limit`` times (a message that
crashes its consumer every time is dead-lettered instead of looping forever).
"""
from __future__ import annotations

from dataclasses import dataclass

from .names import Names

QUORUM = "quorum"


@dataclass(frozen=True)
class QueueBounds:
    """The bounds of every bank's queue. The defaults are what ``broker:`` in consorcio.yml
    defaults to."""
    max_length: int = 10_000
    """Messages waiting in one bank's queue before publishers are refused."""
    max_length_bytes: int = 64 * 1024 * 1024
    """Bytes waiting in one bank's queue before publishers are refused (quorum queues in this
    RabbitMQ keep message bodies in memory: this bounds what one bank's backlog may cost it)."""
    delivery_limit: int = 20
    """Deliveries of one message before it is dead-lettered. Each lost connection or crash of
    the consumer counts one, so this is generous: only a message that fails every time reaches it."""
    dead_letter_max_length: int = 50_000
    """Messages kept in the dead-letter queue (the newest: the oldest are dropped first)."""


@dataclass(frozen=True)
class Queue:
    name: str
    arguments: dict


@dataclass(frozen=True)
class Exchange:
    name: str
    type: str


@dataclass(frozen=True)
class Binding:
    source: str
    destination: str
    routing_key: str


@dataclass(frozen=True)
class Topology:
    namespace: str
    bank_ids: tuple[str, ...]
    bounds: QueueBounds = QueueBounds()

    @property
    def names(self) -> Names:
        return Names(self.namespace)

    @property
    def exchanges(self) -> list[Exchange]:
        n = self.names
        return [Exchange(n.exchange, "direct"), Exchange(n.dead_letter_exchange, "fanout")]

    def bank_queue(self, bank_id: str) -> Queue:
        b = self.bounds
        return Queue(self.names.bank_queue(bank_id), {
            "x-queue-type": QUORUM,
            "x-max-length": b.max_length,
            "x-max-length-bytes": b.max_length_bytes,
            "x-overflow": "reject-publish",
            "x-delivery-limit": b.delivery_limit,
            "x-dead-letter-exchange": self.names.dead_letter_exchange,
        })

    @property
    def dead_letter_queue(self) -> Queue:
        return Queue(self.names.dead_letter_queue, {
            "x-queue-type": QUORUM,
            "x-max-length": self.bounds.dead_letter_max_length,
            "x-overflow": "drop-head",
            # Evidence is read rarely: its bodies wait on disk, not in the broker's memory.
            "x-max-in-memory-length": 0,
        })

    @property
    def queues(self) -> list[Queue]:
        return [self.dead_letter_queue] + [self.bank_queue(b) for b in self.bank_ids]

    @property
    def bindings(self) -> list[Binding]:
        n = self.names
        return [Binding(n.dead_letter_exchange, n.dead_letter_queue, "")] + \
            [Binding(n.exchange, n.bank_queue(b), b) for b in self.bank_ids]

    def definitions(self, vhost: str = "/") -> dict:
        """The same objects as a RabbitMQ definitions document (``rabbitmqctl import_definitions``,
        or ``load_definitions`` at a node's start)."""
        return {
            "exchanges": [{"name": e.name, "vhost": vhost, "type": e.type, "durable": True, "auto_delete": False,
                           "internal": False, "arguments": {}} for e in self.exchanges],
            "queues": [{"name": q.name, "vhost": vhost, "durable": True, "auto_delete": False,
                        "arguments": q.arguments} for q in self.queues],
            "bindings": [{"source": b.source, "vhost": vhost, "destination": b.destination,
                          "destination_type": "queue", "routing_key": b.routing_key, "arguments": {}}
                         for b in self.bindings],
        }
