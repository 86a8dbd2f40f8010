"""Transfers: the one facade the REST API and the web UI call for anything between banks.

It validates what a customer asks, runs it through the inter-bank protocol
(``bank_node/interbank/``: coordinator, participant, inbox, outbox, resolver, lookup, over one
shared runtime and one group-commit writer), and turns the records into what customers see.
"""
from __future__ import annotations

import logging
import time
import uuid
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from broker import BrokerClient, Delivery
from .. import protocol as P
from ..config import ConsortiumConfig
from ..domain import coordinator as C
from ..domain import errors as E
from ..domain.calendar import iso
from ..domain.money import format_cents, parse_amount, to_cents
from ..domain.participant import Participation
from ..domain.transfer import Leg, total
from ..identity import keyring_for
from ..interbank.coordinator import Coordinator
from ..interbank.inbox import Inbox
from ..interbank.lookup import Lookups
from ..interbank.participant import Participant
from ..interbank.resolver import Resolver
from ..interbank.runtime import Runtime, now_ms
from ..storage.batch import BatchWriter
from ..storage.port import StorageError, Store
from .banking import Banking, request_fingerprint
from .idempotency import check_key

log = logging.getLogger("transfers")

MAX_BATCH_ITEMS = 500

#: How much longer than a PREPARE's time to live a request waits for the coordinator's decision
#: before answering 202 "pending" (the decision then comes in its own time).
ANSWER_GRACE_S = 10.0


class _Replay(Exception):
    """The Idempotency-Key was used before, for this same request: answer with its transfer."""

    def __init__(self, transfer_id: str):
        super().__init__(transfer_id)
        self.transfer_id = transfer_id


class Transfers:
    def __init__(self, config: ConsortiumConfig, bank_id: str, store: Store, banking: Banking,
                 broker: BrokerClient | None, metrics: Any = None, keyring=None, siblings: bool = False):
        self.config = config
        self.bank_id = bank_id
        self.store = store
        self.banking = banking
        self.writer = BatchWriter(store, name=f"writer-{bank_id}", after_batch=self._after_batch)
        self.rt = Runtime(config, bank_id, store, self.writer, broker,
                          keyring if keyring is not None else keyring_for(config, bank_id), metrics,
                          siblings=siblings)
        self.participant = Participant(self.rt, outbox=None)  # the coordinator's outbox, set below
        self.coordinator = Coordinator(self.rt, self.participant, reachable=lambda b: self.resolver.reachable(b))
        self.participant.outbox = self.coordinator.outbox
        self.resolver = Resolver(self.rt, self.coordinator, self.coordinator.outbox)
        self.lookups = Lookups(self.rt, banking)
        self.apply_wait_s = config.timeouts.apply_wait_ms / 1000
        self.inbox = Inbox(self.rt, {
            P.Prepare: self.participant.on_prepares,
            P.Decision: self.participant.on_decisions,
            P.VoteProof: lambda d, env, items: None,   # read by on_decisions beside the COMMITs they prove
            P.Relay: self.participant.on_relays,
            P.DecisionAck: self.coordinator.on_acks,
            P.StatusQuery: self.resolver.on_status_queries,
            P.Lookup: self.lookups.answer,
            P.AccountQuery: self.lookups.answer_account,
            P.Audit: self._answer_audit,
        })

    @property
    def broker(self) -> BrokerClient | None:
        return self.rt.broker

    @broker.setter
    def broker(self, value) -> None:
        self.rt.broker = value

    def _after_batch(self, size: int) -> None:
        if self.rt.metrics is not None:
            self.rt.metrics.batch_size.observe(size)
        self.coordinator.outbox.flush()

    # life cycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self.writer.start()
        self.coordinator.start()
        self.resolver.start()

    def stop(self) -> None:
        self.resolver.stop()
        self.coordinator.stop()
        self.writer.stop()

    def handle(self, d: Delivery) -> None:
        self.inbox.handle(d)

    # submitting -------------------------------------------------------------------------------
    def submit(self, initiator: str, body: Any, idem_key: str | None = None) -> tuple[int, dict]:
        """POST /api/transfers: validate, run two-phase commit, report the outcome.

        A transfer tells whether the accounts it names exist ("not_found" legs), so it is
        throttled like every other request naming an account: each "no such account" leg
        counts against the initiator, and one who had too many is refused before anything."""
        self.banking.throttles.before_account_lookup(initiator)
        tid, legs = self._validate(body)
        status, view = self._answers(initiator, [(tid, legs)], idem_key, wait_applied=True)[0]
        self._count_unknown(initiator, [view])
        return status, view

    def _count_unknown(self, initiator: str, views: list[dict]) -> None:
        unknown = sum(1 for v in views for f in v.get("failures", ()) if f.get("reason") == "not_found")
        if unknown:
            self.banking.throttles.unknown_account(initiator, unknown)

    def submit_batch(self, initiator: str, body: Any, idem_key: str | None = None) -> tuple[int, dict]:
        """POST /api/transfer-batches: up to 500 independent transfers, each committing or
        aborting on its own, answered item by item in order. Idempotent as a whole: the same
        key and body answer with the same transfers again."""
        if not isinstance(body, dict) or set(body) != {"items"}:
            raise E.InvalidInput("the body must be exactly {items: [...]}")
        items = body["items"]
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH_ITEMS:
            raise E.InvalidInput(f"items must be a list of 1 to {MAX_BATCH_ITEMS} transfers")
        parsed = []
        for i, item in enumerate(items):
            try:
                parsed.append(self._validate(item))
            except E.DomainError as e:
                raise type(e)(f"items[{i}]: {e.detail}", code=e.code, status=e.status) from e
        named = [tid for tid, _ in parsed if tid is not None]
        if len(set(named)) != len(named):
            raise E.InvalidInput("two items have the same id: each transfer needs its own")
        parsed = [(tid or str(uuid.uuid4()), legs) for tid, legs in parsed]   # an item without id gets one
        ids = [tid for tid, _ in parsed]
        check_key(idem_key)
        if idem_key is not None:
            fingerprint = request_fingerprint("batch", initiator, [[_leg_dict(l) for l in legs] for _, legs in parsed])
            with self.store.transaction() as tx:
                seen = tx.get_idempotent(initiator, f"batch:{idem_key}")
                if seen is not None and seen["request_hash"] != fingerprint:
                    raise E.IdempotencyMismatch("this Idempotency-Key was already used for a different batch")
                if seen is None:
                    tx.put_idempotent(initiator, f"batch:{idem_key}", fingerprint, 201, {"ids": ids}, time.time())
                else:
                    ids = seen["body"]["ids"]
                    parsed = [(tid, legs) for tid, (_, legs) in zip(ids, parsed)]
        self.banking.throttles.before_account_lookup(initiator)
        answers = self._answers(initiator, parsed, None, wait_applied=True)
        self._count_unknown(initiator, [view for _, view in answers])
        out = []
        for status, view in answers:
            item = {"id": view["id"], "status": view["status"] if status < 400 else "aborted"}
            if view.get("reason") or status >= 400:
                item["reason"] = view.get("reason") or view.get("code")
            out.append(item)
        return 201, {"items": out}

    def _answers(self, initiator: str, requests: list[tuple[str | None, tuple[Leg, ...]]],
                 idem_key: str | None, wait_applied: bool = False) -> list[tuple[int, dict]]:
        """Begin every transfer (their begin records share commits), run those that need the
        other banks, and wait for all of them."""
        check_key(idem_key)
        begins: list = []
        for tid, legs in requests:
            fingerprint = request_fingerprint("transfer", initiator, [_leg_dict(l) for l in legs])
            try:
                remember = None
                if idem_key is not None:
                    tid, remember = self._keyed(initiator, idem_key, fingerprint, tid)
                begins.append(self.coordinator.begin(tid or str(uuid.uuid4()), initiator, legs, fingerprint,
                                                     remember))
            except (_Replay, E.DomainError) as e:
                begins.append(e)
        runs: list = []
        started: dict[Future, str] = {}   # each transfer run here: the id it was begun with
        try:
            for fut in begins:
                try:
                    if isinstance(fut, BaseException):
                        raise fut
                    begun = fut.result(timeout=60)
                except _Replay as r:
                    runs.append(self.status(initiator, r.transfer_id, answer=True))
                    continue
                except E.DomainError as e:
                    if len(requests) == 1:
                        raise
                    runs.append((e.status, {"id": None, "status": "aborted", "reason": e.code}))
                    continue
                except (StorageError, FutureTimeout) as e:
                    raise E.DomainError(f"the ledger is not available right now: {e}", code="unavailable",
                                        status=503) from e
                rec = begun.rec
                if begun.fresh and rec.state == "preparing":
                    run = self.coordinator.run(rec, wait_applied and self.apply_wait_s > 0)
                    started[run] = rec.transfer_id
                    runs.append(run)
                else:
                    runs.append(rec)
            return self._collect(runs, requests, started)
        finally:
            # Whoever was not answered through wait_applied (pending, or a failure on the way)
            # leaves nothing behind for the acknowledgements to find.
            for tid in started.values():
                self.coordinator.stop_waiting(tid)

    def _collect(self, runs: list, requests: list, started: dict[Future, str]) -> list[tuple[int, dict]]:
        """The answers, in order: a decided transfer once the other banks applied it (for up to
        ``apply_wait_s`` in all), one still undecided after its PREPAREs' time to live as 202."""
        out, deadline = [], None
        for r, (tid, _) in zip(runs, requests):
            if isinstance(r, tuple):
                status, view = r
                out.append((status, {**view, "id": view.get("id") or tid}))
                continue
            if isinstance(r, Future):
                tid = started[r]   # the id the transfer was begun with (a request may name none)
                try:
                    r = r.result(timeout=self.config.timeouts.prepare_ttl_ms / 1000 + ANSWER_GRACE_S)
                except FutureTimeout:
                    out.append((202, {"id": tid, "status": "pending", "coordinator": self.bank_id}))
                    continue
                deadline = deadline or time.monotonic() + self.apply_wait_s
                self.coordinator.wait_applied(r, max(0.0, deadline - time.monotonic()))
            out.append(self._answer(r))
        return out

    def _keyed(self, initiator: str, key: str, fingerprint: str, body_id: str | None):
        """The transfer id an Idempotency-Key names: the one stored at its first use, else a
        fresh random one (ids are never derived from the key, so nobody can predict them)."""
        scope, name = initiator, f"transfer:{key}"
        with self.store.transaction(write=False) as tx:
            seen = tx.get_idempotent(scope, name)
        if seen is not None:
            if seen["request_hash"] != fingerprint or (body_id and seen["body"]["id"] != body_id):
                raise E.IdempotencyMismatch("this Idempotency-Key was already used for a different transfer")
            raise _Replay(seen["body"]["id"])
        tid = body_id or str(uuid.uuid4())

        def remember(tx) -> None:
            again = tx.get_idempotent(scope, name)
            if again is not None:   # a concurrent retry with the same key won the race
                if again["request_hash"] != fingerprint:
                    raise E.IdempotencyMismatch("this Idempotency-Key was already used for a different transfer")
                raise _Replay(again["body"]["id"])
            tx.put_idempotent(scope, name, fingerprint, 201, {"id": tid}, time.time())
        return tid, remember

    def _validate(self, body: Any) -> tuple[str | None, tuple[Leg, ...]]:
        if not isinstance(body, dict):
            raise E.InvalidInput("the body must be a JSON object")
        unknown = set(body) - {"id", "sources", "destination"}
        if unknown:
            raise E.InvalidInput(f"unknown fields: {', '.join(sorted(unknown))}")
        tid = body.get("id")
        if tid is not None:
            try:
                tid = str(uuid.UUID(str(tid))) if isinstance(tid, str) else None
            except ValueError:
                tid = None
            if tid is None:
                raise E.InvalidInput("id must be a UUID")
        sources = body.get("sources")
        max_legs = self.config.limits.max_transfer_legs
        if not isinstance(sources, list) or not sources:
            raise E.InvalidInput("sources must be a non-empty list of {bank, account, amount}")
        if len(sources) > max_legs:
            raise E.InvalidInput(f"a transfer has at most {max_legs} sources")
        legs, seen = [], set()
        for i, s in enumerate(sources):
            if not isinstance(s, dict) or set(s) != {"bank", "account", "amount"}:
                raise E.InvalidInput(f"sources[{i}] must be exactly {{bank, account, amount}}")
            ref = self._account_ref(s, f"sources[{i}]")
            if ref in seen:
                raise E.InvalidInput(f"sources[{i}]: each source account may appear only once")
            seen.add(ref)
            # The limit of the bank that holds the account (it checks again while it prepares).
            limit = to_cents(self.config.limits_for(ref[0]).max_amount)
            legs.append(Leg(ref[0], ref[1], parse_amount(s["amount"], limit_cents=limit,
                                                         field=f"sources[{i}].amount"), "debit"))
        dest = body.get("destination")
        if not isinstance(dest, dict) or set(dest) != {"bank", "account"}:
            raise E.InvalidInput("destination must be exactly {bank, account}")
        dref = self._account_ref(dest, "destination")
        if dref in seen:
            raise E.InvalidInput("the destination cannot also be a source")
        amount = sum(l.amount for l in legs)
        limit = to_cents(self.config.limits_for(dref[0]).max_amount)
        if amount > limit:
            raise E.InvalidAmount(f"the destination bank accepts at most {format_cents(limit)} in one transfer",
                                  code="amount_over_limit", limit=format_cents(limit))
        legs.append(Leg(dref[0], dref[1], amount, "credit"))
        return tid, tuple(legs)

    def _account_ref(self, obj: dict, where: str) -> tuple[str, str]:
        bank, account = obj.get("bank"), obj.get("account")
        if not isinstance(bank, str) or bank not in self.config.bank_ids:
            raise E.NotFound(f"{where}.bank: no bank {bank!r} in this consortium", code="unknown_bank")
        if not isinstance(account, str) or not (account.isascii() and account.isdigit()) or not (1 <= len(account) <= 32):
            raise E.InvalidInput(f"{where}.account must be an account number (digits)")
        return bank, account

    # what customers see -----------------------------------------------------------------------
    def _answer(self, rec: C.CoordinatedTransfer) -> tuple[int, dict]:
        with self.store.transaction(write=False) as tx:
            view = self._coordinated_view(tx, rec, rec.initiator)
        return (202 if view["status"] == "pending" else 201), view

    def status(self, caller: str, transfer_id: Any, *, answer: bool = False):
        """GET /api/transfers/{id}: for the initiator, or a holder of one of its legs here. At
        the coordinator, the whole story; at another bank of a leg, what that bank knows (the
        whole transfer, as its PREPARE carried it)."""
        if not isinstance(transfer_id, str) or len(transfer_id) > 64:
            raise E.NotFound("no such transfer at this bank")
        with self.store.transaction(write=False) as tx:
            rec = tx.get_coordinated(transfer_id)
            if rec is not None and (rec.initiator == caller or any(
                    leg.bank == self.bank_id and caller in tx.holders_of(leg.account) for leg in rec.legs)):
                view = self._coordinated_view(tx, rec, caller)
                return ((202 if view["status"] == "pending" else 201), view) if answer else view
            for part in tx.participations_of(transfer_id):
                if part.legs and (part.initiator == caller or any(
                        caller in tx.holders_of(l.account) for l in part.own_legs(self.bank_id))):
                    view = self._participant_view(tx, part, caller)
                    return ((202 if view["status"] == "pending" else 201), view) if answer else view
        raise E.NotFound("no such transfer at this bank")

    def _legs_view(self, tx, legs, caller: str, committed: bool, reasons: dict | None = None) -> list[dict]:
        """The legs as the caller may see them: a leg's masked holder name only for accounts
        the caller holds, and for the destination of a committed transfer (who was paid, as a
        receipt says); never for an account the transfer was refused on."""
        out = []
        for leg in legs:
            item = {"bank": leg.bank, "bank_name": self.config.bank(leg.bank).name if leg.bank in self.config.bank_ids
                    else leg.bank, "account": leg.account, "amount": format_cents(leg.amount),
                    "role": "source" if leg.is_debit else "destination"}
            if leg.bank == self.bank_id and ((committed and not leg.is_debit) or caller in tx.holders_of(leg.account)):
                item["holder"] = self.banking.masked_holder(tx, leg.account)
            if reasons and reasons.get((leg.bank, leg.account)):
                item["reason"] = reasons[(leg.bank, leg.account)]
            out.append(item)
        return out

    def _coordinated_view(self, tx, rec: C.CoordinatedTransfer, caller: str) -> dict:
        status = C.public_status(rec.state)
        out = {"id": rec.transfer_id, "status": status, "amount": format_cents(rec.amount),
               "coordinator": self.bank_id, "created_at": iso(rec.created_at),
               "legs": self._legs_view(tx, rec.legs, caller, status == "committed",
                                       C.leg_reasons(rec) if status == "aborted" else None),
               "timeline": timeline(rec)}
        if status == "aborted":
            out["reason"] = C.first_reason(rec.failures)
            out["failures"] = [{"bank": f.bank, "account": f.account, "reason": f.reason} for f in rec.failures]
        if rec.decided_at:
            out["decided_at"] = iso(rec.decided_at)
        return out

    def _participant_view(self, tx, part: Participation, caller: str) -> dict:
        status = C.public_status(part.state)
        own = {(self.bank_id, a): c for a, c in part.reasons}
        out = {"id": part.transfer_id, "status": status, "amount": format_cents(total(part.legs)),
               "coordinator": part.coordinator, "created_at": iso(part.created_at),
               "legs": self._legs_view(tx, part.legs, caller, status == "committed",
                                       own if status == "aborted" else None),
               "timeline": [{"at": iso(part.created_at), "bank": self.bank_id,
                             "event": "vote_yes" if part.state != "aborted" or not part.reasons else "vote_no",
                             **({"detail": part.reasons[0][1]} if part.state == "aborted" and part.reasons else {})}]}
        if part.state != "prepared":
            out["timeline"].append({"at": iso(part.updated_at), "bank": self.bank_id, "event": "decision_applied",
                                    "ms": int((part.updated_at - part.created_at) * 1000)})
            out["decided_at"] = iso(part.updated_at)
        if status == "aborted":
            out["reason"] = part.reasons[0][1] if part.reasons else "aborted"
        return out

    def inspect(self, transfer_id: str) -> dict | None:
        """One transfer as this bank recorded it, for the operator view (the operator routes are
        guarded on their own): None when this bank never saw it."""
        with self.store.transaction(write=False) as tx:
            rec = tx.get_coordinated(transfer_id)
            if rec is not None:
                return self._coordinated_view(tx, rec, "")
            parts = [p for p in tx.participations_of(transfer_id) if p.legs]
            return self._participant_view(tx, parts[0], "") if parts else None

    # lookups and figures ----------------------------------------------------------------------
    def lookup(self, requester: str, cpf: Any, ttl_ms: int | None = None) -> dict:
        """Every account of a CPF (or a company's CNPJ) in every bank; ``ttl_ms`` shortens the
        deadline for a screen that must not wait long for a bank that is down."""
        return self.lookups.lookup(requester, cpf, ttl_ms)

    def verify_account(self, caller: str, bank: Any, number: Any) -> dict:
        """{bank, number, kind, holder (masked)} of an open account in any bank of the consortium,
        to show who will be paid before a transfer is reviewed; NotFound otherwise."""
        return self.lookups.verify_account(caller, bank, number)

    def figures(self) -> dict:
        """The ledger's totals and the 2PC work in progress (the audit)."""
        with self.store.transaction(write=False) as tx:
            return tx.counts()

    def in_flight(self) -> dict:
        """The 2PC work in progress alone (health, metrics): no total of the whole ledger."""
        with self.store.transaction(write=False) as tx:
            return tx.in_flight()

    def positions(self) -> dict[str, int]:
        with self.store.transaction(write=False) as tx:
            return tx.positions()

    def _answer_audit(self, d: Delivery, env: P.Envelope, items: list[P.Audit]) -> None:
        if not d.reply_to or self.rt.broker is None or all(now_ms() > i.deadline_ms for i in items):
            return
        c = self.figures()
        result = P.AuditResult(
            bank=self.bank_id, accounts=c["accounts"], balance_total=c["balance_total"],
            deposits_total=c["deposits_total"], withdrawals_total=c["withdrawals_total"],
            transfers_in_total=c["transfers_in_total"], transfers_out_total=c["transfers_out_total"],
            holds_total=c["holds_total"], in_doubt=c["prepared_legs"] + c["preparing"],
            unacknowledged=c["unacknowledged_decisions"], positions=self.positions(), claims_total=c["claims_total"])
        body, headers = self.rt.seal(result)
        self.rt.broker.reply(d.reply_to, d.correlation_id, body, headers)


def timeline(rec: C.CoordinatedTransfer) -> list[dict]:
    """The two-phase commit of one transfer as its coordinator recorded it: each PREPARE sent,
    each vote and when, the decision written, sent, and each acknowledgement; ``ms`` is the time
    since the transfer began."""
    t0 = int(rec.created_at * 1000)
    events: list[tuple[int, str, str, dict]] = [(t0, "", "created", {})]
    for bank, p in sorted(rec.participants.items()):
        if p.sent_ms:
            events.append((p.sent_ms, bank, "prepare_sent", {}))
        if p.vote in ("yes", "no") and p.vote_ms:
            reason = next((f.reason for f in rec.failures if f.bank == bank), None)
            events.append((p.vote_ms, bank, f"vote_{p.vote}", {"detail": reason} if p.vote == "no" and reason else {}))
        if p.ack_ms:
            events.append((p.ack_ms, bank, "ack", {}))
    if rec.decided_at:
        events.append((int(rec.decided_at * 1000), "", f"decision_{rec.outcome}", {}))
    if rec.decision_sent_ms:
        events.append((rec.decision_sent_ms, "", "decision_sent", {}))
    step = {"created": 0, "prepare_sent": 1, "vote_yes": 2, "vote_no": 2, "decision_commit": 3, "decision_abort": 3,
            "decision_sent": 4, "ack": 5}
    out = []
    for at, bank, event, extra in sorted(events, key=lambda e: (e[0], step[e[2]], e[1])):
        out.append({"at": iso(at / 1000), "bank": bank or None, "event": event, "ms": at - t0, **extra})
    return out


def _leg_dict(leg: Leg) -> dict:
    return {"bank": leg.bank, "account": leg.account, "amount": leg.amount, "direction": leg.direction}

