"""A Jepsen-style bank workload with a nemesis, and a checker of every invariant.

    python -m tools.chaos --seed 7 --duration 60 [--json summary.json] [--broker-nodes 3]

Starts its own consortium (its own broker namespace, ports and data folder, and with
``--broker-nodes`` its own RabbitMQ cluster, whose nodes the nemesis kills and pauses), runs the
workload (``workload.py``) while the nemesis (``nemesis.py``) injects faults, heals, then lets
the checker (``checker.py``) audit the banks' own ledgers. The seed fixes every random choice of
the clients and the nemesis (timings still vary with the machine).
"""
from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from pathlib import Path

from broker.provision import delete_namespace

from ..consortia import BANK_IDS, LOCAL_AMQP, TEST_SECURITY, bank_entries, free_ports, write_config  # noqa: F401
from ..rabbit import BrokerCluster, BrokerControl
from ..supervisor import Cluster
from . import checker
from .nemesis import CLUSTER_FAULTS, FAULTS, Nemesis  # noqa: F401
from .workload import Workload


class Chaos:
    def __init__(self, seed: int, duration: float, banks: int, clients: int, people: int,
                 faults: list[str], amqp_url: str, workdir: Path, ttl_ms: int, quiet: bool,
                 broker: BrokerControl = BrokerControl(), brokers: BrokerCluster | None = None):
        self.seed = seed
        self.duration = duration
        self.clients = clients
        self.amqp_url = ",".join(brokers.urls) if brokers is not None else amqp_url
        self.quiet = quiet
        self.namespace = f"chaos-{seed}-{uuid.uuid4().hex[:6]}"
        cfg = write_config(workdir / "consorcio.yml", consortium=self.namespace, broker_url=self.amqp_url,
                           banks=bank_entries(free_ports(banks)),
                           timeouts={"prepare_ttl_ms": ttl_ms, "decision_resend_ms": 500,
                                     "status_query_ms": 500, "retry_cap_ms": 2000},
                           security=TEST_SECURITY)
        self.cluster = Cluster(cfg, workdir / "data")
        self.bank_ids = list(self.cluster.banks)
        self.work = Workload(seed, {b: p.url for b, p in self.cluster.banks.items()}, people)
        self.t0 = time.monotonic()
        self.nemesis = Nemesis(seed, self.cluster, faults, ttl_ms, broker, self.say,
                               clock=lambda: time.monotonic() - self.t0, brokers=brokers)

    def say(self, msg: str) -> None:
        if not self.quiet:
            print(f"[{time.monotonic() - self.t0:6.1f}s] {msg}", flush=True)

    def ledgers(self) -> dict[str, dict]:
        return {b: checker.read_ledger(self.cluster[b].data_dir / f"{b}.sqlite3") for b in self.bank_ids}

    def run(self) -> dict:
        self.cluster.start()
        self.work.setup()
        self.say(f"{len(self.bank_ids)} banks, {len(self.work.people)} customers, {len(self.work.accounts)} "
                 f"accounts, namespace {self.namespace}")
        until = time.monotonic() + self.duration
        threads = [threading.Thread(target=self.work.client, args=(k,), daemon=True) for k in range(self.clients)]
        for t in threads:
            t.start()
        nem = threading.Thread(target=self.nemesis.run, args=(until, self.work.stop), daemon=True)
        nem.start()
        while time.monotonic() < until:
            time.sleep(min(5.0, max(0.0, until - time.monotonic())))  # noqa: progress line cadence
            c = self.work.history.count()
            self.say(f"progress: {sum(c.values())} operations "
                     f"({c['transfer:committed']} committed, {c['transfer:aborted']} aborted, "
                     f"{sum(v for k, v in c.items() if k.endswith(':unknown'))} unknown), "
                     f"{len(self.nemesis.log)} faults")
        nem.join(120)
        self.say("healing: every bank running, every broker node up")
        self.nemesis.heal()
        self.work.stop.set()
        for t in threads:
            t.join(60)
        quiet_after = checker.wait_quiescent(self.ledgers, time.monotonic())
        verdicts = checker.check(self.work, self.ledgers, quiet_after)
        ops = self.work.history.ops
        c = Counter(f"{op.kind}: {op.outcome}" + (f" -> {op.resolved}" if op.resolved else "") for op in ops)
        return {
            "seed": self.seed, "duration_s": self.duration, "namespace": self.namespace,
            "operations": len(ops), "by_outcome": dict(sorted(c.items())),
            "faults": [f"{t:.1f}s {f}" for t, f in self.nemesis.log],
            "verdicts": {k: {"ok": ok, "detail": d} for k, (ok, d) in verdicts.items()},
            "ok": all(ok for ok, _ in verdicts.values()),
        }

    def close(self) -> None:
        self.cluster.stop()
        delete_namespace(self.amqp_url, self.namespace, self.bank_ids)
