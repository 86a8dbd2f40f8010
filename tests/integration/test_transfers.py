"""Two-phase commit across real bank processes and a real RabbitMQ (docs/protocol.md)."""
from __future__ import annotations

import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pika
import pytest

from bank_node import protocol as P
from tools.api_client import Customer
from tools.peer import PeerBank, prepare
from tests.support import ledger, participation_states, wait_until

pytestmark = pytest.mark.integration


def balances(who: Customer, acc: dict) -> dict:
    return {b: who.balance(b, n) for b, n in acc.items()}


def no_holds_anywhere(cluster) -> bool:
    return all(not ledger(cluster, b)["holds"] for b in cluster.banks)


def test_two_source_transfer_commits_with_exact_balances(trio):
    cluster, ana, acc = trio
    status, body = ana.transfer("alfa", [("alfa", acc["alfa"], "10.00"), ("beta", acc["beta"], "25.50")],
                                ("gama", acc["gama"]))
    assert (status, body["status"]) == (201, "committed"), body
    assert balances(ana, acc) == {"alfa": "90.00", "beta": "74.50", "gama": "135.50"}
    # Every leg's statement entry carries the transfer id.
    for bank in acc:
        _, st = ana.call(bank, "GET", f"/api/accounts/{acc[bank]}/statement", expect=200)
        assert st["entries"][0]["transfer_id"] == body["id"]
    _, seen = ana.call("alfa", "GET", f"/api/transfers/{body['id']}", expect=200)
    assert seen["status"] == "committed"
    # A participant bank shows the whole transfer (its PREPARE carried it) to the holder of its leg.
    _, there = ana.call("gama", "GET", f"/api/transfers/{body['id']}", expect=200)
    assert (there["status"], there["coordinator"], there["amount"]) == ("committed", "alfa", "35.50")
    assert [(l["bank"], l["amount"], l["role"]) for l in there["legs"]] == [
        ("alfa", "10.00", "source"), ("beta", "25.50", "source"), ("gama", "35.50", "destination")]
    assert no_holds_anywhere(cluster)


def test_one_leg_short_of_funds_moves_nothing_and_leaves_no_hold(trio):
    cluster, ana, acc = trio
    status, body = ana.transfer("alfa", [("alfa", acc["alfa"], "50.00"), ("beta", acc["beta"], "100.01")],
                                ("gama", acc["gama"]))
    assert (status, body["status"], body["reason"]) == (201, "aborted", "insufficient_funds"), body
    beta_leg = next(l for l in body["legs"] if l["bank"] == "beta")
    assert beta_leg["reason"] == "insufficient_funds"
    assert balances(ana, acc) == {"alfa": "100.00", "beta": "100.00", "gama": "100.00"}
    wait_until(lambda: no_holds_anywhere(cluster), 10, "holds released")
    assert ana.account("alfa", acc["alfa"])["available"] == "100.00"


def test_unknown_destination_aborts(trio):
    cluster, ana, acc = trio
    status, body = ana.transfer("alfa", [("alfa", acc["alfa"], "5.00")], ("beta", "999999999"))
    assert (status, body["status"], body["reason"]) == (201, "aborted", "not_found"), body
    status, body = ana.transfer("alfa", [("alfa", acc["alfa"], "5.00")], ("nobank", acc["beta"]))
    assert status == 404 and body["code"] == "unknown_bank"
    assert balances(ana, acc)["alfa"] == "100.00"
    wait_until(lambda: no_holds_anywhere(cluster), 10, "holds released")


def test_remote_leg_not_owned_by_initiator_is_refused_by_its_bank(trio, new_cpf):
    cluster, ana, acc = trio
    bruno = Customer(new_cpf(), "Bruno Lima", ana.urls)
    bruno.join("alfa")
    bruno.join("beta")
    bruno_alfa = bruno.open_account("alfa")
    bruno.deposit("alfa", bruno_alfa, "10.00")
    # Bruno, logged in at alfa, tries to pull money out of Ana's account at beta.
    status, body = bruno.transfer("alfa", [("alfa", bruno_alfa, "1.00"), ("beta", acc["beta"], "50.00")],
                                  ("gama", acc["gama"]))
    assert (status, body["status"]) == (201, "aborted"), body
    assert {"bank": "beta", "account": acc["beta"], "reason": "not_found"} in body["failures"]
    assert balances(ana, acc) == {"alfa": "100.00", "beta": "100.00", "gama": "100.00"}
    assert bruno.balance("alfa", bruno_alfa) == "10.00"
    # Nor can Bruno read the transfer of someone else, nor Ana read Bruno's.
    s, _ = ana.call("alfa", "GET", f"/api/transfers/{body['id']}")
    assert s == 404
    wait_until(lambda: no_holds_anywhere(cluster), 10, "holds released")


def test_same_transfer_id_replayed_has_no_second_effect(trio):
    cluster, ana, acc = trio
    tid = str(uuid.uuid4())
    legs = [("beta", acc["beta"], "30.00")]
    first = ana.transfer("alfa", legs, ("gama", acc["gama"]), transfer_id=tid)
    again = ana.transfer("alfa", legs, ("gama", acc["gama"]), transfer_id=tid)
    assert first[1]["status"] == "committed" and again[1]["status"] == "committed"
    assert again[1]["id"] == tid
    assert balances(ana, acc) == {"alfa": "100.00", "beta": "70.00", "gama": "130.00"}
    other = ana.transfer("alfa", [("beta", acc["beta"], "31.00")], ("gama", acc["gama"]), transfer_id=tid)
    assert other[0] == 409
    # Idempotency-Key works as the transfer's identity too.
    body = {"sources": [{"bank": "beta", "account": acc["beta"], "amount": "1.00"}],
            "destination": {"bank": "gama", "account": acc["gama"]}}
    a = ana.call("alfa", "POST", "/api/transfers", body, key="k-1")
    b = ana.call("alfa", "POST", "/api/transfers", body, key="k-1")
    assert a[1]["id"] == b[1]["id"] and a[1]["status"] == b[1]["status"] == "committed"
    assert ana.balance("beta", acc["beta"]) == "69.00"


def _user(amqp_url: str) -> str:
    """In the tests' shared-identity consortium every bank is the broker URL's user."""
    return pika.URLParameters(amqp_url).credentials.username


def _publish(amqp_url: str, queue: str, body: bytes, reply_to: str | None = None, cid: str | None = None):
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2, reply_to=reply_to,
                                                                correlation_id=cid, user_id=_user(amqp_url)),
                         mandatory=True)
    finally:
        conn.close()


def test_redelivered_prepare_and_commit_change_nothing(trio, amqp_url, namespace):
    cluster, ana, acc = trio
    status, body = ana.transfer("alfa", [("beta", acc["beta"], "40.00")], ("gama", acc["gama"]))
    assert body["status"] == "committed"
    tid = body["id"]
    legs = [("beta", acc["beta"], 4000, "debit"), ("gama", acc["gama"], 4000, "credit")]
    with PeerBank(cluster, "alfa") as alfa:   # alfa's own identity and key, replaying its messages
        # A replayed PREPARE gets the first answer again (YES) and places no second hold.
        vote = alfa.ask("beta", prepare(tid, "alfa", ana.cpf, legs)).items[0]
        assert vote.vote == "yes"
        # A replayed COMMIT (twice, to both participants) is acknowledged and not applied again.
        for bank in ("beta", "gama", "beta"):
            alfa.send(bank, P.Decision(transfer_id=tid, outcome="commit"))
        wait_until(lambda: ledger(cluster, "beta")["participations"].get(tid) == "committed", 5)
        # Wait until both banks consumed everything we sent, then look.
        wait_until(lambda: all(_queue_depth(amqp_url, f"{namespace}.bank.{b}") == 0 for b in ("beta", "gama")), 10,
                   "queues drained")
        assert balances(ana, acc) == {"alfa": "100.00", "beta": "60.00", "gama": "140.00"}
        assert not ledger(cluster, "beta")["holds"]
        # A PREPARE whose deadline has passed is answered NO and never applied.
        late = prepare(str(uuid.uuid4()), "alfa", ana.cpf, legs, deadline_ms=int(time.time() * 1000) - 1)
        vote = alfa.ask("beta", late).items[0]
        assert vote.vote == "no" and vote.reasons[0].code == "timeout"
    assert not ledger(cluster, "beta")["holds"]


def _queue_depth(amqp_url: str, queue: str) -> int:
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        ok = conn.channel().queue_declare(queue, passive=True)
        return ok.method.message_count
    finally:
        conn.close()


def test_malformed_message_is_dead_lettered_and_consumer_survives(trio, amqp_url, namespace):
    cluster, ana, acc = trio
    for junk in (b"not json", b'{"v": 2, "sender": "alfa", "items": []}',
                 b'{"v": 1, "sender": "alfa", "items": [{"type": "launch_missiles"}]}'):
        _publish(amqp_url, f"{namespace}.bank.beta", junk)
    wait_until(lambda: _queue_depth(amqp_url, f"{namespace}.dead") >= 3, 10, "dead-lettered")
    status, body = ana.transfer("alfa", [("beta", acc["beta"], "1.00")], ("gama", acc["gama"]))
    assert body["status"] == "committed"


def test_bank_down_aborts_fast_others_unaffected_and_it_comes_back(trio):
    cluster, ana, acc = trio
    cluster["gama"].kill()
    t0 = time.monotonic()
    status, body = ana.transfer("alfa", [("alfa", acc["alfa"], "10.00")], ("gama", acc["gama"]))
    elapsed = time.monotonic() - t0
    assert (body["status"], body["reason"]) == ("aborted", "bank_unreachable"), body
    assert elapsed < 3.0 + 2.5, elapsed  # within the PREPARE TTL (3 s in the tests) plus the lookup of consumers
    status, body = ana.transfer("alfa", [("alfa", acc["alfa"], "10.00")], ("beta", acc["beta"]))
    assert body["status"] == "committed"
    cluster["gama"].start()
    cluster["gama"].wait_healthy()
    status, body = ana.transfer("alfa", [("alfa", acc["alfa"], "10.00")], ("gama", acc["gama"]))
    assert body["status"] == "committed", body
    assert balances(ana, acc) == {"alfa": "80.00", "beta": "110.00", "gama": "110.00"}
    wait_until(lambda: no_holds_anywhere(cluster), 10, "holds released")


def test_paused_participant_answers_no_to_a_prepare_past_its_deadline(trio):
    cluster, ana, acc = trio
    cluster["beta"].pause()
    try:
        status, body = ana.transfer("alfa", [("beta", acc["beta"], "10.00")], ("gama", acc["gama"]))
    finally:
        cluster["beta"].resume()
    assert body["status"] == "aborted" and body["reason"] in ("timeout", "bank_unreachable"), body
    tid = body["id"]
    # Once it runs again, beta refuses the stale PREPARE (if it still finds it in its queue) and
    # takes the ABORT, in whichever order its workers get to them: either way it remembers the
    # abort and holds nothing.
    wait_until(lambda: participation_states(cluster, "beta", tid) == ["aborted"], 15,
               "beta records the abort")
    assert not ledger(cluster, "beta")["holds"]
    assert balances(ana, acc) == {"alfa": "100.00", "beta": "100.00", "gama": "100.00"}


def test_consortium_lookup_masks_other_people_and_names_silent_banks(trio, new_cpf):
    cluster, ana, acc = trio
    carla = Customer(new_cpf(), "Carla Mendes Rocha", ana.urls)
    carla.join("beta")
    carla_beta = carla.open_account("beta")
    _, mine = ana.call("alfa", "GET", "/api/consortium/accounts", expect=200)
    assert sorted((a["bank"], a["number"], a["balance"]) for a in mine["accounts"]) == \
        sorted((b, n, "100.00") for b, n in acc.items())
    _, other = ana.call("alfa", "GET", f"/api/consortium/accounts?cpf={carla.cpf}", expect=200)
    assert [(a["bank"], a["number"]) for a in other["accounts"]] == [("beta", carla_beta)]
    assert other["accounts"][0]["holder"] == "Carla M*** R***"
    assert "balance" not in other["accounts"][0] and "available" not in other["accounts"][0]
    cluster["gama"].kill()
    _, partial = ana.call("alfa", "GET", "/api/consortium/accounts", expect=200)
    assert partial["unreachable_banks"] == ["gama"]
    assert {a["bank"] for a in partial["accounts"]} == {"alfa", "beta"}


@pytest.mark.both_backends
@pytest.mark.parametrize("mode", ["default", "the other"])
def test_concurrent_conflicting_transfers_conserve_money(make_cluster, new_cpf, backend, mode):
    """>= 300 conflicting transfers from 16 threads: total money conserved, no negative balance,
    every transfer all-or-nothing, nothing left in doubt; with the banks' tasks as greenlets and
    as OS threads, on either ledger (by default a SQLite bank runs on greenlets, a PostgreSQL
    one on OS threads; ``BANK_CONCURRENCY`` asks for the other)."""
    default = "threads" if backend.name == "postgres" else "gevent"
    other = "gevent" if default == "threads" else "threads"
    cluster = make_cluster(env={"BANK_CONCURRENCY": other if mode == "the other" else ""})   # "": not inherited
    running_on = "greenlets (gevent)" if (default if mode == "default" else other) == "gevent" else "OS threads"
    assert all(f"; on {running_on}" in b.log_path.read_text() for b in cluster.banks.values())
    urls = {b: p.url for b, p in cluster.banks.items()}
    people = [Customer(new_cpf(), f"Pessoa {i}", urls) for i in range(4)]
    accounts = []  # (person, bank, number)
    for p in people:
        for bank in urls:
            p.join(bank)
            n = p.open_account(bank)
            p.deposit(bank, n, "50.00")
            accounts.append((p, bank, n))
        p.grant_everywhere({b: n for q, b, n in accounts if q is p})
    total_before = 50_00 * len(accounts)
    rng = random.Random(1234)
    outcomes: dict[str, int] = {}
    lock = threading.Lock()

    def one(i: int):
        p = people[i % len(people)]
        mine = [(b, n) for q, b, n in accounts if q is p]
        srcs = rng.sample(mine, rng.choice([1, 2]))
        dest = rng.choice([(b, n) for q, b, n in accounts if (b, n) not in srcs])
        via = rng.choice(list(urls))
        legs = [(b, n, f"{rng.randint(1, 3000) / 100:.2f}") for b, n in srcs]
        status, body = p.transfer(via, legs, dest)
        with lock:
            key = body.get("status") or body.get("code")
            outcomes[key] = outcomes.get(key, 0) + 1

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(320)))
    assert sum(outcomes.values()) == 320
    assert outcomes.get("committed", 0) > 50, outcomes
    assert set(outcomes) <= {"committed", "aborted"}, outcomes
    wait_until(lambda: no_holds_anywhere(cluster), 20, "holds released")
    total_after = 0
    for bank in urls:
        led = ledger(cluster, bank)
        assert all(v >= 0 for v in led["balances"].values())
        assert led["balances"] == {k: led["journal"].get(k, 0) for k in led["balances"]}
        total_after += sum(led["balances"].values())
    assert total_after == total_before
    _assert_atomic(cluster)


def _assert_atomic(cluster) -> None:
    """Every transfer has the same outcome at every bank that knows it, and its entries exist at
    every leg if and only if it committed."""
    states: dict[str, set] = {}
    entries: dict[str, int] = {}
    for bank in cluster.banks:
        led = ledger(cluster, bank)
        for tid, st in led["participations"].items():
            states.setdefault(tid, set()).add(st)
        for tid, st in led["coordinated"].items():
            states.setdefault(tid, set()).add(st)
        for tid, *_ in led["transfer_entries"]:
            entries[tid] = entries.get(tid, 0) + 1
    for tid, sts in states.items():
        assert len(sts) == 1, (tid, sts)
        if sts == {"committed"}:
            assert entries.get(tid, 0) >= 2, tid
        else:
            assert tid not in entries, tid


def test_bank_killed_mid_run_and_restarted_loses_nothing(make_cluster, new_cpf):
    cluster = make_cluster()
    urls = {b: p.url for b, p in cluster.banks.items()}
    people = [Customer(new_cpf(), f"Pessoa {i}", urls) for i in range(3)]
    accounts = []
    for p in people:
        for bank in urls:
            p.join(bank)
            n = p.open_account(bank)
            p.deposit(bank, n, "100.00")
            accounts.append((p, bank, n))
    stop = threading.Event()
    outcomes: list[str] = []
    rng = random.Random(7)

    def client(k: int):
        p = people[k % len(people)]
        mine = [(b, n) for q, b, n in accounts if q is p]
        while not stop.is_set():
            src = rng.choice(mine)
            dest = rng.choice([(b, n) for q, b, n in accounts if (b, n) != src])
            via = rng.choice(["alfa", "gama"])  # beta gets killed; it stays a participant
            try:
                _, body = p.transfer(via, [(src[0], src[1], "3.00")], dest, timeout=30)
                outcomes.append(body.get("status", body.get("code")))
            except OSError:
                outcomes.append("lost")

    threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(outcomes) >= 30, 60, "some transfers before the kill")
        cluster["beta"].kill()
        n = len(outcomes)
        wait_until(lambda: len(outcomes) >= n + 10, 60, "transfers while beta is down")
        cluster["beta"].start()
        cluster["beta"].wait_healthy()
        n = len(outcomes)
        wait_until(lambda: len(outcomes) >= n + 30, 60, "transfers after the restart")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert "committed" in outcomes and "aborted" in outcomes
    wait_until(lambda: no_holds_anywhere(cluster), 30, "holds released")
    wait_until(lambda: all(not ledger(cluster, b)["pending_acks"] for b in urls), 30, "decisions acked")
    total = sum(sum(ledger(cluster, b)["balances"].values()) for b in urls)
    assert total == 100_00 * len(accounts)
    _assert_atomic(cluster)


def test_many_idle_keep_alive_clients_do_not_lock_out_the_next_one(trio):
    """A bank under load holds a keep-alive connection per client: 150 of them, idle, must not
    keep the 151st customer waiting (the HTTP server stopped accepting at 100 connections)."""
    import http.client
    cluster, ana, acc = trio
    bank = cluster["alfa"]
    host, port = "127.0.0.1", int(bank.url.rsplit(":", 1)[1])
    idle = []
    try:
        for _ in range(150):
            c = http.client.HTTPConnection(host, port, timeout=10)
            c.request("GET", "/api/health")
            c.getresponse().read()
            idle.append(c)                      # kept open, as a keep-alive client does
        started = time.monotonic()
        assert ana.balance("alfa", acc["alfa"]) == "100.00"
        assert time.monotonic() - started < 5
    finally:
        for c in idle:
            c.close()
