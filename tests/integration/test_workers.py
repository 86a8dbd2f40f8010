"""Several processes serving one bank over one ledger: ``--workers N`` (a parent sharing one
port with its children), or processes started by hand with the same bank id.

What lives in one process's memory must not matter: a token made at one process works at the
other, an Idempotency-Key sent to both at once has one effect, an acknowledgement consumed by
the other process still releases the waiting request, one process at a time is the resolver,
and when a process dies by kill -9 in the middle of transfers the survivor takes over and
nothing is lost or left in doubt.
"""
from __future__ import annotations

import random
import threading
import time
import uuid
from pathlib import Path

import pytest

from tools.api_client import Customer
from tools.chaos.checker import in_doubt
from tools.consortia import TEST_SECURITY
from tools.http import http_json
from tests.support import another_process, customer_everywhere, ledger, metric, wait_until

pytestmark = pytest.mark.integration

TIMEOUTS = {"prepare_ttl_ms": 3000, "decision_resend_ms": 300, "status_query_ms": 300, "retry_cap_ms": 1000}


def processes_answering(url: str, n: int, timeout: float = 30) -> dict[int, dict]:
    """{pid: health} of the processes answering ``url``, once ``n`` different ones have (each
    request is a new connection, which the kernel gives to any of them)."""
    seen: dict[int, dict] = {}

    def enough():
        status, body = http_json("GET", url + "/api/health", timeout=5)
        if status == 200 and body.get("broker") == "connected":
            seen[body["process"]["pid"]] = body
        return len(seen) >= n
    wait_until(enough, timeout, f"{n} processes answering {url}", interval=0.01)
    return seen


def resolver_pids(url: str, pids: set[int]) -> set[int]:
    """Which of ``pids`` (every process of the bank) say they are its resolver."""
    return {pid for pid, h in processes_answering(url, len(pids)).items() if h["process"]["resolver"]}


def children_of(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def test_two_workers_share_the_port_and_exactly_one_of_them_resolves(make_cluster, new_cpf, redis_throttles):
    cluster = make_cluster(banks=("alfa", "beta"), workers={"alfa": 2}, timeouts=TIMEOUTS,
                           security={**TEST_SECURITY, "rate_limit_storage": redis_throttles})
    alfa = cluster["alfa"]
    seen = processes_answering(alfa.url, 2)
    assert set(seen) == children_of(alfa.pid), "the workers are the parent's children"
    assert len(resolver_pids(alfa.url, set(seen))) == 1
    ana, acc = customer_everywhere(cluster, new_cpf(), amount="50.00")
    for _ in range(6):
        status, body = ana.transfer("alfa", [("alfa", acc["alfa"], "5.00")], ("beta", acc["beta"]))
        assert (status, body["status"]) == (201, "committed"), body
    assert ana.balance("beta", acc["beta"]) == "80.00"
    # /metrics is the bank's, whichever worker a scrape reaches: the two processes' counts added
    # up, and each one's broker connection.
    for _ in range(8):
        assert metric(alfa.url, "consorcio_transfers_started_total") == 6.0
        assert [metric(alfa.url, "consorcio_broker_connected", pid=str(pid)) for pid in seen] == [1.0, 1.0]
    # SIGTERM to the parent stops every worker gracefully, then the parent.
    assert alfa.terminate() == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in seen)


def test_workers_refuse_throttles_counted_per_process(make_cluster, tmp_path):
    cluster = make_cluster(banks=("alfa",), start=False)
    alfa = cluster["alfa"]
    alfa.workers = 2
    alfa.start()
    assert alfa.wait_exit(30) == 2
    assert "rate_limit_storage on redis://" in alfa.tail()


@pytest.fixture
def two_processes(make_cluster, tmp_path):
    """alfa as two processes started by hand (one ledger, one queue, two ports), and beta."""
    cluster = make_cluster(banks=("alfa", "beta"), timeouts={**TIMEOUTS, "apply_wait_ms": 8000})
    second = another_process(cluster, "alfa", tmp_path / "second")
    try:
        yield cluster, cluster["alfa"].url, second.url
    finally:
        second.terminate()


def test_a_session_made_at_one_process_works_and_ends_at_the_other(two_processes, new_cpf):
    cluster, first, second = two_processes
    ana = Customer(new_cpf(), "Ana Souza", {"first": first, "second": second})
    ana.join("first")
    ana.tokens["second"] = ana.tokens["first"]
    account = ana.open_account("second")
    assert ana.call("first", "GET", f"/api/accounts/{account}")[0] == 200
    assert ana.call("second", "DELETE", "/api/sessions/current")[0] in (200, 204)
    assert ana.call("first", "GET", "/api/accounts")[0] == 401


def test_one_idempotency_key_sent_to_both_processes_at_once_has_one_effect(two_processes, new_cpf):
    cluster, first, second = two_processes
    ana, acc = customer_everywhere(cluster, new_cpf(), amount="100.00", consent=True)
    urls = {"first": first, "second": second}
    ana.urls.update(urls)
    ana.tokens.update({"first": ana.tokens["alfa"], "second": ana.tokens["alfa"]})
    for round_ in range(5):
        barrier = threading.Barrier(2)
        answers: dict[str, tuple] = {}
        deposit_key, transfer_key = f"dep-{round_}-{uuid.uuid4()}", f"tr-{round_}-{uuid.uuid4()}"

        def both(via: str) -> None:
            barrier.wait()
            dep = ana.call(via, "POST", f"/api/accounts/{acc['alfa']}/deposits", {"amount": "1.00"}, key=deposit_key)
            tr = ana.call(via, "POST", "/api/transfers",
                          {"sources": [{"bank": "alfa", "account": acc["alfa"], "amount": "2.00"}],
                           "destination": {"bank": "beta", "account": acc["beta"]}}, key=transfer_key)
            answers[via] = (dep, tr)
        threads = [threading.Thread(target=both, args=(via,)) for via in urls]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        (dep1, tr1), (dep2, tr2) = answers["first"], answers["second"]
        assert dep1 == dep2 and dep1[0] == 201, (dep1, dep2)
        assert tr1[1]["id"] == tr2[1]["id"], (tr1, tr2)
    # Five deposits of 1.00 and five transfers of 2.00 out, each once.
    wait_until(lambda: ana.balance("beta", acc["beta"]) == "110.00", 20, "each transfer credited once")
    assert ana.balance("alfa", acc["alfa"]) == "95.00"


def test_an_acknowledgement_consumed_by_the_other_process_releases_the_waiting_request(two_processes, new_cpf):
    """The coordinator answers once every bank applied the decision (read-your-writes, up to
    apply_wait_ms: 8 s here). beta's acknowledgements reach either process of alfa; those that
    reach the other one are found in the ledger, so no answer waits for the 8 s."""
    cluster, first, second = two_processes
    ana, acc = customer_everywhere(cluster, new_cpf(), amount="100.00")
    slow = []
    for i in range(12):
        t0 = time.monotonic()
        status, body = ana.transfer("alfa", [("alfa", acc["alfa"], "1.00")], ("beta", acc["beta"]))
        took = time.monotonic() - t0
        assert (status, body["status"]) == (201, "committed"), body
        assert ana.balance("beta", acc["beta"]) == f"{101 + i}.00", "answered before beta applied it"
        if took > 4:
            slow.append(round(took, 2))
    assert not slow, f"answers that waited for apply_wait_ms: {slow}"


@pytest.mark.both_backends
def test_kill_9_of_one_of_two_workers_during_transfers_loses_nothing(make_cluster, new_cpf, redis_throttles):
    """alfa runs as two workers; beta and gama as one process each. Customers move money among
    all three banks (two source legs each, coordinated by every bank, alfa most), and the
    worker of alfa that is its resolver is killed with -9 in the middle. Afterwards: the other
    worker is the resolver, nothing is in doubt anywhere, every bank's books balance, and the
    sum of all balances is what was deposited."""
    banks = ("alfa", "beta", "gama")
    cluster = make_cluster(banks=banks, workers={"alfa": 2}, timeouts=TIMEOUTS,
                           security={**TEST_SECURITY, "rate_limit_storage": redis_throttles})
    alfa = cluster["alfa"]
    pids = set(processes_answering(alfa.url, 2))
    (victim,) = resolver_pids(alfa.url, pids)
    (survivor,) = pids - {victim}
    people = [customer_everywhere(cluster, new_cpf(), amount="100.00") for _ in range(6)]
    deposited = 100_00 * len(people) * len(banks)
    stop = threading.Event()
    answers: list[str] = []

    def stream(ana: Customer, acc: dict, seed: int) -> None:
        rnd = random.Random(seed)
        while not stop.is_set():
            dest = rnd.choice(banks)
            sources = [b for b in banks if b != dest]
            via = rnd.choice(("alfa", "alfa", *banks))
            try:
                status, body = ana.transfer(via, [(b, acc[b], f"{rnd.randint(1, 300) / 100:.2f}") for b in sources],
                                            (dest, acc[dest]), timeout=20)
                answers.append(body.get("status", str(status)))
            except OSError as e:   # a connection to the killed worker
                answers.append(type(e).__name__)

    threads = [threading.Thread(target=stream, args=(ana, acc, i)) for i, (ana, acc) in enumerate(people)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: answers.count("committed") >= 20, 60, "transfers committing before the kill")
        import os
        import signal
        os.kill(victim, signal.SIGKILL)
        killed_at = len(answers)
        wait_until(lambda: answers[killed_at:].count("committed") >= 30, 60, "transfers committing after the kill")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    # The parent started a new worker in the victim's place; the survivor became the resolver.
    wait_until(lambda: len(children_of(alfa.pid) - {victim, survivor}) == 1, 30, "a new worker in the victim's place")
    wait_until(lambda: survivor in resolver_pids(alfa.url, {survivor, *children_of(alfa.pid)} - {victim}), 30,
               "the surviving worker to be alfa's resolver")

    def settled():
        led = {b: ledger(cluster, b) for b in banks}
        return led if not any(in_doubt(l) for l in led.values()) else None
    led = wait_until(settled, 45, "nothing in doubt at any bank", interval=0.2)
    total = sum(sum(l["balances"].values()) for l in led.values())
    assert total == deposited, f"{total} cents in the banks, {deposited} deposited"
    for b, l in led.items():
        assert sum(l["balances"].values()) == l["deposits"] - l["withdrawals"] + sum(l["positions"].values()), b
        assert all(v >= 0 for v in l["balances"].values()), b
    entries: dict[str, int] = {}
    for l in led.values():
        for tid, *_ in l["transfer_entries"]:
            entries[tid] = entries.get(tid, 0) + 1
    assert all(n == 3 for n in entries.values()), "a transfer applied at some of its legs only"
    assert answers.count("committed") >= 50


@pytest.mark.both_backends
def test_taking_over_the_resolver_leaves_the_survivors_transfers_in_flight_alone(make_cluster, new_cpf, tmp_path):
    """The second process of alfa coordinates a transfer whose vote is late (beta is paused);
    the first process, alfa's resolver, dies by kill -9 meanwhile, and the second takes over
    the role, recovering what the dead one left. The transfer it is itself collecting votes for
    is not the dead one's: once beta votes, before the deadline, it commits."""
    cluster = make_cluster(banks=("alfa", "beta"), timeouts={**TIMEOUTS, "prepare_ttl_ms": 8000})
    ana, acc = customer_everywhere(cluster, new_cpf(), amount="100.00")
    first = cluster["alfa"]
    second = another_process(cluster, "alfa", tmp_path / "second")
    try:
        assert processes_answering(first.url, 1)[first.pid]["process"]["resolver"]
        ana.urls["second"], ana.tokens["second"] = second.url, ana.tokens["alfa"]
        cluster["beta"].pause()
        answer: list = []
        asked = threading.Thread(target=lambda: answer.append(
            ana.transfer("second", [("alfa", acc["alfa"], "10.00")], ("beta", acc["beta"]))))
        try:
            asked.start()
            wait_until(lambda: any(s == "preparing" for s in ledger(cluster, "alfa")["coordinated"].values()),
                       5, "the transfer waiting for beta's vote")
            first.kill()
            wait_until(lambda: processes_answering(second.url, 1)[second.pid]["process"]["resolver"], 5,
                       "the second process to take the resolver's role")
        finally:
            cluster["beta"].resume()
        asked.join(30)
        (status, body), = answer
        assert (status, body["status"]) == (201, "committed"), body
    finally:
        second.terminate()


def test_a_web_ui_session_begun_at_one_process_is_the_same_at_the_other(two_processes, new_cpf):
    """The browser's session (its CSRF token, then its login) is kept by the bank, not by the
    process: the form comes from one process, is posted to the other, and the first then
    shows the logged-in customer's page. (Cookies do not tell ports apart: one jar serves both.)"""
    import http.cookiejar
    import re
    import urllib.parse
    import urllib.request
    cluster, first, second = two_processes
    cpf = new_cpf()
    Customer(cpf, "Ana Souza", {"first": first}).join("first")

    class Stay(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), Stay)

    def fetch(url: str, form: dict | None = None) -> tuple[int, str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with browser.open(urllib.request.Request(url, data=data), timeout=15) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
    status, page = fetch(first + "/entrar")
    assert status == 200
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    status, _ = fetch(second + "/entrar", {"csrf_token": csrf, "cpf": cpf, "password": "senha-muito-boa"})
    assert status == 302, "the other process did not know the session's CSRF token"
    status, page = fetch(first + "/painel")
    assert status == 200 and "Ana" in page, status


def test_a_second_process_started_by_hand_with_memory_throttles_says_they_count_apart(two_processes, tmp_path):
    log = (tmp_path / "second" / "alfa-second.log").read_text()
    assert "each process on its own" in log and "redis://" in log


def test_the_operator_socket_is_served_by_every_worker(make_cluster, tmp_path, redis_throttles):
    import json
    import stat
    from tools.http import unix_get
    sock = tmp_path / "alfa-operator.sock"
    cluster = make_cluster(banks=("alfa",), workers={"alfa": 2}, env={"CONSORCIO_OPERATOR_SOCKET": str(sock)},
                           security={**TEST_SECURITY, "rate_limit_storage": redis_throttles})
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    pids = set()

    def both_answered():
        status, _, body = unix_get(str(sock), "/api/health")
        assert status == 200
        pids.add(json.loads(body)["process"]["pid"])
        return pids == children_of(cluster["alfa"].pid)
    wait_until(both_answered, 30, "both workers answering on the operator socket", interval=0.01)
    status, _, body = unix_get(str(sock), "/api/operator/overview")
    assert status == 200 and json.loads(body)["bank"] == "alfa"
