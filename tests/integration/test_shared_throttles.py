"""Two processes serving one bank (one ledger), with security.rate_limit_storage on Redis:
password guesses made at one process count at the other, so running more processes gives a
guesser no more tries; while the customer, from another address, logs in at either."""
from __future__ import annotations

import http.client
import json

import pytest

from tools.consortia import TEST_SECURITY
from tests.support import another_process, wait_until

pytestmark = pytest.mark.integration

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


def test_a_guess_at_one_process_of_a_bank_counts_at_the_other(make_cluster, new_cpf, tmp_path, redis_throttles):
    cluster = make_cluster(banks=("alfa",),
                           security={**TEST_SECURITY, "rate_limit_storage": redis_throttles, "login_max_failures": 3})
    first = cluster["alfa"]
    second = another_process(cluster, "alfa", tmp_path / "second")
    port2 = int(second.url.rsplit(":", 1)[1])
    try:
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
