"""A bank process loses nothing it acknowledged to kill -9, and stops gracefully on SIGTERM
(docs/protocol.md, invariants)."""
from __future__ import annotations

import signal
import threading
import time
from decimal import Decimal

import pytest

from tools.api_client import Customer

pytestmark = pytest.mark.integration


def wait_until(condition, deadline_s: float, what: str):
    end = time.monotonic() + deadline_s
    delay = 0.02
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)
    raise TimeoutError(f"{what} not true after {deadline_s}s")


@pytest.fixture
def alfa(make_cluster):
    cluster = make_cluster(banks=("alfa",))
    return cluster["alfa"]


def test_acknowledged_writes_survive_kill_9(alfa, new_cpf):
    ana = Customer(new_cpf(), "Ana Souza", {"alfa": alfa.url}).join("alfa")
    number = ana.open_account("alfa")
    for _ in range(20):
        ana.deposit("alfa", number, "1.00")
    first = ana.deposit("alfa", number, "100.00", key="dep-before-crash")
    status, _ = ana.withdraw("alfa", number, "5.00")
    assert status == 201
    # acknowledged: now die at once, no goodbye, no flush
    alfa.kill()
    assert alfa.proc.returncode == -signal.SIGKILL

    alfa.start()
    alfa.wait_healthy(30)
    assert ana.balance("alfa", number) == "115.00"   # the session token survived too
    _, st = ana.call("alfa", "GET", f"/api/accounts/{number}/statement", expect=200)
    entries = st["entries"]
    assert [(e["kind"], e["amount"]) for e in entries[:2]] == [("withdrawal", "-5.00"), ("deposit", "100.00")]
    assert len(entries) == 22 and entries[0]["balance_after"] == "115.00"
    # the Idempotency-Key outlived the crash: a retry is answered, not applied again
    again = ana.deposit("alfa", number, "100.00", key="dep-before-crash")
    assert again == first
    assert ana.balance("alfa", number) == "115.00"
    # and the bank keeps working normally after recovery
    ana.deposit("alfa", number, "0.01")
    assert ana.balance("alfa", number) == "115.01"


def test_sigterm_stops_the_bank_gracefully_and_quickly(alfa, new_cpf):
    ana = Customer(new_cpf(), "Ana Souza", {"alfa": alfa.url}).join("alfa")
    number = ana.open_account("alfa")
    ana.deposit("alfa", number, "42.00")

    started = time.monotonic()
    alfa.proc.send_signal(signal.SIGTERM)
    code = alfa.proc.wait(timeout=10)
    took = time.monotonic() - started
    assert code == 0, alfa.tail()
    assert took < 5, f"graceful stop took {took:.1f}s"
    assert alfa.health(timeout=0.5) is None, "nothing answers on the port any more"
    assert "stopped" in alfa.tail()

    alfa.start()
    alfa.wait_healthy(30)
    assert ana.balance("alfa", number) == "42.00"


def test_kill_9_under_load_loses_no_acknowledged_deposit(alfa, new_cpf):
    """Eight clients deposit 1.00 as fast as they can; the bank is killed mid-stream. Every
    deposit that got its 201 is there after the restart; at most the ones in flight are extra."""
    ana = Customer(new_cpf(), "Ana Souza", {"alfa": alfa.url}).join("alfa")
    number = ana.open_account("alfa")
    acked = [0] * 8
    stop = threading.Event()

    def client(i):
        while not stop.is_set():
            try:
                status, _ = ana.call("alfa", "POST", f"/api/accounts/{number}/deposits", {"amount": "1.00"},
                                     timeout=5)
            except OSError:
                return  # the bank is gone
            if status == 201:
                acked[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    wait_until(lambda: sum(acked) >= 40, 30, "forty acknowledged deposits")
    alfa.kill()
    stop.set()
    for t in threads:
        t.join(10)
    total_acked = sum(acked)

    alfa.start()
    alfa.wait_healthy(30)
    balance = Decimal(ana.balance("alfa", number))
    assert total_acked <= balance <= total_acked + len(threads), (total_acked, balance)


def test_sigusr1_puts_every_task_of_the_bank_in_its_log(alfa):
    """An operator's look inside a bank that seems stuck: kill -USR1 writes every OS thread's stack
    (even while a C call holds the bank) and, on greenlets, every greenlet's; the bank goes on."""
    alfa.proc.send_signal(signal.SIGUSR1)
    log = lambda: alfa.log_path.read_text(errors="replace")   # noqa: E731
    wait_until(lambda: "storage/batch.py" in log() and "coordinator.py" in log() and "<Greenlet" in log(), 10,
               "the greenlets' stacks: the writer's, the coordinator's")
    assert "Current thread" in log() or "Thread 0x" in log()   # faulthandler's, first
    assert alfa.health(timeout=5) is not None
