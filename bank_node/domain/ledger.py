"""The money rules of one account, in one place: what a withdrawal and a transfer debit must fit.

Both a withdrawal at the counter (``services/banking.py``) and a transfer's debit leg prepared by
the holding bank (``domain/participant.py``) ask the same question of the same figures: is there
enough money available, is the amount within this bank's per-operation limit, and does it fit in
what is left of the account's daily limit? ``available = balance - holds`` (docs/protocol.md,
rule 8): a hold is money promised to a transfer still in doubt.
"""
from __future__ import annotations

from dataclasses import dataclass


def available(balance: int, held: int) -> int:
    """What may still leave the account: its balance minus the holds of pending transfers."""
    return balance - held


@dataclass(frozen=True)
class AccountFigures:
    """What the ledger says of one account at the moment of a debit."""
    balance: int
    held: int
    debited_today: int = 0
    """What left the account today (withdrawals, transfers out) plus the holds of its pending
    transfers: the part of the daily limit that is used up."""

    @property
    def available(self) -> int:
        return available(self.balance, self.held)


@dataclass(frozen=True)
class Limits:
    """One bank's money limits, in cents."""
    max_amount: int
    daily_max_amount: int


def debit_refusal(figures: AccountFigures, amount: int, limits: Limits, *, already: int = 0) -> str | None:
    """Why a debit of ``amount`` cannot be made now, as a stable code, or None when it can.

    ``already`` is what the same operation debits from this account before this amount (a
    transfer naming one account twice: both parts must fit together)."""
    if figures.available < already + amount:
        return "insufficient_funds"
    if amount > limits.max_amount:
        return "amount_over_limit"
    if figures.debited_today + already + amount > limits.daily_max_amount:
        return "daily_limit_exceeded"
    return None


def daily_left(used: int, limit: int) -> int:
    return max(0, limit - used)
