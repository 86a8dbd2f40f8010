"""A transfer as every bank sees it: its legs, and the checks any bank can make of the whole.

A PREPARE carries the whole transfer (every leg, and which bank holds it), so each participant
checks for itself what the coordinator claims: that the debits add up to the credit, that there
is exactly one credit, that every leg, credits included, is within the limits, and that the
deadline is not further away than the consortium's PREPARE TTL. A bank never acts on a peer's
claim that it can check itself (docs/protocol.md, "Trust").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Literal

Direction = Literal["debit", "credit"]

#: Clock skew tolerated between banks when checking a PREPARE's deadline.
DEADLINE_SKEW_MS = 2_000


@dataclass(frozen=True)
class Leg:
    bank: str
    account: str
    amount: int
    direction: Direction

    @property
    def is_debit(self) -> bool:
        return self.direction == "debit"


def credit_of(legs: Iterable[Leg]) -> Leg:
    return next(leg for leg in legs if not leg.is_debit)


def total(legs: Iterable[Leg]) -> int:
    """The amount of the transfer: what the destination receives."""
    return sum(leg.amount for leg in legs if not leg.is_debit)


def banks_of(legs: Iterable[Leg]) -> list[str]:
    return sorted({leg.bank for leg in legs})


def whole_transfer_refusals(legs: list[Leg], *, bank_ids: Iterable[str], max_legs: int,
                            max_amount_of: Callable[[str], int], deadline_ms: int, now_ms: int,
                            ttl_ms: int) -> list[tuple[str, str]]:
    """Every reason to refuse the transfer as a whole, as (account or "*", code): checked by the
    coordinator before it starts and again by every participant, which believes none of it.

    - ``too_many_legs``: more legs than the consortium allows (each bank's copy of the config);
    - ``unknown_bank``: a leg at a bank that is not a member;
    - ``not_one_credit``: not exactly one credit leg;
    - ``unbalanced``: the debits do not add up to the credit;
    - ``amount_over_limit``: a leg (debit or credit) above the limit of the bank that holds it;
    - ``duplicate_leg``: one account named twice in one direction;
    - ``deadline_too_far``: a deadline further away than the PREPARE TTL (a hold must not be
      able to freeze money for years);
    - ``timeout``: the deadline has passed.
    """
    out: list[tuple[str, str]] = []
    members = set(bank_ids)
    if len(legs) > max_legs + 1:
        out.append(("*", "too_many_legs"))
    credits = [leg for leg in legs if not leg.is_debit]
    if len(credits) != 1:
        out.append(("*", "not_one_credit"))
    elif sum(leg.amount for leg in legs if leg.is_debit) != credits[0].amount:
        out.append(("*", "unbalanced"))
    seen: set[tuple[str, str, str]] = set()
    for leg in legs:
        if leg.bank not in members:
            out.append((leg.account, "unknown_bank"))
            continue
        if leg.amount <= 0 or leg.amount > max_amount_of(leg.bank):
            out.append((leg.account, "amount_over_limit"))
        key = (leg.bank, leg.account, leg.direction)
        if key in seen:
            out.append((leg.account, "duplicate_leg"))
        seen.add(key)
    if deadline_ms > now_ms + ttl_ms + DEADLINE_SKEW_MS:
        out.append(("*", "deadline_too_far"))
    elif now_ms > deadline_ms:
        out.append(("*", "timeout"))
    return out
