"""Per-peer batching of what a bank sends: PREPAREs as RPCs, everything else one way.

PREPAREs: per peer bank, at most ``interbank.prepare_envelopes_in_flight`` envelopes wait for
their votes; PREPAREs that arrive meanwhile ride in the next envelope (natural batching, no
timers). The coordinator queues PREPAREs as it handles its events and ``pump``s once none is
left waiting: the transfers of one group commit's begin records go in one envelope per peer,
not the first two alone and the rest in a third. The votes come back as one envelope per
request, matched by transfer id.

One-way messages (decisions, acknowledgements, outcome questions, relays, answers) are queued
per peer and published together by ``flush``, which the group-commit writer calls after each
batch it commits: everything that one commit made this bank owe to a peer travels in one
envelope. These are persistent and re-sent by the protocol until answered, so they are handed
to the broker without waiting for a confirm.
"""
from __future__ import annotations

import logging
import threading
from collections import defaultdict, deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable

from broker import BrokerError
from .. import protocol as P
from .runtime import Runtime, now_ms

log = logging.getLogger("interbank")

#: Bytes of relayed vote envelopes (base64) one envelope carries at most, beside its decisions.
PROOF_BYTES = 96 * 1024   # well under the broker's message size limit


@dataclass
class SentPrepares:
    """One PREPARE envelope in flight: its transfers and when its votes stop mattering."""
    bank: str
    transfer_ids: list[str]
    deadline_ms: int
    sent_ms: int
    correlation_id: str | None = None


@dataclass
class _Lane:
    waiting: deque = field(default_factory=deque)   # (Prepare, deadline_ms)
    in_flight: dict = field(default_factory=dict)   # correlation id -> SentPrepares


class Outbox:
    def __init__(self, rt: Runtime, on_reply: Callable[[SentPrepares, tuple | None, BaseException | None], None]):
        self.rt = rt
        # The coordinator's: (body, headers) of the votes, or a failure. It must hand them to the
        # coordinator's thread as an event (never handle them on the broker's I/O thread).
        self.on_reply = on_reply
        self.max_in_flight = rt.config.interbank.prepare_envelopes_in_flight
        self._lanes: dict[str, _Lane] = defaultdict(_Lane)
        self._oneway: dict[str, list] = defaultdict(list)
        self._unsent: set[str] = set()   # lanes with PREPAREs waiting since the last pump
        self._lock = threading.Lock()
        self._next_expiry = float("inf")   # the earliest deadline of an envelope in flight

    # PREPAREs -------------------------------------------------------------------------------
    def prepare(self, bank: str, item: P.Prepare) -> None:
        """Queue a PREPARE for ``bank``; ``pump`` sends it (the coordinator pumps once it has
        handled every event that was waiting, so that the transfers begun together leave
        together, rather than the first ones alone in the free slots)."""
        with self._lock:
            self._lanes[bank].waiting.append(item)
            self._unsent.add(bank)

    def pump(self) -> None:
        """Send what waits, in every free slot of every lane that has something waiting."""
        while True:
            with self._lock:
                if not self._unsent:
                    return
                bank = next(iter(self._unsent))
                batch = self._take(bank)
                if not batch:
                    self._unsent.discard(bank)
                    continue
            self._send_prepares(bank, batch)

    def _take(self, bank: str) -> list[P.Prepare]:
        lane = self._lanes[bank]
        if not lane.waiting or len(lane.in_flight) >= self.max_in_flight:
            return []
        batch = []
        while lane.waiting and len(batch) < P.MAX_ITEMS:
            batch.append(lane.waiting.popleft())
        lane.in_flight[id(batch)] = None  # the slot is taken before the request exists
        return batch

    def _send_prepares(self, bank: str, batch: list[P.Prepare]) -> None:
        now = now_ms()
        deadline = min(p.deadline_ms for p in batch)
        sent = SentPrepares(bank, [p.transfer_id for p in batch], deadline, now)
        body, headers = self.rt.seal(*batch)
        if self.rt.broker is None:
            self._settle(bank, id(batch), sent, None, BrokerError("this bank has no broker connection"))
            return
        req = self.rt.broker.request(bank, body, expiration_ms=max(1, deadline - now),
                                     expect_user=self.rt.users[bank], headers=headers, with_headers=True)
        sent.correlation_id = req.correlation_id
        self.rt.count("prepares_sent", len(batch))
        self.rt.count("envelopes_sent", kind="prepare")
        key = id(batch)
        with self._lock:
            lane = self._lanes[bank]
            lane.in_flight.pop(key, None)
            lane.in_flight[req.correlation_id] = sent
            self._next_expiry = min(self._next_expiry, deadline)
        req.future.add_done_callback(
            lambda f: self._settle(bank, req.correlation_id, sent, *_outcome(f)))

    def _settle(self, bank: str, key, sent: SentPrepares, reply: tuple | None, error: BaseException | None) -> None:
        """An envelope's votes arrived, it failed, or its deadline passed: free its slot, hand
        the outcome over; what waited goes at the coordinator's next pump."""
        with self._lock:
            lane = self._lanes[bank]
            if lane.in_flight.pop(key, "gone") == "gone":
                return  # settled already (a reply after the deadline, a failure after expiry)
            if lane.waiting:
                self._unsent.add(bank)   # the coordinator's next pump sends it
        if sent.correlation_id and self.rt.broker is not None:
            self.rt.broker.forget(sent.correlation_id)
        self.on_reply(sent, reply, error)   # an event for the coordinator, which pumps after it

    def expire(self, now: int) -> None:
        """Free the slots of envelopes whose deadline passed with no answer (their transfers
        abort on their own deadline); called by the coordinator's clock."""
        if now <= self._next_expiry:
            return   # called after every event of the coordinator: usually nothing is late
        late = []
        with self._lock:
            earliest = float("inf")
            for bank, lane in self._lanes.items():
                for cid, s in lane.in_flight.items():
                    if s is None:
                        continue
                    if s.deadline_ms < now:
                        late.append((bank, cid, s))
                    else:
                        earliest = min(earliest, s.deadline_ms)
            self._next_expiry = earliest
        for bank, cid, s in late:
            self._settle(bank, cid, s, None, TimeoutError("no votes by the deadline"))

    # one-way ----------------------------------------------------------------------------------
    def queue(self, bank: str, item, proofs: list[P.VoteProof] = ()) -> None:
        """Queue ``item`` for ``bank``; ``proofs`` (a COMMIT's signed votes) travel in the same
        envelope as the item."""
        with self._lock:
            self._oneway[bank].append((item, tuple(proofs)))

    def flush(self) -> list[Future]:
        """Publish everything queued, one envelope per peer, split only to keep an envelope within
        MAX_ITEMS items and PROOF_BYTES of relayed votes (each vote envelope once per envelope)."""
        with self._lock:
            if not self._oneway:
                return []
            queued, self._oneway = self._oneway, defaultdict(list)
        futures = []
        for bank, entries in queued.items():
            items, proofs, size = [], {}, 0
            for item, needs in entries:
                new = {p.signature: p for p in needs if p.signature not in proofs}
                grow = sum(len(p.envelope) for p in new.values())
                if items and (len(items) + len(proofs) + len(new) + 1 > P.MAX_ITEMS or size + grow > PROOF_BYTES):
                    futures.append(self.publish(bank, [*proofs.values(), *items]))
                    items, proofs, size = [], {}, 0
                    new = {p.signature: p for p in needs}
                    grow = sum(len(p.envelope) for p in new.values())
                items.append(item)
                proofs.update(new)
                size += grow
            if items:
                futures.append(self.publish(bank, [*proofs.values(), *items]))
        return futures

    def publish(self, bank: str, items: list, *, confirm: bool = False) -> Future:
        body, headers = self.rt.seal(*items)
        self.rt.count("envelopes_sent", kind=items[-1].type)
        if self.rt.broker is None:
            f: Future = Future()
            f.set_exception(BrokerError("this bank has no broker connection"))
            return f
        fut = self.rt.broker.publish(bank, body, persistent=True, confirm=confirm, headers=headers)
        fut.add_done_callback(lambda f: f.exception() and log.info(
            "%d %s to %s not sent yet (%s); the protocol re-sends them", len(items), items[-1].type, bank,
            f.exception()))
        return fut


def _outcome(f: Future) -> tuple[tuple | None, BaseException | None]:
    e = f.exception()
    return (None, e) if e is not None else (f.result(), None)
