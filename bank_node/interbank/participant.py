"""Participant: where a PREPARE and a decision get handled, for this bank's legs.

A whole envelope of PREPAREs is one unit of the group-commit writer, with a savepoint per
transfer: a transfer that fails rolls back to its savepoint alone and becomes a NO for that
transfer only; one COMMIT (one fsync, shared with whatever else was queued) makes every hold
durable, and only then does the envelope of votes leave (docs/protocol.md, rules 1 and 3). If
the COMMIT fails, no vote leaves at all and the coordinator aborts on its deadline.

Every check is this bank's own: the whole transfer must add up (``domain/transfer.py``), each
debit needs the holder's consent when another bank initiates it (``domain/consent.py``), the
money rules hold (``domain/ledger.py``), and a credit must fit under the cap this bank sets on
each debit bank (``domain/settlement.py``). The coordinator's own legs go through the very same
steps, called in-process inside its begin and decision transactions.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
from collections.abc import MutableMapping
from concurrent.futures import Future

from broker import Delivery
from .. import protocol as P
from ..domain import participant as PT
from ..domain import settlement
from ..domain.coordinator import CoordinatedTransfer
from ..domain.ledger import AccountFigures
from ..domain.transfer import Leg
from ..faults import armed, crash_point
from .outbox import Outbox
from .runtime import Runtime, now_ms

log = logging.getLogger("interbank")

PROVEN_CACHE = 4096
"""Vote envelopes whose signature a participant remembers having checked."""


class Exposure(MutableMapping):
    """Per peer bank: its position plus the claims of transfers still pending (``Tx.exposure``),
    read from the ledger the first time a credit here needs it, inside the caller's transaction:
    a PREPARE that only debits accounts here (most of them) has no cap to check and reads none."""

    def __init__(self, tx):
        self._tx = tx
        self._read: dict[str, int] | None = None

    def _data(self) -> dict[str, int]:
        if self._read is None:
            self._read = self._tx.exposure()
        return self._read

    def __getitem__(self, peer: str) -> int:
        return self._data()[peer]

    def __setitem__(self, peer: str, amount: int) -> None:
        self._data()[peer] = amount

    def __delitem__(self, peer: str) -> None:
        del self._data()[peer]

    def __iter__(self):
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())


def legs_of(msg: P.Prepare) -> tuple[Leg, ...]:
    return tuple(Leg(l.bank, l.account, l.amount, l.direction) for l in msg.legs)


class Participant:
    def __init__(self, rt: Runtime, outbox: Outbox):
        self.rt = rt
        self.outbox = outbox
        self._proven: dict[tuple[str, str, bytes], frozenset[tuple[str, str]]] = {}
        self._proven_lock = threading.Lock()

    # PREPARE ----------------------------------------------------------------------------------
    def on_prepares(self, d: Delivery, env: P.Envelope, items: list[P.Prepare]) -> Future:
        """An envelope of PREPAREs from its coordinator: one writer unit, then one vote envelope."""
        def unit(tx):
            now = time.time()
            evidence = self.rt.evidence(tx, env.sender, d.body, d.headers, now)
            exposure = Exposure(tx)
            votes = []
            for item in items:
                try:
                    with tx.savepoint():
                        votes.append(self.prepare(tx, item.coordinator, item.transfer_id, item.initiator,
                                                  item.deadline_ms, legs_of(item), exposure, evidence, now))
                except Exception:  # noqa: BLE001 - this transfer alone is refused
                    log.exception("transfer %s: PREPARE failed; voting NO", item.transfer_id)
                    votes.append(PT.Vote(False, (("*", "error"),)))
            if armed("participant.before_prepare_durable"):
                crash_point("participant.before_prepare_durable")
            return votes

        fut = self.rt.writer.submit(unit)

        def answer(f: Future) -> None:
            if f.exception() is not None:
                return  # nothing written: no vote leaves; the coordinator aborts on its deadline
            votes = f.result()
            if any(v.yes for v in votes):
                crash_point("participant.after_prepare_durable")
            msgs = [self._vote_msg(item.transfer_id, v) for item, v in zip(items, votes)]
            tampered = sum(1 for v in votes if v.reasons == (("*", "tampered"),))
            if tampered:
                self.rt.count("messages_rejected", tampered, reason="tampered")
            if d.reply_to and self.rt.broker is not None:
                body, headers = self.rt.seal(*msgs)
                self.rt.broker.reply(d.reply_to, d.correlation_id, body, headers)
        fut.add_done_callback(answer)
        return fut

    def _vote_msg(self, transfer_id: str, v: PT.Vote) -> P.VoteMsg:
        self.rt.count("votes_sent", vote="yes" if v.yes else "no")
        return P.VoteMsg(transfer_id=transfer_id, bank=self.rt.bank_id, vote="yes" if v.yes else "no",
                         reasons=[P.Reason(account=a, code=c[:64]) for a, c in v.reasons][:64])

    def prepare(self, tx, coordinator: str, transfer_id: str, initiator: str, deadline_ms: int,
                legs: tuple[Leg, ...], exposure: MutableMapping[str, int], evidence: str | None,
                now: float) -> PT.Vote:
        """Rule 3 for one transfer, inside the caller's transaction: check, hold, record, vote."""
        rt, bank = self.rt, self.rt.bank_id
        seen = tx.participations_of(transfer_id)   # one read: ours, and any other bank's use of the id
        existing = next((p for p in seen if p.coordinator == coordinator), None)
        conflict = existing is None and any(p.coordinator != coordinator and p.state != "aborted" for p in seen)
        mine = [leg for leg in legs if leg.bank == bank]
        accounts, consents = {}, {}
        if existing is None:
            for leg in mine:
                accounts[leg.account] = self._account_view(tx, leg.account, now)
                if leg.is_debit and coordinator != bank:
                    m = tx.active_mandate(leg.account, coordinator, now)
                    consents[leg.account] = PT.Consent(m, tx.mandate_used(m.id, rt.day(now)) if m else 0)
        decision = PT.on_prepare(existing, conflict=conflict, coordinator=coordinator, initiator=initiator,
                                 deadline_ms=deadline_ms, legs=legs, rules=rt.rules, accounts=accounts,
                                 consents=consents, exposure=exposure, now_ms=now_ms(), now=now)
        if decision.new_state:
            tx.put_participant(PT.Participation(
                transfer_id, coordinator, decision.new_state, deadline_ms, initiator, legs,
                decision.vote.reasons, now, now, prepare_evidence=evidence))
            for account, amount in decision.holds:
                tx.place_hold(transfer_id, account, amount, now)
            for peer, amount in decision.claims:
                # The running exposure first: a lazy one reads the ledger at its first use, and
                # must not find this claim there and then add it again.
                exposure[peer] = exposure.get(peer, 0) + amount
                tx.add_claim(transfer_id, coordinator, peer, amount)
            for mandate_id, account, amount in decision.mandate_uses:
                tx.add_mandate_use(mandate_id, transfer_id, account, amount, rt.day(now))
            if decision.new_state == "prepared":
                rt.count("holds_placed", len(decision.holds))
        log.debug("transfer %s: voted %s", transfer_id, "YES" if decision.vote.yes else "NO",
                  extra={"transfer_id": transfer_id, "event": "vote"})
        return decision.vote

    def _account_view(self, tx, number: str, now: float) -> PT.AccountView | None:
        acc = tx.account_standing(number, self.rt.day(now))
        if acc is None:
            return None
        return PT.AccountView(number, acc["status"], acc["holders"],
                              AccountFigures(acc["balance"], acc["held"], acc["debits"] + acc["held"]))

    # decisions --------------------------------------------------------------------------------
    def voted_yes(self, proofs: list[P.VoteProof], coordinator: str) -> set[tuple[str, str]]:
        """(bank, transfer id) of every YES vote that its bank really signed, among the vote
        envelopes a coordinator relays with its COMMITs. Only the votes a COMMIT here needs are
        checked: never this bank's own (its ledger holds what it voted) nor the coordinator's
        (it decides). An envelope whose signature checked out once is remembered (by its bank,
        signature and the hash of its whole text): a vote envelope covers several transfers,
        whose COMMITs may come in several envelopes, and an Ed25519 check costs more than the
        rest of a proof. A proof that failed is checked again each time; it proves nothing."""
        out: set[tuple[str, str]] = set()
        for proof in {(p.bank, p.signature): p for p in proofs}.values():
            if proof.bank in (self.rt.bank_id, coordinator):
                continue
            key = (proof.bank, proof.signature, hashlib.sha256(proof.envelope.encode()).digest())
            yes = self._proven.get(key)
            if yes is None:
                yes = self._check_proof(proof)
                if yes is None:
                    continue
                with self._proven_lock:
                    self._proven[key] = yes
                    if len(self._proven) > PROVEN_CACHE:
                        self._proven.pop(next(iter(self._proven)))
            out |= yes
        return out

    def _check_proof(self, proof: P.VoteProof) -> frozenset[tuple[str, str]] | None:
        """The YES votes of a vote envelope its bank signed, or None when it is not one."""
        try:
            body = base64.b64decode(proof.envelope, validate=True)
        except ValueError:
            return None
        if self.rt.keyring is None or not self.rt.keyring.verify(proof.bank, body, proof.signature):
            return None
        try:
            env = P.decode(body)
        except P.BadMessage:
            return None
        if env.sender != proof.bank or env.ns != self.rt.config.consortium:
            return None
        return frozenset((proof.bank, v.transfer_id) for v in env.items
                         if isinstance(v, P.VoteMsg) and v.bank == proof.bank and v.vote == "yes")

    def on_decisions(self, d: Delivery, env: P.Envelope, items: list[P.Decision]) -> Future:
        """An envelope of decisions from a coordinator: applied in one unit; acknowledgements
        go back in one envelope once it is durable."""
        coordinator = env.sender
        # Without signatures (a consortium of banks that trust each other) nothing can be proved.
        proven = self.voted_yes([i for i in env.items if isinstance(i, P.VoteProof)], coordinator) \
            if self.rt.keyring is not None else None

        def unit(tx):
            now = time.time()
            evidence = self.rt.evidence(tx, coordinator, d.body, d.headers, now)
            results = []
            half = len(items) // 2
            for i, item in enumerate(items):
                if i == half and i > 0:
                    crash_point("participant.mid_decision_batch")
                with tx.savepoint():
                    results.append(self.apply(tx, item.transfer_id, coordinator, item.outcome, evidence, now,
                                              proven=proven))
            return results

        fut = self.rt.writer.submit(unit)

        def after(f: Future) -> None:
            if f.exception() is not None:
                return  # not applied: the delivery is redelivered or the decision re-sent
            for item, result in zip(items, f.result()):
                if result == "applied" and item.outcome == "commit":
                    crash_point("participant.after_commit_applied")
                if result in ("applied", "again"):
                    self.outbox.queue(coordinator, P.DecisionAck(transfer_id=item.transfer_id, bank=self.rt.bank_id,
                                                                 outcome=item.outcome))
                elif result in ("not_coordinator", "unproven_commit"):
                    self.rt.count("messages_rejected", reason=result)
        fut.add_done_callback(after)
        return fut

    def apply(self, tx, transfer_id: str, coordinator: str, outcome: str, evidence: str | None,
              now: float, proven: set[tuple[str, str]] | None = None) -> str:
        """Apply one decision inside the caller's transaction. Returns "applied", "again" (a
        duplicate, acknowledged again), "violation", "not_coordinator" or "unproven_commit".

        A COMMIT from another bank is applied only with the signed YES of every other bank that
        holds a leg (``proven``: the vote envelopes the coordinator relays): a coordinator cannot
        make this bank credit money on a claim on a bank that never agreed. ``proven`` None: the
        coordinator is this bank itself, which holds the votes."""
        rec = tx.get_participant(transfer_id, coordinator)
        if rec is None and any(p.legs for p in tx.participations_of(transfer_id)):
            # Another bank coordinates this id here: a decision from this sender is not its to make.
            log.warning("transfer %s: a decision from %s, which does not coordinate it here", transfer_id,
                        coordinator, extra={"transfer_id": transfer_id, "event": "refused"})
            return "not_coordinator"
        eff = PT.on_decision(rec.state if rec else None, outcome)
        if eff.violation:
            self.rt.count("messages_rejected", reason="violation")
            log.error("transfer %s: %s (from %s)", transfer_id, eff.violation, coordinator,
                      extra={"transfer_id": transfer_id, "event": "violation"})
            return "violation"
        if eff.apply_commit and proven is not None:
            needed = {leg.bank for leg in rec.legs if leg.bank} - {self.rt.bank_id, coordinator}
            missing = sorted(b for b in needed if (b, transfer_id) not in proven)
            if missing:
                log.error("transfer %s: a COMMIT from %s without the signed YES of %s, refused", transfer_id,
                          coordinator, ", ".join(missing), extra={"transfer_id": transfer_id, "event": "refused"})
                return "unproven_commit"
        if eff.apply_commit:
            crash_point("participant.before_commit_applied")
            for leg in rec.own_legs(self.rt.bank_id) or [l for l in rec.legs if l.bank == ""]:
                signed = -leg.amount if leg.is_debit else leg.amount
                tx.append_entry(leg.account, "transfer_out" if leg.is_debit else "transfer_in", signed, now,
                                transfer_id, day=self.rt.day(now))
            if rec.legs and all(leg.bank for leg in rec.legs):
                for peer, amount in settlement.postings(rec.legs, self.rt.bank_id).items():
                    tx.post_settlement(peer, transfer_id, amount, now)
        if eff.apply_commit or eff.release_holds:
            tx.release_holds(transfer_id)
            tx.release_claims(transfer_id, coordinator)
        if eff.release_holds:
            tx.release_mandate_uses(transfer_id)
        if eff.new_state:
            tx.put_participant(PT.decided(rec, transfer_id=transfer_id, coordinator=coordinator,
                                          new_state=eff.new_state, now=now, evidence=evidence))
            self.rt.count("decisions_applied", outcome=outcome)
            # One line per transfer at each bank: its outcome here (votes are at debug level; the
            # coordinator's line is its decision, so its own legs are at debug level too).
            log.log(logging.DEBUG if coordinator == self.rt.bank_id else logging.INFO,
                    "transfer %s: %s applied", transfer_id, outcome.upper(),
                    extra={"transfer_id": transfer_id, "event": "applied"})
            return "applied"
        return "again"

    # the coordinator's own legs -------------------------------------------------------------
    def prepare_local(self, tx, rec: CoordinatedTransfer, now: float) -> PT.Vote:
        """This bank's legs of a transfer it coordinates, in the coordinator's begin transaction."""
        return self.prepare(tx, self.rt.bank_id, rec.transfer_id, rec.initiator, rec.deadline_ms, rec.legs,
                            Exposure(tx), None, now)

    # relayed decisions (cooperative termination) ---------------------------------------------
    def on_relays(self, d: Delivery, env: P.Envelope, items: list[P.Relay]) -> Future | None:
        """A peer relays the coordinator's signed decision: verified against the coordinator's
        key, then applied exactly as if the coordinator had sent it (and acknowledged to it)."""
        decisions: list[tuple[str, str, str, bytes, str, set]] = []  # (tid, coordinator, outcome, body, sig, proven)
        for item in items:
            try:
                body = base64.b64decode(item.envelope, validate=True)
            except ValueError:
                body = b""
            ok = self.rt.keyring is not None and self.rt.keyring.verify(item.coordinator, body, item.signature)
            inner = None
            if ok:
                try:
                    inner = P.decode(body)
                except P.BadMessage:
                    ok = False
            if not ok or inner.sender != item.coordinator or inner.ns != self.rt.config.consortium:
                self.rt.count("messages_rejected", reason="forged_relay")
                log.warning("transfer %s: a relay from %s that the coordinator did not sign, refused",
                            item.transfer_id, env.sender, extra={"transfer_id": item.transfer_id, "event": "refused"})
                continue
            proven = self.voted_yes([x for x in inner.items if isinstance(x, P.VoteProof)], item.coordinator)
            for x in inner.items:
                if isinstance(x, P.Decision) and x.transfer_id == item.transfer_id:
                    decisions.append((x.transfer_id, item.coordinator, x.outcome, body, item.signature, proven))
        if not decisions:
            return None

        def unit(tx):
            now = time.time()
            out = []
            for tid, coordinator, outcome, body, sig, proven in decisions:
                evidence = self.rt.evidence(tx, coordinator, body, {"sig": sig}, now)
                rec = tx.get_participant(tid, coordinator)
                if rec is None or rec.state != "prepared":
                    continue  # only a participant in doubt needs a relayed decision
                with tx.savepoint():
                    out.append((tid, coordinator, outcome,
                                self.apply(tx, tid, coordinator, outcome, evidence, now, proven=proven)))
            return out

        fut = self.rt.writer.submit(unit)

        def after(f: Future) -> None:
            if f.exception() is None:
                for tid, coordinator, outcome, result in f.result():
                    if result == "applied":
                        self.rt.count("relays_applied")
                        self.outbox.queue(coordinator, P.DecisionAck(transfer_id=tid, bank=self.rt.bank_id,
                                                                     outcome=outcome))
        fut.add_done_callback(after)
        return fut
