"""Which ledger a bank opens: a SQLite file in its data folder by default, a PostgreSQL database
named by its ``storage`` setting or ``BANK_DATABASE_URL`` (which wins), and a clear refusal to
start, exit code 2 and one line naming the bank and the setting, when that database is wrong."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bank_node.config import ConfigError, load_config
from bank_node.node import BankNode
from bank_node.storage import postgres_url
from bank_node.storage.postgres import PostgresStore
from bank_node.storage.sqlite import SqliteStore

from .conftest import make_config

ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE = "postgresql://consorcio@127.0.0.1:1/ledger"


def write_config(tmp_path, **bank_extra) -> Path:
    path = tmp_path / "consorcio.yml"
    path.write_text(yaml.safe_dump({
        "consortium": "unit", "broker_url": "amqp://guest:guest@127.0.0.1:1/%2F",
        "banks": [{"id": "alfa", "name": "Banco Alfa", "port": 18001, **bank_extra}]}))
    return path


def start_bank(config: Path, tmp_path, env: dict) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "BANK_DATABASE_URL"}
    return subprocess.run([sys.executable, "-m", "bank_node", "--config", str(config), "--bank", "alfa",
                           "--data-dir", str(tmp_path / "data")], cwd=ROOT, env={**environ, **env},
                          capture_output=True, text=True, timeout=60)


def refused(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    line = [x for x in done.stderr.splitlines() if x.startswith("error:")]
    assert len(line) == 1 and all(w in line[0] for w in words), done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_an_unreachable_database_in_the_environment_stops_the_bank_naming_it(tmp_path):
    # the file names another database: the environment's is the one tried; its password is masked
    config = write_config(tmp_path, storage="postgresql://consorcio@127.0.0.1:2/other")
    done = start_bank(config, tmp_path, {"BANK_DATABASE_URL": "postgresql://consorcio:s3cr3t@127.0.0.1:1/ledger"})
    refused(done, "alfa", "BANK_DATABASE_URL", "consorcio:***@127.0.0.1:1")
    assert "s3cr3t" not in done.stderr + done.stdout


def test_an_unreachable_database_in_the_file_stops_the_bank_naming_the_setting(tmp_path):
    config = write_config(tmp_path, storage=UNREACHABLE)
    refused(start_bank(config, tmp_path, {}), "alfa", "storage", str(config))


def test_a_url_that_is_no_database_is_refused_at_start_up(tmp_path):
    refused(start_bank(write_config(tmp_path), tmp_path, {"BANK_DATABASE_URL": "mysql://x@y/z"}),
            "alfa", "BANK_DATABASE_URL", "postgresql://")
    with pytest.raises(ConfigError, match="storage"):
        load_config(write_config(tmp_path, storage="mysql://x@y/z"))


def test_a_key_value_connection_string_is_refused_not_taken_for_a_file_name(tmp_path):
    """libpq's other form ("host=... dbname=...") has no scheme: it would open a SQLite file
    named after it and leave the database empty."""
    conninfo = "user=postgres dbname=alfa host=127.0.0.1 port=5432"
    refused(start_bank(write_config(tmp_path), tmp_path, {"BANK_DATABASE_URL": conninfo}),
            "alfa", "BANK_DATABASE_URL", "postgresql://")
    with pytest.raises(ConfigError, match="storage"):
        load_config(write_config(tmp_path, storage=conninfo))
    assert not list(tmp_path.rglob("*dbname=*"))


def test_a_connection_string_becomes_the_url_a_bank_takes():
    assert postgres_url("user=postgres dbname=x host=127.0.0.1 port=5432", "alfa") == \
        "postgresql://postgres@127.0.0.1:5432/alfa"
    assert postgres_url("postgresql://bank:s%2Fcret@db:5433/alfa") == "postgresql://bank:s%2Fcret@db:5433/alfa"


def test_by_default_the_ledger_is_a_sqlite_file_in_the_data_folder(tmp_path):
    node = BankNode(make_config(), "alfa", tmp_path / "d", connect_broker=False)
    try:
        assert isinstance(node.store, SqliteStore) and (tmp_path / "d" / "alfa.sqlite3").exists()
    finally:
        node.stop()


def test_a_storage_setting_puts_the_ledger_in_postgresql(tmp_path, pg_schemas):
    from tests.conftest import Backend
    backend = Backend("postgres", pg_schemas)
    url = backend.location(tmp_path, "alfa")
    config = make_config(banks=[{"id": "alfa", "name": "Banco Alfa", "port": 18001, "storage": url}])
    node = BankNode(config, "alfa", tmp_path / "d", connect_broker=False)
    try:
        assert isinstance(node.store, PostgresStore)
        assert not (tmp_path / "d" / "alfa.sqlite3").exists()
        # every HTTP thread (and the message workers beside them) can hold a transaction at once
        assert node.store._pool.max_size >= config.http_threads + 8
    finally:
        node.stop()
        backend.release()
