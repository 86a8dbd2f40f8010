"""One bank's connection to RabbitMQ, owned by one I/O thread running pika's asynchronous
(SelectConnection) event loop.

pika's connections are not thread-safe (pika issues #1237, #927), so exactly one thread owns
the connection and its channels. Every other thread (Flask request threads, the 2PC runtime,
message handlers) hands it work with ``add_callback_threadsafe`` and waits on a ``Future``.
Message handlers run on worker threads, never on the I/O thread, so a slow fsync never stalls
heartbeats; their acks travel back the same way and are sent only after the handler's commit.

**Publishing.** Every message to a bank's queue is published ``mandatory`` on a channel in
confirm mode, and confirms are handled as they arrive, so publishing never blocks the I/O
thread: a broker ack means the message is stored (on a quorum queue: on a majority of the
cluster's nodes), a ``basic.return`` that no queue is bound for it (``Unroutable``), a nack that
its queue refused it (full: ``Rejected``). ``confirm=False`` only means the caller does not wait
for that confirm (decisions and acknowledgements, which the protocol re-sends until answered).

**Requests** (PREPARE/vote, lookups, audits) get their answers through RabbitMQ's direct
reply-to: no reply queue to declare (a bank's broker user may declare nothing), and an answer is
dropped if its requester's channel is gone, which for a vote is a timeout and an abort.

**Several nodes.** The client is given one or more broker URLs (a list, or one string with
commas). It connects to one that answers (each bank starts at its own place in the list, so a
consortium spreads over the cluster) and, when that node dies or stops answering, connects to
the next within seconds: consumers are re-established, publishes the broker had not confirmed
fail with ``Unconfirmed`` and requests still waiting for an answer with ``NotConnected``, so the
protocol above retries (decisions are re-sent until acknowledged; a PREPARE becomes an abort).
Nothing is re-sent here behind the protocol's back, so nothing is applied twice.

**Checks before the handler sees a message**, cheapest first: a probe of our own (below) is
taken out; a body over ``max_message_bytes`` is dead-lettered unread; a sender (the broker-checked
``user_id``) over its budget is dead-lettered undecoded; the rest is queued per sender and handed
to the workers fairly (``broker.dispatch``).

**Watching the topology.** Banks declare nothing: the operator provisions the exchanges, queues
and bindings. Every ``probe_interval_s`` the client checks (passively) that the consortium's
exchange exists and sends itself a probe through it, mandatory and confirmed, which must come
back on its own queue: a missing exchange, a missing binding, an exchange re-declared with
another type, or a queue that is full is reported in ``topology`` (the bank shows it in
``/api/health`` and ``/metrics``) until provisioning restores it and the next probe comes back.
A passive declare that the node does not answer for two intervals means the node has stopped
answering (a hung machine keeps its sockets open): the client leaves it for another, sooner than
the heartbeat would.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
import zlib
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import pika
import pika.exceptions as px
from pika.adapters.select_connection import IOLoop
from pika.adapters.utils.io_services_utils import _AsyncPlaintextTransport as _PlainTransport

from .dispatch import FairDispatch, SenderBudget, SenderLimits
from .errors import BrokerError, NotConnected, NotSent, Rejected, TooLarge, Unconfirmed, Unroutable
from .names import Names
from .provision import address_of, split_urls, username_in

log = logging.getLogger("broker")

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
PROBE_HEADER = "x-consorcio-probe"
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024
UNCHECKED = "unchecked"


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


class _Waiter(NamedTuple):
    """A request waiting for its reply."""
    future: Future
    expect_user: str | None   # a reply from another broker user is dropped
    with_headers: bool        # the future gets (body, headers) rather than the body


@dataclass
class _Unconfirmed:
    future: Future | None  # None: nobody waits for this confirm
    message_id: str
    routing_key: str


class BrokerClient:
    def __init__(self, urls: str | list[str], namespace: str, bank_id: str,
                 handler: Callable[[Delivery], None] | None = None, *,
                 workers: int = 8, prefetch: int = 64, heartbeat: int = 5,
                 max_backoff_s: float = 2.0,
                 own_queue: bool = True, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 sender_limits: SenderLimits | None = None, weigh: Callable[[bytes], int] | None = None,
                 on_refused: Callable[[str, str | None], None] | None = None,
                 probe_interval_s: float = 3.0):
        """``urls``: one or several broker URLs with the same credentials. ``sender_limits``: the
        per-sender budget and fairness (None: every sender the same, e.g. when all banks share
        one broker user and cannot be told apart). ``weigh(body)``: how many items a message
        counts for in its sender's budget (default 1). ``on_refused(reason, user_id)``: told of
        every message refused before the handler saw it (``oversized``, ``over_budget``)."""
        self.urls = split_urls(urls)
        if not self.urls:
            raise ValueError("no broker URL")
        self.user = username_in(self.urls[0])  # stamped as user_id on every message; the broker checks it
        self.names = Names(namespace)
        self.bank_id = bank_id
        self.handler = handler
        self.workers = workers
        self.prefetch = prefetch
        self.heartbeat = heartbeat
        self.max_backoff_s = max_backoff_s
        self.own_queue = own_queue  # False for a pure client (the audit tool): requests only, no bank queue
        self.max_message_bytes = max_message_bytes
        self.sender_limits = sender_limits
        self._budget = SenderBudget(sender_limits.items_per_s, sender_limits.burst_items) \
            if sender_limits is not None else None
        self._weigh = weigh
        self.on_refused = on_refused
        self.probe_interval_s = probe_interval_s
        # Figures the bank shows in /api/health and /metrics.
        self.reconnects = 0          # connections re-established after one was lost
        self.failovers = 0           # ... to another node than the one lost
        self.rejected_replies = 0
        self.refused: Counter = Counter()       # reason -> messages refused before the handler
        self.unconfirmed_failures = 0           # fire-and-forget publishes the broker refused or lost
        self.last_error: str | None = None
        self._topology = UNCHECKED
        # I/O-thread state.
        self._loop: IOLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._conn: pika.SelectConnection | None = None
        self._pub = None
        self._cons = None
        self._generation = 0
        self._index = zlib.crc32(bank_id.encode()) % len(self.urls)  # banks spread over the nodes
        self._node_index: int | None = None      # the node of the current connection
        self._last_node: int | None = None       # the node of the previous connection
        self._attempts = 0
        self._seq = 1
        self._unconfirmed: dict[int, _Unconfirmed] = {}
        self._returned: set[str] = set()
        self._probe: dict | None = None
        self._probe_timer = None
        self._last_tick = 0.0
        # Shared with other threads.
        self._waiters: dict[str, _Waiter] = {}
        self._inflight: set[Future] = set()
        self._lock = threading.Lock()
        self._calls: deque[Callable[[], None]] = deque()   # for the I/O thread, in order (see _call)
        self._calls_lock = threading.Lock()
        self._calls_scheduled = False
        self._dispatch: FairDispatch[Delivery] = FairDispatch(
            sender_limits.per_sender_workers if sender_limits is not None else workers)
        self._worker_threads: list[threading.Thread] = []

    # life cycle ------------------------------------------------------------------------------
    def start(self) -> "BrokerClient":
        self._loop = IOLoop()
        self._thread = threading.Thread(target=self._io_main, name=f"amqp-io-{self.bank_id}", daemon=True)
        self._thread.start()
        if self.handler is not None and self.own_queue:
            for i in range(self.workers):
                t = threading.Thread(target=self._work, name=f"amqp-{self.bank_id}-{i}", daemon=True)
                t.start()
                self._worker_threads.append(t)
        return self

    def wait_connected(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    @property
    def node(self) -> str | None:
        """host:port of the broker node this client is connected to (None when it is not)."""
        i = self._node_index
        return address_of(self.urls[i]) if i is not None and self.connected else None

    @property
    def topology(self) -> str:
        """``ok`` when the last probe came back, ``unchecked`` before the first one, else what is
        wrong (the exchange is missing, the binding is missing or changed, the queue is full)."""
        return self._topology

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._call(self._shutdown)
        if self._thread:
            self._thread.join(timeout)
        self._dispatch.close()
        for t in self._worker_threads:
            t.join(timeout)
        self._fail_inflight(NotConnected("the broker client was stopped"))

    def _io_main(self) -> None:
        loop = self._loop
        loop.call_later(0, self._connect)
        try:
            while True:
                try:
                    loop.start()
                    break   # stopped
                except Exception:  # noqa: BLE001 - a bug in a callback must not leave the bank deaf for good
                    log.exception("the broker client's I/O loop failed; reconnecting")
                    if self._stop.is_set():
                        break
                    self._recover_loop()
        finally:
            self._ready.clear()
            self._fail_pending(NotConnected("the broker client was stopped"))
            loop.close()

    def _recover_loop(self) -> None:
        """After a callback raised out of the loop: start over with a fresh connection."""
        if self._conn is not None and self._conn.is_open:
            self._loop.call_later(0, lambda: self._close_connection("the I/O loop failed"))
        else:
            self._ready.clear()
            self._generation += 1   # whatever the broken connection still says is ignored
            self._conn = self._pub = self._cons = None
            self._loop.call_later(0, self._retry)

    def _call(self, fn: Callable[[], None]) -> bool:
        """Run ``fn`` on the I/O thread; False if the loop is gone. Calls queue up and the loop
        is woken once per batch of them, not once per call: a wake is a system call on each
        side, and under load the publishes and acks of many messages come together."""
        loop = self._loop
        if loop is None:
            return False
        with self._calls_lock:
            self._calls.append(fn)
            if self._calls_scheduled:
                return True
            self._calls_scheduled = True
        try:
            loop.add_callback_threadsafe(self._run_calls)
            return True
        except Exception:  # noqa: BLE001 - the loop was closed: nobody will run it
            with self._calls_lock:
                self._calls_scheduled = False
                self._calls.clear()
            return False

    def _run_calls(self) -> None:
        """On the I/O thread: everything queued by ``_call`` so far, in order."""
        with self._calls_lock:
            self._calls_scheduled = False   # a call queued from now on schedules another run
            calls, self._calls = self._calls, deque()
        for fn in calls:
            try:
                fn()
            except Exception:  # noqa: BLE001 - one failed call must not drop the others
                log.exception("a broker call failed on the I/O thread")
        self._send_now()

    def _send_now(self) -> None:
        """Hand what the calls wrote to the socket at once. pika writes only when the loop
        reports the socket writable: one more wake of the loop for every burst of messages. On a
        plain TCP connection the loop's own handler of writability is called now instead, and
        leaves what does not fit (a full socket buffer) to the loop as before. Wakes per lookup
        answered: 4.1 -> 3.1 at the answering bank, 5.1 -> 3.9 at the asking one."""
        transport = getattr(self._conn, "_transport", None)
        # pika's own names (pinned in requirements.txt); were they to change, pika's way stays
        # and test_what_the_io_thread_is_handed_leaves_at_once_not_at_the_next_wake fails.
        if isinstance(transport, _PlainTransport) and getattr(transport, "_tx_buffers", None):
            transport._on_socket_writable()

    def _shutdown(self) -> None:
        self._cancel_probe()
        conn = self._conn
        if conn is not None and not (conn.is_closing or conn.is_closed):
            try:
                conn.close()
            except px.ConnectionWrongStateError:
                pass
            self._loop.call_later(3, self._loop.stop)  # in case the broker never answers the close
        else:
            self._loop.stop()

    # connecting ------------------------------------------------------------------------------
    def _connect(self) -> None:
        if self._stop.is_set():
            self._loop.stop()
            return
        params = connection_parameters(self.urls[self._index], f"{self.names.namespace}:{self.bank_id}",
                                       self.heartbeat)
        self._generation += 1
        gen = self._generation
        self._conn = pika.SelectConnection(
            params, custom_ioloop=self._loop,
            on_open_callback=lambda conn: self._on_open(gen, conn),
            on_open_error_callback=lambda conn, err: self._on_open_error(gen, err),
            on_close_callback=lambda conn, reason: self._on_closed(gen, reason))

    def _on_open_error(self, gen: int, err: Exception) -> None:
        if gen != self._generation:
            return
        self._conn = None
        self.last_error = f"{address_of(self.urls[self._index])}: {_describe(err)}"
        if self._stop.is_set():
            self._loop.stop()
            return
        log.warning("broker at %s does not answer (%s)", address_of(self.urls[self._index]), _describe(err))
        self._retry()

    def _retry(self) -> None:
        """Try the next node at once; after a whole round of failures, back off (capped)."""
        self._attempts += 1
        self._index = (self._index + 1) % len(self.urls)
        rounds, rest = divmod(self._attempts, len(self.urls))
        delay = 0.0 if rest else min(self.max_backoff_s, 0.1 * 2 ** max(0, rounds - 1))
        self._loop.call_later(delay, self._connect)

    def _on_open(self, gen: int, conn) -> None:
        if gen != self._generation:
            return
        conn.channel(on_open_callback=lambda ch: self._on_pub_open(gen, ch))

    def _on_pub_open(self, gen: int, ch) -> None:
        if gen != self._generation:
            return
        self._pub = ch
        self._seq = 1
        self._unconfirmed.clear()
        self._returned.clear()
        ch.add_on_close_callback(lambda c, reason: self._on_pub_closed(gen, c, reason))
        ch.add_on_return_callback(self._on_return)

        def consuming(_frame) -> None:
            if self._ready.is_set():
                return  # a publishing channel re-opened on a live connection
            if self.handler is not None and self.own_queue:
                self._conn.channel(on_open_callback=lambda c: self._on_cons_open(gen, c))
            else:
                self._became_ready(gen)

        ch.confirm_delivery(self._on_confirm, callback=lambda _f: ch.basic_consume(
            DIRECT_REPLY_TO, self._on_reply, auto_ack=True, callback=consuming))

    def _on_cons_open(self, gen: int, ch) -> None:
        if gen != self._generation:
            return
        self._cons = ch
        queue = self.names.bank_queue(self.bank_id)
        ch.add_on_close_callback(lambda c, reason: self._on_cons_closed(gen, c, reason))
        ch.add_on_cancel_callback(lambda frame: self._on_cancelled(gen))
        ch.basic_qos(prefetch_count=self.prefetch, callback=lambda _f: ch.basic_consume(
            queue, self._on_delivery, auto_ack=False, callback=lambda _f: self._became_ready(gen)))

    def _became_ready(self, gen: int) -> None:
        if gen != self._generation:
            return
        if self._last_node is not None:
            self.reconnects += 1
            if self._index != self._last_node:
                self.failovers += 1
        self._node_index = self._last_node = self._index
        self._attempts = 0
        self.last_error = None
        self._ready.set()
        log.info("connected to the broker at %s as bank %s%s", address_of(self.urls[self._index]), self.bank_id,
                 f" (fail-over {self.failovers})" if self.failovers and self.reconnects else "")
        if self.own_queue and self.handler is not None:
            self._last_tick = time.monotonic()
            self._probe_timer = self._loop.call_later(0.05, self._probe_tick)

    def _on_closed(self, gen: int, reason: Exception) -> None:
        if gen != self._generation:
            return
        was_ready = self._ready.is_set()
        self._ready.clear()
        self._conn = self._pub = self._cons = None
        self._cancel_probe()
        self._fail_pending(NotConnected(f"the broker connection was lost ({_describe(reason)})"))
        self._dispatch.drain()  # stale deliveries: the broker gives them to us (or another) again
        if was_ready:
            self.last_error = f"{address_of(self.urls[self._index])}: {_describe(reason)}"
        if self._stop.is_set():
            self._loop.stop()
            return
        if was_ready:
            log.warning("broker connection to %s lost (%s); connecting to %s", address_of(self.urls[self._index]),
                        _describe(reason), "another node" if len(self.urls) > 1 else "it again")
        elif self.last_error is None:
            self.last_error = f"{address_of(self.urls[self._index])}: {_describe(reason)}"
        self._retry()

    def _close_connection(self, why: str) -> None:
        """Give up on this connection (the loop reconnects, to the next node). A node that has
        stopped answering never confirms the close either: after a second the connection is
        treated as closed anyway, and whatever it says later is ignored (its generation is over)."""
        conn = self._conn
        if conn is None or not conn.is_open:
            return
        self.last_error = why
        gen = self._generation
        try:
            conn.close(320, why[:200])
        except px.ConnectionWrongStateError:
            return

        def abandon() -> None:
            if gen == self._generation and self._conn is conn:
                log.warning("the broker did not answer our close; leaving it without waiting")
                self._on_closed(gen, px.ConnectionClosedByClient(320, why[:200]))
        self._loop.call_later(1.0, abandon)

    def _on_pub_closed(self, gen: int, ch, reason: Exception) -> None:
        if gen != self._generation or ch is not self._pub:
            return
        self._pub = None
        self._fail_pending(NotConnected(f"publishing channel closed ({_describe(reason)})"))
        if self._conn is None or not self._conn.is_open:
            return  # the connection is going: _on_closed does the rest
        if isinstance(reason, px.ChannelClosedByBroker) and reason.reply_code == 404:
            self._set_topology(f"the consortium's exchange {self.names.exchange} does not exist "
                               f"({reason.reply_text})")
        else:
            log.warning("broker closed the publishing channel (%s); opening another", _describe(reason))
        if not self._ready.is_set():
            self._close_connection(f"publishing channel closed: {_describe(reason)}")
            return
        self._loop.call_later(1.0, lambda: self._reopen_pub(gen))

    def _reopen_pub(self, gen: int) -> None:
        if gen == self._generation and self._pub is None and self._conn is not None and self._conn.is_open:
            self._conn.channel(on_open_callback=lambda ch: self._on_pub_open(gen, ch))

    def _on_cons_closed(self, gen: int, ch, reason: Exception) -> None:
        if gen != self._generation or ch is not self._cons:
            return
        self._cons = None
        queue = self.names.bank_queue(self.bank_id)
        why = f"cannot consume queue {queue}: {_describe(reason)}"
        if isinstance(reason, px.ChannelClosedByBroker) and reason.reply_code == 404:
            why = f"queue {queue} does not exist: the broker is not provisioned for this bank"
        if not self._ready.is_set():
            log.warning("%s", why)
        self._close_connection(why)

    def _on_cancelled(self, gen: int) -> None:
        if gen != self._generation:
            return
        why = f"the broker cancelled our consumer: queue {self.names.bank_queue(self.bank_id)} was deleted"
        log.error("%s", why)
        self._set_topology(why)
        self._close_connection(why)

    def _fail_pending(self, err: BrokerError) -> None:
        """The connection or its publishing channel is gone: confirms that were due will never
        come, and answers to requests sent on it will never arrive."""
        unconfirmed, self._unconfirmed = self._unconfirmed, {}
        self._returned.clear()
        lost = Unconfirmed(f"sent, but the broker did not confirm it before: {err}")
        for p in unconfirmed.values():
            if p.future is not None and not p.future.done():
                p.future.set_exception(lost)
        with self._lock:
            waiters, self._waiters = self._waiters, {}
        for w in waiters.values():
            if not w.future.done():
                w.future.set_exception(err)

    def _fail_inflight(self, err: BrokerError) -> None:
        with self._lock:
            inflight, self._inflight = self._inflight, set()
            waiters, self._waiters = self._waiters, {}
        for f in list(inflight) + [w.future for w in waiters.values()]:
            if not f.done():
                f.set_exception(err)

    # running work on the I/O thread --------------------------------------------------------
    def _submit(self, fut: Future, fn: Callable[[], None]) -> Future:
        """Run ``fn`` on the I/O thread; ``fn`` settles ``fut``. Fails at once when not connected."""
        if not self._ready.is_set():
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
                fn()
            except BrokerError as e:
                if not fut.done():
                    fut.set_exception(e)
            except Exception as e:  # noqa: BLE001 - a channel in the wrong state: not sent
                if not fut.done():
                    fut.set_exception(NotConnected(f"{type(e).__name__}: {e}"))

        if not self._call(run):
            with self._lock:
                self._inflight.discard(fut)
            if not fut.done():
                fut.set_exception(NotConnected("not connected to the broker"))
        return fut

    def _settle(self, generation: int, op: Callable) -> None:
        def run() -> None:
            # A delivery tag belongs to the channel it came on: after a reconnect the broker
            # has already put the message back, so the old tag must not be used.
            ch = self._cons
            if generation == self._generation and ch is not None and ch.is_open:
                op(ch)
        self._call(run)

    # publishing -----------------------------------------------------------------------------
    def publish(self, bank_id: str, body: bytes, *, persistent: bool = True, expiration_ms: int | None = None,
                correlation_id: str | None = None, reply_to: str | None = None,
                headers: dict | None = None, confirm: bool = True) -> Future:
        """Publish to a bank's queue: mandatory, on the confirm channel.

        confirm=True: the future resolves once the broker has taken responsibility for the
        message (persistent, on a quorum queue: stored on a majority of the nodes), or fails
        with Unroutable (no queue) / Rejected (queue full) / TooLarge / NotConnected (not sent)
        / Unconfirmed (the connection died before the confirm).

        confirm=False: for messages the protocol re-sends until they are answered (decisions,
        acknowledgements, questions): the future resolves once the message is handed to the
        connection; the broker's confirm still comes, and a refusal is counted and logged."""
        return self._publish_to(self.names.exchange, bank_id, body, persistent=persistent,
                                expiration_ms=expiration_ms, correlation_id=correlation_id,
                                reply_to=reply_to, headers=headers, confirm=confirm, mandatory=True)

    def reply(self, reply_to: str, correlation_id: str | None, body: bytes, headers: dict | None = None) -> Future:
        """Answer a request on its requester's direct reply-to channel (default exchange). A lost
        reply is a timeout for the requester (for a vote: an abort), so nobody waits for it."""
        return self._publish_to("", reply_to, body, persistent=False, correlation_id=correlation_id,
                                headers=headers, confirm=False, mandatory=False)

    def _properties(self, persistent: bool, expiration_ms: int | None, correlation_id: str | None,
                    reply_to: str | None, headers: dict | None) -> pika.BasicProperties:
        return pika.BasicProperties(
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Persistent if persistent else pika.DeliveryMode.Transient,
            expiration=str(max(1, int(expiration_ms))) if expiration_ms is not None else None,
            correlation_id=correlation_id, reply_to=reply_to, headers=headers,
            app_id=self.bank_id, timestamp=int(time.time()), user_id=self.user,
        )

    def _publish_to(self, exchange: str, routing_key: str, body: bytes, *, persistent: bool,
                    expiration_ms: int | None = None, correlation_id: str | None = None,
                    reply_to: str | None = None, headers: dict | None = None,
                    confirm: bool = True, mandatory: bool = True) -> Future:
        fut: Future = Future()
        if len(body) > self.max_message_bytes:
            fut.set_exception(TooLarge(f"{len(body)} bytes is over the limit of {self.max_message_bytes}"))
            return fut
        props = self._properties(persistent, expiration_ms, correlation_id, reply_to, headers)
        return self._submit(fut, lambda: self._send(fut, exchange, routing_key, body, props, mandatory, confirm))

    def _send(self, fut: Future | None, exchange: str, routing_key: str, body: bytes,
              props: pika.BasicProperties, mandatory: bool, confirm: bool) -> None:
        """On the I/O thread: publish and remember what its confirm settles."""
        ch = self._pub
        if ch is None or not ch.is_open:
            raise NotConnected("no publishing channel (the broker closed it; reopening)")
        seq = self._seq
        props.message_id = f"{self._generation}.{seq}"
        ch.basic_publish(exchange, routing_key, body, props, mandatory=mandatory)
        self._seq = seq + 1
        self._unconfirmed[seq] = _Unconfirmed(fut if confirm else None, props.message_id, routing_key)
        if fut is not None and not confirm:
            fut.set_result(None)

    def _on_return(self, ch, method, props, body) -> None:
        # Comes before the confirm of the same message: remember it for _on_confirm.
        if props.message_id:
            self._returned.add(props.message_id)

    def _on_confirm(self, frame) -> None:
        m = frame.method
        acked = isinstance(m, pika.spec.Basic.Ack)
        if m.multiple:
            tags = []
            for t in self._unconfirmed:
                if t > m.delivery_tag:
                    break
                tags.append(t)
        else:
            tags = [m.delivery_tag]
        for t in tags:
            p = self._unconfirmed.pop(t, None)
            if p is None:
                continue
            returned = p.message_id in self._returned
            self._returned.discard(p.message_id)
            err: BrokerError | None = None
            if not acked:
                err = Rejected(f"the broker refused the message for {p.routing_key!r}: its queue is full")
            elif returned:
                err = Unroutable(f"no queue for {p.routing_key!r}")
            if p.future is None:
                if err is not None:
                    self.unconfirmed_failures += 1
                    log.info("a message for %s was not delivered (%s); the protocol sends it again", p.routing_key, err)
            elif not p.future.done():
                if err is None:
                    p.future.set_result(None)
                else:
                    p.future.set_exception(err)

    def request(self, bank_id: str, body: bytes, *, expiration_ms: int, expect_user: str | None = None,
                headers: dict | None = None, with_headers: bool = False) -> PendingReply:
        """RPC: the waiter is registered under a fresh correlation id *before* publishing, so
        a fast reply is never missed. Call ``forget`` on timeout. With ``expect_user``, a reply
        whose broker-checked user_id is not that user is dropped (someone else answering).
        The future holds the reply's body, or (body, headers) with ``with_headers``."""
        cid = uuid.uuid4().hex
        fut: Future = Future()
        with self._lock:
            self._waiters[cid] = _Waiter(fut, expect_user, with_headers)
        sent = self.publish(bank_id, body, persistent=False, expiration_ms=expiration_ms,
                            correlation_id=cid, reply_to=DIRECT_REPLY_TO, headers=headers)

        def on_sent(f: Future) -> None:
            exc = f.exception()
            if exc is not None:
                self.forget(cid)
                if not fut.done():
                    # "Never left" (the addressee cannot have it) is NotSent; a request the
                    # broker may have stored before the connection died is not.
                    fut.set_exception(exc if isinstance(exc, (NotSent, Unconfirmed)) else NotSent(str(exc)))
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
        fut: Future = Future()
        queue = self.names.bank_queue(bank_id)

        def answer(value: int | None) -> None:
            if not fut.done():
                fut.set_result(value)

        def run() -> None:
            def opened(ch) -> None:
                def declared(frame) -> None:
                    answer(frame.method.consumer_count)
                    ch.close()
                ch.add_on_close_callback(lambda c, reason: answer(None))  # 404: no such queue
                ch.queue_declare(queue, passive=True, callback=declared)
            if self._conn is None:
                raise NotConnected("not connected to the broker")
            self._conn.channel(on_open_callback=opened)
        return self._submit(fut, run)

    # consuming --------------------------------------------------------------------------------
    def _on_reply(self, ch, method, props, body: bytes) -> None:
        if len(body) > self.max_message_bytes:
            self._refuse("oversized", props.user_id, f"a reply of {len(body)} bytes")
            self.forget(props.correlation_id or "")
            return
        with self._lock:
            waiter = self._waiters.get(props.correlation_id or "")
            if waiter is not None and waiter.expect_user is not None and props.user_id != waiter.expect_user:
                log.warning("reply for %s from user %r instead of %r dropped", props.correlation_id,
                            props.user_id, waiter.expect_user)
                self.rejected_replies += 1
                return
            waiter = self._waiters.pop(props.correlation_id or "", None)
        if waiter is None:
            log.debug("reply with unknown correlation id %r dropped (late or duplicate)", props.correlation_id)
            return
        if not waiter.future.done():
            waiter.future.set_result((body, dict(props.headers or {})) if waiter.with_headers else body)

    def _on_delivery(self, ch, method, props, body: bytes) -> None:
        headers = props.headers or {}
        if PROBE_HEADER in headers and props.user_id == self.user:
            ch.basic_ack(method.delivery_tag)
            self._probe_back(headers[PROBE_HEADER])
            return
        if len(body) > self.max_message_bytes:
            ch.basic_reject(method.delivery_tag, requeue=False)
            self._refuse("oversized", props.user_id, f"{len(body)} bytes, over {self.max_message_bytes}")
            return
        sender = props.user_id or ""
        if self._budget is not None and not self._budget.can_afford(sender):
            ch.basic_reject(method.delivery_tag, requeue=False)
            self._refuse("over_budget", props.user_id, "no budget left")
            return
        self._dispatch.put(sender, Delivery(
            body=body, correlation_id=props.correlation_id, reply_to=props.reply_to, user_id=props.user_id,
            redelivered=bool(method.redelivered), headers=headers, _client=self, _tag=method.delivery_tag,
            _generation=self._generation))

    def _refuse(self, reason: str, user_id: str | None, detail: str) -> None:
        with self._lock:  # the I/O thread and the workers both refuse
            self.refused[reason] += 1
        log.warning("refused a message from %r before reading it (%s): %s", user_id, reason, detail,
                    extra={"event": "refused"})
        if self.on_refused is not None:
            try:
                self.on_refused(reason, user_id)
            except Exception:  # noqa: BLE001
                log.exception("on_refused callback failed")

    def _work(self) -> None:
        while True:
            got = self._dispatch.get()
            if got is None:
                return
            sender, d = got
            try:
                if d._generation != self._generation:
                    continue  # its connection is gone: the broker delivers it again
                if self._budget is not None:
                    items = 1
                    if self._weigh is not None:
                        try:
                            items = max(1, int(self._weigh(d.body)))
                        except Exception:  # noqa: BLE001 - an unreadable body costs one item
                            items = 1
                    if not self._budget.take(sender, items):
                        d.reject(requeue=False)
                        self._refuse("over_budget", d.user_id, f"{items} items, over the sender's budget")
                        continue
                self._handle(d)
            finally:
                self._dispatch.done(sender)

    def _handle(self, d: Delivery) -> None:
        try:
            self.handler(d)
        except Exception:  # noqa: BLE001 - a handler bug must not kill the consumer
            log.exception("message handler failed; %s", "dead-lettering it" if d.redelivered else "retrying once")
            d.reject(requeue=not d.redelivered)

    # watching the topology -------------------------------------------------------------------
    def _set_topology(self, state: str) -> None:
        if state != self._topology:
            if state == "ok":
                log.info("broker topology as provisioned%s", "" if self._topology == UNCHECKED else " again")
            else:
                log.error("broker topology: %s", state, extra={"event": "topology"})
        self._topology = state

    def _cancel_probe(self) -> None:
        if self._probe_timer is not None and self._loop is not None:
            self._loop.remove_timeout(self._probe_timer)
        self._probe_timer = None
        self._probe = None

    def _probe_tick(self) -> None:
        """Every ``probe_interval_s``: judge the last check, then start the next one.

        A passive declare is answered by the node we are connected to alone, so one left
        unanswered for two intervals means that node has stopped answering: leave it. A probe the
        broker has not confirmed yet only says that the queue is slow (its leader may be moving to
        another node): reported, but not held against the node."""
        self._probe_timer = None
        if not self._ready.is_set() or self._conn is None or not self._conn.is_open:
            return
        now = time.monotonic()
        interval = self.probe_interval_s
        self_stalled = now - self._last_tick > 2 * interval  # this process was paused: judge nothing
        self._last_tick = now
        p = self._probe
        if p is not None and not self_stalled:
            age = now - p["started"]
            if p["declared"] is None and age > 2 * interval:
                self._close_connection(f"the broker at {address_of(self.urls[self._index])} did not answer in "
                                       f"{age:.1f}s: it has stopped answering")
                return
            if p["declared"] is not None and not p["back"] and p["failed"] is None and age >= interval:
                if p["confirmed"]:
                    self._set_topology(
                        f"a probe sent through exchange {self.names.exchange} to {self.bank_id!r} was routed but did "
                        f"not come back within {interval:g}s: the exchange or its binding is not what provisioning "
                        "declared")
                else:
                    self._set_topology(f"the broker has not confirmed a probe to queue "
                                       f"{self.names.bank_queue(self.bank_id)} for {age:.1f}s (a queue leader may "
                                       "be moving to another node)")
        if p is None or p["back"] or p["failed"] is not None or now - p["started"] >= interval or self_stalled:
            if p is None or p["declared"] is not None or self_stalled:
                self._check_exchange_then_probe()
        self._probe_timer = self._loop.call_later(interval, self._probe_tick)

    def _check_exchange_then_probe(self) -> None:
        """A passive declare (no right needed) says whether the exchange exists; the probe, sent
        through it to ourselves, whether it still routes to our queue."""
        gen = self._generation
        probe = {"token": uuid.uuid4().hex, "started": time.monotonic(), "declared": None, "confirmed": False,
                 "back": False, "failed": None}
        self._probe = probe

        def closed(ch, reason) -> None:
            if gen == self._generation and isinstance(reason, px.ChannelClosedByBroker) and reason.reply_code == 404:
                probe["declared"] = probe["failed"] = time.monotonic()
                self._set_topology(f"the consortium's exchange {self.names.exchange} does not exist")

        def declared(ch) -> None:
            probe["declared"] = time.monotonic()
            ch.close()
            if gen == self._generation and self._probe is probe:
                self._send_probe(probe)

        def opened(ch) -> None:
            ch.add_on_close_callback(closed)
            ch.exchange_declare(self.names.exchange, passive=True, callback=lambda _f: declared(ch))
        try:
            self._conn.channel(on_open_callback=opened)
        except px.ConnectionWrongStateError:
            pass

    def _send_probe(self, probe: dict) -> None:
        fut: Future = Future()

        def confirmed(f: Future) -> None:  # on the I/O thread, from _on_confirm
            exc = f.exception()
            if exc is None:
                probe["confirmed"] = True
            elif isinstance(exc, Unroutable):
                probe["failed"] = exc
                self._set_topology(f"nothing routes {self.names.exchange!r} with key {self.bank_id!r} to a queue: "
                                   f"the binding of {self.names.bank_queue(self.bank_id)} is missing")
            elif isinstance(exc, Rejected):
                probe["failed"] = exc
                self._set_topology(f"queue {self.names.bank_queue(self.bank_id)} is full: the broker refuses new "
                                   "messages for this bank")
        fut.add_done_callback(confirmed)
        props = self._properties(False, int(self.probe_interval_s * 2000), None, None, {PROBE_HEADER: probe["token"]})
        try:
            self._send(fut, self.names.exchange, self.bank_id, b"", props, True, True)
        except (BrokerError, px.AMQPError) as e:
            probe["failed"] = e

    def _probe_back(self, token) -> None:
        p = self._probe
        if p is not None and token == p["token"]:
            p["back"] = True
            self._set_topology("ok")


def connection_parameters(url: str, connection_name: str, heartbeat: int) -> pika.URLParameters:
    """pika's parameters for one node: one attempt (the client itself moves to the next node),
    short timeouts, a heartbeat, and for ``amqps://`` a certificate check that includes the host
    name (pika leaves the name out unless the URL's ssl_options give it). The trusted CAs are the
    system's, or those of SSL_CERT_FILE."""
    params = pika.URLParameters(url)
    params.heartbeat = heartbeat
    params.blocked_connection_timeout = 30
    params.connection_attempts = 1
    params.retry_delay = 0
    params.socket_timeout = 3
    params.stack_timeout = 6
    params.client_properties = {"connection_name": connection_name}
    if params.ssl_options is not None and params.ssl_options.server_hostname is None:
        params.ssl_options = pika.SSLOptions(params.ssl_options.context, server_hostname=params.host)
    return params


def _describe(err: Exception | None) -> str:
    """One line saying why: pika wraps the cause of a failed connection attempt in layers
    (workflow, connector phase), and the cause is what an operator needs (refused, timed out,
    certificate not valid for that host, ...)."""
    for _ in range(4):
        inner = getattr(err, "exceptions", None)
        inner = inner[-1] if inner else getattr(err, "exception", None)
        if not isinstance(inner, BaseException):
            break
        err = inner
    if err is None:
        return "closed"
    if isinstance(err, (px.ConnectionClosedByBroker, px.ChannelClosedByBroker)):
        return f"{err.reply_code} {err.reply_text}"
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
