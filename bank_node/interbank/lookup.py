"""Lookups: every account of a CPF in every bank (scatter-gather), leaking nothing.

The asking side sends one ``lookup`` to every other bank and merges the answers that arrive by
the deadline, naming the banks whose accounts are missing (``unreachable_banks``: silent, or
not asked or refusing for the rates below, those also in ``limited_banks``). It asks no more
often than the others answer it (``Throttles.may_ask_peers``): past that rate they would stay
silent for every customer of this bank, so a customer who asks too often, or a crowd of them, is
told at once instead.

The answering side believes the requester only as far as it must: the requester is the
asking bank's authenticated customer, as that bank signs it. An answer about someone else's CPF
never carries balances or full names (bank, number, kind and a masked name only, to choose a
destination). Full answers about the requester's own CPF are rate-limited per requesting
customer and per requesting bank, and counted, so a dishonest bank that claims its customer is
everyone is slowed down and visible (``consorcio_lookups_answered_total{scope="full"}``). A bank
over its own rate gets no answer at all; a customer over theirs gets a refusal at once, so that
the app says so without waiting.
"""
from __future__ import annotations

import logging

from broker import Delivery
from .. import protocol as P
from ..domain import errors as E
from ..domain.documents import normalize_key
from ..domain.money import format_cents
from ..services.banking import Banking
from .runtime import Runtime, now_ms

log = logging.getLogger("interbank")


class Lookups:
    def __init__(self, rt: Runtime, banking: Banking):
        self.rt = rt
        self.banking = banking
        self.throttles = banking.throttles

    # asking ---------------------------------------------------------------------------------
    def lookup(self, requester: str, cpf, ttl_ms: int | None = None) -> dict:
        cpf = normalize_key(cpf)
        config = self.rt.config
        ttl = min(ttl_ms, config.timeouts.lookup_ttl_ms) if ttl_ms else config.timeouts.lookup_ttl_ms
        deadline = now_ms() + ttl
        missing: set[str] = set(config.bank_ids)
        limited: set[str] = set()
        # This bank answers for itself directly: its own accounts never depend on the broker.
        results = [(self.rt.bank_id, self.banking.summaries_for(cpf, requester))]
        missing.discard(self.rt.bank_id)
        if self.rt.broker is not None and not self.throttles.may_ask_peers(requester):
            limited = set(missing)   # not asked: told at once rather than left waiting for silence
        elif self.rt.broker is not None:
            body, headers = self.rt.seal(P.Lookup(cpf=cpf, requester=requester, deadline_ms=deadline))
            others = [b for b in config.bank_ids if b != self.rt.bank_id]
            replies = self.rt.broker.gather(others, body, deadline_s=deadline / 1000, expect_user=self.rt.users.get,
                                            headers=headers, with_headers=True)
            for bank, (raw, rheaders) in replies.items():
                res = self._result(bank, raw, rheaders)
                if res is None:
                    continue
                if res.refused:
                    limited.add(bank)   # its accounts stay missing from the answer
                    continue
                missing.discard(bank)
                results.append((bank, [a.model_dump(exclude_none=True) for a in res.accounts]))
        accounts = []
        for bank, summaries in results:
            for a in summaries:
                if a["bank"] != bank:
                    continue  # a bank speaks only for its own accounts
                item = {"bank": bank, "bank_name": config.bank(bank).name,
                        "number": a["number"], "kind": a["kind"], "holder": a["holder"]}
                if cpf == requester and a.get("balance") is not None:
                    item["balance"] = format_cents(a["balance"])
                    item["available"] = format_cents(a.get("available") or 0)
                    if a.get("company_name"):
                        item["company_name"] = a["company_name"]
                accounts.append(item)
        order = {b: i for i, b in enumerate(config.bank_ids)}
        accounts.sort(key=lambda a: (order[a["bank"]], a["number"]))
        return {"cpf": cpf, "full": cpf == requester, "accounts": accounts,
                "unreachable_banks": sorted(missing, key=order.get),
                "limited_banks": sorted(limited, key=order.get)}

    def _result(self, bank: str, raw: bytes, headers: dict) -> P.LookupResult | None:
        try:
            env = P.decode(raw)
            res = next(i for i in env.items if isinstance(i, P.LookupResult))
        except (P.BadMessage, StopIteration):
            return None
        if env.sender != bank or res.bank != bank or (
                self.rt.keyring is not None and not self.rt.keyring.verify(bank, raw, headers.get("sig"))):
            self.rt.count("messages_rejected", reason="bad_signature")
            return None
        return res

    # answering ------------------------------------------------------------------------------
    def answer(self, d: Delivery, env: P.Envelope, items: list[P.Lookup]) -> None:
        if not d.reply_to or self.rt.broker is None:
            return
        results = []
        for item in items:
            if now_ms() > item.deadline_ms:
                continue
            full = item.cpf == item.requester
            refusal = self.throttles.lookup_refusal(env.sender, item.requester if full else None)
            if refusal is not None:
                self.rt.count("lookups_refused", bank=env.sender)
                log.warning("lookup from %s refused: over %s rate", env.sender,
                            "its" if refusal == "bank" else "its customer's", extra={"event": "refused"})
                if refusal == "customer":
                    results.append(P.LookupResult(bank=self.rt.bank_id, refused="rate_limited"))
                continue
            self.rt.count("lookups_answered", scope="full" if full else "masked")
            results.append(P.LookupResult(bank=self.rt.bank_id, accounts=[
                P.AccountSummary(**s) for s in self.banking.summaries_for(item.cpf, item.requester)][:1000]))
        if results:
            body, headers = self.rt.seal(*results)
            self.rt.broker.reply(d.reply_to, d.correlation_id, body, headers)

    # verifying one account ------------------------------------------------------------------
    def verify_account(self, caller: str, bank, number) -> dict:
        """{bank, number, kind, holder (masked)} of an open account in any bank of the
        consortium; NotFound when there is none (or its bank cannot say), never a balance.

        An answer about any number is an existence oracle: each "no such account" counts against
        the caller, as at every route that names an account (``Banking.throttles``)."""
        config = self.rt.config
        if not isinstance(bank, str) or bank not in config.bank_ids:
            raise E.NotFound(f"no bank {bank!r} in this consortium", code="unknown_bank")
        if not isinstance(number, str) or not (number.isascii() and number.isdigit()) or not 1 <= len(number) <= 32:
            raise E.NotFound("no such account")
        self.banking.throttles.before_account_lookup(caller)
        if bank == self.rt.bank_id:
            info = self.account_info(number)
        else:
            if self.rt.broker is None:
                raise E.BankUnreachable("this bank has no broker connection")
            if not self.throttles.may_ask_peers(caller):
                raise E.TooManyAttempts("too many account lookups right now; try again in a second", retry_after=1)
            deadline = now_ms() + config.timeouts.lookup_ttl_ms
            body, headers = self.rt.seal(P.AccountQuery(number=number, requester=caller, deadline_ms=deadline))
            replies = self.rt.broker.gather([bank], body, deadline_s=deadline / 1000, expect_user=self.rt.users.get,
                                            headers=headers, with_headers=True)
            if bank not in replies:
                raise E.BankUnreachable(f"bank {bank} did not answer in time")
            raw, rheaders = replies[bank]
            try:
                env = P.decode(raw)
                info = next(i for i in env.items if isinstance(i, P.AccountInfo))
            except (P.BadMessage, StopIteration):
                raise E.BankUnreachable(f"bank {bank} gave an unreadable answer") from None
            if env.sender != bank or info.bank != bank or info.number != number or (
                    self.rt.keyring is not None and not self.rt.keyring.verify(bank, raw, rheaders.get("sig"))):
                raise E.BankUnreachable(f"bank {bank} gave an answer it did not sign, or about another account")
        if not info.found:
            self.banking.throttles.unknown_account(caller)
            raise E.NotFound("no such account in that bank")
        return {"bank": bank, "number": number, "kind": info.kind, "holder": info.holder}

    def account_info(self, number: str) -> P.AccountInfo:
        """This bank's answer about one of its accounts: masked holder names only."""
        with self.rt.store.transaction(write=False) as tx:
            acc = tx.get_account(number)
            if acc is None or acc["status"] != "open":
                return P.AccountInfo(bank=self.rt.bank_id, number=number, found=False)
            holder = self.banking.masked_holder(tx, number, acc)
        return P.AccountInfo(bank=self.rt.bank_id, number=number, found=True, kind=acc["kind"], holder=holder[:200])

    def answer_account(self, d: Delivery, env: P.Envelope, items: list[P.AccountQuery]) -> None:
        """Another bank verifies a typed destination: answered within the same per-bank rate as
        lookups, masked names only."""
        if not d.reply_to or self.rt.broker is None:
            return
        answers = []
        for item in items:
            if now_ms() > item.deadline_ms:
                continue
            if self.throttles.lookup_refusal(env.sender) is not None:
                self.rt.count("lookups_refused", bank=env.sender)
                continue
            answers.append(self.account_info(item.number))
        if answers:
            body, headers = self.rt.seal(*answers)
            self.rt.broker.reply(d.reply_to, d.correlation_id, body, headers)
