"""The participant side of two-phase commit, as pure functions: (state, event) -> decision.

A bank is a participant for every transfer with a leg (a debit or the credit) at one of its
accounts. The runtime (``bank_node/services/transfers.py``) loads the state inside one local
transaction, calls a function here, writes what it returns in that same transaction, and only
after the commit sends the vote or acknowledgement (docs/protocol.md, rules 1-4).

States of a participation: none -> prepared -> committed | aborted, or none -> aborted.
A participant that voted YES (``prepared``) never leaves that state on its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Direction = Literal["debit", "credit"]
Outcome = Literal["commit", "abort"]


@dataclass(frozen=True)
class Leg:
    account: str
    amount: int
    direction: Direction


@dataclass(frozen=True)
class AccountView:
    """What the ledger says of one account at the moment of the PREPARE."""
    number: str
    status: str
    holders: frozenset[str]
    available: int
    debited_today: int = 0
    """What already left the account today plus the holds of its pending transfers: the
    part of the daily limit that is used up."""


@dataclass(frozen=True)
class Vote:
    yes: bool
    reasons: tuple[tuple[str, str], ...] = ()  # (account, code) of each refused leg


@dataclass(frozen=True)
class PrepareDecision:
    vote: Vote
    new_state: str | None = None            # None: nothing to write (a duplicate PREPARE)
    holds: tuple[tuple[str, int], ...] = ()  # (account, amount) to place, debits only


def check_legs(legs: list[Leg], accounts: dict[str, AccountView | None], initiator: str, *,
               max_amount: int | None = None, daily_limit: int | None = None) -> list[tuple[str, str]]:
    """Every reason this bank refuses a leg: the account exists and is open (not closed, nor
    ``account_pending`` while a holder has not accepted it), the initiator is a holder of every
    debited account (authorization per leg, checked here and not only at the coordinator; a
    debit of someone else's account is ``not_found``, like a missing one), each debit is covered by the available amount, is within this bank's
    per-operation limit (``amount_over_limit``), and fits in what is left of the account's
    daily limit (``daily_limit_exceeded``). The limits are this bank's own: the bank that
    holds the account enforces them, whatever the coordinator allowed."""
    failures: list[tuple[str, str]] = []
    need: dict[str, int] = {}
    for leg in legs:
        acc = accounts.get(leg.account)
        # Debiting an account that is not the initiator's reads exactly as a missing account
        # (and before its state): a transfer must not tell whether someone else's account exists.
        if acc is not None and leg.direction == "debit" and initiator not in acc.holders:
            acc = None
        if acc is None:
            failures.append((leg.account, "not_found"))
        elif acc.status == "pending":   # a holder has not accepted the account yet
            failures.append((leg.account, "account_pending"))
        elif acc.status != "open":
            failures.append((leg.account, "account_closed"))
        elif leg.direction == "debit":
            need[leg.account] = need.get(leg.account, 0) + leg.amount
            if acc.available < need[leg.account]:
                failures.append((leg.account, "insufficient_funds"))
            elif max_amount is not None and leg.amount > max_amount:
                failures.append((leg.account, "amount_over_limit"))
            elif daily_limit is not None and acc.debited_today + need[leg.account] > daily_limit:
                failures.append((leg.account, "daily_limit_exceeded"))
    return failures


def repeated_legs(legs: list[Leg]) -> list[tuple[str, str]]:
    """Legs that name an account a second time in the same direction (``duplicate_leg``).

    The ledger keeps one hold and one movement per transfer, account and direction, so such a
    PREPARE could be held but never applied: its COMMIT would fail at every delivery and leave
    the leg in doubt for good. An honest coordinator never sends one (it refuses a repeated
    source); a PREPARE that does is answered NO instead of crashing the handler."""
    seen, out = set(), []
    for leg in legs:
        key = (leg.account, leg.direction)
        if key in seen and (leg.account, "duplicate_leg") not in out:
            out.append((leg.account, "duplicate_leg"))
        seen.add(key)
    return out


def on_prepare(state: str | None, stored_reasons: list, legs: list[Leg], initiator: str,
               deadline_ms: int, now_ms: int, accounts: dict[str, AccountView | None], *,
               max_amount: int | None = None, daily_limit: int | None = None) -> PrepareDecision:
    """Rule 3 and rule 6: check, hold, record prepared, then vote YES; else NO and remember it.

    A redelivered PREPARE gets the first answer again and writes nothing (rule 2)."""
    if state in ("prepared", "committed"):
        return PrepareDecision(Vote(True))
    if state == "aborted":
        return PrepareDecision(Vote(False, tuple((a, c) for a, c in stored_reasons)))
    if now_ms > deadline_ms:
        return PrepareDecision(Vote(False, (("*", "timeout"),)), new_state="aborted")
    failures = check_legs(legs, accounts, initiator, max_amount=max_amount, daily_limit=daily_limit) \
        or repeated_legs(legs)
    if failures:
        return PrepareDecision(Vote(False, tuple(failures)), new_state="aborted")
    holds = tuple((leg.account, leg.amount) for leg in legs if leg.direction == "debit")
    return PrepareDecision(Vote(True), new_state="prepared", holds=holds)


@dataclass(frozen=True)
class DecisionEffects:
    new_state: str | None = None    # None: nothing to write
    apply_commit: bool = False      # turn holds into debits and pending credits into credits
    release_holds: bool = False
    acknowledge: bool = True        # tell the coordinator it is applied
    violation: str | None = None    # a message that should never happen under the protocol
    extra: dict = field(default_factory=dict)


def on_decision(state: str | None, outcome: Outcome) -> DecisionEffects:
    """Apply a COMMIT or ABORT exactly once; a duplicate is acknowledged again, nothing more.

    An ABORT for a transfer never seen is remembered, so a PREPARE that arrives late (it waited
    in a queue) is answered NO (rule 6)."""
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


def needs_outcome(state: str | None, deadline_ms: int, now_ms: int, grace_ms: int) -> bool:
    """Rule 4: a prepared participant past the deadline asks for the outcome, again and again."""
    return state == "prepared" and now_ms >= deadline_ms + grace_ms
