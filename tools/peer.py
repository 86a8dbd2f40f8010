"""A bank's identity driven by hand: what an honest bank would send, replayed, or what a dishonest
member could send with nothing but its own broker credentials and its own signing key.

``PeerBank(cluster, "alfa")`` connects to the cluster's broker as alfa's broker user (per-bank
mode) or as the shared user, signs with alfa's key when the consortium signs, and publishes
through the consortium's exchange as any bank would. The attack tests and the chaos run's lying
bank use it to forge, replay and flood; nothing here bypasses a check a real member could not
bypass.
"""
from __future__ import annotations

import time
import uuid

import pika

from bank_node import protocol as P
from bank_node.config import load_config
from bank_node.identity import broker_url_for, expected_user, keyring_for
from broker.names import Names


class PeerBank:
    def __init__(self, cluster, bank_id: str, *, url: str | None = None):
        self.config = load_config(cluster.config_path)
        self.bank_id = bank_id
        self.names = Names(self.config.consortium)
        self.keyring = keyring_for(self.config, bank_id)
        self.user = expected_user(self.config, bank_id)
        # pika takes a list of parameters and tries each node of a cluster in turn
        urls = (url or broker_url_for(self.config, bank_id)).split(",")
        self.conn = pika.BlockingConnection([pika.URLParameters(u) for u in urls])
        self.ch = self.conn.channel()
        self.ch.confirm_delivery()
        # Answers come back on direct reply-to, as a bank's own: a bank's user may declare nothing.
        self.reply_queue = "amq.rabbitmq.reply-to"
        self._replies: dict[str, bytes] = {}
        self.ch.basic_consume(self.reply_queue, self._on_reply, auto_ack=True)

    def close(self) -> None:
        if self.conn.is_open:
            self.conn.close()

    def __enter__(self) -> "PeerBank":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def seal(self, *items, sender: str | None = None, sign: bool = True, ns: str | None = None) -> tuple[bytes, dict]:
        body = P.encode(sender or self.bank_id, *items, ns=self.config.consortium if ns is None else ns)
        headers = self.keyring.headers(body) if (sign and self.keyring is not None) else None
        return body, headers or {}

    def publish(self, to: str, body: bytes, headers: dict | None = None, *, reply_to: str | None = None,
                cid: str | None = None) -> None:
        self.ch.basic_publish(self.names.exchange, to, body, pika.BasicProperties(
            delivery_mode=2, reply_to=reply_to, correlation_id=cid, user_id=self.user, headers=headers or None),
            mandatory=True)

    def send(self, to: str, *items, **seal) -> None:
        """One envelope of ``items`` to ``to``'s queue, as a one-way message."""
        self.publish(to, *self.seal(*items, **seal))

    def _on_reply(self, ch, method, props, body: bytes) -> None:
        self._replies[props.correlation_id or ""] = body

    def ask(self, to: str, *items, timeout: float = 10, **seal) -> P.Envelope | None:
        """An RPC (PREPAREs, lookups): the reply envelope, or None if none came by ``timeout``."""
        cid = uuid.uuid4().hex
        body, headers = self.seal(*items, **seal)
        self.publish(to, body, headers, reply_to=self.reply_queue, cid=cid)
        end = time.monotonic() + timeout
        while time.monotonic() < end and cid not in self._replies:
            self.conn.process_data_events(time_limit=0.05)
        reply = self._replies.pop(cid, None)
        return P.decode(reply) if reply is not None else None


def prepare(transfer_id: str, coordinator: str, initiator: str, legs: list[tuple[str, str, int, str]],
            deadline_ms: int | None = None) -> P.Prepare:
    """A whole-transfer PREPARE: legs as (bank, account, cents, direction)."""
    return P.Prepare(transfer_id=transfer_id, coordinator=coordinator, initiator=initiator,
                     deadline_ms=deadline_ms if deadline_ms is not None else int(time.time() * 1000) + 3000,
                     legs=[P.Leg(bank=b, account=a, amount=c, direction=d) for b, a, c, d in legs])
