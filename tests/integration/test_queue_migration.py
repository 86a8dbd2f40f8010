"""A consortium whose queues an older version declared as classic queues.

A bank declares nothing, so such a queue never crashes it: it keeps consuming. Provisioning
refuses to go on with a clear error naming the queue and the command that migrates it;
``python -m tools.ops migrate-queues`` refuses while the queue's bank still consumes it, and
once the bank is stopped re-creates it as a quorum queue, after which provisioning passes and the
consortium works as before.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pika
import pytest

from bank_node.config import load_config
from bank_node.messaging import topology_of
from broker.errors import ProvisioningError
from broker.provision import MIGRATE_COMMAND, provision_topology
from tests.support import customer_everywhere
from tools.supervisor import ROOT

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="reads queue types with rabbitmqctl")]


def queue_types(namespace: str) -> dict[str, str]:
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "name", "type", "--formatter", "json"],
                         capture_output=True, text=True, timeout=60)
    return {q["name"]: q["type"] for q in json.loads(out.stdout) if q["name"].startswith(namespace + ".")}


def ops(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.ops", *args], cwd=str(ROOT), capture_output=True,
                          text=True, timeout=120)


def test_a_classic_queue_of_an_older_version_is_named_and_migrated(make_cluster, amqp_url, namespace, new_cpf):
    # What the older version's banks declared for themselves: a classic queue per bank.
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    ch = conn.channel()
    ch.exchange_declare(f"{namespace}.banks", exchange_type="direct", durable=True)
    ch.exchange_declare(f"{namespace}.dlx", exchange_type="fanout", durable=True)
    ch.queue_declare(f"{namespace}.bank.beta", durable=True, arguments={"x-dead-letter-exchange": f"{namespace}.dlx"})
    ch.queue_bind(f"{namespace}.bank.beta", f"{namespace}.banks", routing_key="beta")
    conn.close()
    cluster = make_cluster(banks=("alfa", "beta"), start=False)
    config = load_config(cluster.config_path)

    with pytest.raises(ProvisioningError) as refused:
        provision_topology(amqp_url, topology_of(config))
    message = str(refused.value)
    assert f"'{namespace}.bank.beta'" in message and MIGRATE_COMMAND in message and "classic" in message

    # The bank itself does not crash on it: it declares nothing and consumes what is there.
    cluster["beta"].start()
    assert cluster["beta"].wait_healthy(30)["broker"] == "connected"
    busy = ops("migrate-queues", "--config", str(cluster.config_path))
    assert busy.returncode != 0 and "stop its bank first" in busy.stderr, busy.stdout + busy.stderr
    assert queue_types(namespace)[f"{namespace}.bank.beta"] == "classic"

    cluster["beta"].terminate()
    dry = ops("migrate-queues", "--config", str(cluster.config_path), "--dry-run")
    assert dry.returncode == 0 and f"{namespace}.bank.beta" in dry.stdout, dry.stdout + dry.stderr
    assert queue_types(namespace)[f"{namespace}.bank.beta"] == "classic"
    done = ops("migrate-queues", "--config", str(cluster.config_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 queue(s) migrated" in done.stdout
    assert set(queue_types(namespace).values()) == {"quorum"}

    cluster.start()  # provisions (now it passes) and starts both banks
    ana, acc = customer_everywhere(cluster, new_cpf())
    _, body = ana.transfer("alfa", [("alfa", acc["alfa"], "5.00")], ("beta", acc["beta"]))
    assert body["status"] == "committed", body
    again = ops("migrate-queues", "--config", str(cluster.config_path))
    assert again.returncode == 0 and "0 queue(s) migrated" in again.stdout
