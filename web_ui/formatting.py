"""How the UI writes and reads money, documents, account numbers and dates for a customer.

Amounts reach the services as the contract's strings (``"1234.50"``) and never as floats;
here they are only turned into what a person types and reads and back, with the locale's own
separators from Babel's CLDR data: ``R$ 1.234,56`` in pt-BR, ``R$ 1,234.56`` in English. One
parser for every amount field of the UI, so that ``12,345`` typed in Portuguese can never
deposit twelve thousand reais: it has three decimals and is refused, with the way to type it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timezone, tzinfo
from decimal import Decimal, InvalidOperation

from babel.dates import format_date, format_datetime, format_time
from babel.numbers import NumberFormatError, format_decimal, get_decimal_symbol, parse_decimal

from bank_node.domain.calendar import CONSORTIUM_TZ
from bank_node.domain.documents import format_cnpj, format_cpf, mask_document  # noqa: F401 - for the templates
from bank_node.domain.money import format_cents, parse_amount
_LOCALES = {"pt-BR": "pt_BR", "en": "en"}
_MONEY_PATTERN = "#,##0.00"


def locale_of(lang: str) -> str:
    return _LOCALES.get(lang, "pt_BR")


def money(value: object, lang: str = "pt-BR") -> str:
    """``"1234.5"`` -> ``R$ 1.234,50`` (pt-BR) or ``R$ 1,234.50`` (en); negatives lead with ``-``."""
    try:
        amount = Decimal(str(value)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        return str(value)
    sign = "-" if amount < 0 else ""
    return f"{sign}R$ {format_decimal(abs(amount), _MONEY_PATTERN, locale=locale_of(lang))}"


def amount_text(value: object, lang: str = "pt-BR") -> str:
    """An amount as the customer would type it in ``lang`` (no currency): ``1.234,50``."""
    return format_decimal(Decimal(str(value)).quantize(Decimal("0.01")), _MONEY_PATTERN, locale=locale_of(lang))


@dataclass
class AmountRefused(Exception):
    """What was typed is not an amount in the customer's language; ``example`` shows how to
    type what they most likely meant (``12,345`` -> ``12.345,00``), or is None."""
    typed: str
    example: str | None
    too_many_decimals: bool = False


def read_amount(text: object, lang: str = "pt-BR") -> Decimal | None:
    """What a customer typed, read with the separators of ``lang`` only (Babel, strict).

    ``None`` for an empty field. In pt-BR ``1.234,56`` is 1234.56 and ``12,5`` is 12.50; in
    English ``1,234.56``. Refused (``AmountRefused``): anything that is not a number in that
    language (``10.50`` in Portuguese, ``12,5`` in English), badly placed group separators, and
    more than two decimals (``12,345`` in Portuguese), never guessed."""
    if not isinstance(text, str):
        return None
    s = re.sub(r"[\s\u00a0\u202f]", "", text)
    s = s[2:] if s[:2].upper() == "R$" else s
    if not s:
        return None
    loc = locale_of(lang)
    if not re.fullmatch(r"[0-9.,]+", s) or not s[0].isdigit() or not s[-1].isdigit():
        raise AmountRefused(text.strip(), None)
    try:
        value = parse_decimal(s, locale=loc, strict=True)
    except NumberFormatError as e:
        hints = [h for h in (getattr(e, "suggestions", None) or []) if h]
        example = None
        if hints:
            try:
                example = amount_text(parse_decimal(hints[-1], locale=loc), lang)
            except (NumberFormatError, InvalidOperation):
                example = None
        raise AmountRefused(text.strip(), example) from None
    if value.as_tuple().exponent < -2:
        # "12,345" in Portuguese: a comma then three digits. Most likely twelve thousand.
        digits = re.sub(r"\D", "", s)
        raise AmountRefused(text.strip(), amount_text(Decimal(int(digits)), lang), too_many_decimals=True)
    return value


def parse_user_amount(text: object, limit_cents: int, lang: str = "pt-BR") -> str | None:
    """``read_amount`` then the domain's own rules (positive, the limit): the contract string
    the services expect, or ``None`` for an empty field. Raises ``AmountRefused`` for what
    cannot be read, and the domain's ``InvalidAmount`` for a zero or an amount over the limit."""
    value = read_amount(text, lang)
    if value is None:
        return None
    return format_cents(parse_amount(f"{value:f}", limit_cents=limit_cents))


def decimal_separator(lang: str) -> str:
    return get_decimal_symbol(locale_of(lang))


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
        at = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def local_datetime(value: object, lang: str = "pt-BR", tz: tzinfo | None = None) -> str:
    """An ISO instant from the services in the consortium's time zone (Brasília):
    ``03/05/2026 14:05`` (pt-BR), ``May 3, 2026, 2:05 PM`` (en)."""
    at = parse_instant(value)
    if at is None:
        return str(value or "")
    at = at.astimezone(tz or CONSORTIUM_TZ)
    if lang == "en":
        return format_datetime(at, "MMM d, y, h:mm a", locale="en")
    return at.strftime("%d/%m/%Y %H:%M")


def local_time(value: object, lang: str = "pt-BR", seconds: bool = False) -> str:
    at = parse_instant(value)
    if at is None:
        return str(value or "")
    at = at.astimezone(CONSORTIUM_TZ)
    if lang == "en":
        return format_time(at, "h:mm:ss a" if seconds else "h:mm a", locale="en")
    return at.strftime("%H:%M:%S" if seconds else "%H:%M")


def local_day(value: object) -> date | None:
    """The consortium's calendar day of an instant (what a statement groups by)."""
    at = parse_instant(value)
    return at.astimezone(CONSORTIUM_TZ).date() if at else None


def day_title(day: date, lang: str = "pt-BR") -> str:
    """``segunda-feira, 2 de março de 2026`` / ``Monday, March 2, 2026``."""
    return format_date(day, "full", locale=locale_of(lang))


def luminance(color: str) -> float:
    """WCAG relative luminance of ``#rrggbb``."""
    r, g, b = (int(color[i:i + 2], 16) / 255 for i in (1, 3, 5))

    def lin(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two colours, from 1 to 21."""
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def text_on(color: str) -> str:
    """Black or white, whichever reads better on the bank's colour (WCAG relative luminance)."""
    try:
        return "#000000" if contrast(color, "#000000") > contrast(color, "#ffffff") else "#ffffff"
    except (ValueError, IndexError):
        return "#ffffff"


# The focus ring on the page's light surfaces; on the bank's colour it is ``focus_on(colour)``.
FOCUS_ON_LIGHT = "#1b1f24"


def focus_on(color: str) -> str:
    """The focus ring drawn over the bank's colour (the header): black or white, whichever has
    the most contrast with it, always at least 3:1 (WCAG 2.2, focus appearance)."""
    return text_on(color)
