"""docker/postgres-init.sh, the init script of compose's PostgreSQL, run against a real one (the
local server on 127.0.0.1:5432, user postgres): from the file ``tools.ops broker-secrets``
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
SERVER = {"host": os.environ.get("PGHOST", "127.0.0.1"), "port": int(os.environ.get("PGPORT", "5432")),
          "user": os.environ.get("PGUSER", "postgres")}

pytestmark = pytest.mark.integration


def admin() -> psycopg.Connection:
    return psycopg.connect(dbname="postgres", autocommit=True, **SERVER)


@pytest.fixture
def banks(tmp_path):
    suffix = uuid.uuid4().hex[:8]
    ids = [f"alfa_{suffix}", f"beta_{suffix}"]
    try:
        admin().close()
    except psycopg.OperationalError as e:
        pytest.fail(f"no PostgreSQL at {SERVER['host']}:{SERVER['port']} ({e})")
    yield ids
    with admin() as c:
        for b in ids:
            c.execute(f'DROP DATABASE IF EXISTS "{b}"')
            c.execute(f'DROP ROLE IF EXISTS "{b}"')


def run_init(databases: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PGHOST=SERVER["host"], PGPORT=str(SERVER["port"]), POSTGRES_USER=SERVER["user"],
               BANK_DATABASES_FILE=str(databases))
    return subprocess.run([str(ROOT / "docker" / "postgres-init.sh")], env=env, capture_output=True, text=True,
                          timeout=60)


def test_one_database_and_role_per_bank_each_bank_in_its_own_only(tmp_path, banks):
    cfg = load_config(write_config(tmp_path / "c.yml", consortium="pg", broker_url="amqp://x/",
                                   banks=[{"id": b, "name": b, "port": 18001 + i} for i, b in enumerate(banks)],
                                   broker_auth={"mode": "per_bank", "secrets_file": "out/broker.yml"}), env={})
    written = broker_secrets(cfg, tmp_path / "out")
    done = run_init(written["bank_databases"])
    assert done.returncode == 0, done.stderr
    for b in banks:
        with psycopg.connect(dbname=b, **{**SERVER, "user": b}) as c:
            assert c.execute("SELECT current_user, current_database()").fetchone() == (b, b)
            c.execute("CREATE TABLE ledger_probe (n int)")   # it owns its database: it makes its tables
    with pytest.raises(psycopg.OperationalError, match="CONNECT"):
        psycopg.connect(dbname=banks[1], **{**SERVER, "user": banks[0]}).close()
    again = run_init(written["bank_databases"])
    assert again.returncode == 0, again.stderr
    with psycopg.connect(dbname=banks[0], **{**SERVER, "user": banks[0]}) as c:
        assert c.execute("SELECT count(*) FROM ledger_probe").fetchone() == (0,), "a second run changes nothing"
