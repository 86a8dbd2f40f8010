"""Bounded queues and messages, tried as a dishonest bank.

A bank's queue refuses messages once full, and the sender learns it from its confirm: a transfer
whose PREPARE is refused aborts cleanly, at once. A message over the size limit is dead-lettered
before the bank decodes it. And one bank flooding another with large envelopes of PREPAREs
cannot starve the other banks' transfers: the victim serves senders in turn, lets one sender
occupy a bounded share of its workers, and refuses a sender over its budget of items per second
before any database work.
"""
from __future__ import annotations

import secrets
import shutil
import statistics
import threading
import time
import uuid

import pika
import pytest

from bank_node.config import BrokerSettings
from broker.provision import deprovision, provision, user_of, with_credentials
from tools.peer import PeerBank, prepare
from tests.support import customer_everywhere, ledger, rejected, wait_until

pytestmark = pytest.mark.integration

def test_a_prepare_refused_by_a_full_queue_aborts_the_transfer_at_once(make_cluster, new_cpf, amqp_url, namespace):
    cluster = make_cluster(broker={"queue_max_length": 10})
    ana, acc = customer_everywhere(cluster, new_cpf())
    cluster["gama"].kill()  # nobody drains gama's queue now ...
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        for _ in range(30):  # ... and someone fills it
            try:
                ch.basic_publish(f"{namespace}.banks", "gama", b"filler", mandatory=True)
            except pika.exceptions.NackError:
                break
        else:
            pytest.fail("gama's queue never refused a message")
    finally:
        conn.close()
    t0 = time.monotonic()
    _, body = ana.transfer("alfa", [("alfa", acc["alfa"], "10.00")], ("gama", acc["gama"]))
    took = time.monotonic() - t0
    assert body["status"] == "aborted" and body["reason"] == "bank_unreachable", body
    assert took < 2.0, f"the refusal came from the broker at once, not from a {3}s timeout: {took:.2f}s"
    alfa = ledger(cluster, "alfa")
    assert not alfa["holds"] and alfa["coordinated"][body["id"]] == "aborted"
    assert ana.account("alfa", acc["alfa"])["available"] == "100.00"
    # Once gama is back it drains its queue (the filler is refused as malformed) and all is well.
    cluster["gama"].start()
    cluster["gama"].wait_healthy()
    wait_until(lambda: rejected(cluster["gama"].url, "malformed") >= 10, 20, "gama to drain the filler")
    _, body = ana.transfer("alfa", [("alfa", acc["alfa"], "10.00")], ("gama", acc["gama"]))
    assert body["status"] == "committed", body


def test_an_oversized_message_is_dead_lettered_before_the_bank_decodes_it(make_cluster, amqp_url, namespace):
    cluster = make_cluster(banks=("alfa", "beta"), broker={"max_message_bytes": 8192})
    beta = cluster["beta"].url
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        # Over the limit, and not even JSON: had the bank decoded it, it would count as malformed.
        ch.basic_publish(f"{namespace}.banks", "beta", b"{" * 8193, pika.BasicProperties(user_id="guest"),
                         mandatory=True)
        wait_until(lambda: rejected(beta, "oversized") == 1, 10, "the refusal counted at beta")
        assert rejected(beta, "malformed") == 0, "the decoder saw it"
        _, props, body = wait_until(lambda: (got := ch.basic_get(f"{namespace}.dead", auto_ack=True))[0] and got,
                                    10, "the message kept in the dead-letter queue")
        assert len(body) == 8193 and props.headers["x-death"][0]["reason"] == "rejected"
        # The same bytes under the limit do reach the decoder (and are refused there).
        ch.basic_publish(f"{namespace}.banks", "beta", b"{" * 100, pika.BasicProperties(user_id="guest"),
                         mandatory=True)
        wait_until(lambda: rejected(beta, "malformed") == 1, 10, "a small malformed message decoded and refused")
    finally:
        conn.close()


# -- the flood ----------------------------------------------------------------------------------

BANKS = ("alfa", "beta", "gama", "delta")
PRINCIPALS = [*BANKS, "auditor"]


@pytest.fixture
def per_bank_users(namespace, tmp_path):
    if shutil.which("rabbitmqctl") is None:
        pytest.fail("per-bank broker users need rabbitmqctl next to the broker")
    pw = {p: secrets.token_urlsafe(16) for p in PRINCIPALS}
    provision(namespace, pw)
    secrets_file = tmp_path / "broker-secrets.yml"
    secrets_file.write_text("".join(f"{k}: {v}\n" for k, v in pw.items()))
    yield pw, secrets_file
    deprovision(namespace, PRINCIPALS)


def flood_envelopes(delta: PeerBank, victim_account: str, initiator: str, envelopes: int,
                    per_envelope: int) -> tuple[list[tuple[bytes, dict]], set[str]]:
    """delta's flood, signed with its own key: envelopes of PREPAREs, each a credit of 0.01 to a
    real account of alfa's backed by a debit at delta (a credit needs no consent, so each one would
    be prepared and held pending, a claim on delta); and their ids."""
    deadline = int(time.time() * 1000) + 3_000   # as far as a deadline may be: the PREPARE TTL
    out, ids = [], set()
    for _ in range(envelopes):
        prepares = [prepare(str(uuid.uuid4()), "delta", initiator, [("delta", "1", 1, "debit"),
                                                                     ("alfa", victim_account, 1, "credit")], deadline)
                    for _ in range(per_envelope)]
        ids |= {p.transfer_id for p in prepares}
        out.append(delta.seal(*prepares))
    return out, ids


def test_one_banks_flood_does_not_starve_the_others_transfers(make_cluster, per_bank_users, new_cpf, amqp_url,
                                                              namespace):
    pw, secrets_file = per_bank_users
    # A consortium with a tight budget, so that this flood is far over it (the shipped budget is
    # above what an honest bank sends at full speed: a flood this small would all be afforded).
    budget = BrokerSettings(sender_items_per_s=500, sender_burst_items=1024)
    cluster = make_cluster(banks=BANKS, broker_auth={"mode": "per_bank", "secrets_file": str(secrets_file)},
                           cooperative_termination=False,
                           broker={"sender_items_per_s": budget.sender_items_per_s,
                                   "sender_burst_items": budget.sender_burst_items})
    ana, acc = customer_everywhere(cluster, new_cpf(), amount="1000.00")
    alfa = cluster["alfa"].url
    with PeerBank(cluster, "delta") as delta:
        envelopes, flood_ids = flood_envelopes(delta, acc["alfa"], ana.cpf, envelopes=80, per_envelope=250)
    assert len(envelopes[0][0]) < 256 * 1024  # each one within the size limit: only the budget stops them

    honest: dict[str, list[tuple[str, float]]] = {"alfa coordinates, beta pays in": [],
                                                  "beta coordinates, alfa is paid": [],
                                                  "gama coordinates, beta pays to gama": []}
    streams = {"alfa coordinates, beta pays in": ("alfa", [("beta", acc["beta"], "0.01")], ("alfa", acc["alfa"])),
               "beta coordinates, alfa is paid": ("beta", [("beta", acc["beta"], "0.01")], ("alfa", acc["alfa"])),
               "gama coordinates, beta pays to gama": ("gama", [("beta", acc["beta"], "0.01")], ("gama", acc["gama"]))}
    stop = threading.Event()
    flood_sent = threading.Event()

    def flood() -> None:
        conn = pika.BlockingConnection(pika.URLParameters(
            with_credentials(amqp_url, user_of(namespace, "delta"), pw["delta"])))
        try:
            ch = conn.channel()
            for body, headers in envelopes:
                ch.basic_publish(f"{namespace}.banks", "alfa", body,
                                 pika.BasicProperties(user_id=user_of(namespace, "delta"), delivery_mode=2,
                                                      headers=headers))
        finally:
            conn.close()
            flood_sent.set()

    def client(name: str) -> None:
        via, sources, dest = streams[name]
        while not stop.is_set():
            t0 = time.monotonic()
            _, body = ana.transfer(via, sources, dest, timeout=30)
            honest[name].append((body.get("status", "error"), time.monotonic() - t0))

    threads = [threading.Thread(target=flood)] + [threading.Thread(target=client, args=(n,)) for n in streams]
    started = time.monotonic()
    for t in threads:
        t.start()
    try:
        assert flood_sent.wait(60), "the flood was not even sent"
        time.sleep(15)  # noqa: the honest clients run for this long under the flood
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    elapsed = time.monotonic() - started
    flooded = len(flood_ids & set(ledger(cluster, "alfa")["participations"]))
    refused = rejected(alfa, "over_budget")
    report = {name: (len(r), sum(1 for s, _ in r if s == "committed"),
                     round(statistics.quantiles([d for _, d in r], n=20)[-1], 2) if len(r) > 1 else None)
              for name, r in honest.items()}
    print(f"\nflood of {len(envelopes)} x 250 PREPAREs from delta: alfa handled about {flooded} of them, "
          f"refused {refused:.0f} messages over budget; honest (sent, committed, p95 s): {report}")
    for name, results in honest.items():
        committed = [d for s, d in results if s == "committed"]
        assert len(committed) >= 10, f"{name}: only {len(committed)} committed under the flood ({report})"
        assert len(committed) >= 0.9 * len(results), f"{name}: too many aborted ({report})"
        assert statistics.quantiles(committed, n=20)[-1] < 2.5, f"{name}: p95 latency too high ({report})"
    # The flood itself was cut down to the budget: refused unread, and alfa's ledger holds only
    # what delta could afford (the burst, then the rate, while the flood lasted).
    assert refused > 0
    affordable = budget.sender_burst_items + budget.sender_items_per_s * elapsed
    assert flooded <= affordable < len(flood_ids) / 2, f"alfa handled {flooded} of delta's PREPAREs in {elapsed:.0f}s"
