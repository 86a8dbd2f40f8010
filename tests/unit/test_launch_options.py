"""The launcher's choice of the banks' log format: readable text for a person at a terminal,
JSON for tools reading a file or a pipe, or what was asked."""
from __future__ import annotations

import argparse
import io
import json
import logging

import pytest

from bank_node.logs import setup_logging
from tools.launch import Launcher, bank_log_format, main


@pytest.mark.parametrize("requested,terminal,expected", [
    ("auto", True, "text"), ("auto", False, "json"), ("json", True, "json"), ("text", False, "text"),
])
def test_bank_logs_are_text_at_a_terminal_and_json_otherwise(requested, terminal, expected):
    assert bank_log_format(requested, terminal) == expected


def test_the_banks_get_the_chosen_format_in_their_environment(tmp_path, monkeypatch):
    seen = {}

    class FakeCluster:
        def __init__(self, config_path, data_root, env=None, **kw):
            seen.update(env or {})
            raise RuntimeError("stop here")

    class Tty(io.StringIO):
        def isatty(self):
            return True
    monkeypatch.setattr("tools.launch.Cluster", FakeCluster)
    launcher = Launcher(argparse.Namespace(data_dir=str(tmp_path), log_format="auto"), out=Tty())
    config = type("C", (), {"banks": [type("B", (), {"id": "alfa", "color": "#1f6feb"})()], "consortium": "c",
                            "bank_ids": ["alfa"]})()
    with pytest.raises(RuntimeError):
        launcher.start_banks(tmp_path / "consorcio.yml", config)
    assert seen["LOG_FORMAT"] == "text"


def test_text_and_json_lines_of_a_bank(capsys):
    for fmt in ("text", "json"):
        setup_logging("alfa", "INFO", fmt)
        logging.getLogger("transfers").info("transfer %s: decided COMMIT", "t-1", extra={"transfer_id": "t-1"})
        err = capsys.readouterr().err.strip().splitlines()[-1]
        if fmt == "text":
            assert " alfa transfers INFO transfer t-1: decided COMMIT" in err and not err.startswith("{")
        else:
            assert json.loads(err)["transfer_id"] == "t-1"
    logging.getLogger().handlers[:] = []


def test_log_format_is_an_option_of_the_launcher(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "--log-format" in capsys.readouterr().out


def test_one_database_url_for_every_bank_is_refused(tmp_path, monkeypatch):
    """BANK_DATABASE_URL in the launcher's environment would reach every bank it starts, each
    taking the same database for its own ledger."""
    from pathlib import Path
    from tools.launch import LaunchError
    monkeypatch.setenv("BANK_DATABASE_URL", "postgresql://consorcio@127.0.0.1:5432/alfa")
    config = Path(__file__).resolve().parents[2] / "consorcio.yml"
    launcher = Launcher(argparse.Namespace(config=str(config), banks=None, data_dir=str(tmp_path), log_format="auto"),
                        out=io.StringIO())
    with pytest.raises(LaunchError, match="BANK_DATABASE_URL.*storage") as refused:
        launcher.load()
    assert refused.value.code == 2


def test_free_ports_stay_out_of_the_range_outgoing_connections_take_theirs_from():
    import socket
    from tools.consortia import _listen_range, free_ports
    low, high = _listen_range()
    ports = free_ports(30)
    assert len(set(ports)) == 30 and all(low <= p < high for p in ports), ports
    start = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    if start > 2048:   # as on Linux by default (32768-60999): the ports stay below it
        assert high <= start
    for p in ports:   # free when handed out
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))
