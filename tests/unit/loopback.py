"""An in-process stand-in for the broker, so unit tests can run whole transfers with no RabbitMQ.

Every bank node of a ``Loopback`` gets a port with the methods ``Transfers`` uses (request,
reply, publish, forget, consumer_count, connected). A message is handed to the receiving
bank's ``Transfers.handle`` at once, in the sender's thread, with the user id the real broker
would stamp on it, and the delivery must be settled exactly once (``FakeDelivery`` checks).
This tests the banks' logic, not the broker: TTLs, redelivery and confirms are the
integration tests' business.
"""
from __future__ import annotations

import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field

from bank_node.identity import expected_user


@dataclass
class FakeDelivery:
    """What ``broker.Delivery`` offers a handler, recording how it was settled."""
    body: bytes
    correlation_id: str | None = None
    reply_to: str | None = None
    user_id: str | None = None
    redelivered: bool = False
    headers: dict = field(default_factory=dict)
    settled: list = field(default_factory=list)

    def ack(self) -> None:
        self.settled.append("ack")

    def reject(self, requeue: bool = False) -> None:
        self.settled.append("reject-requeue" if requeue else "reject")


def done(value=None) -> Future:
    f: Future = Future()
    f.set_result(value)
    return f


@dataclass
class Pending:
    correlation_id: str
    future: Future


class Loopback:
    def __init__(self):
        self.nodes: dict = {}
        self.waiters: dict[str, Future] = {}
        self.deliveries: list[tuple[str, FakeDelivery]] = []

    def attach(self, node) -> "LoopbackPort":
        port = LoopbackPort(self, node.bank_id, node.config)
        self.nodes[node.bank_id] = node
        node.broker = port
        node.transfers.broker = port
        return port

    def deliver(self, sender: str, bank: str, body: bytes, **kw) -> FakeDelivery:
        node = self.nodes[bank]
        d = FakeDelivery(body, user_id=expected_user(node.config, sender), **kw)
        self.deliveries.append((bank, d))
        node.transfers.handle(d)
        assert len(d.settled) == 1, f"delivery settled {d.settled}"
        return d


class LoopbackPort:
    connected = True
    reconnects = 0

    def __init__(self, net: Loopback, bank_id: str, config):
        self.net, self.bank_id, self.config = net, bank_id, config

    def request(self, bank: str, body: bytes, *, expiration_ms: int, expect_user: str | None = None) -> Pending:
        cid = uuid.uuid4().hex
        fut: Future = Future()
        self.net.waiters[cid] = fut
        if bank in self.net.nodes:
            self.net.deliver(self.bank_id, bank, body, correlation_id=cid, reply_to=f"reply.{cid}")
        return Pending(cid, fut)

    def reply(self, reply_to: str, correlation_id: str | None, body: bytes) -> Future:
        fut = self.net.waiters.get(correlation_id or "")
        if fut is not None and not fut.done():
            fut.set_result(body)
        return done()

    def publish(self, bank: str, body: bytes, **kw) -> Future:
        if bank in self.net.nodes:
            self.net.deliver(self.bank_id, bank, body)
        return done()

    def forget(self, correlation_id: str) -> None:
        self.net.waiters.pop(correlation_id, None)

    def gather(self, banks: list[str], body: bytes, *, deadline_s: float, expect_user=None) -> dict[str, bytes]:
        """Delivery is synchronous here: every bank that exists has answered on return."""
        replies = {}
        for bank in banks:
            pending = self.request(bank, body, expiration_ms=1000)
            if pending.future.done():
                replies[bank] = pending.future.result()
            self.forget(pending.correlation_id)
        return replies

    def consumer_count(self, bank: str) -> Future:
        return done(1 if bank in self.net.nodes else None)

    def stop(self) -> None:
        pass
