"""Least privilege on the broker, tried as a dishonest member bank with its own credentials.

A bank's broker user may publish to the consortium's exchange and consume its own queue. The
broker itself refuses (403 ACCESS_REFUSED) every attack a member once could make: binding its
queue to another bank's routing key (a wiretap), deleting the exchange, re-declaring it as a
fanout, binding to the dead-letter exchange, reading or deleting the dead-letter queue. Banks
declare nothing; the operator's provisioning does, and the launcher's users are the ones docker
compose loads. And when someone with the rights to do so breaks the exchange or a binding anyway,
every bank notices it, says so in /api/health and /metrics, and recovers when provisioning
restores it.
"""
from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import urllib.request
import uuid

import pika
import pika.exceptions as px
import pytest

from bank_node.config import load_config
from bank_node.messaging import topology_of
from broker.provision import deprovision, permissions, provision, provision_topology, user_of, with_credentials
from broker.topology import Topology
from tests.support import customer_everywhere, metric, wait_until
from tools.consortia import write_config

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("rabbitmqctl") is None,
                                 reason="provisioning broker users needs rabbitmqctl next to the broker")]

PRINCIPALS = ["alfa", "beta", "gama", "auditor"]


@pytest.fixture(scope="module")
def users(amqp_url):
    """A namespace of its own with per-bank users and the consortium's topology, as the
    operator provisions them (rabbitmqctl is slow: once for the module)."""
    namespace = f"t-{uuid.uuid4().hex[:12]}"
    pw = {p: secrets.token_urlsafe(16) for p in PRINCIPALS}
    provision(namespace, pw)
    provision_topology(amqp_url, Topology(namespace, ("alfa", "beta", "gama")))
    yield namespace, pw
    deprovision(namespace, PRINCIPALS)
    from broker.provision import delete_namespace
    delete_namespace(amqp_url, namespace, ["alfa", "beta", "gama"])


def as_bank(amqp_url: str, namespace: str, principal: str, password: str) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.URLParameters(
        with_credentials(amqp_url, user_of(namespace, principal), password)))


def admin_channel(amqp_url: str):
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    return conn, conn.channel()


ATTACKS = {
    # gama binds its own queue to the exchange with beta's routing key: a copy of beta's traffic.
    "wiretap binding": lambda ch, ns: ch.queue_bind(f"{ns}.bank.gama", f"{ns}.banks", routing_key="beta"),
    # ... or a queue of its own for the copy.
    "wiretap queue": lambda ch, ns: ch.queue_declare(f"{ns}.bank.gama.copy", durable=True),
    "server-named queue": lambda ch, ns: ch.queue_declare("", exclusive=True),
    # Deleting the exchange cuts every bank off.
    "exchange deletion": lambda ch, ns: ch.exchange_delete(f"{ns}.banks"),
    # Re-declared as fanout (after deleting it), it would hand every message to every queue.
    "fanout re-declaration": lambda ch, ns: ch.exchange_declare(f"{ns}.banks", exchange_type="fanout", durable=True),
    "new fanout exchange": lambda ch, ns: ch.exchange_declare(f"{ns}.banks.tap", exchange_type="fanout"),
    # The dead-letter exchange carries refused lookups (CPFs) and PREPAREs.
    "dead-letter binding": lambda ch, ns: ch.queue_bind(f"{ns}.bank.gama", f"{ns}.dlx"),
    "dead-letter queue reading": lambda ch, ns: ch.basic_get(f"{ns}.dead"),
    "dead-letter queue consuming": lambda ch, ns: ch.basic_consume(f"{ns}.dead", lambda *a: None),
    # The dead-letter queue is the evidence of what was refused.
    "dead-letter queue deletion": lambda ch, ns: ch.queue_delete(f"{ns}.dead"),
    "dead-letter queue purge": lambda ch, ns: ch.queue_purge(f"{ns}.dead"),
    "own queue deletion": lambda ch, ns: ch.queue_delete(f"{ns}.bank.gama"),
    "reading another bank's queue": lambda ch, ns: ch.basic_get(f"{ns}.bank.beta"),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_the_broker_refuses_the_attack_made_with_a_banks_own_credentials(users, amqp_url, attack):
    namespace, pw = users
    conn = as_bank(amqp_url, namespace, "gama", pw["gama"])
    try:
        with pytest.raises(px.ChannelClosedByBroker) as refused:
            ATTACKS[attack](conn.channel(), namespace)
        assert refused.value.reply_code == 403, refused.value.reply_text
        assert "ACCESS_REFUSED" in refused.value.reply_text
    finally:
        if conn.is_open:
            conn.close()
    # ... and nothing changed: the exchange is direct, beta's queue gets beta's messages only,
    # the dead-letter queue is still there.
    conn, ch = admin_channel(amqp_url)
    try:
        ch.exchange_declare(f"{namespace}.banks", exchange_type="direct", durable=True)  # 406 if it were fanout
        ch.queue_declare(f"{namespace}.dead", passive=True)
        ch.confirm_delivery()
        ch.queue_purge(f"{namespace}.bank.beta")
        ch.queue_purge(f"{namespace}.bank.gama")
        ch.basic_publish(f"{namespace}.banks", "beta", b"for beta only", mandatory=True)
        assert ch.queue_declare(f"{namespace}.bank.gama", passive=True).method.message_count == 0
        assert ch.queue_declare(f"{namespace}.bank.beta", passive=True).method.message_count == 1
        ch.queue_purge(f"{namespace}.bank.beta")
    finally:
        conn.close()


def test_what_a_bank_may_do_it_can_do(users, amqp_url):
    """The rights are not merely closed: a bank publishes to the exchange, reads its own queue,
    and answers on the requester's direct reply-to."""
    namespace, pw = users
    alfa = as_bank(amqp_url, namespace, "alfa", pw["alfa"])
    beta = as_bank(amqp_url, namespace, "beta", pw["beta"])
    try:
        a, b = alfa.channel(), beta.channel()
        a.confirm_delivery()
        replies = []
        a.basic_consume("amq.rabbitmq.reply-to", lambda ch, m, p, body: replies.append((body, p.user_id)),
                        auto_ack=True)
        a.basic_publish(f"{namespace}.banks", "beta", b"question",
                        pika.BasicProperties(reply_to="amq.rabbitmq.reply-to", user_id=f"{namespace}.alfa"),
                        mandatory=True)
        method, props, body = None, None, None
        for _ in range(50):
            method, props, body = b.basic_get(f"{namespace}.bank.beta")
            if method:
                break
            beta.sleep(0.05)
        assert body == b"question" and props.user_id == f"{namespace}.alfa"
        b.basic_ack(method.delivery_tag)
        b.basic_publish("", props.reply_to, b"answer", pika.BasicProperties(user_id=f"{namespace}.beta"))
        for _ in range(50):
            if replies:
                break
            alfa.process_data_events(0.05)
        assert replies == [(b"answer", f"{namespace}.beta")]
    finally:
        alfa.close()
        beta.close()


def rabbitmq_json(*args: str):
    out = subprocess.run(["rabbitmqctl", "-q", *args, "--formatter", "json"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def arguments(listed) -> dict:
    """rabbitmqctl lists a queue's arguments as [name, type, value] (or, in newer versions, a map)."""
    return dict(listed) if isinstance(listed, dict) else {name: value for name, _, value in listed}


def test_the_launcher_and_docker_compose_provision_the_same_users_and_queues(users, amqp_url, tmp_path):
    """The launcher creates users with rabbitmqctl and queues over AMQP; compose loads
    `python -m tools.ops broker-secrets`'s definitions file. What the broker holds after the first
    is exactly what the second describes."""
    from tools.ops import broker_secrets
    namespace, pw = users
    cfg = load_config(write_config(tmp_path / "c.yml", consortium=namespace, broker_url=amqp_url,
                                   banks=[{"id": b, "name": b, "port": 18000 + i}
                                          for i, b in enumerate(("alfa", "beta", "gama"))],
                                   broker_auth={"mode": "per_bank", "secrets_file": "broker.yml"}), env={})
    (tmp_path / "broker.yml").write_text("".join(f"{k}: {v}\n" for k, v in pw.items()))
    (tmp_path / "broker.yml").chmod(0o600)
    written = broker_secrets(cfg, tmp_path / "out")
    doc = json.loads(written["definitions"].read_text())
    described = {p["user"]: (p["configure"], p["write"], p["read"]) for p in doc["permissions"]
                 if p["user"].startswith(namespace + ".") and not p["user"].endswith(".admin")}
    held = {p["user"]: (p["configure"], p["write"], p["read"]) for p in rabbitmq_json("list_permissions")
            if p["user"].startswith(namespace + ".")}
    assert held == described == {user_of(namespace, p): permissions(namespace, p) for p in PRINCIPALS}
    queues = {q["name"]: arguments(q["arguments"]) for q in rabbitmq_json("list_queues", "name", "arguments")
              if q["name"].startswith(namespace + ".")}
    assert queues == {q["name"]: q["arguments"] for q in doc["queues"]}
    assert all(a["x-queue-type"] == "quorum" for a in queues.values())
    assert {q["name"]: q["arguments"] for q in doc["queues"]} == \
        {q.name: q.arguments for q in topology_of(cfg).queues}


# -- a bank notices a broken topology and recovers when provisioning restores it ------------------

def health(url: str) -> dict:
    return json.loads(urllib.request.urlopen(url + "/api/health", timeout=10).read())

@pytest.fixture
def watched(make_cluster, new_cpf):
    cluster = make_cluster(banks=("alfa", "beta"), broker={"probe_interval_s": 0.5})
    ana, acc = customer_everywhere(cluster, new_cpf())
    for b in cluster.banks.values():
        wait_until(lambda b=b: health(b.url)["broker_topology"] == "ok", 10, f"{b.bank_id}'s first probe")
    return cluster, ana, acc


def restored_and_working(cluster, ana, acc, amqp_url):
    provision_topology(amqp_url, topology_of(load_config(cluster.config_path)))
    for b in cluster.banks.values():
        wait_until(lambda b=b: (h := health(b.url))["broker_topology"] == "ok" and h["status"] == "ok" and
                   h["broker"] == "connected", 20, f"{b.bank_id} healthy again after provisioning")
        assert metric(b.url, "consorcio_broker_topology_ok", default=-1.0) == 1
    _, body = ana.transfer("alfa", [("alfa", acc["alfa"], "1.00")], ("beta", acc["beta"]))
    assert body["status"] == "committed", body


def test_a_deleted_exchange_is_noticed_and_provisioning_restores_it(watched, amqp_url, namespace):
    cluster, ana, acc = watched
    conn, ch = admin_channel(amqp_url)
    ch.exchange_delete(f"{namespace}.banks")
    conn.close()
    for b in cluster.banks.values():
        h = wait_until(lambda b=b: (h := health(b.url))["broker_topology"] != "ok" and h, 10,
                       f"{b.bank_id} to notice")
        assert f"{namespace}.banks" in h["broker_topology"] and "does not exist" in h["broker_topology"]
        assert h["status"] == "degraded"
        assert metric(b.url, "consorcio_broker_topology_ok", default=-1.0) == 0
    _, body = ana.transfer("alfa", [("alfa", acc["alfa"], "1.00")], ("beta", acc["beta"]))
    assert body["status"] == "aborted"  # cut off, and it says so, instead of "connected" and silent
    restored_and_working(cluster, ana, acc, amqp_url)


def test_a_missing_binding_is_noticed_by_its_bank_and_provisioning_restores_it(watched, amqp_url, namespace):
    cluster, ana, acc = watched
    conn, ch = admin_channel(amqp_url)
    ch.queue_unbind(f"{namespace}.bank.beta", f"{namespace}.banks", routing_key="beta")
    conn.close()
    h = wait_until(lambda: (h := health(cluster["beta"].url))["broker_topology"] != "ok" and h, 10, "beta to notice")
    assert "binding" in h["broker_topology"] and f"{namespace}.bank.beta" in h["broker_topology"]
    assert health(cluster["alfa"].url)["broker_topology"] == "ok"
    restored_and_working(cluster, ana, acc, amqp_url)


def test_an_exchange_redeclared_as_fanout_is_noticed_and_provisioning_puts_it_back(watched, amqp_url, namespace):
    cluster, ana, acc = watched
    conn, ch = admin_channel(amqp_url)
    ch.exchange_delete(f"{namespace}.banks")
    ch.exchange_declare(f"{namespace}.banks", exchange_type="fanout", durable=True)
    spy = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(spy, f"{namespace}.banks")
    try:
        for b in cluster.banks.values():
            h = wait_until(lambda b=b: (h := health(b.url))["broker_topology"] != "ok" and h, 10,
                           f"{b.bank_id} to notice")
            assert "did not come back" in h["broker_topology"]
        restored_and_working(cluster, ana, acc, amqp_url)
        # The fanout and its spy binding are gone: the spy's queue gets nothing more.
        ch.queue_purge(spy)
        _, body = ana.transfer("alfa", [("alfa", acc["alfa"], "1.00")], ("beta", acc["beta"]))
        assert body["status"] == "committed"
        assert ch.queue_declare(spy, passive=True).method.message_count == 0
    finally:
        conn.close()


def test_a_deleted_bank_queue_is_noticed_and_provisioning_restores_it(watched, amqp_url, namespace):
    cluster, ana, acc = watched
    conn, ch = admin_channel(amqp_url)
    ch.queue_delete(f"{namespace}.bank.beta")
    conn.close()
    h = wait_until(lambda: (h := health(cluster["beta"].url))["broker"] == "disconnected" and h, 10, "beta to notice")
    assert f"{namespace}.bank.beta" in h["broker_error"] and h["status"] == "degraded"
    restored_and_working(cluster, ana, acc, amqp_url)
