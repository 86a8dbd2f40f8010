"""Customers, sessions, accounts, deposits, withdrawals and statements of one bank.

The REST API and the web UI both call this module; neither touches SQL. Every
check-and-write runs in one storage transaction, and a write that carries an Idempotency-Key
stores its answer in that same transaction, so a retry can never apply it twice.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from operator import mul
from typing import Any, Callable

from argon2 import PasswordHasher
from argon2 import exceptions as argon2_errors

from ..concurrency import off_loop
from ..config import ConsortiumConfig
from ..domain import errors as E
from ..domain.calendar import iso
from ..domain.documents import mask_document, mask_name, normalize_cnpj, normalize_cpf
from ..domain.ledger import AccountFigures, Limits, available, daily_left, debit_refusal
from ..domain.money import format_cents, parse_amount, to_cents
from ..domain.passwords import check_password
from ..storage.port import Store, Tx
from .idempotency import run_once
from .throttles import Throttles

ACCOUNT_KINDS = ("individual", "joint", "business")
NO_SUCH_ACCOUNT = "no such account among yours at this bank"


def request_fingerprint(*parts: Any) -> str:
    """A stable hash of what a request asked for, to tell a retry from a different request."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _check_digit(digits: str) -> str:
    """Weights 2, 3, ... from the last digit; code points minus 48 ("0"), as for a CPF's."""
    weights = range(len(digits) + 1, 1, -1)
    return str((sum(map(mul, digits.encode("ascii"), weights)) - 48 * sum(weights)) % 11 % 10)


def account_number(base: int) -> str:
    """The account number of eight digits ``base`` (0 <= base < 10**8): those and a check digit."""
    digits = f"{base:08d}"
    return digits + _check_digit(digits)


def new_account_number() -> str:
    """Eight random digits and a check digit: not enumerable by counting up."""
    return account_number(secrets.randbelow(10**8))


@dataclass(frozen=True)
class Session:
    cpf: str
    token_hash: str
    expires_at: float


class _OffLoopHasher:
    """argon2's hasher, whose hashing (~30 ms of C at the default cost) runs off the thread a bank's
    greenlets share (``concurrency.off_loop``), so the bank's other work goes on meanwhile."""

    def __init__(self, hasher: PasswordHasher):
        self._hasher = hasher

    def hash(self, password: str | bytes) -> str:
        return off_loop(self._hasher.hash, password)

    def verify(self, password_hash: str, password: str | bytes) -> bool:
        return off_loop(self._hasher.verify, password_hash, password)

    def check_needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)


class Banking:
    def __init__(self, config: ConsortiumConfig, bank_id: str, store: Store, clock: Callable[[], float] = time.time):
        self.config = config
        self.bank_id = bank_id
        self.store = store
        self.clock = clock
        sec = config.security
        self.hasher = _OffLoopHasher(PasswordHasher(time_cost=sec.argon2_time_cost, memory_cost=sec.argon2_memory_kib,
                                                    parallelism=sec.argon2_parallelism))
        self._dummy_hash = self.hasher.hash(secrets.token_hex(8))
        self.limits = config.limits_for(bank_id)
        self.limit_cents = to_cents(self.limits.max_amount)
        self.daily_limit_cents = to_cents(self.limits.daily_max_amount)
        self.throttles = Throttles(config, bank_id)

    # idempotency ---------------------------------------------------------------------------
    def idempotent(self, scope: str, key: str | None, fingerprint: str,
                   action: Callable[[Tx], tuple[int, Any]]) -> tuple[int, Any]:
        """Run ``action`` once per (scope, key) (``services/idempotency.py``)."""
        return run_once(self.store, scope, key, fingerprint, action, self.clock)

    # customers and sessions ------------------------------------------------------------------
    def register(self, cpf: str, name: str, password: str, idem_key: str | None = None,
                 client: str | None = None) -> tuple[int, dict]:
        """``client`` is the caller's network address: each address may attempt only so many
        registrations per window (each costs an argon2 hash, and mass sign-ups are abuse)."""
        cpf = normalize_cpf(cpf)
        name = _clean_name(name, "name")
        check_password(password, cpf)
        if client is not None:
            self.throttles.registration(client)
        fingerprint = request_fingerprint("register", cpf, name, hashlib.sha256(password.encode()).hexdigest())
        password_hash = self.hasher.hash(password)

        def action(tx: Tx):
            if tx.get_customer(cpf) is not None:
                raise E.AlreadyExists("a customer with this CPF is already registered at this bank")
            tx.insert_customer(cpf, name, password_hash, self.clock())
            return 201, {"bank": self.bank_id, "cpf": cpf, "name": name}
        # The key is scoped by the CPF being registered: another person's sign-up that happens
        # to use the same key is no conflict of yours.
        return self.idempotent(f"register:{cpf}", idem_key, fingerprint, action)

    def customer(self, cpf: str) -> dict | None:
        with self.store.transaction(write=False) as tx:
            return tx.get_customer(cpf)

    def login(self, cpf: str, password: str, client: str | None = None) -> dict:
        """Check the password and open a session. Throttled (``Throttles``) per ``client``
        address, and per CPF from that address with waits that grow with the failures: a
        refused attempt is answered TooManyAttempts (429, Retry-After) before the password is
        even checked, so guessing stays slow whatever the guess, and the same way whether the
        CPF is registered or not. Never per CPF alone: guesses from an attacker's address do
        not keep the customer out from theirs. A success clears its CPF and address."""
        try:
            cpf = normalize_cpf(cpf)
        except E.InvalidDocument:
            cpf = None
        if not isinstance(password, str):
            raise E.InvalidInput("password must be a string")
        self.throttles.before_login(cpf, client)
        cust = self.customer(cpf) if cpf else None
        # surrogatepass: a password with a lone surrogate cannot have been registered, so it
        # is simply wrong (argon2 would otherwise fail to encode it and crash the request).
        secret = password.encode("utf-8", "surrogatepass")
        try:
            self.hasher.verify(cust["password_hash"] if cust else self._dummy_hash, secret)
            ok = cust is not None
        except (argon2_errors.VerificationError, argon2_errors.InvalidHashError):
            ok = False
        if not ok:
            self.throttles.login_failed(client)
            raise E.Unauthorized("CPF or password is wrong", code="invalid_credentials")
        self.throttles.login_succeeded(cpf, client)
        token = secrets.token_urlsafe(32)
        now = self.clock()
        expires = now + self.config.security.session_ttl_s
        rehashed = self.hasher.hash(password) if self.hasher.check_needs_rehash(cust["password_hash"]) else None
        with self.store.transaction() as tx:
            if rehashed is not None:
                tx.update_password_hash(cpf, rehashed)
            tx.insert_session(_token_hash(token), cpf, now, expires)
        return {"token": token, "expires_at": iso(expires), "cpf": cpf, "name": cust["name"]}

    def authenticate(self, token: str) -> Session:
        if not token or len(token) > 200:
            raise E.Unauthorized("a valid Bearer token is needed")
        return self.session_by_hash(_token_hash(token))

    def session_by_hash(self, th: str) -> Session:
        """The live session of a token's hash: what the web UI keeps on the bank's side instead
        of the token itself, so neither its cookie nor its session table holds a credential."""
        with self.store.transaction(write=False) as tx:
            s = tx.get_session(th)
        if s is None or s["revoked_at"] is not None or s["expires_at"] <= self.clock():
            raise E.Unauthorized("the session is unknown, expired or logged out")
        return Session(s["cpf"], th, s["expires_at"])

    def logout(self, session: Session) -> None:
        with self.store.transaction() as tx:
            tx.revoke_session(session.token_hash, self.clock())

    # accounts ------------------------------------------------------------------------------
    def open_account(self, caller: str, kind: Any, holders: Any, cnpj: Any = None, company_name: Any = None,
                     idem_key: str | None = None) -> tuple[int, dict]:
        if kind not in ACCOUNT_KINDS:
            raise E.InvalidInput(f"kind must be one of {', '.join(ACCOUNT_KINDS)}")
        if not isinstance(holders, list) or not holders or len(holders) > 10:
            raise E.InvalidInput("holders must be a list of 1 to 10 CPFs")
        cpfs: list[str] = []
        for h in holders:
            c = normalize_cpf(h)
            if c in cpfs:
                raise E.InvalidInput("holders must not repeat a CPF")
            cpfs.append(c)
        if caller not in cpfs:
            raise E.Forbidden("you can only open an account of which you are a holder")
        if kind == "individual" and len(cpfs) != 1:
            raise E.InvalidInput("an individual account has exactly one holder")
        if kind == "joint" and len(cpfs) < 2:
            raise E.InvalidInput("a joint account has two or more holders")
        if kind == "business":
            if cnpj is None or company_name is None:
                raise E.InvalidInput("a business account needs cnpj and company_name")
            cnpj = normalize_cnpj(cnpj)
            company_name = _clean_name(company_name, "company_name")
        elif cnpj is not None or company_name is not None:
            raise E.InvalidInput("cnpj and company_name are only for business accounts")
        fingerprint = request_fingerprint("open", kind, cpfs, cnpj, company_name)
        # Caller first, then co-holders in the order given.
        cpfs = [caller] + [c for c in cpfs if c != caller]

        def action(tx: Tx):
            missing = [c for c in cpfs if tx.get_customer(c) is None]
            if missing:
                raise E.InvalidInput("every holder must be a registered customer of this bank; not registered: "
                                     + ", ".join(missing), code="holder_not_registered")
            for _ in range(20):
                number = new_account_number()
                if tx.get_account(number) is None:
                    break
            else:  # pragma: no cover - 10^8 numbers
                raise E.Conflict("could not allocate an account number; try again")
            # Only the opener agrees by opening: every other holder (a business account's
            # representatives too) accepts it at this bank before it can move money.
            tx.insert_account(number, kind, cpfs, cnpj, company_name, self.clock(), accepted=[caller])
            return 201, self._view(tx, number, caller)
        return self.idempotent(caller, idem_key, fingerprint, action)

    def accept_account(self, caller: str, number: str) -> dict:
        """``caller``, named a holder of the account by whoever opened it, agrees to it. Once
        every holder has, the account is open; until then it is pending: no deposits,
        withdrawals or transfer legs, and the names of those who have not accepted stay
        masked. Accepting again changes nothing. Not a holder: "no such account"."""
        with self.store.transaction() as tx:
            self.owned(tx, caller, number)
            tx.accept_holder(number, caller, self.clock())
            return self._view(tx, number, caller)

    def _view(self, tx: Tx, number: str, viewer: str) -> dict:
        """The account as ``viewer`` (one of its holders) sees it: a holder who has not
        accepted yet shows only a masked name, so naming someone as a co-holder tells the
        opener nothing about them until they agree."""
        acc = tx.get_account(number)
        holds = tx.holds_total(number)
        holders = []
        for h in tx.holder_acceptances(number):
            name = (tx.get_customer(h["cpf"]) or {}).get("name", "")
            accepted = h["accepted_at"] is not None
            holders.append({"cpf": h["cpf"], "name": name if accepted or h["cpf"] == viewer else mask_name(name),
                            "accepted": accepted})
        view = {
            "bank": self.bank_id, "number": number, "kind": acc["kind"], "status": acc["status"],
            "holders": holders,
            "balance": format_cents(acc["balance"]), "available": format_cents(available(acc["balance"], holds)),
        }
        if acc["kind"] == "business":
            view["cnpj"] = acc["cnpj"]
            view["company_name"] = acc["company_name"]
        return view

    def owned(self, tx: Tx, caller: str, number: Any) -> dict:
        """Per-object authorization: an account that is not the caller's is answered exactly as
        one that does not exist, so its existence is not revealed; and each such answer counts
        against the caller (``Throttles``), so that numbers cannot be guessed in bulk either."""
        self.throttles.before_account_lookup(caller)
        if not (isinstance(number, str) and number.isascii() and number.isdigit() and len(number) <= 32):
            raise E.NotFound(NO_SUCH_ACCOUNT)   # cannot be an account: tells nothing, costs nothing
        acc = tx.get_account(number)
        if acc is None or caller not in tx.holders_of(number):
            self.throttles.unknown_account(caller)
            raise E.NotFound(NO_SUCH_ACCOUNT)
        return acc

    def accounts_of(self, caller: str) -> list[dict]:
        with self.store.transaction(write=False) as tx:
            return [self._view(tx, n, caller) for n in tx.account_numbers_of(caller)]

    def account(self, caller: str, number: str) -> dict:
        with self.store.transaction(write=False) as tx:
            self.owned(tx, caller, number)
            return self._view(tx, number, caller)

    def statement(self, caller: str, number: str, limit: int = 100, before: str | None = None,
                  since: float | None = None, until: float | None = None) -> dict:
        """One page of an account's entries, newest first, at most ``limit``; ``next`` (absent on
        the last page) is the opaque cursor that, given back as ``before``, reads the page after,
        so every entry of the account can be read. ``since``/``until`` bound ``at`` (until
        exclusive). A transfer's entry names its counterparty as far as this bank's own records
        know it, masked: the payer of a credit (who started the transfer), the destination of a
        debit."""
        before_id = decode_cursor(before) if before is not None else None
        with self.store.transaction(write=False) as tx:
            self.owned(tx, caller, number)
            rows = tx.statement_page(number, limit + 1, before_id, since, until)
            page, more = rows[:limit], len(rows) > limit
            records = tx.transfer_records([e["transfer_id"] for e in page if e["transfer_id"]])
            entries = []
            for e in page:
                item = {"at": iso(e["at"]), "kind": e["kind"], "amount": format_cents(e["amount"]),
                        "balance_after": format_cents(e["balance_after"])}
                if e["transfer_id"]:
                    item["transfer_id"] = e["transfer_id"]
                    party = self._counterparty(tx, e, records.get(e["transfer_id"]), number)
                    if party:
                        item["counterparty"] = party
                entries.append(item)
            out = {"account": self._view(tx, number, caller), "entries": entries}
            if more:
                out["next"] = encode_cursor(page[-1]["id"])
            return out

    def _counterparty(self, tx: Tx, entry: dict, rec: dict | None, number: str) -> dict | None:
        """Who was on the other side of a transfer entry, masked (never a balance)."""
        if rec is None:
            return None
        if entry["kind"] == "transfer_in":
            who = rec["initiator"]
            if not who:
                return None
            cust = tx.get_customer(who)
            party = {"document": mask_document(who)}
            if cust:
                party["name"] = mask_name(cust["name"])
            sources = [l for l in rec["legs"] if l.get("direction") == "debit" and l.get("bank")]
            if len(sources) == 1:
                party.update(bank=sources[0]["bank"], account=sources[0]["account"])
            return party
        dest = next((l for l in rec["legs"] if l.get("direction") == "credit"), None)
        if dest is None:
            return None
        bank = dest.get("bank", self.bank_id)
        party = {"bank": bank, "account": dest["account"]}
        acc = tx.get_account(dest["account"]) if bank == self.bank_id else None
        if acc is not None:
            if acc["kind"] == "business" and acc["company_name"]:
                party["name"] = mask_name(acc["company_name"])
            else:
                party["name"] = " & ".join(mask_name((tx.get_customer(h) or {}).get("name", ""))
                                           for h in tx.holders_of(dest["account"]))
        return party

    def transfer_history(self, caller: str, limit: int = 20, since: float | None = None,
                         until: float | None = None, statuses: tuple[str, ...] = (),
                         before: str | None = None) -> dict:
        """"My transfers": every transfer the caller started at this bank or that touched one of
        their accounts here, newest first, whatever its outcome (a refused transfer can be found
        again), with ``next`` as in ``statement``."""
        cursor = decode_history_cursor(before) if before is not None else None
        with self.store.transaction(write=False) as tx:
            mine = set(tx.account_numbers_of(caller))
            rows = tx.transfers_of_customer(caller, limit + 1, since, until, statuses, cursor)
        page, more = rows[:limit], len(rows) > limit
        items = []
        for r in page:
            legs = [{**l, "bank": l.get("bank", self.bank_id)} for l in r["legs"]]
            credit = sum(l["amount"] for l in legs if l["direction"] == "credit")
            debit = sum(l["amount"] for l in legs if l["direction"] == "debit")
            received = any(l["direction"] == "credit" and l["bank"] == self.bank_id and l["account"] in mine
                           for l in legs)
            items.append({"id": r["transfer_id"], "status": r["status"], "created_at": iso(r["created_at"]),
                          "amount": format_cents(credit or debit),
                          "direction": "in" if received and r["initiator"] != caller else "out",
                          "started_here": r["role"] == "coordinator",
                          "legs": [{"bank": l["bank"], "account": l["account"], "amount": format_cents(l["amount"]),
                                    "role": "source" if l["direction"] == "debit" else "destination"} for l in legs]})
        out = {"transfers": items}
        if more:
            out["next"] = encode_history_cursor(page[-1]["created_at"], page[-1]["transfer_id"])
        return out

    # daily limits ---------------------------------------------------------------------------
    def day(self, now: float) -> int:
        """The number of the limits' day (``limits.day_utc_offset_min``, Brasília by default)."""
        return int((now + self.limits.day_utc_offset_min * 60) // 86400)

    def figures(self, tx: Tx, number: str, balance: int) -> AccountFigures:
        """An account's balance, holds, and what left it today with its pending holds."""
        held = tx.holds_total(number)
        return AccountFigures(balance, held, tx.day_totals(number, self.day(self.clock()))["debits"] + held)

    def _daily_exceeded(self, used: int, what: str) -> E.DailyLimitExceeded:
        left = daily_left(used, self.daily_limit_cents)
        return E.DailyLimitExceeded(
            f"{what} of this account are limited to {format_cents(self.daily_limit_cents)} a day: "
            f"{format_cents(used)} already used today (pending transfers included), "
            f"{format_cents(left)} left", limit=format_cents(self.daily_limit_cents), remaining=format_cents(left))

    def deposit(self, caller: str, number: str, amount: Any, idem_key: str | None = None) -> tuple[int, dict]:
        cents = parse_amount(amount, limit_cents=self.limit_cents)

        def action(tx: Tx):
            acc = self.owned(tx, caller, number)
            _check_open(acc)
            deposited = tx.day_totals(number, self.day(self.clock()))["deposits"]
            if deposited + cents > self.daily_limit_cents:
                raise self._daily_exceeded(deposited, "deposits")
            tx.append_entry(number, "deposit", cents, self.clock(), day=self.day(self.clock()))
            return 201, self._view(tx, number, caller)
        return self.idempotent(caller, idem_key, request_fingerprint("deposit", number, cents), action)

    def withdraw(self, caller: str, number: str, amount: Any, idem_key: str | None = None) -> tuple[int, dict]:
        cents = parse_amount(amount, limit_cents=self.limit_cents)

        def action(tx: Tx):
            acc = self.owned(tx, caller, number)
            _check_open(acc)
            figures = self.figures(tx, number, acc["balance"])
            why = debit_refusal(figures, cents, Limits(self.limit_cents, self.daily_limit_cents))
            if why == "insufficient_funds":
                raise E.InsufficientFunds(f"available amount is {format_cents(figures.available)}, "
                                          f"less than {format_cents(cents)}")
            if why == "daily_limit_exceeded":
                raise self._daily_exceeded(figures.debited_today, "withdrawals and transfers out")
            tx.append_entry(number, "withdrawal", -cents, self.clock(), day=self.day(self.clock()))
            return 201, self._view(tx, number, caller)
        return self.idempotent(caller, idem_key, request_fingerprint("withdraw", number, cents), action)

    # consortium lookup (the answering side) ----------------------------------------------------
    def summaries_for(self, cpf: str, requester: str) -> list[dict]:
        """This bank's accounts of ``cpf`` (or, given a CNPJ, the business accounts of that
        company): in full for the owner, masked for anyone else (bank, number, kind and a
        masked name only: never a balance)."""
        full = cpf == requester
        out = []
        with self.store.transaction(write=False) as tx:
            numbers = tx.account_numbers_by_cnpj(cpf) if len(cpf) == 14 else tx.account_numbers_of(cpf)
            for number in numbers:
                acc = tx.get_account(number)
                if acc["status"] != "open":
                    continue
                s = {"bank": self.bank_id, "number": number, "kind": acc["kind"]}
                if full:
                    s["holder"] = " & ".join((tx.get_customer(h) or {}).get("name", "") for h in tx.holders_of(number))
                    s["balance"] = acc["balance"]
                    s["available"] = available(acc["balance"], tx.holds_total(number))
                    if acc["kind"] == "business":
                        s["company_name"] = acc["company_name"]
                else:
                    s["holder"] = self.masked_holder(tx, number, acc)
                out.append(s)
        return out

    def masked_holder(self, tx: Tx, number: str, acc: dict | None = None) -> str:
        """Who holds an account, as anyone may see it: masked names (the company's for a
        business account)."""
        acc = acc or tx.get_account(number)
        if acc is None:
            return ""
        if acc["kind"] == "business":
            return mask_name(acc["company_name"] or "")
        return " & ".join(mask_name((tx.get_customer(h) or {}).get("name", "")) for h in tx.holders_of(number))


def _check_open(acc: dict) -> None:
    if acc["status"] == "pending":
        raise E.AccountPending("this account waits until every holder has accepted it")
    if acc["status"] != "open":
        raise E.AccountClosed("this account is closed")


def encode_cursor(entry_id: int) -> str:
    """An opaque page cursor: clients give it back, they never build one."""
    return base64.urlsafe_b64encode(f"e{entry_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: Any) -> int:
    try:
        raw = base64.urlsafe_b64decode(str(cursor) + "=" * (-len(str(cursor)) % 4)).decode("ascii")
        if len(raw) < 2 or raw[0] != "e" or not raw[1:].isdigit() or len(raw) > 20:
            raise ValueError
        return int(raw[1:])
    except (ValueError, UnicodeError, binascii.Error):
        raise E.InvalidInput("before must be a cursor given as next by an earlier page", code="invalid_cursor") from None


def encode_history_cursor(created_at: float, transfer_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([created_at, transfer_id]).encode()).decode().rstrip("=")


def decode_history_cursor(cursor: Any) -> tuple[float, str]:
    try:
        at, tid = json.loads(base64.urlsafe_b64decode(str(cursor) + "=" * (-len(str(cursor)) % 4)))
        if not isinstance(at, (int, float)) or not isinstance(tid, str) or len(tid) > 64:
            raise ValueError
        return float(at), tid
    except (ValueError, TypeError, UnicodeError, binascii.Error):
        raise E.InvalidInput("the page cursor is not one this bank gave", code="invalid_cursor") from None


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _clean_name(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise E.InvalidInput(f"{field} must be a string")
    v = " ".join(value.split())
    if not (2 <= len(v) <= 120) or not v.isprintable():
        raise E.InvalidInput(f"{field} must be 2 to 120 printable characters")
    return v
