"""Money is BRL in integer cents inside, a string with at most two decimals outside.

A float never touches an amount: JSON numbers are refused (``1.1`` has no exact binary form),
and so are NaN, infinities, exponents, negative and zero amounts and anything over the limit.
"""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from .errors import InvalidAmount

# ASCII digits only: ``\d`` would also match "１０" or "١٠", which Decimal happily reads as 10.
_AMOUNT = re.compile(r"[0-9]{1,13}(\.[0-9]{1,2})?")


def parse_amount(value: object, *, limit_cents: int | None = None, field: str = "amount") -> int:
    """Turn a client's ``"1234.50"`` into 123450 cents, or raise InvalidAmount saying why."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise InvalidAmount(f"{field} must be a string such as \"150.00\" (got {type(value).__name__})")
    # Blanks around the number are forgiven; only ASCII ones: str.strip() would also eat
    # control characters such as "\x1c", which no one types around an amount.
    text = value.strip(" \t\r\n")
    if not _AMOUNT.fullmatch(text):
        raise InvalidAmount(f"{field} must be a positive number with at most two decimals, such as \"150.00\"")
    try:
        cents = int((Decimal(text) * 100).to_integral_exact())
    except InvalidOperation as e:  # pragma: no cover - the regex already rules this out
        raise InvalidAmount(f"{field} is not a number") from e
    if cents <= 0:
        raise InvalidAmount(f"{field} must be greater than zero")
    if limit_cents is not None and cents > limit_cents:
        raise InvalidAmount(f"{field} is over the limit of {format_cents(limit_cents)} per operation")
    return cents


def format_cents(cents: int) -> str:
    """123450 -> "1234.50"; negative amounts keep their sign."""
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100}.{cents % 100:02d}"


def to_cents(amount: Decimal) -> int:
    return int((amount * 100).to_integral_exact())
