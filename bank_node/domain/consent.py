"""Consent at the account's own bank (as in Brazil's Open Finance), and what it bounds.

A debit leg initiated at another bank is valid only if a holder of the account authorized that
bank, at the account's own bank, with a standing **mandate**: scoped to one initiating bank, with
optional limits per transfer and per day and an optional expiry, listed and revocable. The
holding bank checks it while it prepares the leg and votes NO (``no_mandate``,
``mandate_limit_exceeded``) otherwise: it believes no other bank's word that the customer agreed.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mandate:
    id: str
    account: str
    bank: str                      # the bank allowed to initiate debits
    created_by: str                # the holder who granted it
    created_at: float
    max_per_transfer: int | None = None
    max_per_day: int | None = None
    expires_at: float | None = None
    revoked_at: float | None = None

    def active(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    @property
    def status(self) -> str:
        return "revoked" if self.revoked_at is not None else "active"


def mandate_refusal(mandate: Mandate | None, amount: int, used_today: int, now: float) -> str | None:
    """Why a debit initiated elsewhere may not go ahead under ``mandate`` (None: it may).

    ``used_today`` is what this mandate already let leave the account today (pending transfers
    included)."""
    if mandate is None or not mandate.active(now):
        return "no_mandate"
    if mandate.max_per_transfer is not None and amount > mandate.max_per_transfer:
        return "mandate_limit_exceeded"
    if mandate.max_per_day is not None and used_today + amount > mandate.max_per_day:
        return "mandate_limit_exceeded"
    return None
