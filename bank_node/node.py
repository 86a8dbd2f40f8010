"""A bank node: the ledger, the services, the broker connection and the 2PC resolver, wired."""
from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from pathlib import Path

from .config import ConsortiumConfig
from .domain.money import format_cents
from .messaging import MESSAGE_WORKERS, client_for
from .metrics import Metrics, shared_dir
from .services.banking import Banking
from .services.mandates import Mandates
from .services.transfers import Transfers
from .storage import ledger_location, open_store

log = logging.getLogger("bank_node")

GAUGES_EVERY_S = 1.0


class BankNode:
    def __init__(self, config: ConsortiumConfig, bank_id: str, data_dir: str | Path, *,
                 connect_broker: bool = True, storage: str | None = None, siblings: bool = False):
        """``storage``: where the ledger is (a ``postgresql://`` URL or a SQLite file), instead of
        the bank's ``storage`` setting; neither: a SQLite file in ``data_dir``. ``siblings``: this
        is a worker of ``--workers`` (other processes of the bank, however started, are
        found from its queue's consumers)."""
        self.config = config
        self.bank = config.bank(bank_id)
        self.bank_id = bank_id
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.ledger = ledger_location(bank_id, self.data_dir, storage or self.bank.storage)
        # Every HTTP thread, message worker, the group-commit writer and the resolver may hold a
        # transaction at once: a pool smaller than that makes the extra threads queue for it.
        self.store = open_store(self.ledger, connections=config.http_threads + MESSAGE_WORKERS + 8)
        self.secret_key = self._secret_key()
        self.metrics = Metrics()
        self._stopping = threading.Event()
        self.banking = Banking(config, bank_id, self.store)
        # Messages the broker layer refuses before reading them (too big, sender over its
        # budget) are counted with the handler's own refusals.
        self.broker = client_for(config, bank_id, on_refused=lambda reason, user: self.metrics.inc(
            "messages_rejected", reason=reason)) if connect_broker else None
        self.mandates = Mandates(config, bank_id, self.store, self.banking)
        self.transfers = Transfers(config, bank_id, self.store, self.banking, self.broker, self.metrics,
                                   siblings=siblings)
        if self.broker is not None:
            self.broker.handler = self.transfers.handle

    def _secret_key(self) -> bytes:
        """The cookie-signing key, made once per bank and kept with its data (never committed).
        Made whole under a temporary name and linked into place, which fails if another
        process of the bank made it first: every process of a bank signs with the same key."""
        path = self.data_dir / "secret_key"
        if not path.exists():
            tmp = path.with_name(f".secret_key.{os.getpid()}")
            tmp.write_bytes(secrets.token_bytes(32))
            tmp.chmod(0o600)
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        return path.read_bytes()

    def start(self, broker_wait_s: float = 10.0) -> None:
        if self.broker is not None:
            self.broker.start()
            if not self.broker.wait_connected(broker_wait_s):
                log.warning("bank %s: broker not reachable yet at start; transfers abort until it is", self.bank_id)
        self.transfers.start()
        if not self.transfers.resolver.leader and self.config.security.rate_limit_storage == "memory://":
            log.warning("bank %s: another process serves this bank (it is the resolver), and the throttles count "
                        "in memory://, each process on its own: every limit is multiplied by the processes; set "
                        "security.rate_limit_storage to redis://", self.bank_id)
        if shared_dir() is not None:
            threading.Thread(target=self._watch_broker_gauges, name="broker-gauges", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()
        self.transfers.stop()
        if self.broker is not None:
            self.broker.stop()
        self.store.close()

    def refresh_gauges(self) -> None:
        """Gauges are read from the ledger at scrape time, so they are never stale."""
        counts = self.transfers.in_flight()
        self.metrics.in_doubt.set(counts["prepared_legs"] + counts["preparing"])
        self.metrics.unacknowledged.set(counts["unacknowledged_decisions"])
        self.metrics.holds.set(counts["holds"])
        self._broker_gauges()

    def _broker_gauges(self) -> None:
        """This process's broker connection, as figures (read at scrape time; in a bank of
        several processes, every second too, since a scrape reaches only one of them)."""
        self.metrics.broker_up.set(1 if self.broker is not None and self.broker.connected else 0)
        self.metrics.broker_reconnects.set(self.broker.reconnects if self.broker is not None else 0)
        if self.broker is not None:
            self.metrics.observe_broker(self.broker.node, self.broker.failovers, self.broker.topology)

    def _watch_broker_gauges(self) -> None:
        while True:
            try:
                self._broker_gauges()
            except Exception:  # noqa: BLE001 - figures must never stop the bank
                log.exception("broker gauges not updated")
            if self._stopping.wait(GAUGES_EVERY_S):
                return

    def broker_topology_ok(self) -> bool:
        """Not ok only when the broker is known to be wrong (exchange or binding missing or
        changed, queue full); "unchecked" right after connecting is not a problem yet."""
        return self.broker is None or self.broker.topology in ("ok", "unchecked")

    def broker_health(self) -> dict:
        """Which broker node this bank is on, whether its exchange and binding route to it, how
        often it failed over, and why it is disconnected (when it is)."""
        if self.broker is None:
            return {}
        out = {"broker_node": self.broker.node, "broker_topology": self.broker.topology,
               "broker_failovers": self.broker.failovers}
        if not self.broker.connected and self.broker.last_error:
            out["broker_error"] = self.broker.last_error
        return out

    def operator_overview(self) -> dict:
        now = time.time()
        with self.store.transaction(write=False) as tx:
            view = tx.operator_view(now)
        for h in view["holds"]:
            h["amount"] = format_cents(h["amount"])
        broker = "connected" if self.broker is not None and self.broker.connected else "disconnected"
        return {"bank": self.bank_id, "name": self.bank.name, "broker": broker, **view}

    def health(self) -> dict:
        db_ok = self.store.ping()
        counts = self.transfers.in_flight() if db_ok else {}
        broker = "connected" if self.broker is not None and self.broker.connected else \
            ("disabled" if self.broker is None else "disconnected")
        return {
            "bank": self.bank_id, "name": self.bank.name, "consortium": self.config.consortium,
            "status": "ok" if db_ok and broker == "connected" and self.broker_topology_ok() else "degraded",
            "broker": broker, **self.broker_health(), "database": "ok" if db_ok else "unavailable",
            "schema_version": self.store.schema_version() if db_ok else None,
            "in_doubt": counts.get("prepared_legs", 0) + counts.get("preparing", 0),
            "unacknowledged_decisions": counts.get("unacknowledged_decisions", 0),
            "holds": counts.get("holds", 0),
            "process": {"pid": os.getpid(), "resolver": self.transfers.resolver.leader},
        }
