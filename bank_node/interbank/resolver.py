"""Resolver: what keeps the protocol live after faults (docs/protocol.md, rules 4 and 7).

Several times a second it
- aborts transfers this bank coordinates that are still undecided well past their deadline
  (their request thread died or stalled, or the process coordinating them died);
- re-sends unacknowledged decisions, batched per bank, with capped per-transfer backoff, and
  stops after ``timeouts.decision_resend_limit_s`` (the participant still asks, and is answered:
  a bank that never acknowledges cannot make this one re-send forever);
- makes every leg prepared here and past its deadline ask its coordinator for the outcome (and,
  with cooperative termination, the other participants, which may only relay the coordinator's
  signed decision);
- keeps track of which banks have a consumer on their queue, so that a silent bank is reported
  ``bank_unreachable`` rather than ``timeout`` without asking the broker on the hot path.

It also answers the questions: as coordinator, the decision (presumed abort with no record,
which writes nothing); as a peer, the coordinator's signed decision envelope, if it has one.

A bank may run as several processes over one ledger (``python -m bank_node --workers N``): only
the one holding the bank's ``resolver`` leadership (``storage/leadership.py``) does the work
above; the others try to take it about once a second, so that when its holder dies a survivor
becomes the resolver and recovers what the dead process left. Every process answers questions
and keeps its own view of which banks are reachable (its coordinator reads it).
"""
from __future__ import annotations

import base64
import logging
import os
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace

from broker import BrokerError, Delivery
from .. import protocol as P
from ..domain import coordinator as C
from ..domain import participant as PT
from .coordinator import Coordinator
from .outbox import Outbox
from .runtime import Runtime, now_ms

log = logging.getLogger("transfers")

STATUS_GRACE_MS = 500     # a participant waits this long past the deadline before asking
RESENDS_PER_PASS = 500    # transfers whose decision is re-sent per pass (5 passes a second)
PASS_S = 0.2
REACHABILITY_EVERY_S = 1.0
LEADERSHIP_EVERY_S = 1.0   # how often a process without the role tries to take it (the holder checks it)


class _Backoff:
    """Per-transfer capped exponential backoff (in memory: after a restart everything is due)."""

    def __init__(self, first_ms: int, cap_ms: int):
        self.first, self.cap = first_ms, cap_ms
        self.next_at: dict[str, tuple[int, int]] = {}

    def due(self, key: str, now: int) -> bool:
        return now >= self.next_at.get(key, (0, 0))[0]

    def sent(self, key: str, now: int) -> None:
        _, interval = self.next_at.get(key, (0, 0))
        interval = self.first if interval == 0 else min(interval * 2, self.cap)
        self.next_at[key] = (now + interval, interval)

    def forget_except(self, keys: set[str]) -> None:
        for k in list(self.next_at):
            if k not in keys:
                del self.next_at[k]


class Resolver:
    def __init__(self, rt: Runtime, coordinator: Coordinator, outbox: Outbox):
        self.rt = rt
        self.coordinator = coordinator
        self.outbox = outbox
        t = rt.config.timeouts
        self._resend = _Backoff(t.decision_resend_ms, t.retry_cap_ms)
        self._ask = _Backoff(t.status_query_ms, t.retry_cap_ms)
        self._consumers: dict[str, bool] = {}
        self._checked_at = 0.0
        self._started_as_worker = rt.siblings   # a worker of `--workers`: it has siblings by birth
        self.leadership = rt.store.leadership("resolver")
        self._claimed_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.claim()   # at once: a bank of one process resolves (and recovers) before it serves
        self._thread = threading.Thread(target=self._loop, name=f"resolver-{self.rt.bank_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.leadership.release()

    @property
    def leader(self) -> bool:
        """Whether this process is the bank's resolver."""
        return self.leadership.held

    def claim(self) -> bool:
        """Take the resolver's role if nobody holds it, or check that this process still does (at
        most every ``LEADERSHIP_EVERY_S``). Taking it starts with recovery."""
        if self._claimed_at is not None and time.monotonic() - self._claimed_at < LEADERSHIP_EVERY_S:
            return self.leadership.held
        self._claimed_at = time.monotonic()
        if self.leadership.held:
            if not self.leadership.check():
                log.warning("bank %s: this process (pid %d) lost the resolver's role", self.rt.bank_id, os.getpid())
            return self.leadership.held
        try:
            if not self.leadership.try_acquire():
                return False
        except OSError as e:
            log.warning("bank %s: cannot take the resolver's role: %s", self.rt.bank_id, e)
            return False
        log.info("bank %s: this process (pid %d) is the resolver", self.rt.bank_id, os.getpid())
        self.recover()
        return True

    def reachable(self, bank: str) -> bool:
        """Whether someone consumes ``bank``'s queue, as last seen (unknown counts as yes)."""
        return self._consumers.get(bank, True)

    def recover(self) -> None:
        """Rule 7, on taking the resolver's role (at start-up, or when the process that had it
        died): transfers left undecided past their deadline are aborted (nobody waits for their
        votes any more); the rest is the resolver's usual work. Younger ones may be another live
        process's, in the middle of their votes: they are aborted at their deadline by the
        passes, if nobody decided them by then."""
        with self.rt.store.transaction(write=False) as tx:
            stale = tx.coordinated_preparing(deadline_before=now_ms() - STATUS_GRACE_MS)
        for rec in stale:
            if not self.coordinator.active(rec.transfer_id):
                log.info("transfer %s: undecided past its deadline, aborting (presumed abort)", rec.transfer_id)
                self.coordinator.decide_stale(rec)

    def _loop(self) -> None:
        while not self._stop.wait(PASS_S):
            try:
                self.resolve_once()
            except Exception:  # noqa: BLE001 - keep resolving whatever happened
                log.exception("resolver pass failed")

    def resolve_once(self) -> None:
        if not self.claim():
            if self.rt.broker is not None and self.rt.broker.connected:
                self._check_consumers()
            return
        now = now_ms()
        # Only what is overdue: under load most transfers in flight are young, and decoding
        # them on every pass would cost more than the pass does.
        t = self.rt.config.timeouts
        with self.rt.store.transaction(write=False) as tx:
            unacked = tx.coordinated_unacknowledged(limit=RESENDS_PER_PASS * 4,
                                                    decided_before=(now - t.decision_resend_ms) / 1000)
            preparing = tx.coordinated_preparing(deadline_before=now - STATUS_GRACE_MS)
            prepared = tx.participations_in("prepared", deadline_before=now - STATUS_GRACE_MS)
        for rec in preparing:
            if not self.coordinator.active(rec.transfer_id) and now > rec.deadline_ms + STATUS_GRACE_MS:
                self.coordinator.decide_stale(rec)
        broker = self.rt.broker
        if broker is None or not broker.connected:
            return
        self._check_consumers()
        self._resend_decisions(unacked, now)
        self._ask_outcomes(prepared, now)
        self.outbox.flush()

    def _resend_decisions(self, unacked: list[C.CoordinatedTransfer], now: int) -> None:
        limit_ms = self.rt.config.timeouts.decision_resend_limit_s * 1000
        budget, keys, stopped = RESENDS_PER_PASS, set(), []
        fetch = self.coordinator.evidence_reader()
        for rec in unacked:
            tid = rec.transfer_id
            keys.add(tid)
            if rec.decided_at is not None and now - rec.decided_at * 1000 > limit_ms:
                stopped.append(rec)
                continue
            if budget <= 0 or not self._resend.due(tid, now):
                continue
            budget -= 1
            for eff in C.pending_decisions(rec):
                if eff.bank == self.rt.bank_id:
                    continue   # our own legs take the decision in its own transaction
                self.outbox.queue(eff.bank, P.Decision(transfer_id=tid, outcome=eff.outcome),
                                  self.coordinator.commit_proofs(rec, eff.bank, fetch))
                self.rt.count("decisions_sent", outcome=eff.outcome)
            self._resend.sent(tid, now)
        self._resend.forget_except(keys)
        if stopped:
            def unit(tx):
                for rec in stopped:
                    tx.put_coordinated(replace(rec, resend_stopped=True))
            self.rt.writer.run(unit, durable=False)
            for rec in stopped:
                log.warning("transfer %s: decision unacknowledged by %s after %d s; no more re-sends (they "
                            "may still ask)", rec.transfer_id,
                            ", ".join(b for b, p in rec.participants.items() if not p.acked),
                            self.rt.config.timeouts.decision_resend_limit_s,
                            extra={"transfer_id": rec.transfer_id, "event": "resend_stopped"})

    def _ask_outcomes(self, prepared: list[PT.Participation], now: int) -> None:
        keys = set()
        for part in prepared:
            tid = part.transfer_id
            keys.add(tid)
            if not PT.needs_outcome(part.state, part.deadline_ms, now, STATUS_GRACE_MS) or not self._ask.due(tid, now):
                continue
            if part.coordinator == self.rt.bank_id:
                continue   # ours: the coordinator side above settles it
            self.rt.count("status_queries_sent")
            q = P.StatusQuery(transfer_id=tid, bank=self.rt.bank_id, coordinator=part.coordinator)
            self.outbox.queue(part.coordinator, q)
            if self.rt.config.cooperative_termination:
                for peer in part.peers:
                    if peer not in (self.rt.bank_id, part.coordinator):
                        self.outbox.queue(peer, q)
            self._ask.sent(tid, now)
        self._ask.forget_except(keys)

    def _check_consumers(self) -> None:
        if time.monotonic() - self._checked_at < REACHABILITY_EVERY_S:
            return
        self._checked_at = time.monotonic()
        for bank in self.rt.config.bank_ids:
            try:
                n = self.rt.broker.consumer_count(bank).result(timeout=2)
            except (BrokerError, FutureTimeout):
                continue
            if bank == self.rt.bank_id:
                # Other processes of this bank (workers, or started by hand, here or on other
                # machines) take some of its acknowledgements: a request waiting for them then
                # looks in the ledger soon, not every 250 ms.
                self.rt.siblings = self._started_as_worker or (n or 0) > 1
            else:
                self._consumers[bank] = bool(n)

    # answering questions ---------------------------------------------------------------------
    def on_status_queries(self, d: Delivery, env: P.Envelope, items: list[P.StatusQuery]) -> None:
        """As coordinator: the decision, or presumed abort (nothing written). As a peer, with
        cooperative termination: the coordinator's own signed decision, relayed as it is."""
        answers: list = []
        decided: list = []   # (question, record): their proofs are read once the transaction ends
        with self.rt.store.transaction(write=False) as tx:
            for q in items:
                if q.coordinator == self.rt.bank_id:
                    rec = tx.get_coordinated(q.transfer_id)
                    for eff in C.on_status_query(rec, q.bank):
                        decided.append((q, rec, eff.outcome))
                        self.rt.count("decisions_sent", outcome=eff.outcome)
                elif self.rt.config.cooperative_termination:
                    part = tx.get_participant(q.transfer_id, q.coordinator)
                    if part is None or part.decision_evidence is None or q.bank not in part.peers:
                        continue
                    ev = tx.get_evidence(part.decision_evidence)
                    if ev is not None:
                        answers.append((P.Relay(transfer_id=q.transfer_id, coordinator=q.coordinator,
                                                envelope=base64.b64encode(bytes(ev["body"])).decode(),
                                                signature=ev["signature"]), []))
        fetch = self.coordinator.evidence_reader()
        for q, rec, outcome in decided:
            answers.append((P.Decision(transfer_id=q.transfer_id, outcome=outcome),
                            self.coordinator.commit_proofs(rec, q.bank, fetch) if rec else []))
        for item, proofs in answers:
            self.outbox.queue(env.sender, item, proofs)
        self.outbox.flush()
