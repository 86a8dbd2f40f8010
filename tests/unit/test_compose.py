"""docker-compose.yml, the Dockerfile and consorcio.yml must agree.

No Docker engine runs on our machines, so these tests read the files as Docker would: a 3-node
RabbitMQ cluster (peer discovery from configuration, one Erlang cookie from the secrets, the
management UI on one node) provisioned once its nodes run; one PostgreSQL with a database and a
role per bank made by an init script, a healthcheck and a named volume; one service per bank of
consorcio.yml with the same id and port, each given every node's URL and its own database,
listening on 0.0.0.0, waiting for the broker's provisioning and a healthy PostgreSQL, with its
own data volume and a healthcheck on /api/health. The healthcheck command itself is run against
a stand-in /api/health (the init script runs against a real PostgreSQL in
tests/integration/test_compose_postgres.py).
"""
from __future__ import annotations

import ast
import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from tools.consortia import write_config
from bank_node.config import load_config

ROOT = Path(__file__).resolve().parents[2]
BANK_IDS = load_config(ROOT / "consorcio.yml", env={}).bank_ids
BROKER_NODES = ("rabbitmq1", "rabbitmq2", "rabbitmq3")


@pytest.fixture(scope="module")
def config():
    return load_config(ROOT / "consorcio.yml", env={})


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def dockerfile():
    # Join continuation lines so each instruction is one line.
    return re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def instruction(dockerfile: str, name: str) -> list[str]:
    return [line.split(None, 1)[1] for line in dockerfile.splitlines() if line.upper().startswith(name + " ")]


def test_one_service_per_bank_three_broker_nodes_their_provisioning_and_postgres_nothing_else(config, compose):
    assert set(compose["services"]) == {*BROKER_NODES, "broker-setup", "postgres", *config.bank_ids}


def test_postgres_makes_every_banks_database_at_start_with_a_healthcheck_and_a_named_volume(
        tmp_path, config, compose):
    from tools.ops import broker_secrets
    pg = compose["services"]["postgres"]
    assert pg["image"].startswith("postgres:")
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in pg["volumes"]}
    assert mounts["/var/lib/postgresql/data"] in (compose.get("volumes") or {}), "a named volume, declared"
    init = [(host, inside) for inside, host in mounts.items() if inside.startswith("/docker-entrypoint-initdb.d/")]
    assert init == [("./docker/postgres-init.sh", "/docker-entrypoint-initdb.d/10-bank-databases.sh")]
    script = ROOT / "docker" / "postgres-init.sh"
    assert os.access(script, os.X_OK), "executed (not sourced) by the image's entrypoint"
    # the secrets it reads are the files broker-secrets writes
    env = environment(pg)
    written = broker_secrets(config_for_secrets(tmp_path, config), tmp_path / "out")
    for variable, secret, made in (("POSTGRES_PASSWORD_FILE", "postgres_password", "postgres_password"),
                                   ("BANK_DATABASES_FILE", "bank_databases", "bank_databases")):
        assert env[variable] == f"/run/secrets/{secret}" and secret in pg["secrets"]
        assert compose["secrets"][secret]["file"] == f"./secrets/{written[made].name}"
    lines = [line.split() for line in written["bank_databases"].read_text().splitlines()]
    assert [bank for bank, _ in lines] == list(config.bank_ids)
    # healthy only once the init script has run: pg_isready over TCP, which the image opens
    # only after its init scripts (they run against a server listening on its socket alone)
    test = pg["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1] == "pg_isready" and test[test.index("--host") + 1] == "127.0.0.1"
    assert not re.search(r"POSTGRES_PASSWORD\b", json.dumps(pg)), "the password only from the secret file"


def test_three_broker_nodes_each_with_a_healthcheck_and_the_management_ui_on_one(compose):
    images = {compose["services"][n]["image"] for n in BROKER_NODES}
    assert images == {compose["services"]["broker-setup"]["image"]}, "one RabbitMQ version for the cluster and its CLI"
    assert images.pop().startswith("rabbitmq:3-management")
    published = {n: [str(p) for p in compose["services"][n].get("ports", [])] for n in BROKER_NODES}
    assert published == {"rabbitmq1": ["15672:15672"], "rabbitmq2": [], "rabbitmq3": []}, "AMQP stays inside"
    for n in BROKER_NODES:
        svc = compose["services"][n]
        assert svc["hostname"] == n, "the node name rabbit@<hostname> is what the others discover"
        test = svc["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL") and "rabbitmq-diagnostics" in " ".join(test)
        assert any(str(v).startswith(f"{n}-data:/var/lib/rabbitmq") for v in svc["volumes"])
    assert len({str(v) for n in BROKER_NODES for v in compose["services"][n]["volumes"] if "-data:" in str(v)}) == 3


def test_the_nodes_cluster_from_configuration_with_a_cookie_from_the_secrets(tmp_path, config, compose):
    from tools.ops import broker_secrets
    written = broker_secrets(config_for_secrets(tmp_path, config), tmp_path / "out")
    conf = dict(line.split(" = ", 1) for line in written["rabbitmq_conf"].read_text().splitlines() if " = " in line)
    assert conf["cluster_formation.peer_discovery_backend"] == "classic_config"
    assert sorted(v for k, v in conf.items() if k.startswith("cluster_formation.classic_config.nodes.")) == \
        [f"rabbit@{n}" for n in BROKER_NODES]
    assert int(conf["max_message_size"]) == config.broker.max_message_bytes
    cookie = written["erlang_cookie"].read_text()
    assert len(cookie) >= 32 and cookie.isalnum()
    assert broker_secrets(config_for_secrets(tmp_path, config), tmp_path / "out")["erlang_cookie"].read_text() == \
        cookie, "the cookie is made once: nodes of one cluster must keep sharing it"
    assert compose["secrets"]["erlang_cookie"]["file"] == f"./secrets/{written['erlang_cookie'].name}"
    for n in BROKER_NODES:
        svc = compose["services"][n]
        mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in svc["volumes"]}
        assert mounts["/etc/rabbitmq/conf.d/20-consorcio.conf"] == f"./secrets/{written['rabbitmq_conf'].name}"
        assert svc["secrets"] == ["erlang_cookie"]
        entry = " ".join(svc["entrypoint"])
        assert "/run/secrets/erlang_cookie /var/lib/rabbitmq/.erlang.cookie" in entry and "-m 400" in entry
        assert entry.endswith("exec docker-entrypoint.sh rabbitmq-server")


def test_the_broker_is_provisioned_once_every_node_runs_and_banks_wait_for_it(compose):
    setup = compose["services"]["broker-setup"]
    assert setup["depends_on"] == {n: {"condition": "service_healthy"} for n in BROKER_NODES}
    command = " ".join(setup["entrypoint"])
    assert "await_online_nodes 3" in command
    assert command.index("await_online_nodes") < command.index("import_definitions /etc/rabbitmq/definitions.json")
    assert setup["secrets"] == ["erlang_cookie"] and setup.get("restart") == "no"


@pytest.mark.parametrize("bank_id", BANK_IDS)
def test_each_bank_service_matches_its_bank_in_consorcio_yml(config, compose, bank_id):
    bank = config.bank(bank_id)
    svc = compose["services"][bank_id]
    assert [str(p) for p in svc["ports"]] == [f"{bank.port}:{bank.port}"]
    env = environment(svc)
    assert env["BANK_ID"] == bank_id
    assert env["BANK_HOST"] == "0.0.0.0", "inside a container the bank must listen on every interface"
    # Every node of the cluster, so the bank carries on when the one it is on dies.
    urls = [urllib.parse.urlsplit(u) for u in env["AMQP_URL"].split(",")]
    assert [(u.scheme, u.hostname, u.port or 5672) for u in urls] == [("amqp", n, 5672) for n in BROKER_NODES]
    # Each bank is its own broker user: no shared credentials in the file, its password from
    # the env file that `python -m tools.ops broker-secrets` writes.
    assert config.broker_auth.mode == "per_bank"
    assert {(u.username, u.password) for u in urls} == {(None, None)}
    assert svc["env_file"] in (f"./secrets/{bank_id}.env", [f"./secrets/{bank_id}.env"])
    assert svc["depends_on"] == {"broker-setup": {"condition": "service_completed_successfully"},
                                 "postgres": {"condition": "service_healthy"}}
    # its own database as its own role, the password not in the file (libpq reads PGPASSWORD
    # from the env file, see the test below)
    db = urllib.parse.urlsplit(env["BANK_DATABASE_URL"])
    assert (db.scheme, db.hostname, db.port, db.username, db.password, db.path) == \
        ("postgresql", "postgres", 5432, bank_id, None, f"/{bank_id}")
    assert "build" in svc or "image" in svc


def test_every_bank_keeps_its_ledger_on_its_own_declared_volume(config, compose):
    data_volumes = {}
    for bank_id in config.bank_ids:
        mounts = [str(v).split(":") for v in compose["services"][bank_id]["volumes"]]
        data = [m[0] for m in mounts if len(m) >= 2 and m[1] == "/data"]
        assert len(data) == 1, f"{bank_id}: exactly one volume on /data, got {mounts}"
        data_volumes[bank_id] = data[0]
        assert ["./consorcio.yml", "/app/consorcio.yml", "ro"] in mounts, f"{bank_id} must read the same consorcio.yml"
    assert len(set(data_volumes.values())) == len(data_volumes), f"banks share a volume: {data_volumes}"
    assert set(data_volumes.values()) <= set(compose.get("volumes") or {}), "named volumes must be declared"


def test_every_bank_has_a_healthcheck_on_api_health_without_curl(config, compose, dockerfile):
    for bank_id in config.bank_ids:
        test = compose["services"][bank_id]["healthcheck"]["test"]
        assert test[0] == "CMD" and "/api/health" in " ".join(test) and "curl" not in " ".join(test)
    (hc,) = instruction(dockerfile, "HEALTHCHECK")
    assert "/api/health" in hc and "urllib" in hc and "curl" not in hc


def test_image_is_slim_python_non_root_with_data_on_a_volume(dockerfile):
    assert instruction(dockerfile, "FROM") == ["python:3.11-slim"]
    users = instruction(dockerfile, "USER")
    assert users and users[-1] not in ("root", "0")
    assert any("/data" in v for v in instruction(dockerfile, "VOLUME"))
    cmd = json.loads(instruction(dockerfile, "CMD")[-1])
    assert "--data-dir /data" in " ".join(cmd) and "bank_node" in " ".join(cmd)
    env = " ".join(instruction(dockerfile, "ENV"))
    assert "BANK_HOST=0.0.0.0" in env and "CONSORCIO_CONFIG=/app/consorcio.yml" in env


def test_the_image_gets_the_uis_compiled_message_catalogs(dockerfile):
    """The UI loads web_ui/translations/<locale>/LC_MESSAGES/messages.mo, committed beside its
    .po rather than built in the image: the Dockerfile must copy web_ui/ and .dockerignore must
    not leave the catalogs out, or the image speaks English only while the tests pass."""
    assert "--chown=root:root web_ui/ web_ui/" in instruction(dockerfile, "COPY")
    catalogs = sorted((ROOT / "web_ui" / "translations").glob("*/LC_MESSAGES/messages.mo"))
    assert catalogs
    patterns = [line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for mo in catalogs:
        parts = mo.relative_to(ROOT).parts
        for prefix in ("/".join(parts[:i]) for i in range(1, len(parts) + 1)):
            assert not [p for p in patterns if fnmatch.fnmatchcase(prefix, p)], prefix


def _dist(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_image_installs_every_third_party_module_the_bank_imports(dockerfile):
    """The Dockerfile installs requirements.txt only up to its "# Tools" line: every third-party
    module imported by broker/, bank_node/ or web_ui/ must come from a requirement above it (or
    from one of their dependencies), or the image fails at start-up while the tests pass."""
    assert "/^# Tools/" in dockerfile
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    marker = next(line for line in lines if line.startswith("# Tools"))
    runtime = {_dist(re.split(r"[=<>~!\[; ]", line)[0]) for line in lines[:lines.index(marker)]
               if line.strip() and not line.startswith("#")}
    closure, todo = set(), list(runtime)
    while todo:
        name = todo.pop()
        if name in closure:
            continue
        closure.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # a dependency whose environment marker excludes it here
        for req in requires:
            if "extra ==" not in req:
                todo.append(_dist(re.split(r"[=<>~!\[;( ]", req)[0]))
    imported = set()
    for package in ("broker", "bank_node", "web_ui"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    imported |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"broker", "bank_node", "web_ui"}
    providers = metadata.packages_distributions()
    missing = {m for m in third_party if not {_dist(d) for d in providers.get(m, [])} & closure}
    assert not missing, f"imported by the bank but not in the runtime part of requirements.txt: {sorted(missing)}"
    assert {"flask", "pika", "waitress"} <= third_party  # the scan itself works


class _Health(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        body = json.dumps({"status": self.server.answer}).encode() if self.path == "/api/health" else b"{}"
        self.send_response(200 if self.path == "/api/health" else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("answer, healthy", [("ok", True), ("degraded", False)])
def test_the_healthcheck_command_reads_the_bank_port_from_the_config(tmp_path, compose, dockerfile, answer, healthy):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    server.answer = answer
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = write_config(tmp_path / "c.yml", consortium="hc", broker_url="amqp://x/",
                           banks=[{"id": BANK_IDS[0], "name": "A bank", "port": server.server_address[1]}])
        env = dict(os.environ, BANK_ID=BANK_IDS[0], CONSORCIO_CONFIG=str(cfg), PYTHONPATH=str(ROOT))
        commands = {"compose": compose["services"][BANK_IDS[0]]["healthcheck"]["test"][1:],
                    "Dockerfile": json.loads(instruction(dockerfile, "HEALTHCHECK")[0].split(" CMD ", 1)[1])}
        for where, cmd in commands.items():
            assert cmd[0] == "python", f"{where}: {shlex.join(cmd)}"
            done = subprocess.run([sys.executable, *cmd[1:]], env=env, capture_output=True, timeout=60)
            assert (done.returncode == 0) == healthy, f"{where}: {done.stderr.decode()}"
    finally:
        server.shutdown()
        server.server_close()


def config_for_secrets(tmp_path, config):
    """consorcio.yml with its secrets file in the test's folder."""
    return load_config(write_config(tmp_path / "c.yml", consortium=config.consortium, broker_url=config.broker_url,
                                    banks=[b.model_dump() for b in config.banks],
                                    broker_auth={"mode": "per_bank", "secrets_file": "out/broker.yml"}), env={})


def test_broker_loads_the_users_and_queues_that_broker_secrets_writes(tmp_path, config, compose):
    """compose gives every bank its own broker user and the consortium its quorum queues,
    imported from a definitions file."""
    from tools.ops import broker_secrets
    from bank_node.messaging import topology_of
    from broker.provision import permissions, user_of
    setup = compose["services"]["broker-setup"]
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in setup["volumes"]}
    assert mounts["/etc/rabbitmq/definitions.json"] == "./secrets/definitions.json"
    cfg = config_for_secrets(tmp_path, config)
    written = broker_secrets(cfg, tmp_path / "out")
    # compose names exactly the files the command writes
    for bank_id in config.bank_ids:
        assert written[bank_id].name == Path(compose["services"][bank_id]["env_file"]).name
    assert written["definitions"].name == Path(mounts["/etc/rabbitmq/definitions.json"]).name
    doc = json.loads(written["definitions"].read_text())
    topology = topology_of(cfg)
    assert {q["name"]: q["arguments"] for q in doc["queues"]} == {q.name: q.arguments for q in topology.queues}
    assert all(q["arguments"]["x-queue-type"] == "quorum" for q in doc["queues"])
    assert {(e["name"], e["type"]) for e in doc["exchanges"]} == {(e.name, e.type) for e in topology.exchanges}
    assert {(b["source"], b["destination"], b["routing_key"]) for b in doc["bindings"]} == \
        {(b.source, b.destination, b.routing_key) for b in topology.bindings}
    users = {u["name"] for u in doc["users"]}
    assert {user_of(config.consortium, b) for b in config.bank_ids} <= users
    perms = {p["user"]: (p["configure"], p["write"], p["read"]) for p in doc["permissions"]}
    for bank_id in config.bank_ids:
        assert perms[user_of(config.consortium, bank_id)] == permissions(config.consortium, bank_id)
        pw = yaml.safe_load(written["secrets"].read_text())[bank_id]
        env = dict(line.split("=", 1) for line in written[bank_id].read_text().splitlines())
        assert env["CONSORCIO_BROKER_PASSWORD"] == pw
        # its own signing key, whose public half is in the folder every bank mounts, alone
        from bank_node.interbank.signing import public_of
        assert (written["public_keys"] / f"{bank_id}.pub").read_text().strip() == public_of(env["CONSORCIO_SIGNING_KEY"])
        mounts_b = {str(v).split(":")[1]: str(v).split(":")[0] for v in compose["services"][bank_id]["volumes"]}
        assert mounts_b["/app/secrets/keys"] == "./secrets/public-keys"
    assert sorted(f.name for f in written["public_keys"].iterdir()) == sorted(f"{b}.pub" for b in config.bank_ids)
    # each bank's database password: in its env file, as the init script makes its role
    made = dict(line.split() for line in written["bank_databases"].read_text().splitlines())
    for bank_id in config.bank_ids:
        env = dict(line.split("=", 1) for line in written[bank_id].read_text().splitlines())
        assert env["PGPASSWORD"] == made[bank_id] and len(made[bank_id]) >= 24
    assert len(set(made.values())) == len(made)
    # Running it again keeps the passwords (the broker's definitions and the databases' roles stay valid).
    again = broker_secrets(cfg, tmp_path / "out")
    assert yaml.safe_load(again["secrets"].read_text()) == yaml.safe_load(written["secrets"].read_text())
    assert again["bank_databases"].read_text() == written["bank_databases"].read_text()
    assert again["postgres_password"].read_text() == written["postgres_password"].read_text()
