"""Portuguese (pt-BR, the default) and English for the customer's screens, through Flask-Babel.

The code and the templates speak English (``_("Open an account")``), with gettext's ``%(name)s``
placeholders and ``ngettext`` wherever a phrase counts something. The Portuguese of each phrase
is in the message catalog ``translations/pt_BR/LC_MESSAGES/messages.po``, compiled to the
``messages.mo`` beside it that the bank loads; English needs no catalog, the phrases are their
own English. The README says how to add a phrase; a unit test extracts every phrase of the code
and the templates with Babel and fails when one has no Portuguese.

In the templates ``_`` and ``ngettext`` are Flask-Babel's (Jinja's i18n extension, new style:
the values put into a phrase are escaped); in the code, ``translate`` (imported as ``_``).
The language comes from a switch kept in the cookie session, else from the browser's
Accept-Language, else pt-BR; Flask-Babel learns it from ``locale_selector``.
"""
from __future__ import annotations

from pathlib import Path

from flask import g, request, session
from flask_babel import force_locale, gettext, ngettext

from .formatting import locale_of

LANGS = ("pt-BR", "en")
DEFAULT_LANG = "pt-BR"
# The message catalogs: <locale>/LC_MESSAGES/messages.po (the source) and .mo (what runs).
TRANSLATIONS = Path(__file__).resolve().parent / "translations"


def pick_language() -> str:
    chosen = session.get("lang")
    if chosen in LANGS:
        return chosen
    best = request.accept_languages.best_match(["pt-BR", "pt", "en"], default=DEFAULT_LANG)
    return "en" if best == "en" else DEFAULT_LANG


def current_lang() -> str:
    return getattr(g, "lang", None) or DEFAULT_LANG


def locale_selector() -> str:
    """Flask-Babel's locale for this request: the language the UI picked for it (``g.lang``),
    so that the words, the money and the dates of a page always agree."""
    return locale_of(current_lang())


def translate(text: str, lang: str | None = None, **params: object) -> str:
    """The phrase in ``lang`` (default: this request's), with its ``%(placeholders)s`` filled in.
    The result is plain text: Jinja escapes it, and any user content inside it, on output."""
    if lang is None:
        return gettext(text, **params)
    with force_locale(locale_of(lang)):
        return gettext(text, **params)


def N_(phrase: str) -> str:  # noqa: N802 - the name Babel's extractor looks for
    """Marks a phrase kept in a table for extraction without translating it: the table is built
    once, at import, and each phrase is translated where it is shown (``_(TABLE[code])``), in
    the language of whoever reads it."""
    return phrase


# Why a leg or a transfer was refused, in a customer's words (codes from the participants'
# votes and the coordinator: bank_node.domain.participant / coordinator).
REASONS = {
    "insufficient_funds": N_("insufficient funds"),
    "not_found": N_("account not found"),
    "forbidden": N_("you are not a holder of this account"),
    "account_closed": N_("account closed"),
    "account_pending": N_("waiting for every holder to accept the account"),
    "timeout": N_("the bank did not answer in time"),
    "bank_unreachable": N_("the bank is out of reach right now"),
    "refused": N_("refused by the bank"),
    "coordinator_restarted": N_("interrupted by a restart of the bank; nothing was moved"),
    "aborted": N_("cancelled"),
    "error": N_("the bank could not process it"),
    "amount_over_limit": N_("over this bank's limit per operation"),
    "daily_limit_exceeded": N_("over the daily limit of this account"),
    "duplicate_leg": N_("the same account was named twice in the transfer"),
    "no_mandate": N_("this bank has no consent from the account's holder for debits started at another bank"),
    "mandate_limit_exceeded": N_("over the limits the holder set for debits started at another bank"),
    "peer_cap_exceeded": N_("the receiving bank will not take more from the paying bank for now"),
    "unbalanced": N_("the amounts of the transfer do not add up"),
    "not_one_credit": N_("a transfer has exactly one destination"),
    "deadline_too_far": N_("refused by the bank"),
    "id_in_use": N_("this transfer's id is already in use"),
    "tampered": N_("refused by the bank"),
    "no_leg_here": N_("refused by the bank"),
    "too_many_legs": N_("too many accounts in one transfer"),
    "unknown_bank": N_("there is no such bank in the consortium"),
    "unproven_commit": N_("refused by the bank"),
}

# Domain error codes (bank_node.domain.errors) as a customer reads them.
ERRORS = {
    "invalid_credentials": N_("CPF or password is wrong."),
    "unauthorized": N_("Please log in."),
    "invalid_document": N_("This CPF or CNPJ is not valid: please check the number."),
    "invalid_amount": N_("Invalid amount: use a positive number with at most two decimals, up to %(limit)s."),
    "insufficient_funds": N_("Insufficient funds for this withdrawal."),
    "already_exists": N_("This CPF is already registered at this bank: log in instead."),
    "weak_password": N_("The password must have 8 to 256 characters."),
    "holder_not_registered": N_("Every co-holder must be a customer of this bank."),
    "not_found": N_("Not found among your accounts at this bank."),
    "forbidden": N_("You are not allowed to do this."),
    "account_closed": N_("This account is closed."),
    "account_pending": N_("This account waits until every holder has accepted it."),
    "unknown_bank": N_("There is no such bank in the consortium."),
    "idempotency_key_reused": N_("This form was already sent with other data: please fill it in again."),
    "bank_unreachable": N_("The consortium cannot be reached right now. Please try again in a moment."),
    "invalid_input": N_("Some data is not valid."),
    "too_many_attempts": N_("Too many attempts: please wait a moment and try again."),
    "common_password": N_("This password is one of the most common ones and would be guessed first: choose another."),
    "password_contains_cpf": N_("The password must not contain your CPF."),
    "daily_limit_exceeded": N_("This amount is over the daily limit of this account."),
    "amount_over_limit": N_("This amount is over this bank's limit per operation."),
    "duplicate_leg": N_("The same account appears more than once in this transfer."),
    "unknown_parameter": N_("This address has something this bank does not know: please use the bank's own links."),
    "no_mandate": N_("The bank holding this account has no consent from its holder for debits started at "
                     "another bank."),
    "id_in_use": N_("This transfer was already sent with other data: please start it again."),
}


def reason_text(code: str | None) -> str:
    return translate(REASONS.get(code or "error", REASONS["error"]))


def wait_text(seconds: int) -> str:
    """How long to wait, for a person: seconds up to two minutes, then whole minutes."""
    if seconds < 120:
        return ngettext("%(num)d second", "%(num)d seconds", max(1, seconds))
    return ngettext("%(num)d minute", "%(num)d minutes", -(-seconds // 60))


def error_text(code: str | None, detail: str = "", **params: object) -> str:
    """A domain error for the customer: the known codes in their language; for an unknown
    code, the service's own (English) explanation rather than nothing."""
    if code in ERRORS:
        return translate(ERRORS[code], **params)
    return translate("The request was refused: %(detail)s", detail=detail)
