"""The chaos nemesis: faults at random moments, each from a seeded choice.

kill (SIGKILL, then restart), pause (SIGSTOP longer than the PREPARE TTL, then SIGCONT),
connections (the broker closes this consortium's connections), broker (the broker node
restarts). On a RabbitMQ cluster of the run's own (``--broker-nodes 3``) also broker-node-kill
(kill -9 one node, start it again a few seconds later) and broker-node-pause (SIGSTOP one node
for a few seconds: its sockets stay open, nothing answers). One fault at a time, so a majority of
the nodes is always up. ``heal`` undoes whatever is still in effect."""
from __future__ import annotations

import random
import threading
import time
from typing import Callable

from ..rabbit import BrokerCluster, BrokerControl
from ..supervisor import Cluster

FAULTS = ("kill", "pause", "connections", "broker", "broker-node-kill", "broker-node-pause")
CLUSTER_FAULTS = ("broker-node-kill", "broker-node-pause")


class Nemesis:
    def __init__(self, seed: int, cluster: Cluster, faults: list[str], ttl_ms: int, broker: BrokerControl,
                 say: Callable[[str], None], clock: Callable[[], float], brokers: BrokerCluster | None = None):
        self.rng = random.Random(seed * 7 + 1)
        self.cluster = cluster
        self.bank_ids = list(cluster.banks)
        self.faults = faults
        self.ttl_ms = ttl_ms
        self.broker = broker
        self.brokers = brokers  # the run's own RabbitMQ cluster, if it has one
        self.say = say
        self.clock = clock  # seconds since the run started, for the fault log
        self.log: list[tuple[float, str]] = []

    def run(self, until: float, stop: threading.Event) -> None:
        """Inject faults until the monotonic time ``until`` (or ``stop``)."""
        while time.monotonic() < until - 2:
            if stop.wait(self.rng.uniform(1.5, 3.5)):
                return
            fault = self.rng.choice(self.faults)
            victim = self.rng.choice(self.bank_ids)
            t = self.clock()
            try:
                self._inject(fault, victim, t)
            except Exception as e:  # noqa: BLE001 - a failed fault is reported, the run goes on
                self.log.append((t, f"{fault} failed: {e}"))
                self.say(f"nemesis: {fault} failed: {e}")

    def _inject(self, fault: str, victim: str, t: float) -> None:
        bank = self.cluster[victim]
        if fault == "kill":
            self._note(t, f"kill -9 {victim}")
            bank.kill()
            time.sleep(self.rng.uniform(0.5, 2.0))  # noqa: the fault's own duration, not a wait
            bank.start()
            bank.wait_healthy(60, need_broker=False)
        elif fault == "pause":
            pause = self.ttl_ms / 1000 + self.rng.uniform(0.5, 2.0)
            self._note(t, f"pause {victim} {pause:.1f}s")
            bank.pause()
            time.sleep(pause)  # noqa: the fault's own duration
            bank.resume()
        elif fault == "connections":
            # A cluster lists (and closes) every node's connections from any node.
            control = self.brokers.nodes[0].control if self.brokers else self.broker
            closed = control.close_connections(self.cluster.namespace)
            self._note(t, f"close {closed} broker connections")
        elif fault == "broker":
            if self.brokers:
                node = self.rng.choice(self.brokers.nodes)
                self._note(t, f"broker node {node.node} restart")
                node.control.restart()
            else:
                self._note(t, "broker restart")
                self.broker.restart()
        elif fault == "broker-node-kill":
            i = self.rng.randrange(len(self.brokers.nodes))
            down = self.rng.uniform(2.0, 6.0)
            self._note(t, f"kill -9 broker node {self.brokers.nodes[i].node} for {down:.1f}s")
            self.brokers.kill(i)
            time.sleep(down)  # noqa: the fault's own duration
            self.brokers.restart(i)
        elif fault == "broker-node-pause":
            node = self.rng.choice(self.brokers.nodes)
            pause = self.rng.uniform(3.0, 8.0)
            self._note(t, f"pause broker node {node.node} {pause:.1f}s")
            node.pause()
            time.sleep(pause)  # noqa: the fault's own duration
            node.resume()

    def _note(self, t: float, what: str) -> None:
        self.log.append((t, what))
        self.say(f"nemesis: {what}")

    def heal(self) -> None:
        if self.brokers:
            self.brokers.heal()
        else:
            self.broker.ensure_running()
        for b in self.cluster.banks.values():
            b.resume()
            if not b.alive:
                b.start()
        for b in self.cluster.banks.values():
            b.wait_healthy(60)
