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


@pytest.mark.parametrize("share,part", [("0/4", 0), ("3/4", 3), ("1/2", 1)])
def test_each_share_of_the_ports_is_its_own(monkeypatch, share, part):
    """Parallel test workers draw from disjoint parts of the range: never the same port."""
    from tools.consortia import PORT_SHARE_ENV, _unshared_range, free_ports
    low, high = _unshared_range()
    count = int(share.split("/")[1])
    size = (high - low) // count
    monkeypatch.setenv(PORT_SHARE_ENV, share)
    ports = free_ports(20)
    assert all(low + part * size <= p < low + (part + 1) * size for p in ports), (share, ports)


@pytest.mark.parametrize("bad", ["4/4", "x", "1/0", "-1/3"])
def test_a_bad_share_of_the_ports_says_what_it_expects(monkeypatch, bad):
    from tools.consortia import PORT_SHARE_ENV, free_ports
    monkeypatch.setenv(PORT_SHARE_ENV, bad)
    with pytest.raises(ValueError, match="INDEX/COUNT"):
        free_ports(1)


@pytest.fixture
def stranger_on_a_port():
    """Another consortium's bank 'gama', healthy, on a port of its own: (url, port)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Health(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"bank": "gama", "consortium": "theirs", "broker": "connected"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server.server_address[1]
    server.shutdown()
    server.server_close()
    t.join(5)


@pytest.mark.parametrize("bank,consortium", [("alfa", "theirs"), ("gama", "ours")])
def test_a_stranger_on_a_banks_port_is_not_taken_for_the_bank(tmp_path, stranger_on_a_port, bank, consortium):
    """Someone else's bank answering on the port a bank was to listen on (it drew the same free
    port a moment earlier) is not this bank up: waiting for it ends in an error naming both."""
    from tools.supervisor import BankProcess, Cluster
    url, port = stranger_on_a_port
    b = BankProcess(bank, url, tmp_path / "c.yml", tmp_path, tmp_path / "b.log", consortium=consortium)
    assert not b.ready(b.health())
    with pytest.raises(TimeoutError, match="answers as bank 'gama' of consortium 'theirs'"):
        b.wait_healthy(0.3)
    (tmp_path / "c.yml").write_text(json.dumps({"consortium": consortium, "banks": [{"id": bank, "name": "Banco", "port": port}]}))
    cluster = Cluster(tmp_path / "c.yml", tmp_path / "data", provision=False)
    with pytest.raises(TimeoutError, match="answers as bank 'gama' of consortium 'theirs'"):
        cluster.wait_healthy(0.3)
    same = BankProcess("gama", url, tmp_path / "c.yml", tmp_path, tmp_path / "b.log", consortium="theirs")
    assert same.ready(same.health()) and same.stranger(same.health()) == ""
