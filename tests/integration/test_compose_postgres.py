"""docker/postgres-init.sh, the init script of compose's PostgreSQL, run against a real one (the
test session's server: ``PG_URL``, else the local one): from the file ``tools.ops broker-secrets``
writes, one login role and one database per bank, each bank allowed into its own database only;
running it again changes nothing. Bank ids of the test's own, so nothing else's is touched."""
from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest

from bank_node.config import load_config
from tools.consortia import write_config
from tools.ops import broker_secrets

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


@pytest.fixture
def server(pg_server) -> dict:
    """Host, port, user and password of the session's server (its maintenance database)."""
    p = psycopg.conninfo.conninfo_to_dict(pg_server)
    return {"host": p.get("host", "127.0.0.1"), "port": int(p.get("port", 5432)), "user": p.get("user", "postgres"),
            "password": p.get("password")}


@pytest.fixture
def banks(server):
    suffix = uuid.uuid4().hex[:8]
    ids = [f"alfa_{suffix}", f"beta_{suffix}"]
    yield ids
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as c:
        for b in ids:
            c.execute(f'DROP DATABASE IF EXISTS "{b}" WITH (FORCE)')
            c.execute(f'DROP ROLE IF EXISTS "{b}"')


def run_init(server: dict, databases: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PGHOST=server["host"], PGPORT=str(server["port"]), POSTGRES_USER=server["user"],
               BANK_DATABASES_FILE=str(databases))
    if server["password"]:
        env["PGPASSWORD"] = server["password"]
    return subprocess.run([str(ROOT / "docker" / "postgres-init.sh")], env=env, capture_output=True, text=True,
                          timeout=60)


def as_bank(server: dict, passwords: dict[str, str], role: str, dbname: str) -> psycopg.Connection:
    return psycopg.connect(dbname=dbname, host=server["host"], port=server["port"], user=role, password=passwords[role])


def test_one_database_and_role_per_bank_each_bank_in_its_own_only(tmp_path, server, banks):
    cfg = load_config(write_config(tmp_path / "c.yml", consortium="pg", broker_url="amqp://x/",
                                   banks=[{"id": b, "name": b, "port": 18001 + i} for i, b in enumerate(banks)],
                                   broker_auth={"mode": "per_bank", "secrets_file": "out/broker.yml"}), env={})
    written = broker_secrets(cfg, tmp_path / "out")
    passwords = dict(line.split() for line in written["bank_databases"].read_text().splitlines())
    done = run_init(server, written["bank_databases"])
    assert done.returncode == 0, done.stderr
    for b in banks:
        with as_bank(server, passwords, b, b) as c:
            assert c.execute("SELECT current_user, current_database()").fetchone() == (b, b)
            c.execute("CREATE TABLE ledger_probe (n int)")   # it owns its database: it makes its tables
    with pytest.raises(psycopg.OperationalError, match="CONNECT"):
        as_bank(server, passwords, banks[0], banks[1]).close()
    again = run_init(server, written["bank_databases"])
    assert again.returncode == 0, again.stderr
    with as_bank(server, passwords, banks[0], banks[0]) as c:
        assert c.execute("SELECT count(*) FROM ledger_probe").fetchone() == (0,), "a second run changes nothing"
