"""Mandates: a holder's standing consent, given at the account's own bank, for another bank of
the consortium to initiate debits from that account (``domain/consent.py`` says why).

Only a holder of the account, logged in at the bank that keeps it, may grant, list or revoke one;
a revoked mandate stops new debits at once (the next PREPARE finds it revoked), while transfers
already prepared under it finish as they were decided.
"""
from __future__ import annotations

import time
import uuid
from datetime import date, datetime, timezone
from typing import Any, Callable

from ..config import ConsortiumConfig
from ..domain import errors as E
from ..domain.calendar import iso
from ..domain.consent import Mandate
from ..domain.money import format_cents, parse_amount, to_cents
from ..storage.port import Store, Tx
from .banking import Banking, request_fingerprint


class Mandates:
    def __init__(self, config: ConsortiumConfig, bank_id: str, store: Store, banking: Banking,
                 clock: Callable[[], float] = time.time):
        self.config = config
        self.bank_id = bank_id
        self.store = store
        self.banking = banking
        self.clock = clock

    def grant(self, caller: str, body: dict, idem_key: str | None = None) -> tuple[int, dict]:
        number, bank = body.get("account"), body.get("bank")
        if not isinstance(bank, str) or bank not in self.config.bank_ids:
            raise E.NotFound(f"no bank {bank!r} in this consortium", code="unknown_bank")
        if bank == self.bank_id:
            raise E.InvalidInput("a mandate is consent for another bank; this bank needs none for its own accounts")
        limit = to_cents(self.config.limits_for(self.bank_id).daily_max_amount)
        per_transfer = self._amount(body.get("max_per_transfer"), "max_per_transfer", limit)
        per_day = self._amount(body.get("max_per_day"), "max_per_day", limit)
        expires = self._expiry(body.get("expires_at"))
        fingerprint = request_fingerprint("mandate", number, bank, per_transfer, per_day, expires)

        def action(tx: Tx):
            acc = self.banking.owned(tx, caller, number)
            if acc["status"] != "open":
                raise E.AccountClosed("only an open account can be debited by another bank")
            m = Mandate(uuid.uuid4().hex, number, bank, caller, self.clock(), per_transfer, per_day, expires)
            tx.insert_mandate(m)
            return 201, self._view(tx, m)
        return self.banking.idempotent(caller, idem_key, fingerprint, action)

    def list(self, caller: str) -> dict:
        with self.store.transaction(write=False) as tx:
            mandates = tx.mandates_of_accounts(tx.account_numbers_of(caller))
            return {"bank": self.bank_id, "mandates": [self._view(tx, m) for m in reversed(mandates)]}

    def revoke(self, caller: str, mandate_id: Any) -> dict:
        with self.store.transaction() as tx:
            m = tx.get_mandate(mandate_id) if isinstance(mandate_id, str) and len(mandate_id) <= 64 else None
            if m is None or caller not in tx.holders_of(m.account):
                raise E.NotFound("no such mandate among yours")
            tx.revoke_mandate(m.id, self.clock())
            return self._view(tx, tx.get_mandate(m.id))

    def _view(self, tx: Tx, m: Mandate) -> dict:
        now = self.clock()
        status = m.status if m.revoked_at is not None or m.active(now) else "expired"
        out = {"id": m.id, "account": m.account, "bank": m.bank, "bank_name": self.config.bank(m.bank).name,
               "status": status, "created_at": iso(m.created_at), "granted_by": m.created_by,
               "used_today": format_cents(tx.mandate_used(m.id, self.banking.day(now)))}
        if m.max_per_transfer is not None:
            out["max_per_transfer"] = format_cents(m.max_per_transfer)
        if m.max_per_day is not None:
            out["max_per_day"] = format_cents(m.max_per_day)
        if m.expires_at is not None:
            out["expires_at"] = iso(m.expires_at)
        if m.revoked_at is not None:
            out["revoked_at"] = iso(m.revoked_at)
        return out

    @staticmethod
    def _amount(value: Any, field: str, limit: int) -> int | None:
        return None if value is None else parse_amount(value, limit_cents=limit, field=field)

    def _expiry(self, value: Any) -> float | None:
        """An ISO date (the mandate lasts through that day, Brasília time) or date-time, in the future."""
        if value is None:
            return None
        if not isinstance(value, str) or len(value) > 40:
            raise E.InvalidInput("expires_at must be an ISO 8601 date or date-time")
        try:
            if len(value) == 10:
                d = date.fromisoformat(value)
                ts = datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp() + 86400 \
                    - self.config.limits_for(self.bank_id).day_utc_offset_min * 60
            else:
                dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
                ts = (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()
        except ValueError as e:
            raise E.InvalidInput("expires_at must be an ISO 8601 date or date-time") from e
        if ts <= self.clock():
            raise E.InvalidInput("expires_at must be in the future")
        return ts

