"""Shared fixtures: a real broker for integration tests, a consortium of bank processes, and
the ledger's back end.

The broker is a testcontainers RabbitMQ when a Docker engine answers, else ``AMQP_URL``, else
the local RabbitMQ on 127.0.0.1:5672. Every test gets its own consortium name (so its own
exchanges and queues), its own ports and its own data folder, and everything it started is
stopped and deleted at the end.

``backend`` is where ledgers live: SQLite files, or PostgreSQL. A test module marked
``both_backends`` runs every test that uses it (directly, or through ``node`` / ``make_cluster``)
once on each; elsewhere it is SQLite. PostgreSQL is a testcontainers one when a Docker engine
answers, else ``PG_URL``, else 127.0.0.1:5432 (user postgres). The session creates one database
with a unique name and drops it at the end; each ledger gets a schema of its own in it, dropped
with its test.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pika
import psycopg
import pytest

from tools.consortia import LOCAL_AMQP, LOCAL_PG, LOCAL_REDIS, PORT_SHARE_ENV, TEST_SECURITY, free_ports, write_config
from tools.supervisor import Cluster
from broker.provision import delete_namespace  # noqa: F401 - tests import it from here
from bank_node.config import WEAK_HASHING_ENV
from bank_node.domain.documents import make_cpf
from bank_node.storage import ledger_location, postgres_url

# Banks started by tests hash passwords cheaply. make_cluster says so in the file it writes
# (security.allow_weak_hashing_for_tests); this covers the tests that write their own file
# with cheap argon2 settings (the launcher's), since a bank refuses them otherwise.
os.environ.setdefault(WEAK_HASHING_ENV, "1")

# Parallel workers (pytest-xdist) pick their banks' ports from disjoint shares of the range: two
# workers drawing the same free port a moment apart would start one bank on it, and the other
# worker's test would talk to that bank, a stranger's, as if it were its own.
if os.environ.get("PYTEST_XDIST_WORKER", "").startswith("gw"):
    os.environ[PORT_SHARE_ENV] = (f"{int(os.environ['PYTEST_XDIST_WORKER'][2:])}/"
                                  f"{int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))}")

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


BACKENDS = ("sqlite", "postgres")


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_backends"):
        metafunc.parametrize("backend", BACKENDS, indirect=True)


@pytest.fixture(scope="session")
def pg_server():
    """The URL of a PostgreSQL server's maintenance database, to create test databases from."""
    if _docker_engine_answers():
        from testcontainers.postgres import PostgresContainer
        with PostgresContainer("postgres:16", driver=None) as pg:
            yield pg.get_connection_url()
        return
    url = os.environ.get("PG_URL") or LOCAL_PG
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as e:
        pytest.fail(f"no PostgreSQL at {url} ({e}); set PG_URL or start one")
    yield url


@pytest.fixture(scope="session")
def pg_database(pg_server):
    """One database of this test session, with a unique name, dropped at the end."""
    name = f"consorcio_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    url = postgres_url(pg_server, name)
    yield url
    with psycopg.connect(pg_server, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Backend:
    """Where the ledgers of one test live (see the module docstring)."""

    def __init__(self, name: str, schemas: "PgSchemas | None" = None):
        self.name = name
        self.pg = schemas
        self.taken: list[str] = []

    def location(self, folder, bank_id: str, *, fresh: bool = False):
        """An empty ledger's location for ``bank_id``: its SQLite file under ``folder``, or a
        ``postgresql://`` URL of a database schema of its own (``fresh``: never migrated)."""
        if self.name == "sqlite":
            return ledger_location(bank_id, folder)
        schema = self.pg.take(fresh)
        self.taken.append(schema)
        return self.pg.url(schema)

    def release(self) -> None:
        if self.taken:
            self.pg.give_back(self.taken)


class PgSchemas:
    """The schemas of the session's test database. Migrating a new schema costs far more than
    emptying one, so a test's schemas are emptied when it ends and handed to the next test,
    already at the latest version: by DELETE with triggers off (the journal's append-only
    trigger guards the ledger, not the test's clean-up), which on a test's few rows is far
    quicker than TRUNCATE and its new files. A schema that cannot be emptied at once (a
    connection left in a transaction, a user who may not turn triggers off) is not reused; the
    database goes with all of them at the end of the session."""

    def __init__(self, database_url: str):
        self.database_url = database_url
        self.free: list[str] = []

    def url(self, schema: str) -> str:
        return f"{postgres_url(self.database_url)}?options=-csearch_path%3D{schema}"

    def take(self, fresh: bool) -> str:
        if self.free and not fresh:
            return self.free.pop()
        schema = f"ledger_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.database_url, autocommit=True) as c:
            c.execute(f'CREATE SCHEMA "{schema}"')
        return schema

    def give_back(self, schemas: list[str]) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as c:
            for schema in schemas:
                tables = [r[0] for r in c.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename <> 'schema_version'",
                    (schema,))]
                if not tables:
                    continue   # never migrated (a ledger that failed to open)
                try:
                    with c.transaction():
                        c.execute("SET LOCAL lock_timeout = 5000")
                        c.execute("SET LOCAL session_replication_role = replica")
                        c.execute("SET LOCAL synchronous_commit = off")
                        for t in tables:
                            c.execute(f'DELETE FROM "{schema}"."{t}"')
                except psycopg.Error:
                    continue
                self.free.append(schema)


@pytest.fixture(scope="session")
def pg_schemas(pg_database):
    return PgSchemas(pg_database)


@pytest.fixture
def backend(request):
    name = getattr(request, "param", "sqlite")
    b = Backend(name, request.getfixturevalue("pg_schemas") if name == "postgres" else None)
    yield b
    b.release()


@pytest.fixture
def namespace():
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_cluster(tmp_path, amqp_url, namespace, backend):
    """Factory: make_cluster(banks=("alfa", "beta", "gama"), env=..., **config overrides), on the
    test broker (or ``broker_url=[...]``, e.g. a cluster's nodes). Cluster.start provisions the
    namespace's exchanges and queues, as the operator does; banks declare nothing. On the
    PostgreSQL ``backend`` each bank's ``storage`` names a database schema of its own."""
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
        if backend.name != "sqlite":
            bank_options = {b: {"storage": backend.location(tmp_path, b), **(bank_options or {}).get(b, {})}
                            for b in banks}
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


TEST_REDIS = os.environ.get("CONSORCIO_TEST_REDIS") or LOCAL_REDIS


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


@pytest.fixture
def trio(make_cluster, new_cpf):
    """Three banks (alfa, beta, gama) and Ana, with a funded account in each: (cluster, ana,
    {bank: account number})."""
    from tests.support import customer_everywhere
    cluster = make_cluster()
    ana, accounts = customer_everywhere(cluster, new_cpf())
    return cluster, ana, accounts


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
