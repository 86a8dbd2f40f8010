"""What a bank does, counted for Prometheus (GET /metrics).

Each node has its own registry, so several nodes in one process (the unit tests) never mix
their figures. The 2PC runtime counts through ``inc(name, **labels)``; the names and their
labels are declared once below.

A bank of several processes (``--workers``) answers ``/metrics`` from whichever process a
scrape reaches, so each process writes its figures to files in ``PROMETHEUS_MULTIPROC_DIR``
(the parent makes that folder for its children; prometheus_client's multiprocess mode) and
every scrape adds them all up: counters and histograms are the bank's, summed over its
processes (those that died included, so they never go down); the ledger's gauges are the most
recent reading; the broker's gauges are per process, labelled with its ``pid``.
"""
from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

SHARED_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def shared_dir() -> str | None:
    """The folder where the processes of one bank write their figures, if it runs several."""
    return os.environ.get(SHARED_DIR_ENV) or None

_COUNTERS = {
    "transfers_started": ("Transfers this bank started coordinating", ()),
    "transfers_decided": ("Transfers this bank decided, by outcome", ("outcome",)),
    "prepares_sent": ("PREPARE messages sent", ()),
    "votes_received": ("Votes received, by vote", ("vote",)),
    "votes_sent": ("Votes this bank sent as a participant, by vote", ("vote",)),
    "decisions_sent": ("COMMIT/ABORT messages sent (first sends and re-sends)", ("outcome",)),
    "decisions_applied": ("Decisions applied as a participant", ("outcome",)),
    "status_queries_sent": ("Questions about an outcome sent by a participant in doubt", ()),
    "holds_placed": ("Holds placed on accounts by PREPAREs", ()),
    "messages_rejected": ("Inter-bank messages refused (malformed, unknown, unauthenticated)", ("reason",)),
    "envelopes_sent": ("Inter-bank envelopes sent, by the kind of their first item", ("kind",)),
    "relays_applied": ("Decisions learnt from a peer's relay of the coordinator's signed decision", ()),
    "lookups_answered": ("Account lookups answered for other banks (full: the requester's own CPF)", ("scope",)),
    "lookups_refused": ("Account lookups refused for going over their rate, by requesting bank", ("bank",)),
    "http_requests": ("HTTP requests, by route, method and status", ("route", "method", "status")),
}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._counters = {
            name: Counter(f"consorcio_{name}", doc, labels, registry=self.registry)
            for name, (doc, labels) in _COUNTERS.items()
        }
        self.transfer_seconds = Histogram(
            "consorcio_transfer_seconds", "Time from request to decision of a coordinated transfer",
            registry=self.registry, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.batch_size = Histogram(
            "consorcio_commit_batch_units", "Units of work written by one group commit (one fsync)",
            registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
        self.in_doubt = Gauge("consorcio_transfers_in_doubt",
                              "Transfers whose outcome this bank does not know yet (prepared legs and "
                              "undecided coordinated transfers)", registry=self.registry,
                              multiprocess_mode="mostrecent")
        self.unacknowledged = Gauge("consorcio_decisions_unacknowledged",
                                    "Decided transfers still waiting for a participant's acknowledgement",
                                    registry=self.registry, multiprocess_mode="mostrecent")
        self.holds = Gauge("consorcio_holds", "Holds in place", registry=self.registry, multiprocess_mode="mostrecent")
        self.broker_up = Gauge("consorcio_broker_connected", "1 when connected to the broker", registry=self.registry,
                               multiprocess_mode="liveall")
        self.broker_reconnects = Gauge("consorcio_broker_reconnects",
                                       "Times the broker connection was re-established", registry=self.registry,
                                       multiprocess_mode="liveall")
        self.broker_failovers = Counter("consorcio_broker_failovers",
                                        "Times the bank reconnected to another broker node than the one it lost",
                                        registry=self.registry)
        self.broker_node = Gauge("consorcio_broker_node", "1 for the broker node (host:port) the bank is "
                                 "connected to", ("node",), registry=self.registry,
                                 multiprocess_mode="liveall")
        self.broker_topology_ok = Gauge("consorcio_broker_topology_ok",
                                        "1 when the bank's last probe through the consortium's exchange came back "
                                        "to its queue; 0 when the exchange or binding is missing or changed",
                                        registry=self.registry, multiprocess_mode="liveall")
        self._children: dict[tuple, Any] = {}
        self._failovers_seen = 0
        self._node_seen: str | None = None

    def observe_broker(self, node: str | None, failovers: int, topology: str) -> None:
        """The broker client's figures, read at scrape time."""
        if failovers > self._failovers_seen:
            self.broker_failovers.inc(failovers - self._failovers_seen)
            self._failovers_seen = failovers
        if node != self._node_seen:
            if self._node_seen is not None:
                self.broker_node.remove(self._node_seen)
            if node is not None:
                self.broker_node.labels(node=node).set(1)
            self._node_seen = node
        self.broker_topology_ok.set(1 if topology == "ok" else 0)

    def inc(self, name: str, n: int = 1, **labels) -> None:
        key = (name, *labels.items())
        child = self._children.get(key)
        if child is None:   # labels() costs more than the increment: each child is looked up once
            c = self._counters[name]
            child = self._children[key] = c.labels(**labels) if labels else c
        child.inc(n)

    def value(self, name: str, **labels) -> float:
        """Read a counter back (tests and the operator view)."""
        v = self.registry.get_sample_value(f"consorcio_{name}_total", labels or None)
        return v or 0.0

    def render(self) -> bytes:
        """The bank's figures: this registry's, or every process's of the bank added up."""
        folder = shared_dir()
        if folder is None:
            return generate_latest(self.registry)
        from prometheus_client.multiprocess import MultiProcessCollector
        registry = CollectorRegistry()
        MultiProcessCollector(registry, folder)
        return generate_latest(registry)
