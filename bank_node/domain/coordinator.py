"""The coordinator side of two-phase commit, as pure functions over a typed transfer record.

The bank where a customer starts a transfer coordinates it. Each function takes the record and
an event, and returns the new record and the effects to perform. The runtime writes the record
durably *before* performing the effects, which is what makes "the COMMIT decision is written
durably before any COMMIT is sent" true (docs/protocol.md, rule 5). With presumed abort, a
transfer with no record, or never decided, is aborted.

States: preparing -> committed | aborted. ``participants`` maps each bank holding a leg to what
the coordinator knows of it: its vote, whether it acknowledged the decision, and when each
step happened (the transfer's timeline).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Mapping

from .transfer import Leg, banks_of, total

Outcome = Literal["commit", "abort"]
State = Literal["preparing", "committed", "aborted"]


@dataclass(frozen=True)
class Peer:
    """One participant bank as its coordinator sees it."""
    vote: Literal["yes", "no", "unsent"] | None = None
    acked: bool = False
    sent_ms: int | None = None      # PREPARE handed to the broker
    vote_ms: int | None = None      # vote received
    ack_ms: int | None = None       # decision acknowledged
    evidence: str | None = None     # hash of the signed vote envelope


@dataclass(frozen=True)
class Failure:
    bank: str
    account: str
    reason: str


@dataclass(frozen=True)
class CoordinatedTransfer:
    transfer_id: str
    initiator: str
    request_hash: str
    state: State
    deadline_ms: int
    legs: tuple[Leg, ...]
    participants: Mapping[str, Peer]
    failures: tuple[Failure, ...] = ()
    created_at: float = 0.0
    decided_at: float | None = None
    decision_sent_ms: int | None = None
    resend_stopped: bool = False    # gave up re-sending the decision (the participants still ask)

    @property
    def pending_acks(self) -> int:
        return sum(1 for p in self.participants.values() if not p.acked) if self.state != "preparing" else 0

    @property
    def amount(self) -> int:
        return total(self.legs)

    @property
    def outcome(self) -> Outcome | None:
        return {"committed": "commit", "aborted": "abort"}.get(self.state)  # type: ignore[return-value]

    def peer(self, bank: str) -> Peer:
        return self.participants[bank]

    def with_peer(self, bank: str, **changes) -> "CoordinatedTransfer":
        return replace(self, participants={**self.participants, bank: replace(self.participants[bank], **changes)})


@dataclass(frozen=True)
class SendPrepare:
    bank: str


@dataclass(frozen=True)
class SendDecision:
    bank: str
    outcome: Outcome


@dataclass(frozen=True)
class Persist:
    pass


Effect = SendPrepare | SendDecision | Persist


def begin(transfer_id: str, initiator: str, request_hash: str, legs: tuple[Leg, ...], deadline_ms: int,
          now: float) -> tuple[CoordinatedTransfer, list[Effect]]:
    """A new transfer: recorded as preparing before any PREPARE leaves, so that a restart
    knows it must abort it."""
    banks = banks_of(legs)
    rec = CoordinatedTransfer(transfer_id, initiator, request_hash, "preparing", deadline_ms, tuple(legs),
                              {b: Peer() for b in banks}, created_at=now)
    return rec, [Persist()] + [SendPrepare(b) for b in banks]


def _decide(rec: CoordinatedTransfer, outcome: Outcome, now: float,
            failures: tuple[Failure, ...] = ()) -> tuple[CoordinatedTransfer, list[Effect]]:
    effects: list[Effect] = [Persist()]
    peers = dict(rec.participants)
    for bank, p in sorted(peers.items()):
        if outcome == "abort" and p.vote in ("no", "unsent"):
            # It voted NO (and recorded the abort on its own), or its PREPARE never left:
            # either way it holds nothing for this transfer and needs no decision.
            peers[bank] = replace(p, acked=True)
        else:
            effects.append(SendDecision(bank, outcome))
    rec = replace(rec, state="committed" if outcome == "commit" else "aborted", decided_at=now,
                  participants=peers, failures=rec.failures + failures)
    return rec, effects


def on_vote(rec: CoordinatedTransfer, bank: str, yes: bool, reasons: list[tuple[str, str]], now_ms: int,
            now: float, evidence: str | None = None) -> tuple[CoordinatedTransfer, list[Effect]]:
    """A vote counts only while preparing and before the deadline; any NO aborts at once, the
    last YES commits. Late or duplicate votes change nothing."""
    if rec.state != "preparing" or bank not in rec.participants or now_ms > rec.deadline_ms:
        return rec, []
    if rec.participants[bank].vote is not None:
        return rec, []
    rec = rec.with_peer(bank, vote="yes" if yes else "no", vote_ms=now_ms, evidence=evidence)
    if not yes:
        failures = tuple(Failure(bank, a, c) for a, c in reasons) or (Failure(bank, "*", "refused"),)
        return _decide(rec, "abort", now, failures)
    if all(p.vote == "yes" for p in rec.participants.values()):
        return _decide(rec, "commit", now)
    return rec, []


def on_deadline(rec: CoordinatedTransfer, unreachable: set[str], now: float) -> tuple[CoordinatedTransfer, list[Effect]]:
    """No vote by the deadline means ABORT: the silent banks are named, as unreachable when
    nobody consumes their queue, else as having timed out."""
    if rec.state != "preparing":
        return rec, []
    failures = tuple(Failure(b, "*", "bank_unreachable" if b in unreachable else "timeout")
                     for b, p in sorted(rec.participants.items()) if p.vote is None)
    return _decide(rec, "abort", now, failures)


def on_error(rec: CoordinatedTransfer, bank: str | None, reason: str, now: float) -> tuple[CoordinatedTransfer, list[Effect]]:
    """Any error while preparing (a PREPARE nobody can route, the broker gone) is an ABORT."""
    if rec.state != "preparing":
        return rec, []
    return _decide(rec, "abort", now, (Failure(bank or "*", "*", reason),))


def on_unsent(rec: CoordinatedTransfer, bank: str, now: float) -> tuple[CoordinatedTransfer, list[Effect]]:
    """The PREPARE for ``bank`` never reached the broker (no connection, no queue, refused by
    a full queue): ABORT, and that bank, which cannot have prepared, is not sent the decision
    (no re-send storm of ABORTs for transfers nobody saw after a broker outage)."""
    if rec.state != "preparing" or bank not in rec.participants:
        return rec, []
    rec = rec.with_peer(bank, vote="unsent")
    return _decide(rec, "abort", now, (Failure(bank, "*", "bank_unreachable"),))


def on_ack(rec: CoordinatedTransfer, bank: str, outcome: Outcome, now_ms: int) -> tuple[CoordinatedTransfer, list[Effect]]:
    if rec.state == "preparing" or outcome != rec.outcome or bank not in rec.participants \
            or rec.participants[bank].acked:
        return rec, []
    return rec.with_peer(bank, acked=True, ack_ms=now_ms), [Persist()]


def on_status_query(rec: CoordinatedTransfer | None, bank: str) -> list[Effect]:
    """Answer a participant in doubt. Presumed abort: no record means aborted. While still
    preparing, say nothing: the decision will be sent when it is made. Only the transfer's own
    participants learn its outcome."""
    if rec is None:
        return [SendDecision(bank, "abort")]
    if rec.state == "preparing" or bank not in rec.participants:
        return []
    return [SendDecision(bank, rec.outcome)]


def on_recover(rec: CoordinatedTransfer, now: float) -> tuple[CoordinatedTransfer, list[Effect]]:
    """After a restart (or a request that stalled past its deadline): an undecided transfer is
    aborted; a decided one is re-sent to every participant that has not acknowledged it."""
    if rec.state == "preparing":
        failures = tuple(Failure(b, "*", "timeout") for b, p in sorted(rec.participants.items()) if p.vote is None)
        return _decide(rec, "abort", now, failures or (Failure("*", "*", "coordinator_restarted"),))
    return rec, pending_decisions(rec)


def pending_decisions(rec: CoordinatedTransfer) -> list[Effect]:
    if rec.state == "preparing":
        return []
    return [SendDecision(b, rec.outcome) for b, p in sorted(rec.participants.items()) if not p.acked]


def public_status(state: str) -> str:
    """The customer's word for a coordinator's or a participant's state."""
    return {"preparing": "pending", "prepared": "pending", "committed": "committed", "aborted": "aborted"}[state]


def first_reason(failures: tuple[Failure, ...]) -> str:
    return failures[0].reason if failures else "aborted"


def leg_reasons(rec: CoordinatedTransfer) -> Mapping[tuple[str, str], str]:
    """The reason of each refused leg: its own, or its bank's when the whole bank failed."""
    per_leg = {(f.bank, f.account): f.reason for f in rec.failures}
    per_bank = {f.bank: f.reason for f in rec.failures if f.account == "*"}
    return {(leg.bank, leg.account): per_leg.get((leg.bank, leg.account)) or per_bank.get(leg.bank, "")
            for leg in rec.legs}

