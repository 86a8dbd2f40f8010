"""The messaging layer on its own, against a real RabbitMQ (broker/ knows nothing about money)."""
from __future__ import annotations

import shutil
import threading
import time

import pytest

import pika

from tools.rabbit import BrokerControl
from broker import BrokerClient, NotSent, Unroutable
from broker.errors import BrokerError, Rejected, TooLarge
from broker.provision import delete_namespace, provision_topology
from broker.topology import QueueBounds, Topology
from tests.support import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def clients(amqp_url, namespace):
    made = []
    provision_topology(amqp_url, Topology(namespace, ("alfa", "beta")))  # "nobody" has no queue

    def make(bank, handler=None) -> BrokerClient:
        c = BrokerClient(amqp_url, namespace, bank, handler).start()
        made.append(c)
        assert c.wait_connected(10)
        return c
    yield make
    for c in made:
        c.stop()
    delete_namespace(amqp_url, namespace, ["alfa", "beta", "nobody"])


def echo(client_ref):
    def handle(d):
        client_ref[0].reply(d.reply_to, d.correlation_id, b"echo:" + d.body).result(5)
        d.ack()
    return handle


def test_rpc_round_trip_and_a_request_to_a_bank_with_no_queue_fails_at_once(clients):
    ref = [None]
    beta = clients("beta", echo(ref))
    ref[0] = beta
    alfa = clients("alfa")
    assert alfa.request("beta", b"hi", expiration_ms=5000).future.result(5) == b"echo:hi"
    t0 = time.monotonic()
    pending = alfa.request("nobody", b"hi", expiration_ms=5000)
    with pytest.raises(NotSent) as e:
        pending.future.result(5)
    assert isinstance(e.value, Unroutable)
    assert time.monotonic() - t0 < 1.0, "mandatory + confirm: no waiting for a TTL"


def test_what_the_io_thread_is_handed_leaves_at_once_not_at_the_next_wake(clients):
    """pika writes only when its loop reports the socket writable (one more wake for every
    burst of messages); the client hands what its calls wrote to the socket right after them."""
    alfa = clients("alfa", lambda d: d.ack())
    seen = []

    def on_io_thread():
        # on the consuming channel: the publishing one counts its confirms
        alfa._cons.basic_publish(exchange="", routing_key="nobody-listens", body=b"x" * 1000)
        transport = alfa._conn._transport
        before = sum(len(b) for b in transport._tx_buffers)
        alfa._send_now()
        seen.append((before, sum(len(b) for b in transport._tx_buffers)))
    alfa._call(on_io_thread)
    wait_until(lambda: seen, 5, "the call ran on the I/O thread")
    (before, after), = seen
    assert before > 1000 and after == 0, seen
    alfa.publish("alfa", b"and the client goes on", confirm=True).result(5)


def test_a_reply_from_another_user_or_with_an_unknown_id_is_dropped(clients, amqp_url):
    ref = [None]
    reply_to = []

    def handle(d):
        reply_to.append(d.reply_to)
        echo(ref)(d)
    beta = clients("beta", handle)
    ref[0] = beta
    alfa = clients("alfa")
    # beta answers as the broker URL's user, not as "someone-else": the waiter ignores it.
    pending = alfa.request("beta", b"x", expiration_ms=2000, expect_user="someone-else")
    with pytest.raises(TimeoutError):
        pending.future.result(1.5)
    alfa.forget(pending.correlation_id)
    assert alfa.rejected_replies == 1
    # A late reply to a forgotten request is dropped without harm; the client goes on working.
    beta.reply(reply_to[-1], "no-such-id", b"late").result(5)
    assert alfa.request("beta", b"y", expiration_ms=2000).future.result(5) == b"echo:y"


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="closing connections needs rabbitmqctl")
def test_consumer_resumes_after_its_connection_is_closed_by_the_broker(clients, namespace, amqp_url):
    if "127.0.0.1:5672" not in amqp_url:
        pytest.skip("rabbitmqctl acts on the local broker only")
    got: list[bytes] = []
    lock = threading.Lock()

    def handle(d):
        with lock:
            got.append(d.body)
        d.ack()
    beta = clients("beta", handle)
    alfa = clients("alfa")
    alfa.publish("beta", b"before").result(5)
    wait_until(lambda: b"before" in got, 10)
    reconnects = beta.reconnects
    assert BrokerControl().close_connections(namespace) >= 2
    wait_until(lambda: beta.reconnects > reconnects and beta.connected and alfa.connected, 20, "both reconnected")
    alfa.publish("beta", b"after").result(5)
    wait_until(lambda: b"after" in got, 10, "consuming again")


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="closing connections needs rabbitmqctl")
def test_a_lost_connection_with_requests_awaiting_replies_fails_them_and_reconnects(clients, namespace):
    """The requests waiting for a reply when the connection goes fail at once (nobody will
    answer them on a dead connection), and the client connects again."""
    beta = clients("beta", lambda d: None)         # takes the requests and never answers
    alfa = clients("alfa")
    waiting = [alfa.request("beta", b"q", expiration_ms=30_000, with_headers=True).future for _ in range(3)]
    wait_until(lambda: alfa._waiters, 5, "requests registered")
    reconnects = alfa.reconnects
    assert BrokerControl().close_connections(namespace) >= 2
    for f in waiting:
        with pytest.raises(BrokerError):
            f.result(10)
    wait_until(lambda: alfa.reconnects > reconnects and alfa.connected, 20, "alfa reconnected")


def test_a_failing_callback_on_the_io_thread_does_not_leave_the_client_deaf(clients):
    ref = [None]
    beta = clients("beta", echo(ref))
    ref[0] = beta
    alfa = clients("alfa")
    reconnects = alfa.reconnects
    alfa._loop.add_callback_threadsafe(lambda: 1 / 0)   # a bug in some callback
    wait_until(lambda: alfa.reconnects > reconnects and alfa.connected, 20, "alfa reconnected")
    assert alfa.request("beta", b"still here", expiration_ms=5000).future.result(5) == b"echo:still here"


def test_an_oversized_message_is_dead_lettered_without_the_handler_ever_seeing_it(clients, amqp_url, namespace):
    seen: list[bytes] = []
    refused: list[tuple[str, str | None]] = []
    beta = clients("beta", lambda d: (seen.append(d.body), d.ack()))
    beta.on_refused = lambda reason, user: refused.append((reason, user))
    # A sender that ignores the limit: 1 byte over it, and not even JSON.
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        big = b"\xff" * (beta.max_message_bytes + 1)
        ch.basic_publish(f"{namespace}.banks", "beta", big, pika.BasicProperties(user_id="guest"), mandatory=True)
        ch.basic_publish(f"{namespace}.banks", "beta", b"small", pika.BasicProperties(user_id="guest"), mandatory=True)
        wait_until(lambda: seen == [b"small"] and refused == [("oversized", "guest")], 10, "the small one handled")
        _, props, body = wait_until(lambda: (got := ch.basic_get(f"{namespace}.dead", auto_ack=True))[0] and got,
                                    10, "the big one in the dead-letter queue")
        assert body == big and props.headers["x-death"][0]["reason"] == "rejected"
    finally:
        conn.close()
    assert beta.refused["oversized"] == 1
    # This client never sends one: refused before it reaches the broker.
    with pytest.raises(TooLarge):
        beta.publish("alfa", b"x" * (beta.max_message_bytes + 1)).result(5)


def test_a_message_that_keeps_failing_is_dead_lettered_at_the_delivery_limit(amqp_url, namespace):
    """A consumer that dies on a message every time (here: puts it back every time) does not loop
    on it for ever: the quorum queue dead-letters it after its delivery limit."""
    provision_topology(amqp_url, Topology(namespace, ("beta",), QueueBounds(delivery_limit=3)))
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish(f"{namespace}.banks", "beta", b"poison", mandatory=True)
        deliveries = 0
        end = time.monotonic() + 20
        while time.monotonic() < end:
            method, _, body = ch.basic_get(f"{namespace}.bank.beta")
            if method is None:
                if ch.queue_declare(f"{namespace}.dead", passive=True).method.message_count:
                    break
                conn.sleep(0.05)
                continue
            deliveries += 1
            ch.basic_reject(method.delivery_tag, requeue=True)
        method, props, body = ch.basic_get(f"{namespace}.dead", auto_ack=True)
        assert body == b"poison" and props.headers["x-death"][0]["reason"] == "delivery_limit"
        assert deliveries == 4  # the first delivery and three more
    finally:
        conn.close()
        delete_namespace(amqp_url, namespace, ["beta"])


def test_a_full_queue_refuses_the_publish_and_the_publisher_learns_it_at_once(amqp_url, namespace):
    provision_topology(amqp_url, Topology(namespace, ("alfa", "beta"), QueueBounds(max_length=5)))
    alfa = BrokerClient(amqp_url, namespace, "alfa").start()
    try:
        assert alfa.wait_connected(10)
        for i in range(5):
            alfa.publish("beta", b"%d" % i).result(5)
        # The quorum queue counts its length a little behind: the refusal may take a message or two.
        refusal = None
        for i in range(5):
            try:
                alfa.publish("beta", b"one too many").result(5)
            except Rejected as e:
                refusal = e
                break
        assert isinstance(refusal, NotSent), "a refused message never reached its queue"
        t0 = time.monotonic()
        pending = alfa.request("beta", b"a prepare", expiration_ms=30_000)
        with pytest.raises(Rejected):
            pending.future.result(5)
        assert time.monotonic() - t0 < 2, "refused at once, not after the request's TTL"
    finally:
        alfa.stop()
        delete_namespace(amqp_url, namespace, ["alfa", "beta"])


def test_an_oversized_reply_is_dropped_unread_and_the_request_times_out(clients, amqp_url):
    """A dishonest answerer cannot make the requester hold a huge body: the reply is dropped
    (the request then times out, which for a vote is an abort)."""
    ref = [None]

    def huge_answer(d):
        ref[0].reply(d.reply_to, d.correlation_id, b"x" * 8192).result(5)
        d.ack()
    beta = clients("beta", huge_answer)
    ref[0] = beta
    alfa = clients("alfa")
    alfa.max_message_bytes = 4096   # beta's answer is twice that
    pending = alfa.request("beta", b"question", expiration_ms=3000)
    with pytest.raises(TimeoutError):
        pending.future.result(2)
    assert alfa.refused["oversized"] == 1
