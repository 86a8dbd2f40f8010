"""The messaging layer on its own, against a real RabbitMQ (broker/ knows nothing about money)."""
from __future__ import annotations

import shutil
import threading
import time

import pytest

from tools.rabbit import BrokerControl
from broker import BrokerClient, NotSent, Unroutable
from broker.provision import delete_namespace, provision_topology
from broker.topology import Topology
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
