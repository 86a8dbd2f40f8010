"""Each bank on its own host name: a browser sends the cookies of a host to every port of it,
so banks told apart only by their ports would each receive the others' cookies. consorcio.yml
and the launcher name them alfa.localhost, beta.localhost, ... (browsers resolve *.localhost to
the loopback), while the banks listen on an address Python's resolver needs no help with."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bank_node.config import Bank, load_config
from tools.launch import consortium_of_size, shared_hosts
from tools.supervisor import Cluster

from .conftest import make_config

ROOT = Path(__file__).resolve().parents[2]


def test_consorcio_yml_gives_each_bank_its_own_host_name():
    cfg = load_config(ROOT / "consorcio.yml", env={})
    assert [b.host for b in cfg.banks] == [f"{b.id}.localhost" for b in cfg.banks]
    assert [b.url for b in cfg.banks] == [f"http://{b.id}.localhost:{b.port}" for b in cfg.banks]
    assert {b.listen_address for b in cfg.banks} == {"127.0.0.1"}
    assert shared_hosts(cfg) == []


@pytest.mark.parametrize("entry, listen, local_url", [
    ({"host": "alfa.localhost"}, "127.0.0.1", "http://127.0.0.1:8001"),
    ({"host": "127.0.0.1"}, "127.0.0.1", "http://127.0.0.1:8001"),
    ({"host": "10.1.2.3"}, "10.1.2.3", "http://10.1.2.3:8001"),
    ({"host": "alfa.example", "listen": "0.0.0.0"}, "0.0.0.0", "http://127.0.0.1:8001"),
    ({"host": "alfa.example", "listen": "::"}, "::", "http://[::1]:8001"),
])
def test_the_public_url_and_the_listen_address_are_separate(entry, listen, local_url):
    b = Bank.model_validate({"id": "alfa", "name": "Banco Alfa", "port": 8001, **entry})
    assert b.url == f"http://{entry['host']}:8001"
    assert (b.listen_address, b.local_url) == (listen, local_url)


def test_two_banks_cannot_listen_on_one_address_under_two_names():
    with pytest.raises(ValueError, match="share the address 127.0.0.1:8001"):
        make_config(banks=[{"id": "alfa", "name": "A", "host": "alfa.localhost", "port": 8001},
                           {"id": "beta", "name": "B", "host": "beta.localhost", "port": 8001}])


def test_banks_sharing_a_host_name_are_warned_about():
    cfg = make_config()     # the unit tests' banks: all on 127.0.0.1
    (warning,) = shared_hosts(cfg)
    assert "alfa, beta, gama share the host name 127.0.0.1" in warning and "cookies" in warning


def test_launcher_sizes_keep_one_host_name_per_bank():
    doc = yaml.safe_load((ROOT / "consorcio.yml").read_text())
    five = consortium_of_size(doc, 5)["banks"]
    assert [b["host"] for b in five] == ["alfa.localhost", "beta.localhost", "gama.localhost",
                                         "delta.localhost", "epsilon.localhost"]
    plain = consortium_of_size({**doc, "banks": [{"id": "x", "name": "X", "host": "127.0.0.1", "port": 9001}]}, 2)
    assert [b["host"] for b in plain["banks"]] == ["127.0.0.1", "127.0.0.1"]


def test_the_supervisor_reaches_banks_by_their_listen_address(tmp_path):
    cfg = tmp_path / "c.yml"
    cfg.write_text(yaml.safe_dump({"banks": [{"id": "alfa", "name": "A", "host": "alfa.localhost", "port": 8001},
                                             {"id": "beta", "name": "B", "host": "beta.example", "port": 8002,
                                              "listen": "0.0.0.0"}]}))
    c = Cluster(cfg, tmp_path / "data")
    assert (c["alfa"].url, c["beta"].url) == ("http://127.0.0.1:8001", "http://127.0.0.1:8002")
