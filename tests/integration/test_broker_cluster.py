"""A consortium on a 3-node RabbitMQ cluster: losing a node loses nothing and stops nothing.

Every bank is given all three nodes' URLs; its queue and the dead-letter queue are quorum queues
with a member on every node. Killing (kill -9) the node a bank is connected to in the middle of
transfers: the bank moves to another node within seconds, transfers commit again within 10 s, and
after healing the money adds up, every transfer is all-or-nothing and nothing is left in doubt.
A paused node (a hung machine: sockets open, nothing answers) is left as well. The cluster's
nodes refuse a message over the consortium's size limit.

One cluster for the whole module (starting one costs about 20 s here); each test heals it.
"""
from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.request

import pika
import pytest

from tests.support import customer_everywhere, metric, wait_until
from tools.chaos import Chaos, checker
from tools.chaos.workload import Workload
from tools.rabbit import DEFAULT_MAX_MESSAGE_BYTES, BrokerCluster

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("rabbitmq-server") is None,
                                 reason="a local RabbitMQ cluster needs rabbitmq-server installed")]


@pytest.fixture(scope="module")
def brokers():
    cluster = BrokerCluster(3, prefix="test").start()
    yield cluster
    cluster.stop()


@pytest.fixture
def healed(brokers):
    yield brokers
    brokers.heal()


def health(url: str) -> dict:
    return json.loads(urllib.request.urlopen(url + "/api/health", timeout=10).read())

def node_of(bank) -> str:
    return health(bank.url)["broker_node"]


def test_killing_the_node_a_bank_is_on_during_transfers_loses_nothing(make_cluster, healed, new_cpf):
    brokers = healed
    cluster = make_cluster(broker_url=brokers.urls)
    urls = {b: p.url for b, p in cluster.banks.items()}
    work = Workload(seed=13, urls=urls, people=3)
    work.setup()
    clients = [threading.Thread(target=work.client, args=(k,), daemon=True) for k in range(4)]
    for t in clients:
        t.start()
    # A customer of our own probes, through alfa, how soon transfers commit again.
    ana, acc = customer_everywhere(cluster, new_cpf(), amount="500.00")
    work.initial += 500_00 * len(cluster.banks)  # ana's money is in the checker's sum too
    try:
        wait_until(lambda: work.history.count()["transfer:committed"] >= 10, 60, "transfers under way")
        victim = brokers.node_at(node_of(cluster["alfa"]))
        failovers = metric(cluster["alfa"].url, "consorcio_broker_failovers_total")
        killed_at = time.monotonic()
        victim.kill()

        def commits_through_alfa():
            _, body = ana.transfer("alfa", [("alfa", acc["alfa"], "0.01"), ("beta", acc["beta"], "0.01")],
                                   ("gama", acc["gama"]), timeout=15)
            return body.get("status") == "committed"
        wait_until(commits_through_alfa, 10, "a transfer through alfa to commit after its node died", interval=0.1)
        recovered_after = time.monotonic() - killed_at
        assert recovered_after < 10, recovered_after
        h = health(cluster["alfa"].url)
        assert h["broker"] == "connected" and h["broker_node"] != victim.address
        assert metric(cluster["alfa"].url, "consorcio_broker_failovers_total") >= failovers + 1
        before = work.history.count()["transfer:committed"]
        wait_until(lambda: work.history.count()["transfer:committed"] >= before + 10, 30,
                   "the workload committing again")
        print(f"\ntransfers commit again {recovered_after:.1f}s after the node alfa was on died")
    finally:
        work.stop.set()
        for t in clients:
            t.join(60)
    brokers.heal()

    def ledgers():
        return {b: checker.read_ledger(cluster.ledger_location(b)) for b in cluster.banks}
    quiet_after = checker.wait_quiescent(ledgers, time.monotonic())
    verdicts = checker.check(work, ledgers, quiet_after)
    failed = {k: v for k, v in verdicts.items() if not v[0]}
    assert not failed, failed
    assert work.history.count()["transfer:committed"] > 20


def test_a_paused_node_is_left_for_another(make_cluster, healed):
    brokers = healed
    cluster = make_cluster(banks=("alfa", "beta"), broker_url=brokers.urls, broker={"probe_interval_s": 1.0})
    victim = brokers.node_at(node_of(cluster["alfa"]))
    victim.pause()
    t0 = time.monotonic()
    try:
        wait_until(lambda: (h := health(cluster["alfa"].url))["broker"] == "connected"
                   and h["broker_node"] not in (None, victim.address), 20, "alfa on another node", interval=0.2)
    finally:
        victim.resume()
    print(f"\nalfa left the paused node after {time.monotonic() - t0:.1f}s")


def test_the_cluster_nodes_refuse_a_message_over_the_size_limit(brokers):
    conn = pika.BlockingConnection(pika.URLParameters(brokers.urls[0]))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        q = ch.queue_declare("", exclusive=True).method.queue
        ch.basic_publish("", q, b"x" * DEFAULT_MAX_MESSAGE_BYTES)
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            ch.basic_publish("", q, b"x" * (DEFAULT_MAX_MESSAGE_BYTES + 1))
        assert refused.value.reply_code == 406 and "max size" in refused.value.reply_text
    finally:
        if conn.is_open:
            conn.close()


def test_chaos_with_broker_nodes_killed_and_paused_keeps_every_invariant(healed, tmp_path):
    brokers = healed
    chaos = Chaos(seed=20261129, duration=30, banks=3, clients=6, people=4,
                  faults=["kill", "broker-node-kill", "broker-node-pause"], amqp_url="", workdir=tmp_path,
                  ttl_ms=1500, quiet=False, brokers=brokers)
    try:
        summary = chaos.run()
    finally:
        chaos.close()
    failed = {k: v for k, v in summary["verdicts"].items() if not v["ok"]}
    print("\nfaults:", summary["faults"], "\noutcomes:", summary["by_outcome"])
    assert not failed, failed
    assert any("broker node" in f for f in summary["faults"]), summary["faults"]
    assert summary["by_outcome"].get("transfer: committed", 0) > 30
