"""Two processes serving one bank (one ledger), with security.rate_limit_storage on Redis:
password guesses made at one process count at the other, so running more processes gives a
guesser no more tries; while the customer, from another address, logs in at either."""
from __future__ import annotations

import http.client
import json

import pytest
import yaml

from tools.consortia import TEST_SECURITY, free_ports
from tools.supervisor import BankProcess
from tests.support import wait_until

pytestmark = pytest.mark.integration

REDIS = "redis://127.0.0.1:6379/0"
PASSWORD = "uma senha longa"
ATTACKER, CUSTOMER = "127.0.0.1", "127.0.0.2"     # two loopback source addresses


def post(port: int, path: str, body: dict, source: str) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15, source_address=(source, 0))
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    finally:
        conn.close()


@pytest.fixture
def redis_keys(namespace):
    """The test's consortium name is in every throttle key: they are removed afterwards."""
    import redis
    yield namespace
    r = redis.Redis.from_url(REDIS)
    keys = list(r.scan_iter(match=f"*{namespace}*"))
    if keys:
        r.delete(*keys)


def test_a_guess_at_one_process_of_a_bank_counts_at_the_other(make_cluster, new_cpf, tmp_path, redis_keys):
    cluster = make_cluster(banks=("alfa",),
                           security={**TEST_SECURITY, "rate_limit_storage": REDIS, "login_max_failures": 3})
    first = cluster["alfa"]
    # The second process: the same bank, ledger and broker queue, on a port of its own.
    doc = yaml.safe_load(cluster.config_path.read_text())
    (port2,) = free_ports(1)
    doc["banks"][0]["port"] = port2
    cfg2 = tmp_path / "second.yml"
    cfg2.write_text(yaml.safe_dump(doc))
    second = BankProcess("alfa", f"http://127.0.0.1:{port2}", cfg2, first.data_dir, tmp_path / "second.log",
                         env=dict(first.env))
    second.start()
    try:
        second.wait_healthy(60)
        port1 = int(first.url.rsplit(":", 1)[1])
        cpf = new_cpf()
        assert post(port1, "/api/customers", {"cpf": cpf, "name": "Ana Souza", "password": PASSWORD},
                    CUSTOMER)[0] == 201
        for port in (port1, port2, port1):            # three failures, spread over both processes
            assert post(port, "/api/sessions", {"cpf": cpf, "password": "not-it-at-all"}, ATTACKER)[0] == 401
        for port in (port1, port2):
            status, body = post(port, "/api/sessions", {"cpf": cpf, "password": PASSWORD}, ATTACKER)
            assert (status, body.get("code")) == (429, "too_many_attempts"), (port, status, body)
            status, body = post(port, "/api/sessions", {"cpf": cpf, "password": PASSWORD}, CUSTOMER)
            assert status == 201, body
    finally:
        second.terminate()
        wait_until(lambda: not second.alive, 20, "the second process stopped")
