"""An in-process stand-in for the broker, so unit tests can run whole transfers with no RabbitMQ.

Every bank node of a ``Loopback`` gets a port with the methods the protocol uses (request,
reply, publish, forget, gather, consumer_count, connected). A message is handed to the receiving
bank's ``Transfers.handle`` on that bank's own delivery thread, as the broker's consumer would,
with the user id the real broker would stamp on it and the headers (signature) it was sent with;
each delivery must be settled exactly once (``FakeDelivery`` checks), after the effects it caused
are durable. ``settle()`` waits until every message sent so far has been handled and settled.
This tests the banks' logic, not the broker: TTLs, redelivery and confirms are the integration
tests' business.
"""
from __future__ import annotations

import queue
import threading
import time
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
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    def ack(self) -> None:
        self.settled.append("ack")
        self._done.set()

    def reject(self, requeue: bool = False) -> None:
        self.settled.append("reject-requeue" if requeue else "reject")
        self._done.set()

    def wait(self, timeout: float = 10) -> "FakeDelivery":
        assert self._done.wait(timeout), "the delivery was never settled"
        return self


def handle(node, d: FakeDelivery, timeout: float = 10) -> FakeDelivery:
    """Hand ``d`` to a node as its queue's consumer would, and wait until it is settled."""
    node.transfers.handle(d)
    d.wait(timeout)
    assert len(d.settled) == 1, f"delivery settled {d.settled}"
    return d


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
        self.waiters: dict[str, tuple[Future, bool]] = {}
        self.deliveries: list[tuple[str, FakeDelivery]] = []
        self._queues: dict[str, queue.SimpleQueue] = {}
        self._busy = 0
        self._lock = threading.Condition()

    def attach(self, node) -> "LoopbackPort":
        port = LoopbackPort(self, node.bank_id, node.config)
        self.nodes[node.bank_id] = node
        node.broker = port
        node.transfers.broker = port
        q: queue.SimpleQueue = queue.SimpleQueue()
        self._queues[node.bank_id] = q
        threading.Thread(target=self._consume, args=(node, q), daemon=True, name=f"loopback-{node.bank_id}").start()
        return port

    def deliver(self, sender: str, bank: str, body: bytes, **kw) -> FakeDelivery:
        node = self.nodes[bank]
        d = FakeDelivery(body, user_id=expected_user(node.config, sender), **kw)
        with self._lock:
            self.deliveries.append((bank, d))
            self._busy += 1
        self._queues[bank].put(d)
        return d

    def _consume(self, node, q: queue.SimpleQueue) -> None:
        while True:
            d = q.get()
            try:
                node.transfers.handle(d)
                d.wait(30)
                assert len(d.settled) == 1, f"delivery settled {d.settled}"
            finally:
                with self._lock:
                    self._busy -= 1
                    self._lock.notify_all()

    def settle(self, timeout: float = 15) -> None:
        """Wait until every message sent so far (and what it caused) is handled and settled."""
        end = time.monotonic() + timeout
        with self._lock:
            while self._busy:
                left = end - time.monotonic()
                assert left > 0, f"{self._busy} deliveries still unsettled"
                self._lock.wait(left)


class LoopbackPort:
    connected = True
    reconnects = 0

    def __init__(self, net: Loopback, bank_id: str, config):
        self.net, self.bank_id, self.config = net, bank_id, config

    def request(self, bank: str, body: bytes, *, expiration_ms: int, expect_user: str | None = None,
                headers: dict | None = None, with_headers: bool = False) -> Pending:
        cid = uuid.uuid4().hex
        fut: Future = Future()
        self.net.waiters[cid] = (fut, with_headers)
        if bank in self.net.nodes:
            self.net.deliver(self.bank_id, bank, body, correlation_id=cid, reply_to=f"reply.{cid}",
                             headers=dict(headers or {}))
        return Pending(cid, fut)

    def reply(self, reply_to: str, correlation_id: str | None, body: bytes, headers: dict | None = None) -> Future:
        fut, with_headers = self.net.waiters.get(correlation_id or "", (None, False))
        if fut is not None and not fut.done():
            fut.set_result((body, dict(headers or {})) if with_headers else body)
        return done()

    def publish(self, bank: str, body: bytes, headers: dict | None = None, **kw) -> Future:
        if bank in self.net.nodes:
            self.net.deliver(self.bank_id, bank, body, headers=dict(headers or {}))
        return done()

    def forget(self, correlation_id: str) -> None:
        self.net.waiters.pop(correlation_id, None)

    def gather(self, banks: list[str], body: bytes, *, deadline_s: float, expect_user=None, headers=None,
               with_headers: bool = False) -> dict:
        asked = {bank: self.request(bank, body, expiration_ms=1000, headers=headers, with_headers=with_headers)
                 for bank in banks}
        replies = {}
        for bank, pending in asked.items():
            try:
                replies[bank] = pending.future.result(timeout=max(0.01, deadline_s - time.time()))
            except Exception:  # noqa: BLE001 - a bank that does not answer is absent
                pass
            self.forget(pending.correlation_id)
        return replies

    def consumer_count(self, bank: str) -> Future:
        return done(1 if bank in self.net.nodes else None)

    def stop(self) -> None:
        pass
