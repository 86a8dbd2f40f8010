"""The participant side of two-phase commit, as pure functions: (record, event) -> decision.

A bank is a participant of every transfer with a leg (a debit or the credit) at one of its
accounts. The runtime (``bank_node/interbank/participant.py``) loads what these functions need
inside one local transaction, calls them, writes what they return in that same transaction, and
only after the commit sends the vote or acknowledgement (docs/protocol.md, rules 1-4).

A participation is named by its coordinator *and* its transfer id: an ABORT that some bank sends
for an id it does not coordinate can never block the real coordinator's transfer of that id.

States: none -> prepared -> committed | aborted, or none -> aborted.
A participant that voted YES (``prepared``) never leaves that state on its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Literal, Mapping

from . import settlement
from .consent import Mandate, mandate_refusal
from .ledger import AccountFigures, Limits, debit_refusal
from .transfer import Leg, whole_transfer_refusals

Outcome = Literal["commit", "abort"]
State = Literal["prepared", "committed", "aborted"]


@dataclass(frozen=True)
class Participation:
    """This bank's record of one transfer it takes part in."""
    transfer_id: str
    coordinator: str
    state: State
    deadline_ms: int
    initiator: str
    legs: tuple[Leg, ...]            # the whole transfer, as the PREPARE carried it
    reasons: tuple[tuple[str, str], ...]
    created_at: float
    updated_at: float
    prepare_evidence: str | None = None   # hash of the signed PREPARE envelope
    decision_evidence: str | None = None  # hash of the signed decision envelope

    def own_legs(self, bank_id: str) -> list[Leg]:
        return [leg for leg in self.legs if leg.bank == bank_id]

    @property
    def peers(self) -> list[str]:
        return sorted({leg.bank for leg in self.legs})


@dataclass(frozen=True)
class Rules:
    """This bank's own reading of the consortium's rules (its copy of the configuration)."""
    bank_id: str
    bank_ids: tuple[str, ...]
    max_legs: int
    ttl_ms: int
    max_amount_of: Callable[[str], int]
    limits: Limits                       # this bank's own money limits
    caps: Mapping[str, int] = field(default_factory=dict)   # net debit cap per peer


@dataclass(frozen=True)
class AccountView:
    """What the ledger says of one of this bank's accounts at the moment of the PREPARE."""
    number: str
    status: str
    holders: frozenset[str]
    figures: AccountFigures


@dataclass(frozen=True)
class Consent:
    """The mandate that lets the coordinator debit an account, and what it let leave today."""
    mandate: Mandate | None
    used_today: int = 0


@dataclass(frozen=True)
class Vote:
    yes: bool
    reasons: tuple[tuple[str, str], ...] = ()  # (account or "*", code) of each refusal


@dataclass(frozen=True)
class PrepareDecision:
    vote: Vote
    new_state: State | None = None                    # None: nothing to write (a duplicate)
    holds: tuple[tuple[str, int], ...] = ()            # (account, amount) to hold, debits only
    claims: tuple[tuple[str, int], ...] = ()           # (peer, amount) pending claims on peers
    mandate_uses: tuple[tuple[str, str, int], ...] = ()  # (mandate id, account, amount)
    tampered: bool = False                             # a replay with other content: refuse it


def leg_refusals(legs: list[Leg], coordinator: str, initiator: str, rules: Rules,
                 accounts: Mapping[str, AccountView | None], consents: Mapping[str, Consent],
                 now: float) -> list[tuple[str, str]]:
    """Every reason this bank refuses one of its own legs: the account exists and is open; for a
    debit, the initiator is a holder, the coordinator has the holder's mandate when it is
    another bank, and the money rules of ``domain/ledger.py`` hold (available funds, this
    bank's per-operation and daily limits, pending holds counted)."""
    out: list[tuple[str, str]] = []
    debited: dict[str, int] = {}
    for leg in legs:
        acc = accounts.get(leg.account)
        if acc is None or (leg.is_debit and initiator not in acc.holders):
            # Debiting someone else's account reads exactly as a missing one, before its state:
            # a transfer must not tell whether someone else's account exists.
            out.append((leg.account, "not_found"))
            continue
        if acc.status == "pending":   # a holder has not accepted the account yet
            out.append((leg.account, "account_pending"))
            continue
        if acc.status != "open":
            out.append((leg.account, "account_closed"))
            continue
        if not leg.is_debit:
            continue
        if coordinator != rules.bank_id:
            consent = consents.get(leg.account) or Consent(None)
            why = mandate_refusal(consent.mandate, leg.amount, consent.used_today, now)
            if why:
                out.append((leg.account, why))
                continue
        why = debit_refusal(acc.figures, leg.amount, rules.limits, already=debited.get(leg.account, 0))
        if why:
            out.append((leg.account, why))
            continue
        debited[leg.account] = debited.get(leg.account, 0) + leg.amount
    return out


def on_prepare(existing: Participation | None, *, conflict: bool, coordinator: str, initiator: str,
               deadline_ms: int, legs: tuple[Leg, ...], rules: Rules,
               accounts: Mapping[str, AccountView | None], consents: Mapping[str, Consent],
               exposure: Mapping[str, int], now_ms: int, now: float) -> PrepareDecision:
    """Rule 3 and rule 6: check the whole transfer and our legs, hold, record prepared, then vote
    YES; else NO and remember it. A redelivered PREPARE gets the first answer again and writes
    nothing (rule 2); a replay with other content is refused as tampered."""
    if existing is not None:
        if existing.legs and (existing.initiator != initiator or existing.legs != legs):
            return PrepareDecision(Vote(False, (("*", "tampered"),)), tampered=True)
        if existing.state in ("prepared", "committed"):
            return PrepareDecision(Vote(True))
        return PrepareDecision(Vote(False, existing.reasons))
    mine = [leg for leg in legs if leg.bank == rules.bank_id]
    refusals = whole_transfer_refusals(list(legs), bank_ids=rules.bank_ids, max_legs=rules.max_legs,
                                       max_amount_of=rules.max_amount_of, deadline_ms=deadline_ms,
                                       now_ms=now_ms, ttl_ms=rules.ttl_ms)
    if not mine:
        refusals.append(("*", "no_leg_here"))
    if conflict:
        refusals.append(("*", "id_in_use"))
    if not refusals:
        refusals = leg_refusals(mine, coordinator, initiator, rules, accounts, consents, now)
    new_claims = settlement.claims(legs, rules.bank_id) if not refusals else {}
    if new_claims and settlement.cap_refusals(new_claims, dict(exposure), dict(rules.caps)):
        refusals = [("*", "peer_cap_exceeded")]
    if refusals:
        return PrepareDecision(Vote(False, tuple(refusals)), new_state="aborted")
    holds = tuple((leg.account, leg.amount) for leg in mine if leg.is_debit)
    uses = tuple((consents[leg.account].mandate.id, leg.account, leg.amount)
                 for leg in mine if leg.is_debit and coordinator != rules.bank_id)
    return PrepareDecision(Vote(True), new_state="prepared", holds=holds,
                           claims=tuple(sorted(new_claims.items())), mandate_uses=uses)


@dataclass(frozen=True)
class DecisionEffects:
    new_state: State | None = None  # None: nothing to write
    apply_commit: bool = False      # turn holds into debits, pending credits into credits
    release_holds: bool = False
    acknowledge: bool = True        # tell the coordinator it is applied
    violation: str | None = None    # a message that should never happen under the protocol


def on_decision(state: State | None, outcome: Outcome) -> DecisionEffects:
    """Apply a COMMIT or ABORT exactly once; a duplicate is acknowledged again, nothing more.

    An ABORT for a transfer never seen is remembered (under the sender as coordinator), so a
    PREPARE of that coordinator that arrives late is answered NO (rule 6)."""
    if outcome == "commit":
        if state == "prepared":
            return DecisionEffects(new_state="committed", apply_commit=True)
        if state == "committed":
            return DecisionEffects()
        return DecisionEffects(acknowledge=False,
                               violation=f"COMMIT received for a transfer in state {state or 'unknown'}")
    if state == "prepared":
        return DecisionEffects(new_state="aborted", release_holds=True)
    if state is None:
        return DecisionEffects(new_state="aborted")
    if state == "aborted":
        return DecisionEffects()
    return DecisionEffects(acknowledge=False, violation="ABORT received for a committed transfer")


def decided(rec: Participation | None, *, transfer_id: str, coordinator: str, new_state: State,
            now: float, evidence: str | None) -> Participation:
    """The record after a decision (an early ABORT creates one with no legs)."""
    if rec is None:
        return Participation(transfer_id, coordinator, new_state, 0, "", (), (("*", "aborted"),), now, now,
                             decision_evidence=evidence)
    return replace(rec, state=new_state, updated_at=now, decision_evidence=evidence or rec.decision_evidence)


def needs_outcome(state: str | None, deadline_ms: int, now_ms: int, grace_ms: int) -> bool:
    """Rule 4: a prepared participant past the deadline asks for the outcome, again and again."""
    return state == "prepared" and now_ms >= deadline_ms + grace_ms
