"""The broker layer without a broker: per-sender fairness and budgets, the consortium's topology
and its least-privilege permissions, and several broker URLs in the configuration."""
from __future__ import annotations

import json
import re
import threading

import pytest

from bank_node.config import ConfigError, load_config
from bank_node.identity import broker_url_for
from bank_node.messaging import items_in, topology_of
from broker.dispatch import FairDispatch, SenderBudget
from broker.provision import definitions, permissions, split_urls, user_of
from broker.topology import QueueBounds, Topology
from tests.support import wait_until
from tests.unit.conftest import make_config
from tools.consortia import write_config


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


# -- budgets ------------------------------------------------------------------------------------

def test_a_sender_spends_its_burst_then_only_what_refills():
    clock = Clock()
    budget = SenderBudget(rate=10, burst=100, clock=clock)
    assert budget.take("delta", 100)
    assert not budget.can_afford("delta")
    assert not budget.take("delta", 1)
    clock.t += 0.5                      # 5 items refilled
    assert budget.take("delta", 5) and not budget.take("delta", 1)
    clock.t += 1000                     # never more than the burst
    assert not budget.take("delta", 101) and budget.take("delta", 100)


def test_an_envelope_the_sender_cannot_afford_costs_it_nothing_and_others_keep_their_budget():
    clock = Clock()
    budget = SenderBudget(rate=10, burst=100, clock=clock)
    assert budget.take("delta", 60)
    assert not budget.take("delta", 60)           # refused whole: nothing spent ...
    assert budget.take("delta", 40)               # ... so what it still has is still there
    assert budget.take("beta", 100)               # one sender's spending is not another's
    with pytest.raises(ValueError):
        SenderBudget(rate=0, burst=1)


# -- fair dispatch ------------------------------------------------------------------------------

def test_senders_are_served_in_turn_not_in_arrival_order():
    d: FairDispatch[str] = FairDispatch(per_sender=8)
    for i in range(5):
        d.put("flood", f"f{i}")
    d.put("honest", "h0")
    d.put("other", "o0")
    order = []
    for _ in range(7):
        sender, item = d.get(timeout=1)
        order.append(item)
        d.done(sender)
    assert order[:3] == ["f0", "h0", "o0"], order   # the honest message is second, not sixth
    assert order[3:] == ["f1", "f2", "f3", "f4"]


def test_one_sender_never_holds_more_than_its_share_of_the_workers():
    d: FairDispatch[str] = FairDispatch(per_sender=2)
    for i in range(10):
        d.put("flood", f"f{i}")
    a = d.get(timeout=1)
    b = d.get(timeout=1)
    assert {a[1], b[1]} == {"f0", "f1"}
    assert d.get(timeout=0.05) is None            # a third worker may not take the flood's messages
    d.put("honest", "h0")
    assert d.get(timeout=1) == ("honest", "h0")   # ... but takes the honest one at once
    d.done("flood")
    assert d.get(timeout=1) == ("flood", "f2")    # one flood message finished: the next may start


def test_a_worker_waiting_for_a_message_wakes_when_one_arrives_and_close_releases_the_others():
    d: FairDispatch[str] = FairDispatch(per_sender=1)
    got = []
    workers = [threading.Thread(target=lambda: got.append(d.get())) for _ in range(2)]
    for w in workers:
        w.start()
    d.put("beta", "m")
    wait_until(lambda: got, 5, "a worker to take the message")
    assert got == [("beta", "m")]
    d.close()
    for w in workers:
        w.join(2)
    assert got == [("beta", "m"), None] and not any(w.is_alive() for w in workers)
    assert d.drain() == []


# -- topology and rights ------------------------------------------------------------------------

def test_every_bank_queue_is_a_bounded_quorum_queue_that_refuses_when_full_and_dead_letters():
    topo = Topology("ns", ("alfa", "beta"), QueueBounds(max_length=50, max_length_bytes=2 ** 20, delivery_limit=7))
    queues = {q.name: q.arguments for q in topo.queues}
    assert set(queues) == {"ns.bank.alfa", "ns.bank.beta", "ns.dead"}
    for bank in ("alfa", "beta"):
        args = queues[f"ns.bank.{bank}"]
        assert args["x-queue-type"] == "quorum"
        assert args["x-overflow"] == "reject-publish"       # the publisher's confirm is a nack
        assert (args["x-max-length"], args["x-max-length-bytes"], args["x-delivery-limit"]) == (50, 2 ** 20, 7)
        assert args["x-dead-letter-exchange"] == "ns.dlx"
    assert queues["ns.dead"]["x-queue-type"] == "quorum"
    assert {(b.source, b.destination, b.routing_key) for b in topo.bindings} == {
        ("ns.dlx", "ns.dead", ""), ("ns.banks", "ns.bank.alfa", "alfa"), ("ns.banks", "ns.bank.beta", "beta")}
    assert {(e.name, e.type) for e in topo.exchanges} == {("ns.banks", "direct"), ("ns.dlx", "fanout")}


def test_the_consortium_settings_become_the_queues_bounds():
    config = make_config(broker={"queue_max_length": 123, "delivery_limit": 9, "queue_max_bytes": 4 * 2 ** 20})
    args = topology_of(config).bank_queue("beta").arguments
    assert (args["x-max-length"], args["x-delivery-limit"], args["x-max-length-bytes"]) == (123, 9, 4 * 2 ** 20)


def matches(pattern: str, name: str) -> bool:
    return re.fullmatch(pattern, name) is not None   # RabbitMQ matches permissions with re:run


@pytest.mark.parametrize("bank", ["alfa", "beta"])
def test_a_bank_may_publish_to_the_exchange_and_read_its_own_queue_nothing_else(bank):
    configure, write, read = permissions("ns", bank)
    everything = ["ns.banks", "ns.dlx", "ns.dead", "ns.bank.alfa", "ns.bank.beta", "amq.default",
                  "amq.gen-abc", "spy", "ns.bank.alfa.spy"]
    assert [n for n in everything if matches(configure, n)] == []        # declares, deletes, binds nothing
    assert [n for n in everything if matches(write, n)] == ["ns.banks", "amq.default"]
    assert [n for n in everything if matches(read, n)] == [f"ns.bank.{bank}"]


def test_a_namespace_with_regex_characters_cannot_widen_the_rights():
    configure, write, read = permissions("a.b", "alfa")
    assert not matches(write, "aXb.banks") and matches(write, "a.b.banks")
    assert not matches(read, "a.b.bank.alfaX")


def test_the_definitions_document_carries_the_users_their_rights_and_the_topology():
    topo = Topology("ns", ("alfa",))
    doc = definitions("ns", {"alfa": "pw", "auditor": "pw2"}, "/", topo)
    assert {u["name"] for u in doc["users"]} == {"ns.alfa", "ns.auditor"}
    perms = {p["user"]: (p["configure"], p["write"], p["read"]) for p in doc["permissions"]}
    assert perms[user_of("ns", "alfa")] == permissions("ns", "alfa")
    assert {q["name"]: q["arguments"] for q in doc["queues"]} == {q.name: q.arguments for q in topo.queues}
    assert all(q["durable"] and not q["auto_delete"] for q in doc["queues"])
    assert {(b["source"], b["destination"], b["routing_key"]) for b in doc["bindings"]} == \
        {(b.source, b.destination, b.routing_key) for b in topo.bindings}


def test_items_in_counts_an_envelopes_items_without_validating_it():
    assert items_in(json.dumps({"v": 1, "sender": "delta", "items": [{}] * 500}).encode()) == 500
    for junk in (b"", b"not json", b"[1, 2]", b'{"items": "many"}', b'{"items": []}', b"\xff\xfe"):
        assert items_in(junk) == 1


# -- several broker URLs ------------------------------------------------------------------------

NODES = ["amqp://guest:guest@10.0.0.1:5672/%2F", "amqp://guest:guest@10.0.0.2:5672/%2F",
         "amqp://guest:guest@10.0.0.3:5672/%2F"]


def test_broker_url_may_be_a_list_or_comma_separated_and_amqp_url_may_hold_several(tmp_path):
    cfg = write_config(tmp_path / "c.yml", consortium="c", broker_url=NODES,
                       banks=[{"id": "alfa", "name": "A", "port": 8001}])
    assert load_config(cfg, env={}).broker_urls == NODES
    env = {"AMQP_URL": " amqp://u:p@a:1/%2F , amqp://u:p@b:2/%2F,"}
    assert load_config(cfg, env=env).broker_urls == ["amqp://u:p@a:1/%2F", "amqp://u:p@b:2/%2F"]
    assert split_urls(",".join(NODES)) == NODES


@pytest.mark.parametrize("bad", [[], ["http://10.0.0.1/"], "amqp://ok/,ftp://no/", ["amqp://x/", ""]])
def test_a_broker_url_that_is_not_amqp_is_refused_naming_the_key(tmp_path, bad):
    cfg = write_config(tmp_path / "c.yml", consortium="c", broker_url=bad,
                       banks=[{"id": "alfa", "name": "A", "port": 8001}])
    with pytest.raises(ConfigError, match="broker_url"):
        load_config(cfg, env={})


def test_per_bank_credentials_go_into_every_node_url(tmp_path):
    config = make_config(broker_url=NODES, broker_auth={"mode": "per_bank"})
    urls = split_urls(broker_url_for(config, "beta", env={"CONSORCIO_BROKER_PASSWORD": "s3cr/t"}))
    assert [u.split("@")[1] for u in urls] == [n.split("@")[1] for n in NODES]
    assert all(u.startswith("amqp://unit.beta:s3cr%2Ft@") for u in urls)
