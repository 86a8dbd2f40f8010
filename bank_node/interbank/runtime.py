"""What every step of the protocol shares: configuration, ledger, group-commit writer, broker,
keys, metrics and this bank's reading of the consortium's rules."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from broker import BrokerClient
from .. import protocol as P
from ..config import ConsortiumConfig
from ..domain import participant as PT
from ..domain.ledger import Limits
from ..domain.money import to_cents
from ..identity import AUDITOR, expected_user
from ..storage.batch import BatchWriter
from ..storage.port import Store
from .signing import Keyring, digest

log = logging.getLogger("interbank")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Runtime:
    config: ConsortiumConfig
    bank_id: str
    store: Store
    writer: BatchWriter
    broker: BrokerClient | None
    keyring: Keyring | None
    metrics: Any = None
    siblings: bool = False
    """Other processes of this bank consume its queue too: an acknowledgement may reach one of
    them, so a request waiting for it looks in the ledger as well, and soon. Set at birth for a
    worker of ``--workers``, and kept up to date by the resolver from the queue's consumers."""
    day_offset_s: int = 0
    rules: PT.Rules = field(init=False)
    users: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        c = self.config
        own = c.limits_for(self.bank_id)
        max_of = {b: to_cents(max(c.limits.max_amount, c.limits_for(b).max_amount)) for b in c.bank_ids}
        self.rules = PT.Rules(
            bank_id=self.bank_id, bank_ids=tuple(c.bank_ids), max_legs=c.limits.max_transfer_legs,
            ttl_ms=c.timeouts.prepare_ttl_ms, max_amount_of=lambda b: max_of.get(b, 0),
            limits=Limits(to_cents(own.max_amount), to_cents(own.daily_max_amount)),
            caps={p: to_cents(c.peer_cap(self.bank_id, p)) for p in c.bank_ids if p != self.bank_id})
        self.day_offset_s = own.day_utc_offset_min * 60
        # The broker user each principal's messages must carry (worked out once, not per message).
        self.users = {p: expected_user(c, p) for p in [*c.bank_ids, AUDITOR]}

    # time -----------------------------------------------------------------------------------
    def day(self, at: float) -> int:
        """The number of the limits' day (``limits.day_utc_offset_min``) that ``at`` falls in."""
        return int((at + self.day_offset_s) // 86400)

    # envelopes ------------------------------------------------------------------------------
    def seal(self, *items: P._Msg) -> tuple[bytes, dict | None]:
        """An envelope of ``items`` from this bank, and the headers carrying its signature."""
        body = P.encode(self.bank_id, *items, ns=self.config.consortium)
        return body, self.keyring.headers(body) if self.keyring is not None else None

    def evidence(self, tx, sender: str, body: bytes, headers: dict | None, now: float) -> str | None:
        """Keep a signed envelope beside what it made us do; its name (hash), or None unsigned."""
        sig = (headers or {}).get("sig")
        if self.keyring is None or not sig:
            return None
        name = digest(body)
        tx.put_evidence(name, sender, body, sig, now)
        return name

    # counting -------------------------------------------------------------------------------
    def count(self, name: str, n: int = 1, **labels) -> None:
        if self.metrics is not None and n:
            self.metrics.inc(name, n, **labels)
