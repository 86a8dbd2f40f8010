"""Shared fixtures: a real broker for integration tests, and a consortium of bank processes.

The broker is a testcontainers RabbitMQ when a Docker engine answers, else ``AMQP_URL``, else
the local RabbitMQ on 127.0.0.1:5672. Every test gets its own consortium name (so its own
exchanges and queues), its own ports and its own data folder, and everything it started is
stopped and deleted at the end.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pika
import pytest

from tools.consortia import LOCAL_AMQP, TEST_SECURITY, free_ports, write_config
from tools.supervisor import Cluster
from broker.provision import delete_namespace  # noqa: F401 - tests import it from here
from bank_node.config import WEAK_HASHING_ENV
from bank_node.domain.documents import make_cpf

# Banks started by tests hash passwords cheaply. make_cluster says so in the file it writes
# (security.allow_weak_hashing_for_tests); this covers the tests that write their own file
# with cheap argon2 settings (the launcher's), since a bank refuses them otherwise.
os.environ.setdefault(WEAK_HASHING_ENV, "1")

OPERATOR_TOKEN = "operator-token-of-the-test-suite"
"""Every bank make_cluster starts has it: the operator routes (/metrics...) need it."""


def _docker_engine_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def amqp_url():
    if _docker_engine_answers():
        from testcontainers.rabbitmq import RabbitMqContainer
        with RabbitMqContainer("rabbitmq:3.13-management") as rmq:
            p = rmq.get_connection_params()
            yield f"amqp://guest:guest@{p.host}:{p.port}/%2F"
        return
    url = os.environ.get("AMQP_URL") or LOCAL_AMQP
    try:
        pika.BlockingConnection(pika.URLParameters(url)).close()
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"no RabbitMQ at {url} ({e}); start one with: rabbitmq-server -detached")
    yield url


@pytest.fixture
def namespace():
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_cluster(tmp_path, amqp_url, namespace):
    """Factory: make_cluster(banks=("alfa", "beta", "gama"), env=..., **config overrides), on the
    test broker (or ``broker_url=[...]``, e.g. a cluster's nodes). Cluster.start provisions the
    namespace's exchanges and queues, as the operator does; banks declare nothing."""
    made: list[tuple[Cluster, str]] = []

    def make(banks=("alfa", "beta", "gama"), env=None, start=True, broker_url=None, bank_options=None,
             workers=None, **overrides) -> Cluster:
        """``bank_options``: bank id -> extra keys of its entry (its own limits, peer_caps...);
        ``workers``: bank id -> processes serving it (``--workers``)."""
        env = {"CONSORCIO_OPERATOR_TOKEN": OPERATOR_TOKEN, **(env or {})}
        ports = free_ports(len(banks))
        if "signing" not in overrides:   # banks sign their messages, as consorcio.yml has them do
            overrides["signing"] = {"mode": "required", "keys_dir": str(signing_keys(tmp_path / "keys", banks))}
        overrides.setdefault("timeouts", {"prepare_ttl_ms": 3000, "decision_resend_ms": 300,
                                          "status_query_ms": 300, "retry_cap_ms": 1000})
        overrides.setdefault("security", dict(TEST_SECURITY))
        broker_url = broker_url or amqp_url
        cfg = write_config(tmp_path / "consorcio.yml", consortium=namespace, broker_url=broker_url,
                           banks=[{"id": b, "name": f"Banco {b.capitalize()}", "port": p,
                                   **(bank_options or {}).get(b, {})} for b, p in zip(banks, ports)], **overrides)
        c = Cluster(cfg, tmp_path / "data", env=env, workers=workers)
        made.append((c, broker_url))
        if start:
            c.start()
        return c

    yield make
    for c, url in made:
        c.stop()
        delete_namespace(url, namespace, list(c.banks))


TEST_REDIS = os.environ.get("CONSORCIO_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_throttles(namespace):
    """The Redis URL for ``security.rate_limit_storage`` (the shared throttles of a bank of
    several processes); the test's consortium name is in every throttle key, and they are
    removed afterwards."""
    import redis
    yield TEST_REDIS
    r = redis.Redis.from_url(TEST_REDIS)
    keys = list(r.scan_iter(match=f"*{namespace}*"))
    if keys:
        r.delete(*keys)


def signing_keys(folder, banks):
    """Development Ed25519 keys of these banks in ``folder`` (what the launcher makes)."""
    from bank_node.interbank.signing import write_key_pair
    for b in banks:
        write_key_pair(folder, b)
    return folder


_cpf_counter = iter(range(100_000_000, 999_999_999, 7919))


@pytest.fixture
def new_cpf():
    """A fresh valid CPF for every call."""
    return lambda: make_cpf(f"{next(_cpf_counter):09d}")
