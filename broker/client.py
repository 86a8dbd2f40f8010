"""One bank's connection to RabbitMQ, owned by one I/O thread.

pika's BlockingConnection is not thread-safe (pika issues #1237, #927), so exactly one thread
creates it and keeps pumping it with ``process_data_events``. Every other thread (Flask
request threads, the 2PC runtime, message handlers) hands it work with
``add_callback_threadsafe`` and waits on a ``Future``. Message handlers run on a small worker
pool, never on the I/O thread, so a slow fsync never stalls heartbeats; their acks travel back
the same way and are sent only after the handler's database commit.

If the connection drops, the I/O thread fails every waiting future with ``NotConnected``,
reconnects with capped exponential backoff, re-declares the topology and resumes consuming:
no restart of the bank is needed after a broker restart.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable

import pika
import pika.exceptions as px

from .errors import BrokerError, NotConnected, NotSent, Rejected, Unroutable
from .names import Names
from .provision import username_in

log = logging.getLogger("broker")

DEAD_LETTER_MAX = 10_000


@dataclass
class Delivery:
    """A message taken from this bank's queue; exactly one of ack() or reject() must follow."""
    body: bytes
    correlation_id: str | None
    reply_to: str | None
    user_id: str | None
    redelivered: bool
    headers: dict = field(default_factory=dict)
    _client: "BrokerClient | None" = None
    _tag: int = 0
    _generation: int = 0
    _settled: bool = False

    def ack(self) -> None:
        self._settle(lambda ch: ch.basic_ack(self._tag))

    def reject(self, requeue: bool = False) -> None:
        """requeue=False dead-letters the message (never an endless redelivery loop)."""
        self._settle(lambda ch: ch.basic_reject(self._tag, requeue=requeue))

    def _settle(self, op: Callable) -> None:
        if self._settled or self._client is None:
            return
        self._settled = True
        self._client._settle(self._generation, op)


@dataclass
class PendingReply:
    correlation_id: str
    future: Future


class BrokerClient:
    def __init__(self, url: str, namespace: str, bank_id: str,
                 handler: Callable[[Delivery], None] | None = None, *,
                 workers: int = 8, prefetch: int = 64, heartbeat: int = 30,
                 max_backoff_s: float = 2.0, on_state: Callable[[bool], None] | None = None,
                 own_queue: bool = True):
        self.url = url
        self.user = username_in(url)  # stamped as user_id on every message; the broker checks it
        self.names = Names(namespace)
        self.bank_id = bank_id
        self.handler = handler
        self.prefetch = prefetch
        self.heartbeat = heartbeat
        self.max_backoff_s = max_backoff_s
        self.on_state = on_state
        self.own_queue = own_queue  # False for a pure client (the audit tool): RPC only, no bank queue
        self.reconnects = 0
        self.rejected_replies = 0
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"amqp-{bank_id}")
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: pika.BlockingConnection | None = None
        self._pub = None   # confirm mode: a publish returns once the broker took the message
        self._fast = None  # no confirms: for messages the protocol re-sends until answered
        self._cons = None
        self._generation = 0
        self._reply_queue: str | None = None
        self._waiters: dict[str, tuple[Future, str | None]] = {}
        self._inflight: set[Future] = set()
        self._lock = threading.Lock()

    # life cycle ------------------------------------------------------------------------------
    def start(self) -> "BrokerClient":
        self._thread = threading.Thread(target=self._run, name=f"amqp-io-{self.bank_id}", daemon=True)
        self._thread.start()
        return self

    def wait_connected(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake()
        if self._thread:
            self._thread.join(timeout)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _wake(self) -> None:
        conn = self._conn
        if conn is not None:
            try:
                conn.add_callback_threadsafe(lambda: None)
            except Exception:  # noqa: BLE001 - closed already: nothing to wake
                pass

    def _run(self) -> None:
        delay = 0.1
        while not self._stop.is_set():
            try:
                self._open()
                delay = 0.1
                self._ready.set()
                self._notify(True)
                log.info("connected to the broker as bank %s", self.bank_id)
                while not self._stop.is_set():
                    self._conn.process_data_events(time_limit=0.2)
            except Exception as e:  # noqa: BLE001 - any failure means: reconnect
                if not self._stop.is_set():
                    log.warning("broker connection lost (%s: %s); reconnecting in %.1fs",
                                type(e).__name__, e, delay)
            finally:
                was_ready = self._ready.is_set()
                self._ready.clear()
                self._teardown()
                if was_ready:
                    self._notify(False)
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, self.max_backoff_s)
            self.reconnects += 1

    def _notify(self, up: bool) -> None:
        if self.on_state:
            try:
                self.on_state(up)
            except Exception:  # noqa: BLE001
                log.exception("on_state callback failed")

    def _open(self) -> None:
        params = pika.URLParameters(self.url)
        params.heartbeat = self.heartbeat
        params.blocked_connection_timeout = 30
        params.connection_attempts = 1
        params.socket_timeout = 5
        params.client_properties = {"connection_name": f"{self.names.namespace}:{self.bank_id}"}
        conn = pika.BlockingConnection(params)
        self._conn = conn
        pub = conn.channel()
        pub.confirm_delivery()
        fast = conn.channel()
        cons = conn.channel()
        cons.basic_qos(prefetch_count=self.prefetch)
        self._declare(cons)
        reply = cons.queue_declare("", exclusive=True, auto_delete=True)
        self._reply_queue = reply.method.queue
        cons.basic_consume(self._reply_queue, self._on_reply, auto_ack=True)
        if self.handler is not None and self.own_queue:
            cons.basic_consume(self.names.bank_queue(self.bank_id), self._on_delivery, auto_ack=False)
        self._pub, self._fast, self._cons = pub, fast, cons
        self._generation += 1

    def _declare(self, ch) -> None:
        n = self.names
        ch.exchange_declare(n.exchange, exchange_type="direct", durable=True)
        ch.exchange_declare(n.dead_letter_exchange, exchange_type="fanout", durable=True)
        ch.queue_declare(n.dead_letter_queue, durable=True, arguments={"x-max-length": DEAD_LETTER_MAX})
        ch.queue_bind(n.dead_letter_queue, n.dead_letter_exchange)
        if not self.own_queue:
            return
        q = n.bank_queue(self.bank_id)
        ch.queue_declare(q, durable=True, arguments={"x-dead-letter-exchange": n.dead_letter_exchange})
        ch.queue_bind(q, n.exchange, routing_key=self.bank_id)

    def _teardown(self) -> None:
        err = NotConnected("the broker connection was lost")
        with self._lock:
            waiters, self._waiters = self._waiters, {}
            inflight, self._inflight = self._inflight, set()
        for f in [w[0] for w in waiters.values()] + list(inflight):
            if not f.done():
                f.set_exception(err)
        conn, self._conn, self._reply_queue = self._conn, None, None
        self._pub = self._fast = self._cons = None
        if conn is not None:
            try:
                if conn.is_open:
                    conn.close()
            except Exception:  # noqa: BLE001 - it is going away anyway
                pass

    # running work on the I/O thread --------------------------------------------------------
    def _submit(self, fn: Callable[[], object]) -> Future:
        fut: Future = Future()
        conn = self._conn
        if conn is None or not self._ready.is_set():
            fut.set_exception(NotConnected("not connected to the broker"))
            return fut
        with self._lock:
            self._inflight.add(fut)

        def run() -> None:
            with self._lock:
                self._inflight.discard(fut)
            if fut.done():
                return
            try:
                fut.set_result(fn())
            except px.UnroutableError as e:
                fut.set_exception(Unroutable("no queue for this message"))
                _ = e
            except px.NackError as e:
                fut.set_exception(Rejected(str(e)))
            except BrokerError as e:
                fut.set_exception(e)
            except Exception as e:  # noqa: BLE001 - the connection is broken; _run reconnects
                fut.set_exception(NotConnected(f"{type(e).__name__}: {e}"))
                raise

        try:
            conn.add_callback_threadsafe(run)
        except Exception as e:  # noqa: BLE001
            with self._lock:
                self._inflight.discard(fut)
            if not fut.done():
                fut.set_exception(NotConnected(f"not connected to the broker: {e}"))
        return fut

    def _settle(self, generation: int, op: Callable) -> None:
        def run() -> None:
            # A delivery tag belongs to the channel it came on: after a reconnect the broker
            # has already put the message back, so the old tag must not be used.
            if generation == self._generation and self._cons is not None:
                op(self._cons)
        conn = self._conn
        if conn is None:
            return
        try:
            conn.add_callback_threadsafe(run)
        except Exception:  # noqa: BLE001 - connection gone: the message will be redelivered
            pass

    # publishing -----------------------------------------------------------------------------
    def publish(self, bank_id: str, body: bytes, *, persistent: bool = True, expiration_ms: int | None = None,
                correlation_id: str | None = None, reply_to: str | None = None,
                headers: dict | None = None, confirm: bool = True) -> Future:
        """Publish to a bank's queue.

        confirm=True: mandatory, with a publisher confirm; the future resolves once the broker
        has taken responsibility for the message (a persistent one: on disk), or fails with
        Unroutable / NotConnected. The I/O thread waits for each confirm, so this costs a round
        trip (and, persistent, the broker's fsync).

        confirm=False: for messages the protocol re-sends until they are answered (decisions,
        acknowledgements, questions, replies): handed to the socket without waiting, so a
        backlog of re-sends after an outage can never starve the I/O thread."""
        return self._publish_to(self.names.exchange, bank_id, body, persistent=persistent,
                                expiration_ms=expiration_ms, correlation_id=correlation_id,
                                reply_to=reply_to, headers=headers, confirm=confirm)

    def reply(self, reply_to: str, correlation_id: str | None, body: bytes, headers: dict | None = None) -> Future:
        """Answer an RPC on its requester's private reply queue (default exchange). A lost
        reply is a timeout for the requester (for a vote: an abort), so no confirm."""
        return self._publish_to("", reply_to, body, persistent=False, correlation_id=correlation_id,
                                headers=headers, confirm=False)

    def _publish_to(self, exchange: str, routing_key: str, body: bytes, *, persistent: bool,
                    expiration_ms: int | None = None, correlation_id: str | None = None,
                    reply_to: str | None = None, headers: dict | None = None,
                    confirm: bool = True) -> Future:
        props = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Persistent if persistent else pika.DeliveryMode.Transient,
            expiration=str(max(1, int(expiration_ms))) if expiration_ms is not None else None,
            correlation_id=correlation_id, reply_to=reply_to, headers=headers,
            app_id=self.bank_id, timestamp=int(time.time()), user_id=self.user,
        )

        def run() -> None:
            ch = self._pub if confirm else self._fast
            if ch is None:
                raise NotConnected("not connected to the broker")
            ch.basic_publish(exchange, routing_key, body, props, mandatory=confirm)
        return self._submit(run)

    def request(self, bank_id: str, body: bytes, *, expiration_ms: int, expect_user: str | None = None,
                headers: dict | None = None, with_headers: bool = False) -> PendingReply:
        """RPC: the waiter is registered under a fresh correlation id *before* publishing, so
        a fast reply is never missed. Call ``forget`` on timeout. With ``expect_user``, a reply
        whose broker-checked user_id is not that user is dropped (someone else answering).
        The future holds the reply's body, or (body, headers) with ``with_headers``."""
        cid = uuid.uuid4().hex
        fut: Future = Future()
        with self._lock:
            self._waiters[cid] = (fut, expect_user, with_headers)
        reply_to = self._reply_queue
        if reply_to is None:
            self.forget(cid)
            fut.set_exception(NotSent("not connected to the broker"))
            return PendingReply(cid, fut)
        sent = self.publish(bank_id, body, persistent=False, expiration_ms=expiration_ms,
                            correlation_id=cid, reply_to=reply_to, headers=headers)

        def on_sent(f: Future) -> None:
            exc = f.exception()
            if exc is not None:
                self.forget(cid)
                if not fut.done():
                    # Distinguish "never left" (the addressee cannot have it) from a failure
                    # after the broker took the request.
                    fut.set_exception(exc if isinstance(exc, NotSent) else NotSent(str(exc)))
        sent.add_done_callback(on_sent)
        return PendingReply(cid, fut)

    def gather(self, banks: list[str], body: bytes, *, deadline_s: float,
               expect_user: Callable[[str], str | None] = lambda bank: None, headers: dict | None = None,
               with_headers: bool = False) -> dict[str, bytes]:
        """Scatter-gather: the same request to every bank, and the replies that arrive before
        the deadline (banks that did not answer are simply absent)."""
        asked: dict[Future, tuple[str, str]] = {}
        ttl_ms = max(1, int((deadline_s - time.time()) * 1000))
        for bank in banks:
            req = self.request(bank, body, expiration_ms=ttl_ms, expect_user=expect_user(bank), headers=headers,
                               with_headers=with_headers)
            asked[req.future] = (bank, req.correlation_id)
        replies: dict[str, bytes] = {}
        try:
            while asked:
                left = deadline_s - time.time()
                if left <= 0:
                    break
                done, _ = wait(list(asked), timeout=left, return_when=FIRST_COMPLETED)
                for fut in done:
                    bank, cid = asked.pop(fut)
                    try:
                        replies[bank] = fut.result()
                    except BrokerError:
                        pass
        finally:
            for _, cid in asked.values():
                self.forget(cid)
        return replies

    def forget(self, correlation_id: str) -> None:
        with self._lock:
            self._waiters.pop(correlation_id, None)

    def consumer_count(self, bank_id: str) -> Future:
        """How many consumers a bank's queue has (None when the queue does not exist)."""
        def run():
            ch = self._conn.channel()
            try:
                ok = ch.queue_declare(self.names.bank_queue(bank_id), passive=True)
                return ok.method.consumer_count
            except px.ChannelClosedByBroker:
                return None
            finally:
                if ch.is_open:
                    ch.close()
        return self._submit(run)

    # consuming --------------------------------------------------------------------------------
    def _on_reply(self, ch, method, props, body: bytes) -> None:
        with self._lock:
            waiter = self._waiters.get(props.correlation_id or "")
            if waiter is not None and waiter[1] is not None and props.user_id != waiter[1]:
                log.warning("reply for %s from user %r instead of %r dropped", props.correlation_id,
                            props.user_id, waiter[1])
                self.rejected_replies += 1
                return
            waiter = self._waiters.pop(props.correlation_id or "", None)
        if waiter is None:
            log.debug("reply with unknown correlation id %r dropped (late or duplicate)", props.correlation_id)
            return
        fut = waiter[0]
        if not fut.done():
            fut.set_result((body, dict(props.headers or {})) if waiter[2] else body)

    def _on_delivery(self, ch, method, props, body: bytes) -> None:
        d = Delivery(body=body, correlation_id=props.correlation_id, reply_to=props.reply_to,
                     user_id=props.user_id, redelivered=bool(method.redelivered), headers=props.headers or {},
                     _client=self, _tag=method.delivery_tag, _generation=self._generation)
        self._pool.submit(self._handle, d)

    def _handle(self, d: Delivery) -> None:
        try:
            self.handler(d)
        except Exception:  # noqa: BLE001 - a handler bug must not kill the consumer
            log.exception("message handler failed; %s", "dead-lettering it" if d.redelivered else "retrying once")
            d.reject(requeue=not d.redelivered)
