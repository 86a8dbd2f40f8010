"""A Jepsen-style bank workload with a nemesis, and a checker of every invariant.

    python -m bank_node.chaos --seed 7 --duration 60 [--json summary.json]

Starts its own consortium (three banks, its own broker namespace, ports and data folder),
creates customers with an account in every bank, and runs concurrent clients that issue
multi-leg transfers, deposits and withdrawals while a nemesis injects faults: SIGKILL and
restart of a bank, SIGSTOP/SIGCONT pauses longer than the PREPARE TTL, forced closing of the
banks' broker connections and a broker restart. Once the faults heal, the checker audits
CONTRACT section 5 from the banks' own ledgers:

- conservation: total money == deposits - withdrawals, where a deposit or withdrawal whose
  reply was lost first only bounds the total ("may or may not have happened"), then is
  retried with its Idempotency-Key, after which the total must be exact;
- no negative balance or available amount, no hold left, every journal sums to its balance;
- atomicity: every transfer has one outcome at every bank, with an entry at every leg if it
  committed and at none otherwise; what a client was told committed is applied, what it was
  told aborted is not;
- liveness: nothing in doubt 30 seconds after healing.

It prints a summary table and exits non-zero on any violation. The seed fixes every random
choice of the clients and the nemesis (timings still vary with the machine).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from broker.errors import BrokerError
from broker.provision import delete_namespace, rabbitmqctl

from .client import Customer
from .cluster import Cluster, free_ports, write_config
from .domain.documents import make_cpf

BANK_IDS = ["alfa", "beta", "gama", "delta", "epsilon"]
LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672/%2F"
QUIESCE_LIMIT_S = 30.0


# ----------------------------------------------------------------------------------- ledgers
def read_ledger(db_path: Path) -> dict:
    """A read-only snapshot of one bank's SQLite ledger, for the checker."""
    c = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        q = lambda sql: c.execute(sql).fetchall()  # noqa: E731
        return {
            "balances": dict(q("SELECT number, balance FROM accounts")),
            "journal": dict(q("SELECT number, SUM(amount) FROM entries GROUP BY number")),
            "holds": q("SELECT transfer_id, number, amount FROM holds"),
            "participations": dict(q("SELECT transfer_id, state FROM participations")),
            "coordinated": dict(q("SELECT transfer_id, state FROM coordinated")),
            "pending_acks": [r[0] for r in q("SELECT transfer_id FROM coordinated WHERE pending_acks > 0")],
            "transfer_entries": q("SELECT transfer_id, number, kind, amount FROM entries WHERE transfer_id IS NOT NULL"),
            "deposits": q("SELECT COALESCE(SUM(amount), 0) FROM entries WHERE kind = 'deposit'")[0][0],
            "withdrawals": q("SELECT COALESCE(-SUM(amount), 0) FROM entries WHERE kind = 'withdrawal'")[0][0],
        }
    finally:
        c.close()


# ----------------------------------------------------------------------------------- history
@dataclass
class Op:
    kind: str                 # transfer | deposit | withdrawal
    who: str
    via: str
    amount: int               # cents (for a transfer: the total)
    outcome: str = "unknown"  # committed | aborted | pending | ok | refused | unknown
    transfer_id: str | None = None
    legs: list = field(default_factory=list)   # [(bank, account, cents, direction)]
    account: str | None = None
    key: str | None = None
    resolved: str | None = None  # for a lost reply: what the coordinator says afterwards


class History:
    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.lock = threading.Lock()

    def add(self, op: Op) -> None:
        with self.lock:
            self.ops.append(op)

    def count(self) -> Counter:
        with self.lock:
            return Counter(f"{o.kind}:{o.outcome}" for o in self.ops)


# ----------------------------------------------------------------------------------- the run
class Chaos:
    def __init__(self, seed: int, duration: float, banks: int, clients: int, people: int,
                 faults: list[str], amqp_url: str, workdir: Path, ttl_ms: int, quiet: bool):
        self.seed = seed
        self.duration = duration
        self.rng = random.Random(seed)
        self.clients = clients
        self.faults = faults
        self.amqp_url = amqp_url
        self.workdir = workdir
        self.ttl_ms = ttl_ms
        self.quiet = quiet
        self.namespace = f"chaos-{seed}-{uuid.uuid4().hex[:6]}"
        self.bank_ids = BANK_IDS[:banks]
        ports = free_ports(banks)
        cfg = write_config(workdir / "consorcio.yml", consortium=self.namespace, broker_url=amqp_url,
                           banks=[{"id": b, "name": f"Banco {b.capitalize()}", "port": p}
                                  for b, p in zip(self.bank_ids, ports)],
                           timeouts={"prepare_ttl_ms": ttl_ms, "decision_resend_ms": 500,
                                     "status_query_ms": 500, "retry_cap_ms": 2000, "apply_wait_ms": 500},
                           security={"argon2_time_cost": 1, "argon2_memory_kib": 1024,
                                     "allow_weak_hashing_for_tests": True})
        self.cluster = Cluster(cfg, workdir / "data")
        self.urls = {b: p.url for b, p in self.cluster.banks.items()}
        self.people = [Customer(make_cpf(f"{300000000 + 7919 * i:09d}"), f"Cliente {i}", self.urls)
                       for i in range(people)]
        self.accounts: list[tuple[Customer, str, str]] = []
        self.history = History()
        self.fault_log: list[tuple[float, str]] = []
        self.initial = 0
        self.stop_clients = threading.Event()
        self.t0 = time.monotonic()

    def say(self, msg: str) -> None:
        if not self.quiet:
            print(f"[{time.monotonic() - self.t0:6.1f}s] {msg}", flush=True)

    # setup ---------------------------------------------------------------------------------
    def setup(self) -> None:
        self.cluster.start()
        for p in self.people:
            for bank in self.bank_ids:
                p.join(bank)
                n = p.open_account(bank)
                p.deposit(bank, n, "200.00")
                self.initial += 200_00
                self.accounts.append((p, bank, n))
        self.say(f"{len(self.bank_ids)} banks, {len(self.people)} customers, {len(self.accounts)} accounts, "
                 f"namespace {self.namespace}")

    # clients -------------------------------------------------------------------------------
    def client(self, k: int) -> None:
        rng = random.Random(self.seed * 1000 + k)
        while not self.stop_clients.is_set():
            r = rng.random()
            if r < 0.7:
                self.transfer(rng)
            elif r < 0.85:
                self.cash(rng, "deposit")
            else:
                self.cash(rng, "withdrawal")

    def transfer(self, rng: random.Random) -> None:
        p = rng.choice(self.people)
        mine = [(b, n) for q, b, n in self.accounts if q is p]
        sources = rng.sample(mine, rng.choice([1, 1, 2, 3]))
        dest = rng.choice([(b, n) for q, b, n in self.accounts if (b, n) not in sources])
        amounts = [rng.randint(100, 6000) for _ in sources]
        op = Op("transfer", p.cpf, rng.choice(self.bank_ids), sum(amounts), transfer_id=str(uuid.uuid4()),
                legs=[(b, n, a, "debit") for (b, n), a in zip(sources, amounts)] + [(dest[0], dest[1], sum(amounts), "credit")])
        try:
            status, body = p.transfer(op.via, [(b, n, f"{a / 100:.2f}") for (b, n), a in zip(sources, amounts)], dest,
                                      transfer_id=op.transfer_id, timeout=15)
            op.outcome = body.get("status", "unknown") if status in (201, 202) else \
                ("refused" if 400 <= status < 500 else "unknown")
        except (OSError, http.client.HTTPException, ValueError):
            op.outcome = "unknown"
        self.history.add(op)

    def cash(self, rng: random.Random, kind: str) -> None:
        p, bank, n = rng.choice(self.accounts)
        cents = rng.randint(100, 5000)
        op = Op(kind, p.cpf, bank, cents, account=n, key=str(uuid.uuid4()))
        try:
            status, body = p.call(bank, "POST", f"/api/accounts/{n}/{kind}s", {"amount": f"{cents / 100:.2f}"},
                                  key=op.key, timeout=15)
            op.outcome = "ok" if status == 201 else ("refused" if 400 <= status < 500 else "unknown")
        except (OSError, http.client.HTTPException, ValueError):
            op.outcome = "unknown"
        self.history.add(op)

    # nemesis -------------------------------------------------------------------------------
    def nemesis(self, until: float) -> None:
        rng = random.Random(self.seed * 7 + 1)
        while time.monotonic() < until - 2:
            wait = rng.uniform(1.5, 3.5)
            if self.stop_clients.wait(wait):
                return
            fault = rng.choice(self.faults)
            victim = rng.choice(self.bank_ids)
            t = time.monotonic() - self.t0
            try:
                if fault == "kill":
                    self.fault_log.append((t, f"kill -9 {victim}"))
                    self.say(f"nemesis: kill -9 {victim}")
                    self.cluster[victim].kill()
                    time.sleep(rng.uniform(0.5, 2.0))  # noqa: the fault's own duration, not a wait
                    self.cluster[victim].start()
                    self.cluster[victim].wait_healthy(60, need_broker=False)
                elif fault == "pause":
                    pause = self.ttl_ms / 1000 + rng.uniform(0.5, 2.0)
                    self.fault_log.append((t, f"pause {victim} {pause:.1f}s"))
                    self.say(f"nemesis: SIGSTOP {victim} for {pause:.1f}s")
                    self.cluster[victim].pause()
                    time.sleep(pause)  # noqa: the fault's own duration
                    self.cluster[victim].resume()
                elif fault == "connections":
                    closed = close_connections(self.namespace)
                    self.fault_log.append((t, f"close {closed} broker connections"))
                    self.say(f"nemesis: closed {closed} broker connections")
                elif fault == "broker":
                    self.fault_log.append((t, "broker restart"))
                    self.say("nemesis: broker restart (stop_app/start_app)")
                    restart_broker()
            except Exception as e:  # noqa: BLE001 - a failed fault is reported, the run goes on
                self.fault_log.append((t, f"{fault} failed: {e}"))
                self.say(f"nemesis: {fault} failed: {e}")

    def heal(self) -> None:
        ensure_broker_running()
        for b in self.cluster.banks.values():
            b.resume()
            if not b.alive:
                b.start()
        for b in self.cluster.banks.values():
            b.wait_healthy(60)

    # run -----------------------------------------------------------------------------------
    def run(self) -> dict:
        self.setup()
        until = time.monotonic() + self.duration
        threads = [threading.Thread(target=self.client, args=(k,), daemon=True) for k in range(self.clients)]
        for t in threads:
            t.start()
        nem = threading.Thread(target=self.nemesis, args=(until,), daemon=True)
        nem.start()
        while time.monotonic() < until:
            time.sleep(min(5.0, max(0.0, until - time.monotonic())))  # noqa: progress line cadence
            c = self.history.count()
            self.say(f"progress: {sum(c.values())} operations "
                     f"({c['transfer:committed']} committed, {c['transfer:aborted']} aborted, "
                     f"{sum(v for k, v in c.items() if k.endswith(':unknown'))} unknown), "
                     f"{len(self.fault_log)} faults")
        nem.join(120)
        self.say("healing: every bank running, broker up")
        self.heal()
        self.stop_clients.set()
        for t in threads:
            t.join(60)
        healed_at = time.monotonic()
        quiet_after = self.wait_quiescent(healed_at)
        return self.check(quiet_after)

    def ledgers(self) -> dict[str, dict]:
        return {b: read_ledger(self.cluster[b].data_dir / f"{b}.sqlite3") for b in self.bank_ids}

    def wait_quiescent(self, since: float) -> float | None:
        """Seconds until nothing is in doubt (no hold, no prepared leg, no undecided or
        unacknowledged transfer), or None if that takes longer than the limit."""
        while time.monotonic() - since < QUIESCE_LIMIT_S:
            led = self.ledgers()
            if all(not l["holds"] and not l["pending_acks"] and "prepared" not in l["participations"].values()
                   and "preparing" not in l["coordinated"].values() for l in led.values()):
                return time.monotonic() - since
            time.sleep(0.2)  # noqa: polling a condition with a deadline
        return None

    # checker -------------------------------------------------------------------------------
    def check(self, quiet_after: float | None) -> dict:
        verdicts: dict[str, tuple[bool, str]] = {}
        led = self.ledgers()
        ops = self.history.ops
        # Resolve transfers whose reply was lost by asking their coordinator.
        for op in ops:
            if op.kind == "transfer" and op.outcome in ("unknown", "pending"):
                p = next(q for q in self.people if q.cpf == op.who)
                status, body = p.call(op.via, "GET", f"/api/transfers/{op.transfer_id}")
                op.resolved = body.get("status") if status == 200 else "never_started"
        # Conservation, first as bounds with the uncertain cash operations.
        total = sum(sum(l["balances"].values()) for l in led.values())
        sure_dep = sum(o.amount for o in ops if o.kind == "deposit" and o.outcome == "ok")
        sure_wd = sum(o.amount for o in ops if o.kind == "withdrawal" and o.outcome == "ok")
        maybe_dep = sum(o.amount for o in ops if o.kind == "deposit" and o.outcome == "unknown")
        maybe_wd = sum(o.amount for o in ops if o.kind == "withdrawal" and o.outcome == "unknown")
        low = self.initial + sure_dep - sure_wd - maybe_wd
        high = self.initial + sure_dep - sure_wd + maybe_dep
        verdicts["conservation (bounds)"] = (low <= total <= high,
                                             f"total {total / 100:.2f} within [{low / 100:.2f}, {high / 100:.2f}]")
        journal_dep = sum(l["deposits"] for l in led.values())
        journal_wd = sum(l["withdrawals"] for l in led.values())
        verdicts["conservation (ledger)"] = (total == journal_dep - journal_wd,
                                             f"total {total / 100:.2f} == deposits - withdrawals in the journals "
                                             f"{(journal_dep - journal_wd) / 100:.2f}")
        # Then exact: replay every uncertain cash operation with its Idempotency-Key.
        retried = 0
        for op in ops:
            if op.kind in ("deposit", "withdrawal") and op.outcome == "unknown":
                p = next(q for q in self.people if q.cpf == op.who)
                status, _ = p.call(op.via, "POST", f"/api/accounts/{op.account}/{op.kind}s",
                                   {"amount": f"{op.amount / 100:.2f}"}, key=op.key)
                op.outcome = "ok" if status == 201 else "refused"
                retried += 1
        led = self.ledgers()
        total = sum(sum(l["balances"].values()) for l in led.values())
        expected = self.initial + sum(o.amount for o in ops if o.kind == "deposit" and o.outcome == "ok") \
            - sum(o.amount for o in ops if o.kind == "withdrawal" and o.outcome == "ok")
        verdicts["conservation (exact)"] = (total == expected,
                                            f"total {total / 100:.2f} == initial + deposits - withdrawals "
                                            f"{expected / 100:.2f} after retrying {retried} lost replies")
        # No overdraft; journals add up; no hold.
        negative = [(b, n, v) for b, l in led.items() for n, v in l["balances"].items() if v < 0]
        verdicts["no negative balance"] = (not negative, f"{len(negative)} negative")
        mismatched = [(b, n) for b, l in led.items() for n, v in l["balances"].items() if l["journal"].get(n, 0) != v]
        verdicts["statements sum to balances"] = (not mismatched, f"{len(mismatched)} accounts differ")
        holds = sum(len(l["holds"]) for l in led.values())
        verdicts["no hold left"] = (holds == 0, f"{holds} holds")
        # Atomicity and agreement.
        states: dict[str, set] = {}
        entries: Counter = Counter()
        for l in led.values():
            for tid, st in list(l["participations"].items()) + list(l["coordinated"].items()):
                states.setdefault(tid, set()).add(st)
            for tid, *_ in l["transfer_entries"]:
                entries[tid] += 1
        split = [t for t, s in states.items() if len(s) > 1]
        verdicts["one outcome per transfer"] = (not split, f"{len(split)} transfers with split outcomes")
        partial, wrong = [], []
        for op in ops:
            if op.kind != "transfer":
                continue
            n = entries.get(op.transfer_id, 0)
            if n not in (0, len(op.legs)):
                partial.append(op.transfer_id)
            final = op.resolved or op.outcome
            if op.outcome == "committed" and n != len(op.legs):
                wrong.append((op.transfer_id, "reported committed, not applied"))
            if op.outcome == "aborted" and n != 0:
                wrong.append((op.transfer_id, "reported aborted, applied"))
            if final == "committed" and n != len(op.legs):
                wrong.append((op.transfer_id, "committed at the coordinator, not applied"))
        verdicts["atomicity (all legs or none)"] = (not partial, f"{len(partial)} partially applied")
        verdicts["reported outcomes hold"] = (not wrong, f"{len(wrong)} contradictions" + (f": {wrong[:3]}" if wrong else ""))
        doubt = {b: {"holds": len(l["holds"]), "unacknowledged": len(l["pending_acks"]),
                     "prepared": sum(1 for v in l["participations"].values() if v == "prepared"),
                     "preparing": sum(1 for v in l["coordinated"].values() if v == "preparing")}
                 for b, l in led.items()}
        doubt = {b: {k: v for k, v in d.items() if v} for b, d in doubt.items()}
        doubt = {b: d for b, d in doubt.items() if d}
        verdicts["nothing in doubt 30 s after healing"] = (
            quiet_after is not None,
            f"quiet after {quiet_after:.1f}s" if quiet_after is not None else f"still in doubt: {doubt}")
        c = Counter()
        for op in ops:
            c[f"{op.kind}: {op.outcome}" + (f" -> {op.resolved}" if op.resolved else "")] += 1
        return {
            "seed": self.seed, "duration_s": self.duration, "namespace": self.namespace,
            "operations": len(ops), "by_outcome": dict(sorted(c.items())),
            "faults": [f"{t:.1f}s {f}" for t, f in self.fault_log],
            "verdicts": {k: {"ok": ok, "detail": d} for k, (ok, d) in verdicts.items()},
            "ok": all(ok for ok, _ in verdicts.values()),
        }

    def close(self) -> None:
        self.cluster.stop()
        delete_namespace(self.amqp_url, self.namespace, self.bank_ids)


# ----------------------------------------------------------------------------------- broker faults
BROKER_NODE: list[str | None] = [None]  # the rabbitmqctl node of the run's broker (None: the default)


def _rabbitmqctl(*args: str, timeout: float = 60) -> str:
    return rabbitmqctl(list(args), BROKER_NODE[0], timeout)


def close_connections(namespace: str) -> int:
    """Close this consortium's broker connections only (their connection_name starts with the
    namespace), so other consortia on the same broker are left alone."""
    rows = _rabbitmqctl("list_connections", "pid", "client_properties")
    closed = 0
    for line in rows.splitlines():
        if f'"connection_name","{namespace}:' in line:
            pid = line.split("\t", 1)[0].strip()
            try:
                _rabbitmqctl("close_connection", pid, "chaos nemesis")
                closed += 1
            except BrokerError:
                pass
    return closed


def restart_broker() -> None:
    _rabbitmqctl("stop_app")
    _rabbitmqctl("start_app")


def ensure_broker_running() -> None:
    if shutil.which("rabbitmqctl") is None:
        return
    try:
        _rabbitmqctl("await_startup", timeout=120)
    except BrokerError:
        _rabbitmqctl("start_app")


class PrivateBroker:
    """A RabbitMQ node of the run's own (its own name, ports and data), so that restarting
    "the broker" disturbs nobody else on this machine. Needs rabbitmq-server installed; the
    node runs as the rabbitmq user, as Debian's package sets it up."""

    def __init__(self) -> None:
        # Its own folder under /tmp: the rabbitmq user must be able to reach it.
        self.dir = Path(tempfile.mkdtemp(prefix="consorcio-rmq-"))
        self.port, self.dist_port = free_ports(2)
        self.node = f"chaos{os.getpid()}{uuid.uuid4().hex[:4]}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def start(self, deadline_s: float = 90) -> "PrivateBroker":
        if shutil.which("rabbitmq-server") is None:
            raise RuntimeError("rabbitmq-server is not installed")
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(self.dir)], capture_output=True)
        env = {**os.environ, "RABBITMQ_NODENAME": self.node, "RABBITMQ_DIST_PORT": str(self.dist_port),
               "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
               "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"), "RABBITMQ_LOG_BASE": str(self.dir / "log"),
               "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "plugins"),
               "RABBITMQ_PID_FILE": str(self.dir / "pid")}
        subprocess.run(["rabbitmq-server", "-detached"], env=env, capture_output=True, timeout=60, cwd=str(self.dir))
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            out = subprocess.run(["rabbitmqctl", "-q", "-n", self.node, "await_startup", "--timeout", "10"],
                                 capture_output=True, text=True)
            if out.returncode == 0:
                return self
            time.sleep(0.5)  # noqa: the node is still booting; polled with a deadline
        raise RuntimeError(f"private RabbitMQ node {self.node} did not start (logs in {self.dir / 'log'})")

    def stop(self) -> None:
        subprocess.run(["rabbitmqctl", "-q", "-n", self.node, "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


# ----------------------------------------------------------------------------------- CLI
def print_summary(s: dict) -> None:
    print()
    print(f"Chaos run: seed {s['seed']}, {s['duration_s']:.0f}s, {s['operations']} operations, "
          f"{len(s['faults'])} faults")
    print(f"{'operation: outcome':<48} {'count':>6}")
    for k, v in s["by_outcome"].items():
        print(f"  {k:<46} {v:>6}")
    print("faults injected:")
    for f in s["faults"]:
        print(f"  {f}")
    print(f"{'invariant':<40} verdict  detail")
    for k, v in s["verdicts"].items():
        print(f"  {k:<38} {'PASS' if v['ok'] else 'FAIL':<7}  {v['detail']}")
    print("RESULT:", "all invariants hold" if s["ok"] else "VIOLATION")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bank_node.chaos", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--duration", type=float, default=60, help="seconds of faults and load (default 60)")
    ap.add_argument("--banks", type=int, default=3, choices=range(2, len(BANK_IDS) + 1))
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--people", type=int, default=4)
    ap.add_argument("--faults", default="kill,pause,connections,broker",
                    help="comma-separated: kill, pause, connections, broker (default: all)")
    ap.add_argument("--ttl-ms", type=int, default=1500, help="PREPARE TTL of the run's consortium")
    ap.add_argument("--broker-node", help="rabbitmqctl node name of the broker at AMQP_URL, whose restart "
                    "is a fault. Without it, a run with the broker fault starts a private RabbitMQ node of "
                    "its own, so that no other user of this machine's broker is disturbed")
    ap.add_argument("--json", help="write the summary as JSON to this file")
    ap.add_argument("--workdir", help="keep the run's config, data and logs here (default: a temp dir, deleted)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    faults = [f for f in args.faults.split(",") if f]
    bad = set(faults) - {"kill", "pause", "connections", "broker"}
    if bad:
        ap.error(f"unknown faults: {', '.join(sorted(bad))}")
    if any(f in faults for f in ("connections", "broker")) and shutil.which("rabbitmqctl") is None:
        ap.error("the connections and broker faults need rabbitmqctl on this machine (or use --faults kill,pause)")
    url = os.environ.get("AMQP_URL") or LOCAL_AMQP
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="consorcio-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    private = None
    if args.broker_node:
        BROKER_NODE[0] = args.broker_node
    elif "broker" in faults:
        private = PrivateBroker()
        if not args.quiet:
            print(f"starting a private RabbitMQ node {private.node} on port {private.port} for the broker faults",
                  flush=True)
        private.start()
        url = private.url
        BROKER_NODE[0] = private.node
    chaos = Chaos(args.seed, args.duration, args.banks, args.clients, args.people, faults, url, workdir,
                  args.ttl_ms, args.quiet)
    try:
        summary = chaos.run()
    finally:
        chaos.close()
        if private is not None:
            private.stop()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print_summary(summary)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
