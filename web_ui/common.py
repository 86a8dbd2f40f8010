"""What every screen of the UI shares: rendering in the customer's language, refusals in their
words, amounts read the way they type them, and the banks of the consortium."""
from __future__ import annotations

from decimal import Decimal

from flask import g, render_template, request, session

from bank_node.context import node
from bank_node.domain import errors as E
from bank_node.domain.calendar import day_end, day_start, parse_day
from bank_node.domain.money import to_cents

from . import formatting as F
from . import security
from .i18n import LANGS, N_, current_lang, error_text, wait_text
from .i18n import translate as _

KIND_LABELS = {"individual": N_("Individual"), "joint": N_("Joint"), "business": N_("Business")}
ENTRY_LABELS = {"deposit": N_("Deposit"), "withdrawal": N_("Withdrawal"), "transfer_out": N_("Transfer sent"),
                "transfer_in": N_("Transfer received")}
STATUS_LABELS = {"committed": N_("Done"), "aborted": N_("Not done"), "pending": N_("Waiting")}
# Refusals about the amount typed, shown under the amount field.
AMOUNT_CODES = frozenset({"invalid_amount", "daily_limit_exceeded", "amount_over_limit"})
HIDDEN_MONEY = "R$ ••••"


def render(template: str, status: int = 200, **ctx) -> tuple[str, int]:
    return render_template(f"web_ui/{template}", **ctx), status


def bank_of(bank_id: str):
    for b in node().config.banks:
        if b.id == bank_id:
            return b
    return None


def by_bank(lookup: dict) -> list[dict]:
    """The lookup's accounts grouped per bank of the consortium, in the consortium's order,
    with the banks that did not answer marked as such (never silently left out), and among them
    those that refused because this customer asked too often."""
    here = node().bank_id
    unreachable = set(lookup.get("unreachable_banks", []))
    limited = set(lookup.get("limited_banks", []))
    return [{"bank": b, "here": b.id == here, "unreachable": b.id in unreachable, "limited": b.id in limited,
             "accounts": [a for a in lookup.get("accounts", []) if a["bank"] == b.id]}
            for b in node().config.banks]


def balance_hidden() -> bool:
    return bool(session.get("hide_balance"))


def page_context() -> dict:
    """What every template of the UI may use (also the pages of addresses the UI does not have)."""
    n = node()
    lang = getattr(g, "lang", "pt-BR")
    hidden = balance_hidden()
    return {
        "lang": lang, "langs": LANGS, "bank": n.bank, "banks": n.config.banks,
        "user": getattr(g, "user", None), "csrf_token": security.csrf_token, "csrf_field": security.CSRF_FIELD,
        "money": lambda v: F.money(v, lang),
        "balance": lambda v: HIDDEN_MONEY if hidden else F.money(v, lang),
        "balance_hidden": hidden,
        "fmt_cpf": F.cpf, "fmt_cnpj": F.cnpj, "mask_doc": F.mask_document,
        "fmt_account": F.account_number, "fmt_datetime": lambda v: F.local_datetime(v, lang),
        "fmt_time": lambda v, seconds=False: F.local_time(v, lang, seconds),
        "kind_label": lambda k: _(KIND_LABELS.get(k, k)),
        "entry_label": lambda k: _(ENTRY_LABELS.get(k, k)),
        "status_label": lambda s: _(STATUS_LABELS.get(s, s)),
        "bank_of": bank_of, "bank_name": lambda b: (bank_of(b).name if bank_of(b) else b),
        "max_amount": n.config.limits.max_amount,
        "decimal_sep": F.decimal_separator(lang),
        "amount_example": F.amount_text("1234.56", lang),
    }


def limit_cents(bank_id: str | None = None) -> int:
    cfg = node().config
    return to_cents(cfg.limits_for(bank_id).max_amount if bank_id else cfg.limits.max_amount)


def retry_after(e: E.DomainError) -> int | None:
    """The seconds a ``too_many_attempts`` refusal asks to wait, if it says."""
    value = getattr(e, "retry_after", None)
    if value is None:
        value = (e.extra or {}).get("retry_after")
    try:
        return max(1, int(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


def domain_message(e: E.DomainError) -> str:
    """A refusal of the services in the customer's words, with the figures it carries."""
    lang = current_lang()
    extra = e.extra or {}
    if e.code == "too_many_attempts" and retry_after(e) is not None:
        return _("Too many attempts: please wait %(wait)s and try again.", wait=wait_text(retry_after(e)))
    if e.code == "daily_limit_exceeded" and extra.get("limit") is not None and extra.get("remaining") is not None:
        try:
            return _("This amount is over the daily limit of this account: the limit is %(limit)s a day and "
                     "%(remaining)s is left for today.", limit=F.money(extra["limit"], lang),
                     remaining=F.money(extra["remaining"], lang))
        except (ArithmeticError, ValueError, TypeError):
            pass
    return error_text(e.code, e.detail, limit=F.money(node().config.limits.max_amount, lang))


def refusal_status(e: E.DomainError, default: int) -> int:
    """A throttled form is answered 429 (as the API does), any other refusal with ``default``."""
    return 429 if e.code == "too_many_attempts" else default


def with_retry_after(resp_status: tuple[str, int], e: E.DomainError):
    """The page, with a Retry-After header when the refusal says how long to wait."""
    body, status = resp_status
    wait = retry_after(e) if e.code == "too_many_attempts" else None
    return (body, status, {"Retry-After": str(wait)}) if wait is not None else (body, status)


class AmountError(Exception):
    """An amount field that cannot be used, with the message to show under it."""


def read_amount(text: str, bank_id: str | None = None, *, required: bool = True) -> str | None:
    """An amount field as the contract's string (``"1234.50"``), or ``AmountError`` with the
    customer's words: how to type it when it cannot be read, the limit by name when it is the
    cause (never a vague "invalid amount" for R$ 150.000,00)."""
    lang = current_lang()
    try:
        value = F.read_amount(text, lang)
    except F.AmountRefused as e:
        if e.too_many_decimals:
            raise AmountError(_("“%(typed)s” is ambiguous: an amount has at most two decimals. For R$ %(example)s, "
                                "type %(example)s.", typed=e.typed, example=e.example)) from None
        if e.example:
            raise AmountError(_("“%(typed)s” is not how an amount is written here: write %(example)s.",
                                typed=e.typed, example=e.example)) from None
        raise AmountError(_("Write the amount with digits only, such as %(example)s.",
                            example=F.amount_text("1234.56", lang))) from None
    if value is None:
        if required:
            raise AmountError(_("Write the amount."))
        return None
    if value <= 0:
        raise AmountError(_("The amount must be more than zero."))
    limit = limit_cents(bank_id)
    if value * 100 > limit:
        raise AmountError(_("This amount is over the limit of %(limit)s per operation.",
                            limit=F.money(Decimal(limit) / 100, lang)))
    return F.parse_user_amount(text, limit, lang)


def period() -> tuple[dict, dict, dict]:
    """The period typed in the filter (``de``/``ate``, dates), as the service's bounds, the
    form's values, and the field errors."""
    values = {"de": request.args.get("de", ""), "ate": request.args.get("ate", "")}
    bounds, errors = {}, {}
    for name, key in (("de", "since"), ("ate", "until")):
        if values[name]:
            day = parse_day(values[name])
            if day is None:
                errors[name] = _("Write a date such as 2026-03-05.")
            else:
                bounds[key] = day_start(day) if key == "since" else day_end(day)
    if "since" in bounds and "until" in bounds and bounds["since"] >= bounds["until"]:
        errors["ate"] = _("The end of the period must not be before its start.")
    return bounds, values, errors
