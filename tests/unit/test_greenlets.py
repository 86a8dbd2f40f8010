"""A bank process on gevent's greenlets (bank_node/concurrency.py): what must not block them all.

On greenlets every task of the bank shares one OS thread, so a long C call made in one of them
would stop the others (HTTP requests, the broker's I/O, the coordinator) for its duration. These
tests run the real code in a child process that patches itself as ``python -m bank_node`` does,
and count how often a ticking greenlet got to run while the long call was in progress: never, if
the call blocked the thread.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bank_node import concurrency

ROOT = Path(__file__).resolve().parents[2]


def run_patched(body: str, tmp_path: Path) -> dict:
    """Run ``body`` in a fresh interpreter on greenlets; it prints one JSON object."""
    script = tmp_path / "child.py"
    script.write_text("from bank_node import concurrency\nconcurrency.patch('gevent')\n" + textwrap.dedent(body))
    out = subprocess.run([sys.executable, str(script)], cwd=str(ROOT), capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


TICKER = """
import gevent, json
ticks = [0]
def tick():
    while True:
        ticks[0] += 1
        gevent.sleep(0.001)
gevent.spawn(tick)
gevent.sleep(0.01)
"""


def test_the_mode_comes_from_the_command_line_then_the_environment_then_the_ledger(tmp_path, monkeypatch):
    monkeypatch.delenv(concurrency.ENV, raising=False)
    monkeypatch.delenv("BANK_DATABASE_URL", raising=False)
    cfg = tmp_path / "c.yml"
    cfg.write_text("banks: [{id: alfa, name: Banco Alfa, port: 1},\n"
                   "        {id: beta, name: Banco Beta, port: 2, storage: 'postgresql://beta@db/beta'}]\n")
    bank = lambda b: ["--config", str(cfg), "--bank", b]   # noqa: E731
    assert concurrency.requested(bank("alfa")) == "gevent"            # SQLite: greenlets
    assert concurrency.requested(bank("beta")) == "threads"           # PostgreSQL: OS threads
    assert concurrency.requested([f"--config={cfg}", "--bank=beta"]) == "threads"
    assert concurrency.requested(["--config", str(tmp_path / "none.yml"), "--bank", "alfa"]) == "gevent"
    monkeypatch.setenv("BANK_DATABASE_URL", "postgresql://alfa@db/alfa")
    assert concurrency.requested(bank("alfa")) == "threads"           # the URL that wins over the file
    monkeypatch.delenv("BANK_DATABASE_URL")
    monkeypatch.setenv(concurrency.ENV, "threads")
    assert concurrency.requested(bank("alfa")) == "threads"
    monkeypatch.setenv(concurrency.ENV, "gevent")
    assert concurrency.requested(bank("beta")) == "gevent"            # asked for: PostgreSQL on greenlets
    assert concurrency.requested([*bank("alfa"), "--concurrency", "threads"]) == "threads"
    assert concurrency.requested([*bank("beta"), "--concurrency=gevent"]) == "gevent"


def test_the_bank_asks_for_its_mode_once(monkeypatch):
    """``python -m bank_node`` resolves the mode before patching; its own parser then takes that
    answer instead of reading the consortium file again."""
    monkeypatch.setattr(concurrency, "_patched_as", "threads")
    monkeypatch.setattr(concurrency, "_ledger_is_postgres", lambda argv: pytest.fail("file read again"))
    monkeypatch.setenv(concurrency.ENV, "gevent")
    assert concurrency.requested() == "threads"
    assert concurrency.requested(["--bank", "alfa"]) == "gevent"   # an explicit command line is read


def test_without_greenlets_off_loop_is_a_plain_call():
    import threading
    assert not concurrency.active()   # unit tests run the bank on OS threads: nothing is patched
    assert concurrency.off_loop(lambda a, b: (a + b, threading.get_ident()), 1, 2) == (3, threading.get_ident())
    with pytest.raises(ZeroDivisionError):
        concurrency.off_loop(lambda: 1 / 0)


def test_off_loop_runs_on_another_os_thread_while_the_greenlets_go_on(tmp_path):
    got = run_patched(TICKER + """
import hashlib
from gevent import monkey
os_thread = monkey.get_original("_thread", "get_ident")
def slow(n):
    hashlib.scrypt(b"x" * 64, salt=b"s" * 16, n=2 ** 14, r=8, p=4, maxmem=2 ** 26)   # ~100 ms of C
    return n * 2, os_thread()
before = ticks[0]
value, where = concurrency.off_loop(slow, 21)
during = ticks[0] - before
before = ticks[0]
slow(1)                                   # the same call, made here: the thread is blocked
blocked = ticks[0] - before
try:
    concurrency.off_loop(lambda: 1 / 0)
    raised = None
except ZeroDivisionError as e:
    raised = type(e).__name__
print(json.dumps({"active": concurrency.active(), "value": value, "other_thread": where != os_thread(),
                  "during": during, "blocked": blocked, "raised": raised}))
""", tmp_path)
    assert got["active"] and got["value"] == 42 and got["other_thread"] and got["raised"] == "ZeroDivisionError"
    assert got["blocked"] == 0, got      # what the ticker shows for a call that holds the thread
    assert got["during"] > 0, got        # off_loop: the other greenlets ran meanwhile


def test_password_hashing_leaves_the_bank_running(tmp_path):
    """Argon2 (~30 ms a hash at the default cost) for a registration and a login runs on an OS
    thread of its own, not on the one every greenlet of the bank shares."""
    got = run_patched(f"""
import json, pathlib
from gevent import monkey
from bank_node.config import ConsortiumConfig
from bank_node.node import BankNode
from argon2 import PasswordHasher
os_thread = monkey.get_original("_thread", "get_ident")
cfg = ConsortiumConfig.model_validate({{
    "consortium": "unit", "broker_url": "amqp://guest:guest@127.0.0.1:1/%2F",
    "banks": [{{"id": "alfa", "name": "Banco Alfa", "port": 18001}}]}})
node = BankNode(cfg, "alfa", pathlib.Path({str(tmp_path / "alfa")!r}), connect_broker=False)
calls = []
main = os_thread()

def watched(name):   # argon2's own method, wherever in the bank it is called from
    real = getattr(PasswordHasher, name)
    def call(self, *args):
        calls.append((name, os_thread() != main))
        return real(self, *args)
    return call

PasswordHasher.hash, PasswordHasher.verify = watched("hash"), watched("verify")
cpf = "52998224725"
node.banking.register(cpf, "Ana Souza", "senha-muito-boa")
node.banking.login(cpf, "senha-muito-boa")
try:
    node.banking.login(cpf, "senha-errada-demais")
except Exception as e:
    refused = type(e).__name__
node.stop()
print(json.dumps({{"calls": calls, "refused": refused}}))
""", tmp_path)
    assert got["refused"] == "Unauthorized"
    assert got["calls"] == [["hash", True], ["verify", True], ["verify", True]], got


def test_a_durable_commit_waits_for_a_slow_disk_on_an_os_thread_of_its_own(tmp_path):
    """On a disk whose fsyncs take milliseconds, a group commit's COMMIT is made away from the
    shared thread. A read, or a write the protocol can redo (``durable=False``), commits in place."""
    got = run_patched(f"""
import json, pathlib
from gevent import monkey
from bank_node.storage.sqlite import SqliteStore
os_thread = monkey.get_original("_thread", "get_ident")
main = os_thread()
store = SqliteStore(pathlib.Path({str(tmp_path / "ledger.sqlite3")!r}))
concurrency._disk_recent_s = 0.005   # the recent fsyncs took 5 ms
commits = []
store._conn().set_trace_callback(lambda sql: commits.append(os_thread() != main) if sql == "COMMIT" else None)
with store.transaction() as tx:
    tx.insert_customer("52998224725", "Ana Souza", "hash", 0.0)
with store.transaction(durable=False) as tx:
    tx.insert_customer("11144477735", "Bia Souza", "hash", 0.0)
with store.transaction(write=False) as tx:
    names = sorted(c["name"] for c in (tx.get_customer("52998224725"), tx.get_customer("11144477735")))
print(json.dumps({{"elsewhere": commits, "names": names}}))
""", tmp_path)
    assert got["names"] == ["Ana Souza", "Bia Souza"]
    assert got["elsewhere"] == [True, False, False], got


def test_a_disk_wait_is_made_in_place_while_the_disk_is_quick_and_elsewhere_once_it_is_slow(tmp_path):
    """Handing a wait to an OS thread costs more CPU than a quick fsync: while the recent disk
    waits were quick, one is made in place. One slow wait holds the bank once; the next ones go
    to the disk threads (the other greenlets run meanwhile) until the disk is quick again."""
    got = run_patched(TICKER + """
from gevent import monkey
os_thread = monkey.get_original("_thread", "get_ident")
real_sleep = monkey.get_original("time", "sleep")
main = os_thread()
def disk(seconds):
    real_sleep(seconds)
    return os_thread() != main
path = [concurrency.off_loop(disk, 0.0002, disk=True) for _ in range(5)]   # quick: in place
path.append(concurrency.off_loop(disk, 0.05, disk=True))                  # turns slow: held once
before = ticks[0]
path.append(concurrency.off_loop(disk, 0.05, disk=True))                  # slow: elsewhere
during = ticks[0] - before
while len(path) < 60 and path[-1]:
    path.append(concurrency.off_loop(disk, 0.0002, disk=True))            # quick again: back in place
print(json.dumps({"path": path, "during": during}))
""", tmp_path)
    path = got["path"]
    assert path[:6] == [False] * 6 and path[6] is True, path
    assert got["during"] > 0, got      # the slow wait on its thread left the greenlets running
    assert path[-1] is False and len(path) < 60, path


def test_a_busy_bank_does_not_take_a_quick_disk_for_a_slow_one(tmp_path):
    """A disk wait made on an OS thread ends by waiting for the interpreter lock, which a busy
    bank's greenlets hold for up to the switch interval: timed there, a quick disk looks slow
    for as long as the bank is busy. A bank whose waits went to the threads comes back in place
    once the disk is quick, however busy its greenlets are."""
    got = run_patched("""
import gevent, json
from gevent import monkey
os_thread = monkey.get_original("_thread", "get_ident")
real_sleep = monkey.get_original("time", "sleep")
main = os_thread()
def busy():                        # greenlets with CPU work always ready to run
    while True:
        sum(range(20000))
        gevent.sleep(0)
gevent.spawn(busy)
gevent.sleep(0.01)
def disk(seconds):
    real_sleep(seconds)
    return os_thread() != main
concurrency._disk_recent_s = 0.005   # the disk was slow a moment ago
path = []
while len(path) < 200 and (len(path) < 2 or path[-1]):
    path.append(concurrency.off_loop(disk, 0.0002, disk=True))
print(json.dumps({"path": path}))
""", tmp_path)
    path = got["path"]
    assert path[0] is True, path                     # slow a moment ago: on a thread
    assert path[-1] is False and len(path) <= concurrency.PROBE_EVERY + 2, path


def test_an_unknown_mode_stops_the_bank_at_start(tmp_path, monkeypatch, capsys):
    from bank_node.__main__ import main
    cfg = tmp_path / "c.yml"
    cfg.write_text("banks: [{id: alfa, name: Banco Alfa, port: 1}]\n")
    monkeypatch.setenv(concurrency.ENV, "fibers")
    assert main(["--config", str(cfg), "--bank", "alfa", "--data-dir", str(tmp_path / "d")]) == 2
    assert "BANK_CONCURRENCY must be one of gevent, threads, not 'fibers'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--config", str(cfg), "--bank", "alfa", "--concurrency", "fibers"])
    assert "invalid choice: 'fibers'" in capsys.readouterr().err


def test_a_commit_does_not_queue_behind_password_hashes(tmp_path):
    """A crowd of logins fills gevent's thread pool with Argon2 hashes: a transfer's commit on a
    slow disk still gets an OS thread at once (the disk waits have threads of their own)."""
    got = run_patched(f"""
import hashlib, json, pathlib, gevent
from bank_node.storage.sqlite import SqliteStore
store = SqliteStore(pathlib.Path({str(tmp_path / "ledger.sqlite3")!r}))
concurrency._disk_recent_s = 0.005   # a slow disk: the commit goes to an OS thread
pool = gevent.get_hub().threadpool
finished = []
def cpu_bound(i):
    hashlib.scrypt(b"x" * 64, salt=b"s" * 16, n=2 ** 14, r=8, p=8, maxmem=2 ** 26)   # ~200 ms of C
    finished.append(i)
crowd = [gevent.spawn(concurrency.off_loop, cpu_bound, i) for i in range(pool.maxsize)]
gevent.sleep(0.05)                                   # every thread of the pool is busy hashing
with store.transaction() as tx:
    tx.insert_customer("52998224725", "Ana Souza", "hash", 0.0)
hashes_done_at_commit = len(finished)
gevent.joinall(crowd)
print(json.dumps({{"at_commit": hashes_done_at_commit, "busy": pool.maxsize, "all": len(finished)}}))
""", tmp_path)
    assert got["all"] == got["busy"]
    assert got["at_commit"] == 0, got    # it did not wait for a hash to finish and free a thread
