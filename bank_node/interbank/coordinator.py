"""Coordinator: where a customer's transfer is begun, voted on, decided and answered.

1. **Begin** (a unit of the group-commit writer, from the request thread): the transfer record
   (``preparing``) and this bank's own legs, prepared in the same transaction. A transfer whose
   legs are all here is decided in that same transaction; one whose local leg is refused is
   aborted there too, before any PREPARE leaves.
2. **Prepare**: the same whole-transfer PREPARE goes to every other bank holding a leg, through
   the outbox's per-peer batching. Votes come back an envelope at a time.
3. **Decide**: on the last YES, the first NO, an error, or the deadline. The decision is written
   durably (a writer unit: compare-and-set on ``preparing``, with this bank's own legs applied in
   the same transaction) before any of it is sent, and the customer is answered as soon as it is
   durable (docs/protocol.md, rule 5). The other banks apply it a moment later.

One thread owns the in-flight transfers (their votes, their deadlines): request threads, broker
callbacks and the writer hand it events, so the coordinator's state needs no locks.
"""
from __future__ import annotations

import base64
import heapq
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Callable

from broker import NotSent
from .. import protocol as P
from ..domain import coordinator as C
from ..domain import errors as E
from ..domain.transfer import Leg
from ..faults import armed, crash_point
from .outbox import Outbox, SentPrepares
from .participant import Participant
from .runtime import Runtime, now_ms
from .signing import digest

log = logging.getLogger("transfers")

TICK_S = 0.05
PUMP_EVERY = 64
"""The coordinator sends the PREPAREs its events queued once no event waits, or after this many
events in a row (a steady stream of events must not hold them back)."""


@dataclass
class Begun:
    """What the begin unit found or made."""
    rec: C.CoordinatedTransfer
    fresh: bool


@dataclass
class _Awaited:
    """A customer waiting for the other banks to apply her decided transfer: the decided record
    as this thread last saw it, acknowledgements applied to it as they arrive."""
    event: threading.Event = field(default_factory=threading.Event)
    rec: C.CoordinatedTransfer | None = None   # set once the decision is durable


@dataclass
class _InFlight:
    rec: C.CoordinatedTransfer
    answer: Future
    evidence: dict = field(default_factory=dict)   # bank -> (digest, body, signature) of its votes
    deciding: bool = False


class Coordinator:
    def __init__(self, rt: Runtime, participant: Participant, reachable: Callable[[str], bool]):
        self.rt = rt
        self.participant = participant
        self.reachable = reachable            # is anybody consuming that bank's queue? (the resolver knows)
        self.outbox = Outbox(rt, on_reply=self._on_reply)
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._in_flight: dict[str, _InFlight] = {}
        self._deadlines: list[tuple[int, str]] = []
        self._decision_sent_ms: dict[str, int] = {}
        self._applied: dict[str, _Awaited] = {}   # transfers whose customer waits for the acks
        self._applied_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()
        self._stop = threading.Event()

    # life cycle -------------------------------------------------------------------------------
    def start(self) -> None:
        with self._starting:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=f"coordinator-{self.rt.bank_id}",
                                                daemon=True)
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._events.put(lambda: None)
            self._thread.join(5)

    def post(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the coordinator's thread (started by the first event if need be)."""
        if self._thread is None:
            self.start()
        self._events.put(fn)

    def active(self, transfer_id: str) -> bool:
        return transfer_id in self._in_flight

    def _loop(self) -> None:
        since_pump = 0
        while not self._stop.is_set():
            timeout = TICK_S
            if self._deadlines:
                timeout = min(TICK_S, max(0.0, self._deadlines[0][0] / 1000 - time.time()))
            try:
                fn = self._events.get(timeout=timeout)
            except queue.Empty:
                fn = None
            try:
                if fn is not None:
                    fn()
                self._tick()
                since_pump += 1
                if since_pump >= PUMP_EVERY or self._events.empty():
                    since_pump = 0
                    self.outbox.pump()
            except Exception:  # noqa: BLE001 - the loop must go on; the resolver mends what is left
                log.exception("coordinator loop step failed")

    # 1. begin ---------------------------------------------------------------------------------
    def begin(self, transfer_id: str, initiator: str, legs: tuple[Leg, ...], fingerprint: str,
              remember: Callable | None = None) -> Future:
        """Write the transfer and prepare our own legs (one writer unit). The future holds a
        ``Begun`` once it is durable. ``remember(tx)`` runs first in the same unit (the
        Idempotency-Key's record)."""
        deadline = now_ms() + self.rt.config.timeouts.prepare_ttl_ms

        def unit(tx) -> Begun:
            if remember is not None:
                remember(tx)
            seen = tx.get_coordinated(transfer_id)
            if seen is not None:
                if seen.initiator != initiator or seen.request_hash != fingerprint:
                    raise E.IdempotencyMismatch("this transfer id was already used for a different transfer")
                return Begun(seen, False)
            if any(p.legs for p in tx.participations_of(transfer_id)):
                # A transfer of another bank with this id: reused, by mistake or not. (An ABORT some
                # bank sent for the id, with no transfer behind it, does not count: it blocks nothing.)
                raise E.Conflict("this transfer id is already in use; choose another (a random UUID)",
                                 code="id_in_use")
            now = time.time()
            rec, _ = C.begin(transfer_id, initiator, fingerprint, legs, deadline, now)
            if self.rt.bank_id in rec.participants:
                vote = self.participant.prepare_local(tx, rec, now)
                rec = rec.with_peer(self.rt.bank_id, sent_ms=int(now * 1000))
                if not vote.yes:
                    # Refused here: the other banks never hear of it (nothing to abort there).
                    for b in rec.participants:
                        if b != self.rt.bank_id:
                            rec = rec.with_peer(b, vote="unsent")
                rec, _ = C.on_vote(rec, self.rt.bank_id, vote.yes, list(vote.reasons), int(now * 1000), now)
                if rec.state != "preparing":
                    rec = self._apply_own(tx, rec, now)
            tx.put_coordinated(rec)
            return Begun(rec, True)

        fut = self.rt.writer.submit(unit)

        def started(f: Future) -> None:
            if f.exception() is None and f.result().fresh:
                self.rt.count("transfers_started")
                if f.result().rec.state != "preparing":
                    self._finished(f.result().rec)   # decided in its begin transaction
        fut.add_done_callback(started)
        return fut

    def run(self, rec: C.CoordinatedTransfer, wait_applied: bool = False) -> Future:
        """Prepare at the other banks and decide; the future holds the decided record. With
        ``wait_applied``, ``wait_applied(record, timeout)`` then waits until every bank has applied it."""
        answer: Future = Future()
        if wait_applied:
            self._applied[rec.transfer_id] = _Awaited()
        self.post(lambda: self._start(rec, answer))
        return answer

    def wait_applied(self, rec: C.CoordinatedTransfer, timeout_s: float) -> None:
        """Read-your-writes: give the other banks up to ``timeout_s`` to apply a decided transfer.
        An acknowledgement may reach another process of this bank: the ledger is checked too,
        every 250 ms; when the bank is known to run several processes (``Runtime.siblings``), soon at
        first (acknowledgements come within milliseconds), then less often. A bank of one
        process hears every acknowledgement itself, so it does not read the ledger every few
        milliseconds for nothing."""
        awaited = self._applied.get(rec.transfer_id)
        try:
            if awaited is None or rec.state == "preparing" or rec.pending_acks == 0 or self.rt.broker is None \
                    or not self.rt.broker.connected:
                return
            end = time.monotonic() + timeout_s
            step = 0.01 if self.rt.siblings else 0.25
            while not awaited.event.wait(min(step, max(0.0, end - time.monotonic()))):
                if time.monotonic() >= end:
                    return
                step = min(step * 2, 0.25)
                with self.rt.store.transaction(write=False) as tx:
                    current = tx.get_coordinated(rec.transfer_id)
                if current is None or current.pending_acks == 0:
                    return
        finally:
            self.stop_waiting(rec.transfer_id)

    def stop_waiting(self, transfer_id: str) -> None:
        """Nobody waits for this transfer's acknowledgements any more (answered, or answered
        "pending" without waiting): its entry, and the record in it, go."""
        self._applied.pop(transfer_id, None)

    def _start(self, rec: C.CoordinatedTransfer, answer: Future) -> None:
        crash_point("coordinator.before_prepare")
        tid = rec.transfer_id
        flight = _InFlight(rec, answer)
        self._in_flight[tid] = flight
        heapq.heappush(self._deadlines, (rec.deadline_ms, tid))
        item = P.Prepare(transfer_id=tid, coordinator=self.rt.bank_id, initiator=rec.initiator,
                         deadline_ms=rec.deadline_ms,
                         legs=[P.Leg(bank=l.bank, account=l.account, amount=l.amount, direction=l.direction)
                               for l in rec.legs])
        remote = [b for b in sorted(rec.participants) if b != self.rt.bank_id]
        for i, bank in enumerate(remote):
            if i == 1 and armed("coordinator.after_some_prepares"):
                self.outbox.pump()
                crash_point("coordinator.after_some_prepares")
            self.outbox.prepare(bank, item)

    # 2. votes -----------------------------------------------------------------------------------
    def _on_reply(self, sent: SentPrepares, reply: tuple | None, error: BaseException | None) -> None:
        """From the broker's I/O thread: hand the votes (or the failure) to our thread."""
        self.post(lambda: self._votes(sent, reply, error))

    def _votes(self, sent: SentPrepares, reply: tuple | None, error: BaseException | None) -> None:
        bank, at = sent.bank, now_ms()
        now = at / 1000
        for tid in sent.transfer_ids:
            if tid in self._in_flight:
                self._in_flight[tid].rec = self._in_flight[tid].rec.with_peer(bank, sent_ms=sent.sent_ms)
        if error is not None:
            if isinstance(error, TimeoutError):
                return  # each transfer meets its own deadline
            for tid in sent.transfer_ids:
                flight = self._in_flight.get(tid)
                if flight is not None and not flight.deciding:
                    if isinstance(error, NotSent):
                        rec, effects = C.on_unsent(flight.rec, bank, now)
                    else:
                        rec, effects = C.on_error(flight.rec, bank, "bank_unreachable", now)
                    self._update(flight, rec, effects)
            return
        body, headers = reply
        try:
            env = P.decode(body)
        except P.BadMessage as e:
            self.rt.count("messages_rejected", reason="malformed")
            log.warning("unreadable votes from %s: %s", bank, e)
            return
        signature = (headers or {}).get("sig")
        if env.sender != bank or env.ns != self.rt.config.consortium or (
                self.rt.keyring is not None and not self.rt.keyring.verify(bank, body, signature)):
            self.rt.count("messages_rejected", reason="bad_signature")
            log.warning("votes from %s not signed by it: ignored (its transfers time out)", bank)
            return
        asked = set(sent.transfer_ids)
        for vote in env.items:
            if not isinstance(vote, P.VoteMsg) or vote.transfer_id not in asked or vote.bank != bank:
                continue
            flight = self._in_flight.get(vote.transfer_id)
            if flight is None or flight.deciding:
                continue
            self.rt.count("votes_received", vote=vote.vote)
            if signature:
                flight.evidence[bank] = (digest(body), body, signature)
            rec, effects = C.on_vote(flight.rec, bank, vote.vote == "yes",
                                     [(r.account, r.code) for r in vote.reasons], at, now,
                                     evidence=flight.evidence.get(bank, (None,))[0])
            self._update(flight, rec, effects)

    def _update(self, flight: _InFlight, rec: C.CoordinatedTransfer, effects: list) -> None:
        flight.rec = rec
        if rec.state != "preparing":
            self._decide(flight)

    def _tick(self) -> None:
        now = now_ms()
        while self._deadlines and self._deadlines[0][0] < now:
            _, tid = heapq.heappop(self._deadlines)
            flight = self._in_flight.get(tid)
            if flight is None or flight.deciding:
                continue
            silent = {b for b, p in flight.rec.participants.items() if p.vote is None}
            rec, effects = C.on_deadline(flight.rec, {b for b in silent if not self.reachable(b)}, time.time())
            self._update(flight, rec, effects)
        self.outbox.expire(now)

    # 3. decide -------------------------------------------------------------------------------
    def _decide(self, flight: _InFlight) -> None:
        flight.deciding = True
        rec = flight.rec
        crash_point("coordinator.before_decision_durable")
        evidence = list(flight.evidence.items())

        def unit(tx) -> C.CoordinatedTransfer:
            current = tx.get_coordinated(rec.transfer_id)
            if current is None or current.state != "preparing":
                return current or rec   # the resolver decided first (after a stall): its word stands
            if self.rt.writer.position > 0:
                crash_point("coordinator.mid_group_commit")
            now = time.time()
            for bank, (digest_, body, sig) in evidence:
                tx.put_evidence(digest_, bank, body, sig, now)
            decided = self._apply_own(tx, rec, now)
            tx.put_coordinated(decided)
            return decided

        fut = self.rt.writer.submit(unit)
        fut.add_done_callback(lambda f: self._after_decision(flight, f))

    def decide_stale(self, rec: C.CoordinatedTransfer) -> C.CoordinatedTransfer:
        """The resolver's way in: abort a transfer left undecided (its request thread died, or
        the bank restarted). Written with the same compare-and-set; the decision is sent after."""
        rec, _ = C.on_recover(rec, time.time())

        def unit(tx) -> C.CoordinatedTransfer | None:
            current = tx.get_coordinated(rec.transfer_id)
            if current is None or current.state != "preparing":
                return None
            decided = self._apply_own(tx, rec, time.time())
            tx.put_coordinated(decided)
            return decided

        decided = self.rt.writer.run(unit)
        if decided is not None:
            self._finished(decided)
            self.outbox.flush()
        return decided or rec

    def _apply_own(self, tx, rec: C.CoordinatedTransfer, now: float) -> C.CoordinatedTransfer:
        """Our own legs take the decision in the decision's transaction (acknowledged at once)."""
        if self.rt.bank_id not in rec.participants or rec.participants[self.rt.bank_id].vote in ("no", "unsent"):
            return rec
        self.participant.apply(tx, rec.transfer_id, self.rt.bank_id, rec.outcome, None, now)
        return rec.with_peer(self.rt.bank_id, acked=True, ack_ms=int(now * 1000))

    def _after_decision(self, flight: _InFlight, f: Future) -> None:
        """On the writer's thread, once the decision is durable (or could not be written)."""
        tid = flight.rec.transfer_id
        self.post(lambda: self._in_flight.pop(tid, None))
        if f.exception() is not None:
            # Nobody was told anything; presumed abort settles it after the deadline. 202 pending.
            log.error("transfer %s: decision not written (%s); pending", tid, f.exception(),
                      extra={"transfer_id": tid, "event": "pending"})
            flight.answer.set_result(replace(flight.rec, state="preparing", decided_at=None))
            return
        rec = f.result()
        if rec.state == "committed":
            crash_point("coordinator.after_commit_durable")
        self._finished(rec, flight.evidence)
        flight.answer.set_result(rec)

    def _finished(self, rec: C.CoordinatedTransfer, votes: dict | None = None) -> None:
        """A decision is durable: count it, log it once, and queue it for the other banks (a
        COMMIT with the signed YES of the other participants; ``votes``: bank -> (digest, body,
        signature) of their vote envelopes, else read from the evidence kept with the decision)."""
        tid = rec.transfer_id
        self.rt.count("transfers_decided", outcome=rec.state)
        if self.rt.metrics is not None:
            self.rt.metrics.transfer_seconds.observe(max(0.0, (rec.decided_at or time.time()) - rec.created_at))
        log.info("transfer %s: %s%s", tid, rec.state.upper(),
                 "" if rec.state == "committed" else f" ({C.first_reason(rec.failures)})",
                 extra={"transfer_id": tid, "event": "decision"})
        sends = [e for e in C.pending_decisions(rec) if e.bank != self.rt.bank_id]
        awaited = self._applied.get(tid)
        if awaited is not None:
            with self._applied_lock:
                awaited.rec = rec   # before the decisions leave: their acknowledgements count from here
        fetch = (lambda bank, digest: (votes or {}).get(bank, (None, None, None))[1:]) if votes is not None \
            else self.evidence_reader()
        for i, eff in enumerate(sends):
            proofs = self.commit_proofs(rec, eff.bank, fetch)
            if i == 1 and rec.state == "committed" and armed("coordinator.after_some_decisions"):
                first = sends[0].bank
                self.outbox.publish(first, [*self.commit_proofs(rec, first, fetch),
                                            P.Decision(transfer_id=tid, outcome=sends[0].outcome)], confirm=True).result(5)
                crash_point("coordinator.after_some_decisions")
            self.outbox.queue(eff.bank, P.Decision(transfer_id=tid, outcome=eff.outcome), proofs)
            self.rt.count("decisions_sent", outcome=eff.outcome)
        if sends:
            self._decision_sent_ms[tid] = now_ms()
            if len(self._decision_sent_ms) > 100_000:
                self._decision_sent_ms.pop(next(iter(self._decision_sent_ms)))

    def commit_proofs(self, rec: C.CoordinatedTransfer, to_bank: str, fetch) -> list[P.VoteProof]:
        """The signed YES votes that prove this COMMIT: every participant's vote envelope, the
        addressee's own included, so that the envelope proves itself to any participant it is
        relayed to (``fetch(bank, digest)`` -> (body, signature) or None)."""
        if rec.state != "committed" or self.rt.keyring is None:
            return []
        out = []
        for bank, peer in sorted(rec.participants.items()):
            if bank == self.rt.bank_id or peer.vote != "yes" or not peer.evidence:
                continue
            body, sig = fetch(bank, peer.evidence) or (None, None)
            if body is not None:
                out.append(P.VoteProof(bank=bank, envelope=base64.b64encode(bytes(body)).decode(), signature=sig))
        return out

    def evidence_reader(self):
        """fetch(bank, digest) over the evidence this bank kept, cached for one pass."""
        cache: dict[str, tuple] = {}

        def fetch(bank: str, digest: str):
            if digest not in cache:
                with self.rt.store.transaction(write=False) as tx:
                    ev = tx.get_evidence(digest)
                cache[digest] = (bytes(ev["body"]), ev["signature"]) if ev else None
            return cache[digest]
        return fetch

    # acknowledgements ------------------------------------------------------------------------
    def on_acks(self, d, env: P.Envelope, items: list[P.DecisionAck]) -> Future:
        """Bookkeeping the protocol can redo (a lost acknowledgement is a re-sent decision):
        written without waiting for the disk. A customer waiting for the other banks to apply her
        transfer is answered as soon as their acknowledgements arrive (an acknowledgement leaves a
        bank only once its ledger holds the decision), not after this bookkeeping's turn at the
        writer."""
        sent = {i.transfer_id: self._decision_sent_ms.pop(i.transfer_id, None) for i in items}
        self._release_waiting(items)

        def unit(tx) -> None:
            at = now_ms()
            for ack in items:
                rec = tx.get_coordinated(ack.transfer_id)
                if rec is None:
                    continue
                rec, effects = C.on_ack(rec, ack.bank, ack.outcome, at)
                if effects:
                    if rec.decision_sent_ms is None and sent.get(ack.transfer_id):
                        rec = replace(rec, decision_sent_ms=sent[ack.transfer_id])
                    tx.put_coordinated(rec)

        return self.rt.writer.submit(unit, durable=False)

    def _release_waiting(self, items: list[P.DecisionAck]) -> None:
        """Count each acknowledgement against the decided record of a customer who waits (the
        domain's ``on_ack`` says whether it counts: the right outcome, from a participant, once);
        the last one ends her wait. The record is there before any acknowledgement can come:
        ``_finished`` sets it when the decision is durable, and the decisions leave after it.
        Acknowledgements that reach another process of this bank are found in the ledger
        (``wait_applied``)."""
        at = now_ms()
        for ack in items:
            awaited = self._applied.get(ack.transfer_id)
            if awaited is None or awaited.rec is None:
                continue
            with self._applied_lock:
                rec, effects = C.on_ack(awaited.rec, ack.bank, ack.outcome, at)
                awaited.rec = rec
            if effects and rec.pending_acks == 0:
                awaited.event.set()

