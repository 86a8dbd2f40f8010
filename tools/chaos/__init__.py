"""A Jepsen-style bank workload with a nemesis, and a checker of every invariant.

    python -m tools.chaos --seed 7 --duration 60 [--json summary.json] [--broker-nodes 3] [--liar gama]

Starts its own consortium (its own broker namespace, ports and data folder, every bank signing
its messages as consorcio.yml has them, and with ``--broker-nodes`` its own RabbitMQ cluster,
whose nodes the nemesis kills and pauses), runs the workload (``workload.py``) while the nemesis
(``nemesis.py``) injects faults and, with ``--liar``, one member bank lies (``liar.py``), heals,
then lets the checker (``checker.py``) audit the banks' own ledgers. The seed fixes every random
choice of the clients, the nemesis and the liar (timings still vary with the machine).
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
from .liar import Liar
from .nemesis import CLUSTER_FAULTS, FAULTS, Nemesis  # noqa: F401
from .workload import Workload

LIAR_CAP = "400.00"   # what each honest bank lets the lying bank owe it, in the runs with a liar


class Chaos:
    def __init__(self, seed: int, duration: float, banks: int, clients: int, people: int,
                 faults: list[str], amqp_url: str, workdir: Path, ttl_ms: int, quiet: bool,
                 broker: BrokerControl = BrokerControl(), brokers: BrokerCluster | None = None,
                 liar: str | None = None):
        self.seed = seed
        self.duration = duration
        self.clients = clients
        self.amqp_url = ",".join(brokers.urls) if brokers is not None else amqp_url
        self.quiet = quiet
        self.namespace = f"chaos-{seed}-{uuid.uuid4().hex[:6]}"
        entries = bank_entries(free_ports(banks))
        if liar is not None and liar not in [e["id"] for e in entries]:
            raise ValueError(f"the liar must be one of the run's banks: {', '.join(e['id'] for e in entries)}")
        for e in entries:
            if liar is not None and e["id"] != liar:
                e["peer_caps"] = {liar: LIAR_CAP}
        from bank_node.interbank.signing import write_key_pair
        for e in entries:
            write_key_pair(workdir / "keys", e["id"])
        cfg = write_config(workdir / "consorcio.yml", consortium=self.namespace, broker_url=self.amqp_url,
                           banks=entries,
                           timeouts={"prepare_ttl_ms": ttl_ms, "decision_resend_ms": 500,
                                     "status_query_ms": 500, "retry_cap_ms": 2000},
                           signing={"mode": "required", "keys_dir": str(workdir / "keys")},
                           cooperative_termination=True, security=TEST_SECURITY)
        self.cluster = Cluster(cfg, workdir / "data")
        self.bank_ids = list(self.cluster.banks)
        # Nobody consents to debits the liar initiates: its forged debits meet a NO.
        self.work = Workload(seed, {b: p.url for b, p in self.cluster.banks.items()}, people,
                             distrust={liar} if liar else set())
        self.liar = None
        if liar is not None:
            self.liar = Liar(seed, self.cluster, liar, targets=self._targets, foreign=self._foreign, say=self.say)
            self.caps = {e["id"]: int(LIAR_CAP.replace(".", "")) for e in entries if e["id"] != liar}
        self.t0 = time.monotonic()
        self.nemesis = Nemesis(seed, self.cluster, faults, ttl_ms, broker, self.say,
                               clock=lambda: time.monotonic() - self.t0, brokers=brokers)

    def say(self, msg: str) -> None:
        if not self.quiet:
            print(f"[{time.monotonic() - self.t0:6.1f}s] {msg}", flush=True)

    def _targets(self) -> list[tuple[str, str, str]]:
        return [(bank, number, p.cpf) for p, bank, number in self.work.accounts]

    def _foreign(self) -> list[tuple[str, str, list[str]]]:
        """Transfers with a leg at the liar that another bank coordinated: what its ledger knows."""
        liar = self.liar.bank_id
        with self.work.history.lock:
            ops = list(self.work.history.ops[-200:])
        return [(op.transfer_id, op.via, sorted({leg[0] for leg in op.legs})) for op in ops
                if op.kind == "transfer" and op.via != liar and any(leg[0] == liar for leg in op.legs)]

    def ledgers(self) -> dict[str, dict]:
        return {b: checker.read_ledger(self.cluster.ledger_location(b)) for b in self.bank_ids}

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
        lying = None
        if self.liar is not None:
            lying = threading.Thread(target=self.liar.run, args=(until, self.work.stop), daemon=True)
            lying.start()
        while time.monotonic() < until:
            time.sleep(min(5.0, max(0.0, until - time.monotonic())))  # noqa: progress line cadence
            c = self.work.history.count()
            self.say(f"progress: {sum(c.values())} operations "
                     f"({c['transfer:committed']} committed, {c['transfer:aborted']} aborted, "
                     f"{sum(v for k, v in c.items() if k.endswith(':unknown'))} unknown), "
                     f"{len(self.nemesis.log)} faults")
        nem.join(120)
        if lying is not None:
            lying.join(60)
        self.say("healing: every bank running, every broker node up")
        self.nemesis.heal()
        self.work.stop.set()
        for t in threads:
            t.join(60)
        quiet_after = checker.wait_quiescent(self.ledgers, time.monotonic())
        verdicts = checker.check(self.work, self.ledgers, quiet_after, liar=self.liar and self.liar.bank_id,
                                 caps=self.liar and self.caps)
        ops = self.work.history.ops
        c = Counter(f"{op.kind}: {op.outcome}" + (f" -> {op.resolved}" if op.resolved else "") for op in ops)
        return {
            "seed": self.seed, "duration_s": self.duration, "namespace": self.namespace,
            "operations": len(ops), "by_outcome": dict(sorted(c.items())),
            "faults": [f"{t:.1f}s {f}" for t, f in self.nemesis.log],
            "liar": self.liar.summary() if self.liar else None,
            "verdicts": {k: {"ok": ok, "detail": d} for k, (ok, d) in verdicts.items()},
            "ok": all(ok for ok, _ in verdicts.values()),
        }

    def close(self) -> None:
        self.cluster.stop()
        delete_namespace(self.amqp_url, self.namespace, self.bank_ids)
