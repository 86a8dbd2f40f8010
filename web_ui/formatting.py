"""How the UI writes and reads money, documents, account numbers and dates for a customer.

Amounts reach the services as the contract's strings (``"1234.50"``) and never as floats;
here they are only turned into what a person types and reads (``R$ 1.234,56`` in pt-BR,
``R$ 1,234.56`` in English) and back.
"""
from __future__ import annotations

import re
from datetime import datetime, tzinfo
from decimal import Decimal, InvalidOperation

from bank_node.domain.documents import format_cnpj, format_cpf
from bank_node.domain.errors import InvalidAmount
from bank_node.domain.money import format_cents, parse_amount

_SEPARATORS = {"pt-BR": (".", ","), "en": (",", ".")}  # (thousands, decimal)
_MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def money(value: object, lang: str = "pt-BR") -> str:
    """``"1234.5"`` -> ``R$ 1.234,50`` (pt-BR) or ``R$ 1,234.50`` (en); negatives lead with ``-``."""
    try:
        amount = Decimal(str(value)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        return str(value)
    thousands, decimal = _SEPARATORS.get(lang, _SEPARATORS["pt-BR"])
    sign = "-" if amount < 0 else ""
    units, cents = f"{abs(amount):.2f}".split(".")
    groups = []
    while len(units) > 3:
        groups.insert(0, units[-3:])
        units = units[:-3]
    groups.insert(0, units)
    return f"{sign}R$ {thousands.join(groups)}{decimal}{cents}"


def _grouped(text: str, sep: str) -> bool:
    return re.fullmatch(r"\d{1,3}(?:" + re.escape(sep) + r"\d{3})+", text) is not None


def normalize_amount(text: object) -> str | None:
    """What a customer typed (``10``, ``10,5``, ``1.234,56``, ``R$ 1,234.56``) -> ``"1234.56"``.

    Both Brazilian and English separators are understood: a single separator followed by one or
    two digits is the decimal one, groups of three are thousands. Empty input is ``None``
    (nothing asked for); anything else unreadable raises ``InvalidAmount``."""
    if not isinstance(text, str):
        return None
    s = re.sub(r"[\s\u00a0]", "", text).removeprefix("R$")
    if not s:
        return None
    if not re.fullmatch(r"[0-9.,]+", s) or not s[0].isdigit() or not s[-1].isdigit():
        raise InvalidAmount("not an amount")
    has_comma, has_dot = "," in s, "." in s
    if has_comma and has_dot:
        decimal = "," if s.rfind(",") > s.rfind(".") else "."
        thousands = "." if decimal == "," else ","
        units, cents = s.rsplit(decimal, 1)
        if len(cents) > 2 or not (_grouped(units, thousands) or units.isdigit()):
            raise InvalidAmount("not an amount")
        return f"{units.replace(thousands, '')}.{cents}"
    if has_comma or has_dot:
        sep = "," if has_comma else "."
        units, _, tail = s.rpartition(sep)
        if s.count(sep) == 1 and len(tail) <= 2:
            return f"{units}.{tail}"
        if _grouped(s, sep):
            return s.replace(sep, "")
        raise InvalidAmount("not an amount")
    return s


def parse_user_amount(text: object, limit_cents: int) -> str | None:
    """``normalize_amount`` then the domain's own rules (positive, two decimals, the limit):
    the contract string the services expect, or ``None`` for an empty field."""
    normalized = normalize_amount(text)
    if normalized is None:
        return None
    return format_cents(parse_amount(normalized, limit_cents=limit_cents))


def cpf(value: object) -> str:
    d = re.sub(r"\D", "", str(value or ""))
    return format_cpf(d) if len(d) == 11 else str(value or "")


def cnpj(value: object) -> str:
    d = re.sub(r"\D", "", str(value or ""))
    return format_cnpj(d) if len(d) == 14 else str(value or "")


def account_number(value: object) -> str:
    """``123456785`` -> ``12345678-5``: the last digit is the account's check digit."""
    s = str(value or "")
    return f"{s[:-1]}-{s[-1]}" if len(s) > 1 and s.isdigit() else s


def account_digits(value: object) -> str:
    """What a customer typed as an account number, digits only (``12345678-5`` -> ``123456785``)."""
    return re.sub(r"[\s.\-]", "", str(value or ""))


def parse_instant(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def local_datetime(value: object, lang: str = "pt-BR", tz: tzinfo | None = None) -> str:
    """An ISO instant from the services in the node's local time: ``03/05/2026 14:05`` (pt-BR),
    ``May 3, 2026, 2:05 PM`` (en)."""
    at = parse_instant(value)
    if at is None:
        return str(value or "")
    at = at.astimezone(tz)
    if lang == "en":
        hour = at.hour % 12 or 12
        return f"{_MONTHS_EN[at.month - 1]} {at.day}, {at.year}, {hour}:{at.minute:02d} {'AM' if at.hour < 12 else 'PM'}"
    return at.strftime("%d/%m/%Y %H:%M")


def text_on(color: str) -> str:
    """Black or white, whichever reads better on the bank's colour (WCAG relative luminance)."""
    try:
        r, g, b = (int(color[i:i + 2], 16) / 255 for i in (1, 3, 5))
    except (ValueError, IndexError):
        return "#ffffff"

    def lin(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    lum = 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)
    return "#000000" if (lum + 0.05) / 0.05 > 1.05 / (lum + 0.05) else "#ffffff"
