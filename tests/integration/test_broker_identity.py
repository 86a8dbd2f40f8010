"""Banks on the broker prove who they are.

Each bank connects as its own RabbitMQ user, may consume only its own queue, and stamps
every message with the broker-checked ``user_id``. A receiver refuses, counts and
dead-letters any message with no user_id, with a user_id that is not the bank it claims to
come from, or from a bank with no role in that transfer; a captured PREPARE replayed with an
altered amount is refused too.
"""
from __future__ import annotations

import secrets
import shutil
import uuid

import pika
import pytest

from tools import ops
from bank_node import protocol as P
from bank_node.config import load_config
from broker.provision import deprovision, provision, user_of, with_credentials
from tools.peer import PeerBank, prepare
from tests.support import customer_everywhere, ledger, rejected, wait_until

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("rabbitmqctl") is None,
                                 reason="provisioning broker users needs rabbitmqctl next to the broker")]

PRINCIPALS = ["alfa", "beta", "gama", "auditor"]


@pytest.fixture(scope="module")
def namespace():
    """One namespace (and so one set of broker users) for the module: rabbitmqctl is slow.
    Each test still gets its own cluster, ports and data; queues are deleted between tests."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def passwords(namespace, tmp_path_factory):
    pw = {p: secrets.token_urlsafe(16) for p in PRINCIPALS}
    provision(namespace, pw)
    secrets_file = tmp_path_factory.mktemp("secrets") / "broker-secrets.yml"
    secrets_file.write_text("".join(f"{k}: {v}\n" for k, v in pw.items()))
    yield pw, secrets_file
    deprovision(namespace, PRINCIPALS)


@pytest.fixture
def secure(make_cluster, passwords, new_cpf):
    pw, secrets_file = passwords
    cluster = make_cluster(broker_auth={"mode": "per_bank", "secrets_file": str(secrets_file)},
                           cooperative_termination=False)
    ana, acc = customer_everywhere(cluster, new_cpf())
    return cluster, ana, acc, pw


def as_bank(amqp_url: str, namespace: str, principal: str, password: str) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.URLParameters(
        with_credentials(amqp_url, user_of(namespace, principal), password)))


def send(conn: pika.BlockingConnection, namespace: str, to: str, body: bytes, user_id: str | None,
         reply_to: str | None = None, headers: dict | None = None) -> None:
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish(f"{namespace}.banks", to, body,
                     pika.BasicProperties(delivery_mode=2, user_id=user_id, reply_to=reply_to, headers=headers,
                                          correlation_id=uuid.uuid4().hex), mandatory=True)

def test_transfers_work_with_one_identity_per_bank(secure):
    cluster, ana, acc, _ = secure
    _, body = ana.transfer("alfa", [("alfa", acc["alfa"], "10.00"), ("beta", acc["beta"], "5.00")],
                           ("gama", acc["gama"]))
    assert body["status"] == "committed"
    assert ana.balance("gama", acc["gama"]) == "115.00"
    s = ops.audit(load_config(cluster.config_path))
    assert s["consortium_adds_up"] and s["all_answered"]


def test_a_bank_cannot_read_another_banks_queue_nor_claim_its_identity(secure, amqp_url, namespace):
    cluster, ana, acc, pw = secure
    conn = as_bank(amqp_url, namespace, "gama", pw["gama"])
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
            conn.channel().basic_consume(f"{namespace}.bank.beta", lambda *a: None)
        assert e.value.reply_code == 403
    finally:
        if conn.is_open:
            conn.close()
    conn = as_bank(amqp_url, namespace, "gama", pw["gama"])
    try:
        body = P.encode("alfa", P.Decision(transfer_id=str(uuid.uuid4()), outcome="abort"))
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
            send(conn, namespace, "beta", body, user_id=user_of(namespace, "alfa"))
        assert e.value.reply_code == 406  # the broker itself refuses a forged user_id
    finally:
        if conn.is_open:
            conn.close()


def test_messages_with_a_false_or_missing_identity_have_no_effect_and_are_counted(secure, amqp_url, namespace):
    cluster, ana, acc, pw = secure
    beta = cluster["beta"].url
    # A PREPARE that would hold 50.00 at beta, "from alfa" (signed with alfa's key, even) — sent
    # by gama under its own broker user, with no user_id, and by guest.
    tid = str(uuid.uuid4())
    with PeerBank(cluster, "alfa") as alfa:
        body, headers = alfa.seal(prepare(tid, "alfa", ana.cpf, [("beta", acc["beta"], 5000, "debit"),
                                                                  ("alfa", acc["alfa"], 5000, "credit")]))
    conn = as_bank(amqp_url, namespace, "gama", pw["gama"])
    try:
        send(conn, namespace, "beta", body, user_id=user_of(namespace, "gama"), headers=headers)
        send(conn, namespace, "beta", body, user_id=None, headers=headers)
    finally:
        conn.close()
    guest = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        send(guest, namespace, "beta", body, user_id="guest", headers=headers)
    finally:
        guest.close()
    # gama under its own name, signing with its own key as if it were alfa: the signature fails.
    with PeerBank(cluster, "gama") as gama:
        forged, _ = gama.seal(prepare(tid, "alfa", ana.cpf, [("beta", acc["beta"], 5000, "debit"),
                                                             ("alfa", acc["alfa"], 5000, "credit")]), sender="alfa")
        gama.publish("beta", forged, gama.keyring.headers(forged))
    wait_until(lambda: rejected(beta, "wrong_user_id") >= 3 and rejected(beta, "no_user_id") >= 1, 10,
               "refusals counted at beta")
    assert not ledger(cluster, "beta")["holds"]
    assert tid not in ledger(cluster, "beta")["participations"]
    assert ana.account("beta", acc["beta"])["available"] == "100.00"


def test_only_the_coordinator_decides_and_a_replayed_prepare_cannot_be_altered(secure, amqp_url, namespace):
    cluster, ana, acc, pw = secure
    beta = cluster["beta"].url
    # A transfer that aborts at gama's leg (insufficient funds) while beta holds 20.00: beta
    # must end aborted whatever gama says.
    gama_is_short = ("gama", acc["gama"], "500.00")
    _, body = ana.transfer("alfa", [("beta", acc["beta"], "20.00"), gama_is_short], ("alfa", acc["alfa"]))
    assert body["status"] == "aborted"
    aborted_tid = body["id"]
    _, body = ana.transfer("alfa", [("beta", acc["beta"], "20.00")], ("gama", acc["gama"]))
    assert body["status"] == "committed"
    committed_tid = body["id"]
    with PeerBank(cluster, "gama") as gama, PeerBank(cluster, "alfa") as alfa:
        # gama, a participant but not the coordinator, tries to decide: refused (its decision
        # names a transfer coordinated by alfa here).
        gama.send("beta", P.Decision(transfer_id=aborted_tid, outcome="commit"))
        # alfa's own credentials and key replay the committed PREPARE with a bigger amount: refused.
        altered = prepare(committed_tid, "alfa", ana.cpf, [("beta", acc["beta"], 9000, "debit"),
                                                          ("gama", acc["gama"], 9000, "credit")])
        alfa.send("beta", altered)
        # ... and with another account: refused as well.
        alfa.send("beta", prepare(committed_tid, "alfa", ana.cpf, [("beta", "123456789", 2000, "debit"),
                                                                  ("gama", acc["gama"], 2000, "credit")]))
        # alfa replays a COMMIT for the transfer it aborted: beta applies nothing.
        alfa.send("beta", P.Decision(transfer_id=aborted_tid, outcome="commit"))
    wait_until(lambda: rejected(beta, "not_coordinator") >= 1 and rejected(beta, "tampered") >= 2
               and rejected(beta, "violation") >= 1, 10, "refusals counted at beta")
    led = ledger(cluster, "beta")
    assert led["participations"][aborted_tid] == "aborted"
    assert not led["holds"]
    assert ana.balance("beta", acc["beta"]) == "80.00"
    assert ana.balance("gama", acc["gama"]) == "120.00"
