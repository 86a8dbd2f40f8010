"""consorcio.yml: validated at start-up with errors naming the file and the bad key; AMQP_URL wins
."""
from __future__ import annotations

import copy
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from bank_node.config import ConfigError, ConsortiumConfig, load_config

ROOT = Path(__file__).resolve().parents[2]

GOOD = {
    "consortium": "teste",
    "broker_url": "amqp://guest:guest@127.0.0.1:5672/%2F",
    "banks": [
        {"id": "alfa", "name": "Banco Alfa", "port": 8001},
        {"id": "beta", "name": "Banco Beta", "port": 8002},
    ],
}


def write(tmp_path: Path, doc) -> Path:
    p = tmp_path / "consorcio.yml"
    p.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return p


def test_repository_consorcio_yml_loads_with_three_banks():
    cfg = load_config(ROOT / "consorcio.yml", env={})
    assert cfg.bank_ids == ["alfa", "beta", "gama"]
    assert len({b.port for b in cfg.banks}) == 3
    assert cfg.broker_url.startswith("amqp://")
    assert cfg.limits.max_amount == Decimal("100000.00")
    assert cfg.bank("beta").url == f"http://{cfg.bank('beta').host}:{cfg.bank('beta').port}"


def test_amqp_url_in_the_environment_overrides_broker_url(tmp_path):
    p = write(tmp_path, GOOD)
    assert load_config(p, env={}).broker_url == GOOD["broker_url"]
    assert load_config(p, env={"AMQP_URL": "amqp://u:p@broker:5673/vh"}).broker_url == "amqp://u:p@broker:5673/vh"
    assert load_config(p, env={"AMQP_URL": ""}).broker_url == GOOD["broker_url"]


def test_amqp_url_from_os_environ_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("AMQP_URL", "amqp://from-env:5672/%2F")
    assert load_config(write(tmp_path, GOOD)).broker_url == "amqp://from-env:5672/%2F"


def test_code_defaults_fill_what_the_file_leaves_out(tmp_path):
    cfg = load_config(write(tmp_path, {"banks": [{"id": "alfa", "name": "A", "port": 9000}]}), env={})
    assert cfg.consortium == "consorcio"
    assert cfg.timeouts.prepare_ttl_ms > 0
    assert cfg.limits.max_amount == Decimal("100000.00")
    assert cfg.bank("alfa").host == "127.0.0.1"


def _set(doc: dict, path: str, value) -> dict:
    doc = copy.deepcopy(doc)
    node, keys = doc, path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if k.isdigit() else node.setdefault(k, {})
    last = keys[-1]
    if last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return doc


@pytest.mark.parametrize("path, value, key_in_message", [
    ("brokr_url", "amqp://x", "brokr_url"),                           # unknown top-level field
    ("banks.0.colour", "#ffffff", "banks.0.colour"),                  # unknown field of a bank
    ("timeouts.prepare_ttl", 100, "timeouts.prepare_ttl"),            # unknown timeout
    ("banks.0.port", 70000, "banks.0.port"),                          # bad port
    ("banks.0.port", 0, "banks.0.port"),
    ("banks.1.port", "http", "banks.1.port"),
    ("banks.1.id", "alfa", "banks"),                                  # duplicate bank id
    ("banks.0.id", "Alfa Bank", "banks.0.id"),
    ("banks.0.color", "blue", "banks.0.color"),
    ("banks", [], "banks"),
    ("consortium", "no spaces allowed", "consortium"),
    ("timeouts.prepare_ttl_ms", 1, "timeouts.prepare_ttl_ms"),
    ("limits.max_amount", "1.001", "limits.max_amount"),
    ("limits.max_amount", "-5", "limits.max_amount"),
    ("limits.max_amount", "NaN", "limits.max_amount"),
    ("security.session_ttl_s", "forever", "security.session_ttl_s"),
    ("http_threads", 0, "http_threads"),
    ("http_connections", 0, "http_connections"),
])
def test_bad_key_raises_config_error_naming_file_and_key(tmp_path, path, value, key_in_message):
    p = write(tmp_path, _set(GOOD, path, value))
    with pytest.raises(ConfigError) as exc:
        load_config(p, env={})
    msg = str(exc.value)
    assert str(p) in msg
    assert key_in_message in msg


def test_duplicate_bank_id_names_the_duplicate(tmp_path):
    p = write(tmp_path, _set(GOOD, "banks.1.id", "alfa"))
    with pytest.raises(ConfigError) as exc:
        load_config(p, env={})
    msg = str(exc.value)
    assert "\n  banks:" in msg, msg          # the key itself, not "(top level)"
    assert "duplicate" in msg and "alfa" in msg


def test_two_banks_on_one_port_are_refused(tmp_path):
    p = write(tmp_path, _set(GOOD, "banks.1.port", 8001))
    with pytest.raises(ConfigError) as exc:
        load_config(p, env={})
    assert "\n  banks:" in str(exc.value) and "8001" in str(exc.value)


def test_missing_banks_names_the_key(tmp_path):
    doc = {k: v for k, v in GOOD.items() if k != "banks"}
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, doc), env={})
    assert "banks" in str(exc.value)


@pytest.mark.parametrize("text", ["banks: [", "- just\n- a list\n", "", "42"])
def test_unreadable_yaml_names_the_file(tmp_path, text):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(p, env={})
    assert str(p) in str(exc.value)


def test_missing_file_names_the_file(tmp_path):
    p = tmp_path / "nope.yml"
    with pytest.raises(ConfigError) as exc:
        load_config(p, env={})
    assert str(p) in str(exc.value)


def test_unknown_bank_id_is_a_config_error():
    cfg = ConsortiumConfig.model_validate(GOOD)
    with pytest.raises(ConfigError) as exc:
        cfg.bank("zeta")
    assert "zeta" in str(exc.value) and "alfa" in str(exc.value)


def test_config_is_frozen():
    cfg = ConsortiumConfig.model_validate(GOOD)
    with pytest.raises(Exception):
        cfg.broker_url = "amqp://elsewhere"  # type: ignore[misc]
