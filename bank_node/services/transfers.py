"""The two-phase-commit runtime: persists what the pure state machines decide, then does it.

Coordinator (``submit``): record the transfer as preparing, send a PREPARE per participant
bank (RPC with TTL and deadline), collect votes until the deadline, write the decision
durably, and only then send it. Participant (``handle``): every inter-bank message arrives
here from the broker's worker pool; its effect is committed to the ledger before any reply or
acknowledgement leaves, and before the AMQP delivery is acked (docs/protocol.md, rule 1).

A background resolver keeps the protocol live after faults: it re-sends unacknowledged
decisions (with capped backoff), aborts transfers left undecided by a crash, and makes every
prepared participant past its deadline ask the coordinator (and its peers) for the outcome.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from broker import BrokerClient, BrokerError, Delivery, NotSent
from .. import protocol as P
from ..config import ConsortiumConfig
from ..domain import coordinator as C
from ..domain import errors as E
from ..domain import participant as PT
from ..domain.documents import mask_name, normalize_key
from ..domain.money import format_cents, parse_amount, to_cents
from ..faults import armed, crash_point
from ..identity import AUDITOR, expected_user
from ..storage.port import StorageError, Store
from .banking import Banking, iso, request_fingerprint

log = logging.getLogger("transfers")

STATUS_GRACE_MS = 500     # a participant waits this long past the deadline before asking
PUBLISH_WAIT_S = 5.0      # how long a handler waits for a publisher confirm
RESENDS_PER_PASS = 500    # transfers whose decision is re-sent per resolver pass (5 passes a second)
BATCH = 256               # protocol messages per AMQP message when they travel in bulk


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Backoff:
    """Per-transfer capped exponential backoff for re-sends and questions (in memory: after
    a restart everything is simply due at once)."""

    def __init__(self, first_ms: int, cap_ms: int):
        self.first, self.cap = first_ms, cap_ms
        self.next_at: dict[str, tuple[int, int]] = {}

    def due(self, key: str, now_ms: int) -> bool:
        at, _ = self.next_at.get(key, (0, 0))
        return now_ms >= at

    def sent(self, key: str, now_ms: int) -> None:
        _, interval = self.next_at.get(key, (0, 0))
        interval = self.first if interval == 0 else min(interval * 2, self.cap)
        self.next_at[key] = (now_ms + interval, interval)

    def forget_except(self, keys: set[str]) -> None:
        for k in list(self.next_at):
            if k not in keys:
                del self.next_at[k]


class Transfers:
    def __init__(self, config: ConsortiumConfig, bank_id: str, store: Store, banking: Banking,
                 broker: BrokerClient | None, metrics: Any = None):
        self.config = config
        self.bank_id = bank_id
        self.store = store
        self.banking = banking
        self.broker = broker
        self.metrics = metrics
        t = config.timeouts
        self.ttl_ms = t.prepare_ttl_ms
        self._resend = _Backoff(t.decision_resend_ms, t.retry_cap_ms)
        self._ask = _Backoff(t.status_query_ms, t.retry_cap_ms)
        # The broker user each principal's messages must carry (worked out once, not per message).
        self._users = {p: expected_user(config, p) for p in [*config.bank_ids, AUDITOR]}
        self._active: set[str] = set()   # transfers a request thread is coordinating right now
        self._ack_waiters: dict[str, threading.Event] = {}
        self._active_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.violations = 0

    # ===================================================================== coordinator side
    def submit(self, initiator: str, body: Any, idem_key: str | None = None) -> tuple[int, dict]:
        """POST /api/transfers: validate, then run two-phase commit and report the outcome.

        A transfer tells whether the accounts it names exist ("not_found" legs), so it is
        throttled like every other request naming an account: each "no such account" leg
        counts against the initiator, and one who had too many is refused before anything."""
        self.banking.throttles.before_account_lookup(initiator)
        status, view = self._submit(initiator, body, idem_key)
        unknown = sum(1 for f in view.get("failures", ()) if f.get("reason") == "not_found")
        if unknown:
            self.banking.throttles.unknown_account(initiator, unknown)
        return status, view

    def _submit(self, initiator: str, body: Any, idem_key: str | None) -> tuple[int, dict]:
        transfer_id, sources, destination = self._validate(initiator, body, idem_key)
        legs = [{"bank": s["bank"], "account": s["account"], "amount": s["amount"], "direction": "debit"}
                for s in sources]
        legs.append({"bank": destination["bank"], "account": destination["account"],
                     "amount": sum(s["amount"] for s in sources), "direction": "credit"})
        fingerprint = request_fingerprint("transfer", initiator, legs)
        now = time.time()
        deadline_ms = _now_ms() + self.ttl_ms
        with self.store.transaction() as tx:
            if idem_key is not None:
                # The key names one request: the same key with another body (another id
                # included) is refused, whatever the body's id says.
                keyed = tx.get_idempotent(initiator, f"transfer:{idem_key}")
                if keyed is not None:
                    if keyed["request_hash"] != fingerprint or keyed["body"]["id"] != transfer_id:
                        raise E.IdempotencyMismatch("this Idempotency-Key was already used for a different transfer")
                else:
                    tx.put_idempotent(initiator, f"transfer:{idem_key}", fingerprint, 201, {"id": transfer_id}, now)
            seen = tx.get_coordinated(transfer_id)
            if seen is not None:
                if seen["initiator"] != initiator or seen["request_hash"] != fingerprint:
                    raise E.IdempotencyMismatch("this transfer id was already used for a different transfer")
                return self._answer(seen)
            rec, effects = C.begin(transfer_id, initiator, fingerprint, legs, deadline_ms, now)
            tx.put_coordinated(rec)
        self._count("transfers_started")
        applied = threading.Event()
        with self._active_lock:
            self._active.add(transfer_id)
            self._ack_waiters[transfer_id] = applied
        started = time.monotonic()
        try:
            try:
                rec = self._run_prepare(rec, effects)
            except StorageError as e:
                # The decision could not be written: nobody was told anything, and the resolver
                # aborts the transfer once its deadline has passed (presumed abort). The
                # outcome is not known yet, which is what 202 says.
                log.error("transfer %s: decision not written (%s); pending", transfer_id, e,
                          extra={"transfer_id": transfer_id, "event": "pending"})
                return 202, {"id": transfer_id, "status": "pending", "coordinator": self.bank_id}
            if self.metrics is not None:
                self.metrics.transfer_seconds.observe(time.monotonic() - started)
            # Read-your-writes: give the participants a moment to apply the decision, so that
            # the balances a customer looks at next already show it. The outcome does not
            # depend on this wait; a slow participant only makes it return earlier.
            if rec["state"] != "preparing" and rec["pending_acks"] > 0 and \
                    self.broker is not None and self.broker.connected:
                applied.wait(self.config.timeouts.apply_wait_ms / 1000)
        finally:
            with self._active_lock:
                self._active.discard(transfer_id)
                self._ack_waiters.pop(transfer_id, None)
        return self._answer(rec)

    def _validate(self, initiator: str, body: Any, idem_key: str | None) -> tuple[str, list[dict], dict]:
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
        elif idem_key is not None:
            if not (1 <= len(idem_key) <= 200) or not idem_key.isprintable():
                raise E.InvalidInput("Idempotency-Key must be 1 to 200 printable characters")
            tid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"consorcio:{self.bank_id}:{initiator}:{idem_key}"))
        else:
            tid = str(uuid.uuid4())
        sources = body.get("sources")
        max_legs = self.config.limits.max_transfer_legs
        if not isinstance(sources, list) or not sources:
            raise E.InvalidInput("sources must be a non-empty list of {bank, account, amount}")
        if len(sources) > max_legs:
            raise E.InvalidInput(f"a transfer has at most {max_legs} sources")
        out, seen = [], set()
        for i, s in enumerate(sources):
            if not isinstance(s, dict) or set(s) != {"bank", "account", "amount"}:
                raise E.InvalidInput(f"sources[{i}] must be exactly {{bank, account, amount}}")
            ref = self._account_ref(s, f"sources[{i}]")
            if ref in seen:
                raise E.InvalidInput(f"sources[{i}]: each source account may appear only once")
            seen.add(ref)
            # A coarse bound here (a bank may allow more than the consortium); the bank that holds
            # the account enforces its own limits while it prepares, and votes NO past them.
            limit = to_cents(max(self.config.limits.max_amount, self.config.limits_for(ref[0]).max_amount))
            out.append({"bank": ref[0], "account": ref[1],
                        "amount": parse_amount(s["amount"], limit_cents=limit, field=f"sources[{i}].amount")})
        dest = body.get("destination")
        if not isinstance(dest, dict) or set(dest) != {"bank", "account"}:
            raise E.InvalidInput("destination must be exactly {bank, account}")
        dref = self._account_ref(dest, "destination")
        if dref in seen:
            raise E.InvalidInput("the destination cannot also be a source")
        return tid, out, {"bank": dref[0], "account": dref[1]}

    def _account_ref(self, obj: dict, where: str) -> tuple[str, str]:
        bank, account = obj.get("bank"), obj.get("account")
        if not isinstance(bank, str) or bank not in self.config.bank_ids:
            raise E.NotFound(f"{where}.bank: no bank {bank!r} in this consortium", code="unknown_bank")
        if not isinstance(account, str) or not (account.isascii() and account.isdigit()) or not (1 <= len(account) <= 32):
            raise E.InvalidInput(f"{where}.account must be an account number (digits)")
        return bank, account

    def _run_prepare(self, rec: dict, effects: list) -> dict:
        tid = rec["transfer_id"]
        pending: dict[Future, str] = {}
        cids: list[str] = []
        try:
            crash_point("coordinator.before_prepare")
            if self.broker is None:
                raise E.BankUnreachable("this bank has no broker connection")
            # Remote PREPAREs first, so they travel while this bank prepares its own legs.
            prepares = sorted((e for e in effects if isinstance(e, C.SendPrepare)), key=lambda e: e.bank == self.bank_id)
            for i, eff in enumerate(prepares):
                if i == 1:
                    crash_point("coordinator.after_some_prepares")
                msg = P.Prepare(transfer_id=tid, coordinator=self.bank_id, initiator=rec["initiator"],
                                deadline_ms=rec["deadline_ms"],
                                legs=[P.Leg(account=l["account"], amount=l["amount"], direction=l["direction"])
                                      for l in rec["legs"] if l["bank"] == eff.bank],
                                peers=sorted(rec["participants"]))
                if eff.bank == self.bank_id:
                    pending[self._prepare_locally(msg)] = eff.bank
                    continue
                req = self.broker.request(eff.bank, P.encode(self.bank_id, msg),
                                          expiration_ms=max(1, rec["deadline_ms"] - _now_ms()),
                                          expect_user=self._users[eff.bank])
                pending[req.future] = eff.bank
                cids.append(req.correlation_id)
                self._count("prepares_sent")
            decided: list = []
            while pending and rec["state"] == "preparing":
                left = (rec["deadline_ms"] - _now_ms()) / 1000
                if left <= 0:
                    break
                done, _ = wait(list(pending), timeout=left, return_when=FIRST_COMPLETED)
                for fut in done:
                    bank = pending.pop(fut)
                    rec, decided = self._on_vote_future(rec, bank, fut)
                    if decided:
                        break
            if rec["state"] == "preparing":
                silent = {b for b, p in rec["participants"].items() if p["vote"] is None}
                rec, decided = C.on_deadline(rec, self._unreachable(silent), time.time())
        except Exception as e:  # noqa: BLE001 - rule 5: any error while preparing means ABORT
            if not isinstance(e, (E.DomainError, BrokerError)):
                log.exception("transfer %s: error while preparing", tid)
            code = "bank_unreachable" if isinstance(e, (BrokerError, E.BankUnreachable)) else "error"
            rec, decided = C.on_error(rec, None, code, time.time())
        finally:
            for cid in cids:
                self.broker.forget(cid)
        return self._decide(rec, decided)

    def _prepare_locally(self, msg: P.Prepare) -> Future:
        """This bank's own legs: the same participant step, called directly instead of through
        the broker (same transaction, same durability before the vote counts)."""
        fut: Future = Future()
        try:
            vote = self._on_prepare(msg)
            if vote is None:
                raise E.DomainError("a PREPARE of ours differs from the first one")
            fut.set_result(P.encode(self.bank_id, vote))
        except Exception as e:  # noqa: BLE001 - becomes an ABORT (rule 5)
            log.exception("transfer %s: local prepare failed", msg.transfer_id)
            fut.set_exception(e)
        return fut

    def _apply_locally(self, decision: P.Decision) -> None:
        """A decision for this bank's own legs, applied directly; its acknowledgement recorded
        directly. A failure only means the resolver tries again later."""
        try:
            ok, ack = self._on_decision(decision, self.bank_id)
            if ack is not None and ack[0] == self.bank_id:
                self._on_decision_ack(ack[1])
        except Exception:  # noqa: BLE001 - re-sent until acknowledged
            log.exception("transfer %s: local %s not applied yet; will retry", decision.transfer_id,
                          decision.outcome)

    def _on_vote_future(self, rec: dict, bank: str, fut: Future) -> tuple[dict, list]:
        try:
            body = fut.result()
        except NotSent:  # no connection, or no queue for that bank: it cannot have prepared
            return C.on_unsent(rec, bank, time.time())
        except BrokerError:
            return C.on_error(rec, bank, "bank_unreachable", time.time())
        except Exception:  # noqa: BLE001 - this bank's own prepare failed
            return C.on_error(rec, bank, "error", time.time())
        try:
            env = P.decode(body)
            vote = next(i for i in env.items if isinstance(i, P.VoteMsg))
        except (P.BadMessage, StopIteration):
            log.warning("transfer %s: unreadable vote from %s", rec["transfer_id"], bank)
            return C.on_error(rec, bank, "error", time.time())
        if vote.transfer_id != rec["transfer_id"] or vote.bank != bank:
            log.warning("transfer %s: vote for %s/%s from %s ignored", rec["transfer_id"], vote.transfer_id,
                        vote.bank, bank)
            return rec, []
        self._count("votes_received", vote=vote.vote)
        return C.on_vote(rec, bank, vote.vote == "yes", [(r.account, r.code) for r in vote.reasons],
                         _now_ms(), time.time())

    def _unreachable(self, banks: set[str]) -> set[str]:
        """Banks whose queue nobody consumes (or that has no queue) are down, not slow."""
        out = set()
        for b in banks:
            try:
                n = self.broker.consumer_count(b).result(timeout=2) if self.broker else None
            except (BrokerError, FutureTimeout):
                n = None
            if not n:
                out.add(b)
        return out

    def _decide(self, rec: dict, effects: list) -> dict:
        """Write the decision durably (compare-and-set on 'preparing'), then send it."""
        tid = rec["transfer_id"]
        if rec["state"] != "preparing":
            crash_point("coordinator.before_decision_durable")
        with self.store.transaction() as tx:
            current = tx.get_coordinated(tid)
            if current is None or current["state"] != "preparing":
                return current or rec  # the resolver decided first (after a stall): its word stands
            tx.put_coordinated(rec)
        if rec["state"] == "committed":
            crash_point("coordinator.after_commit_durable")
        self._count("transfers_decided", outcome=rec["state"])
        log.info("transfer %s: decided %s%s", tid, rec["state"].upper(),
                 "" if rec["state"] == "committed" else f" ({rec['failures'][0]['reason'] if rec['failures'] else '?'})",
                 extra={"transfer_id": tid, "event": "decision"})
        self._perform(rec, effects)
        return rec

    def _perform(self, rec: dict, effects: list) -> None:
        sent: list[Future] = []
        for eff in sorted(effects, key=lambda e: isinstance(e, C.SendDecision) and e.bank == self.bank_id):
            if isinstance(eff, C.SendDecision):
                if len(sent) == 1 and rec["state"] == "committed" and armed("coordinator.after_some_decisions"):
                    sent[0].result(timeout=5)  # make "sent to one participant" true before dying
                    crash_point("coordinator.after_some_decisions")
                sent.append(self._send_decision(rec["transfer_id"], eff.bank, eff.outcome))
        self._resend.sent(rec["transfer_id"], _now_ms())

    def _send_decision(self, tid: str, bank: str, outcome: str) -> Future:
        """Fire and forget: a decision is re-sent until acknowledged, so a failed publish only
        needs a log line."""
        if self.broker is None or bank == self.bank_id:
            if bank == self.bank_id:
                self._count("decisions_sent", outcome=outcome)
                self._apply_locally(P.Decision(transfer_id=tid, outcome=outcome))
            f: Future = Future()
            f.set_result(None)
            return f
        # Re-sent until acknowledged, so no need to wait for a confirm (unless a crash point
        # needs the message to have reached the broker before the process dies).
        fut = self.broker.publish(bank, P.encode(self.bank_id, P.Decision(transfer_id=tid, outcome=outcome)),
                                  persistent=True, confirm=armed("coordinator.after_some_decisions"))
        self._count("decisions_sent", outcome=outcome)
        fut.add_done_callback(lambda f: f.exception() and log.info(
            "transfer %s: %s to %s not sent yet (%s); will retry", tid, outcome, bank, f.exception()))
        return fut

    def _answer(self, rec: dict) -> tuple[int, dict]:
        view = self.view(rec)
        return (202 if view["status"] == "pending" else 201), view

    def view(self, rec: dict) -> dict:
        status = C.public_status(rec)
        failures = {(f["bank"], f["account"]): f["reason"] for f in rec["failures"]}
        bank_fail = {f["bank"]: f["reason"] for f in rec["failures"] if f["account"] == "*"}
        legs = []
        for leg in rec["legs"]:
            item = {"bank": leg["bank"], "account": leg["account"], "amount": format_cents(leg["amount"]),
                    "role": "source" if leg["direction"] == "debit" else "destination"}
            reason = failures.get((leg["bank"], leg["account"])) or bank_fail.get(leg["bank"])
            if status == "aborted" and reason:
                item["reason"] = reason
            legs.append(item)
        out = {"id": rec["transfer_id"], "status": status, "coordinator": self.bank_id,
               "created_at": iso(rec["created_at"]), "legs": legs,
               "amount": format_cents(sum(l["amount"] for l in rec["legs"] if l["direction"] == "credit"))}
        if status == "aborted":
            out["reason"] = rec["failures"][0]["reason"] if rec["failures"] else "aborted"
            out["failures"] = rec["failures"]
        if rec.get("decided_at"):
            out["decided_at"] = iso(rec["decided_at"])
        return out

    def status(self, caller: str, transfer_id: str) -> dict:
        """GET /api/transfers/{id}: for the initiator, or a holder of one of its legs here."""
        with self.store.transaction(write=False) as tx:
            rec = tx.get_coordinated(transfer_id) if isinstance(transfer_id, str) else None
            if rec is None:
                return self._participant_view(tx, caller, transfer_id)
            allowed = rec["initiator"] == caller or any(
                leg["bank"] == self.bank_id and caller in tx.holders_of(leg["account"]) for leg in rec["legs"])
        if not allowed:
            raise E.NotFound("no such transfer at this bank")
        return self.view(rec)

    def _participant_view(self, tx, caller: str, transfer_id: Any) -> dict:
        """A transfer coordinated elsewhere, seen from this bank: its legs here and their state,
        for the initiator or a holder of one of those legs."""
        part = tx.get_participant(transfer_id) if isinstance(transfer_id, str) else None
        if part is None or not part["legs"] or not (
                part["initiator"] == caller or any(caller in tx.holders_of(l["account"]) for l in part["legs"])):
            raise E.NotFound("no such transfer at this bank")
        status = {"prepared": "pending", "committed": "committed", "aborted": "aborted"}[part["state"]]
        out = {"id": transfer_id, "status": status, "coordinator": part["coordinator"],
               "created_at": iso(part["created_at"]),
               "legs": [{"bank": self.bank_id, "account": l["account"], "amount": format_cents(l["amount"]),
                         "role": "source" if l["direction"] == "debit" else "destination"} for l in part["legs"]],
               "partial": True}
        if status == "aborted":
            out["reason"] = part["reasons"][0][1] if part["reasons"] else "aborted"
        return out

    # ===================================================================== message handling
    def handle(self, d: Delivery) -> None:
        """Entry point of every message from this bank's queue (on a broker worker thread)."""
        try:
            env = P.decode(d.body)
        except P.BadMessage as e:
            return self._refuse(d, "malformed", str(e))
        refusal = self._check_sender(env, d.user_id)
        if refusal:
            return self._refuse(d, refusal, f"from {env.sender!r} as user {d.user_id!r}")
        outbox: dict[str, list] = {}  # replies that travel as messages, batched per bank
        refused = 0
        for item in env.items:
            if isinstance(item, P.Prepare):
                vote = self._on_prepare(item)
                if vote is None:
                    refused += self._refuse_item("tampered", f"PREPARE {item.transfer_id} differs from the first one")
                elif d.reply_to:
                    self._wait(self.broker.reply(d.reply_to, d.correlation_id, P.encode(self.bank_id, vote)))
            elif isinstance(item, P.Decision):
                ok, ack = self._on_decision(item, env.sender)
                if not ok:
                    refused += self._refuse_item("not_coordinator", f"decision for {item.transfer_id} from {env.sender}")
                elif ack is not None:
                    outbox.setdefault(ack[0], []).append(ack[1])
            elif isinstance(item, P.DecisionAck):
                self._on_decision_ack(item)
            elif isinstance(item, P.StatusQuery):
                answer = self._on_status_query(item)
                if answer is not None:
                    outbox.setdefault(item.bank, []).append(answer)
            elif isinstance(item, P.Lookup):
                if d.reply_to and _now_ms() <= item.deadline_ms:
                    result = P.LookupResult(bank=self.bank_id, accounts=[
                        P.AccountSummary(**s) for s in self.banking.summaries_for(item.cpf, item.requester)])
                    self._wait(self.broker.reply(d.reply_to, d.correlation_id, P.encode(self.bank_id, result)))
            elif isinstance(item, P.AccountQuery):
                if d.reply_to and _now_ms() <= item.deadline_ms:
                    answer = self._account_info(item.number)
                    self._wait(self.broker.reply(d.reply_to, d.correlation_id, P.encode(self.bank_id, answer)))
            elif isinstance(item, P.Audit):
                if d.reply_to and _now_ms() <= item.deadline_ms:
                    c = self.figures()
                    result = P.AuditResult(
                        bank=self.bank_id, accounts=c["accounts"], balance_total=c["balance_total"],
                        deposits_total=c["deposits_total"], withdrawals_total=c["withdrawals_total"],
                        transfers_in_total=c["transfers_in_total"], transfers_out_total=c["transfers_out_total"],
                        holds_total=c["holds_total"], in_doubt=c["prepared_legs"] + c["preparing"],
                        unacknowledged=c["unacknowledged_decisions"])
                    self._wait(self.broker.reply(d.reply_to, d.correlation_id, P.encode(self.bank_id, result)))
            else:
                log.warning("unexpected %s message on the bank queue, dropped", item.type)
        # After every local commit above: acknowledgements and answers, one message per bank.
        for bank, items in outbox.items():
            for fut in self._send_batches(bank, items):
                self._wait(fut)
        if refused and refused == len(env.items):
            d.reject(requeue=False)  # nothing in it was acceptable: dead-letter it
        else:
            d.ack()

    def _send_batches(self, bank: str, items: list) -> list[Future]:
        """Messages the protocol re-sends until answered, many per envelope, no confirm."""
        futs = []
        for i in range(0, len(items), BATCH):
            futs.append(self.broker.publish(bank, P.encode(self.bank_id, *items[i:i + BATCH]),
                                            persistent=True, confirm=False))
        return futs

    def _refuse_item(self, reason: str, detail: str) -> int:
        log.warning("refused an inter-bank message (%s): %s", reason, detail, extra={"event": "refused"})
        self._count("messages_rejected", reason=reason)
        return 1

    def _check_sender(self, env: P.Envelope, user_id: str | None) -> str | None:
        """Who sent it, and may they send that? The broker guarantees user_id is the
        connection's user; we check that user is the bank the message claims, and that the
        bank has the role the message needs. Decisions are checked against the transfer."""
        if env.sender not in self.config.bank_ids and env.sender != AUDITOR:
            return "unknown_sender"
        if user_id is None:
            return "no_user_id"
        if user_id != self._users[env.sender]:
            return "wrong_user_id"
        for item in env.items:
            if env.sender == AUDITOR and not isinstance(item, P.Audit):
                return "wrong_role"
            if isinstance(item, P.Audit) and env.sender != AUDITOR:
                return "wrong_role"
            if isinstance(item, P.Prepare) and item.coordinator != env.sender:
                return "not_coordinator"
            if isinstance(item, (P.DecisionAck, P.StatusQuery)) and item.bank != env.sender:
                return "wrong_role"
            if isinstance(item, (P.VoteMsg, P.LookupResult, P.AuditResult, P.AccountInfo)):
                return "unexpected"  # answers travel on reply queues, never on a bank's queue
        return None

    def _refuse(self, d: Delivery, reason: str, detail: str) -> None:
        """Count it, log it, dead-letter it: a refused message never has an effect and is
        never redelivered to us."""
        log.warning("refused an inter-bank message (%s): %s", reason, detail, extra={"event": "refused"})
        self._count("messages_rejected", reason=reason)
        d.reject(requeue=False)

    @staticmethod
    def _wait(fut: Future) -> None:
        try:
            fut.result(timeout=PUBLISH_WAIT_S)
        except (BrokerError, FutureTimeout) as e:
            # A lost vote is an abort, a lost acknowledgement is re-asked: never fatal.
            log.info("reply not delivered: %s", e)

    # participant ---------------------------------------------------------------------------
    def _on_prepare(self, msg: P.Prepare) -> P.VoteMsg | None:
        """None when the PREPARE replays a known transfer with other legs (tampered)."""
        legs = [PT.Leg(l.account, l.amount, l.direction) for l in msg.legs]
        now = time.time()
        with self.store.transaction() as tx:
            rec = tx.get_participant(msg.transfer_id)
            if rec is not None and rec["legs"] and (
                    rec["coordinator"] != msg.coordinator or rec["initiator"] != msg.initiator or
                    rec["legs"] != [{"account": l.account, "amount": l.amount, "direction": l.direction}
                                    for l in legs]):
                return None
            accounts: dict[str, PT.AccountView | None] = {}
            if rec is None:
                for leg in legs:
                    acc = tx.get_account(leg.account)
                    accounts[leg.account] = None if acc is None else PT.AccountView(
                        acc["number"], acc["status"], frozenset(tx.holders_of(leg.account)),
                        acc["balance"] - tx.holds_total(leg.account),
                        self.banking.debited_today(tx, leg.account) if leg.direction == "debit" else 0)
            # The limits are this bank's own (its entry in consorcio.yml), whoever coordinates.
            decision = PT.on_prepare(rec["state"] if rec else None, rec["reasons"] if rec else [], legs,
                                     msg.initiator, msg.deadline_ms, _now_ms(), accounts,
                                     max_amount=self.banking.limit_cents,
                                     daily_limit=self.banking.daily_limit_cents)
            if decision.new_state:
                tx.put_participant({
                    "transfer_id": msg.transfer_id, "coordinator": msg.coordinator, "state": decision.new_state,
                    "deadline_ms": msg.deadline_ms, "initiator": msg.initiator,
                    "legs": [{"account": l.account, "amount": l.amount, "direction": l.direction} for l in legs],
                    "reasons": [list(r) for r in decision.vote.reasons], "peers": msg.peers,
                    "created_at": now, "updated_at": now})
                for account, amount in decision.holds:
                    tx.place_hold(msg.transfer_id, account, amount, now)
                crash_point("participant.before_prepare_durable")
        if decision.new_state == "prepared":
            self._count("holds_placed", n=len(decision.holds))
            crash_point("participant.after_prepare_durable")
        v = decision.vote
        self._count("votes_sent", vote="yes" if v.yes else "no")
        log.info("transfer %s: voted %s", msg.transfer_id, "YES" if v.yes else "NO",
                 extra={"transfer_id": msg.transfer_id, "event": "vote"})
        return P.VoteMsg(transfer_id=msg.transfer_id, bank=self.bank_id, vote="yes" if v.yes else "no",
                         reasons=[P.Reason(account=a, code=c) for a, c in v.reasons])

    def _on_decision(self, msg: P.Decision, sender: str) -> tuple[bool, tuple[str, P.DecisionAck] | None]:
        """Apply a decision; returns (accepted, the acknowledgement to send and to whom).
        Not accepted when the sender may not decide this transfer: only its coordinator (or,
        with cooperative termination, one of its participants)."""
        now = time.time()
        with self.store.transaction() as tx:
            rec = tx.get_participant(msg.transfer_id)
            if rec is not None and rec["coordinator"] and sender != rec["coordinator"] and not (
                    self.config.cooperative_termination and sender in rec["peers"]):
                return False, None
            eff = PT.on_decision(rec["state"] if rec else None, msg.outcome)
            if eff.violation:
                self.violations += 1
                self._count("messages_rejected", reason="violation")
                log.error("transfer %s: %s (from %s)", msg.transfer_id, eff.violation, sender,
                          extra={"transfer_id": msg.transfer_id, "event": "violation"})
                return True, None
            if eff.apply_commit:
                crash_point("participant.before_commit_applied")
                for leg in rec["legs"]:
                    signed = -leg["amount"] if leg["direction"] == "debit" else leg["amount"]
                    kind = "transfer_out" if leg["direction"] == "debit" else "transfer_in"
                    tx.append_entry(leg["account"], kind, signed, now, msg.transfer_id)
            if eff.apply_commit or eff.release_holds:
                tx.release_holds(msg.transfer_id)
            if eff.new_state:
                rec = rec or {"transfer_id": msg.transfer_id, "coordinator": sender, "deadline_ms": 0,
                              "initiator": "", "legs": [], "reasons": [["*", "aborted"]], "peers": [],
                              "created_at": now}
                tx.put_participant({**rec, "state": eff.new_state, "updated_at": now})
        if eff.apply_commit:
            crash_point("participant.after_commit_applied")
        if eff.new_state:
            self._count("decisions_applied", outcome=msg.outcome)
            log.info("transfer %s: %s applied", msg.transfer_id, msg.outcome.upper(),
                     extra={"transfer_id": msg.transfer_id, "event": "applied"})
        if eff.acknowledge and self.broker is not None:
            coordinator = (rec["coordinator"] if rec else None) or sender
            return True, (coordinator, P.DecisionAck(transfer_id=msg.transfer_id, bank=self.bank_id,
                                                     outcome=msg.outcome))
        return True, None

    # coordinator, asynchronous part -------------------------------------------------------------
    def _on_decision_ack(self, msg: P.DecisionAck) -> None:
        with self.store.transaction() as tx:
            rec = tx.get_coordinated(msg.transfer_id)
            if rec is None:
                return
            rec, effects = C.on_ack(rec, msg.bank, msg.outcome)
            if effects:
                tx.put_coordinated(rec)
        if rec["pending_acks"] == 0:
            with self._active_lock:
                waiter = self._ack_waiters.get(msg.transfer_id)
            if waiter is not None:
                waiter.set()

    def _on_status_query(self, msg: P.StatusQuery) -> P.Decision | None:
        """From a participant in doubt. As coordinator: the decision, or presumed abort. As a
        peer (cooperative termination): the outcome if this bank knows it; a peer that never
        voted and is past the deadline aborts for good and says so."""
        outcome = None
        with self.store.transaction() as tx:
            rec = tx.get_coordinated(msg.transfer_id)
            if rec is not None:
                # Only the transfer's own participants learn its outcome.
                effects = C.on_status_query(rec, msg.bank) if msg.bank in rec["participants"] else []
                outcome = effects[0].outcome if effects else None
            else:
                part = tx.get_participant(msg.transfer_id)
                if part is not None and part["state"] in ("committed", "aborted") and (
                        not part["peers"] or msg.bank in part["peers"]):
                    outcome = "commit" if part["state"] == "committed" else "abort"
                elif part is None and msg.deadline_ms is not None and _now_ms() > msg.deadline_ms:
                    now = time.time()
                    tx.put_participant({"transfer_id": msg.transfer_id, "coordinator": "", "state": "aborted",
                                        "deadline_ms": msg.deadline_ms, "initiator": "", "legs": [],
                                        "reasons": [["*", "timeout"]], "peers": [], "created_at": now,
                                        "updated_at": now})
                    outcome = "abort"
                elif part is None and self._is_coordinator_query(msg):
                    outcome = "abort"
        if outcome is None:
            return None
        self._count("decisions_sent", outcome=outcome)
        return P.Decision(transfer_id=msg.transfer_id, outcome=outcome)

    def _is_coordinator_query(self, msg: P.StatusQuery) -> bool:
        # A query without a deadline is addressed to the coordinator: with no record of the
        # transfer, presumed abort answers it.
        return msg.deadline_ms is None

    # ===================================================================== lookup (scatter-gather)
    def lookup(self, requester: str, cpf: Any, ttl_ms: int | None = None) -> dict:
        """Every account of a CPF (or a company's CNPJ) in every bank. ``ttl_ms`` shortens the
        deadline for a screen that must not wait long for a bank that is down."""
        cpf = normalize_key(cpf)
        ttl = min(ttl_ms, self.config.timeouts.lookup_ttl_ms) if ttl_ms else self.config.timeouts.lookup_ttl_ms
        deadline = _now_ms() + ttl
        missing: set[str] = set(self.config.bank_ids)
        accounts: list[dict] = []
        # This bank answers for itself directly: its own accounts never depend on the broker.
        results = [(self.bank_id, self.banking.summaries_for(cpf, requester))]
        missing.discard(self.bank_id)
        if self.broker is not None:
            body = P.encode(self.bank_id, P.Lookup(cpf=cpf, requester=requester, deadline_ms=deadline))
            others = [b for b in self.config.bank_ids if b != self.bank_id]
            for bank, raw in self.broker.gather(others, body, deadline_s=deadline / 1000,
                                                expect_user=self._users.get).items():
                try:
                    res = next(i for i in P.decode(raw).items if isinstance(i, P.LookupResult))
                except (P.BadMessage, StopIteration):
                    continue
                if res.bank == bank:
                    missing.discard(bank)
                    results.append((bank, [a.model_dump(exclude_none=True) for a in res.accounts]))
        for bank, summaries in results:
            for a in summaries:
                if a["bank"] != bank:
                    continue  # a bank speaks only for its own accounts
                item = {"bank": bank, "bank_name": self.config.bank(bank).name,
                        "number": a["number"], "kind": a["kind"], "holder": a["holder"]}
                if cpf == requester and a.get("balance") is not None:
                    item["balance"] = format_cents(a["balance"])
                    item["available"] = format_cents(a.get("available") or 0)
                    if a.get("company_name"):
                        item["company_name"] = a["company_name"]
                accounts.append(item)
        order = {b: i for i, b in enumerate(self.config.bank_ids)}
        accounts.sort(key=lambda a: (order[a["bank"]], a["number"]))
        return {"cpf": cpf, "full": cpf == requester, "accounts": accounts,
                "unreachable_banks": sorted(missing, key=order.get)}

    # ===================================================================== account verification
    # For the customer's app: a typed destination (bank, account number) is verified, and its
    # holder shown masked, before the transfer is reviewed. Kept apart from the 2PC runtime.
    def verify_account(self, caller: str, bank: Any, number: Any) -> dict:
        """{bank, number, kind, holder (masked)} of an open account in any bank of the
        consortium; NotFound when there is none (or its bank cannot say), never a balance."""
        if not isinstance(bank, str) or bank not in self.config.bank_ids:
            raise E.NotFound(f"no bank {bank!r} in this consortium", code="unknown_bank")
        if not isinstance(number, str) or not (number.isascii() and number.isdigit()) or not 1 <= len(number) <= 32:
            raise E.NotFound("no such account")
        # An answer about any number is an existence oracle: each "no such account" counts
        # against the caller, as at every route that names an account (Banking.throttles).
        self.banking.throttles.before_account_lookup(caller)
        if bank == self.bank_id:
            info = self._account_info(number)
        else:
            if self.broker is None:
                raise E.BankUnreachable("this bank has no broker connection")
            deadline = _now_ms() + self.config.timeouts.lookup_ttl_ms
            body = P.encode(self.bank_id, P.AccountQuery(number=number, requester=caller, deadline_ms=deadline))
            replies = self.broker.gather([bank], body, deadline_s=deadline / 1000, expect_user=self._users.get)
            if bank not in replies:
                raise E.BankUnreachable(f"bank {bank} did not answer in time")
            try:
                info = next(i for i in P.decode(replies[bank]).items if isinstance(i, P.AccountInfo))
            except (P.BadMessage, StopIteration):
                raise E.BankUnreachable(f"bank {bank} gave an unreadable answer") from None
            if info.bank != bank or info.number != number:
                raise E.BankUnreachable(f"bank {bank} answered about another account")
        if not info.found:
            self.banking.throttles.unknown_account(caller)
            raise E.NotFound("no such account in that bank")
        return {"bank": bank, "number": number, "kind": info.kind, "holder": info.holder}

    def _account_info(self, number: str) -> P.AccountInfo:
        """This bank's answer about one of its accounts: masked holder names only."""
        with self.store.transaction(write=False) as tx:
            acc = tx.get_account(number)
            if acc is None or acc["status"] != "open":
                return P.AccountInfo(bank=self.bank_id, number=number, found=False)
            if acc["kind"] == "business":
                holder = mask_name(acc["company_name"] or "")
            else:
                holder = " & ".join(mask_name((tx.get_customer(h) or {}).get("name", ""))
                                    for h in tx.holders_of(number))
        return P.AccountInfo(bank=self.bank_id, number=number, found=True, kind=acc["kind"], holder=holder[:200])
    # ===================================================================== end of account verification

    # ===================================================================== operator inspection
    def inspect(self, transfer_id: str) -> dict | None:
        """One transfer as this bank recorded it, for the operator view (no customer check:
        the operator routes are guarded by themselves). None when this bank never saw it."""
        with self.store.transaction(write=False) as tx:
            rec = tx.get_coordinated(transfer_id)
            if rec is None:
                part = tx.get_participant(transfer_id)
                if part is None:
                    return None
                holder = next((tx.holders_of(l["account"])[0] for l in part["legs"] if tx.holders_of(l["account"])),
                              None)
        if rec is not None:
            return self.view(rec)
        if holder is None:
            status = {"prepared": "pending", "committed": "committed", "aborted": "aborted"}[part["state"]]
            return {"id": transfer_id, "status": status, "coordinator": part["coordinator"],
                    "created_at": iso(part["created_at"]), "legs": [], "partial": True}
        with self.store.transaction(write=False) as tx:
            return self._participant_view(tx, holder, transfer_id)
    # ===================================================================== end of operator inspection

    # ===================================================================== resolver
    def start(self) -> None:
        self.recover()
        self._thread = threading.Thread(target=self._loop, name=f"resolver-{self.bank_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)

    def recover(self) -> None:
        """Rule 7, at start-up: transfers this bank was coordinating when it died are aborted
        (nobody is waiting for their votes any more); the rest is the resolver's usual work."""
        with self.store.transaction(write=False) as tx:
            stale = tx.coordinated_preparing()
        for rec in stale:
            log.info("transfer %s: undecided at restart, aborting (presumed abort)", rec["transfer_id"])
            rec, effects = C.on_recover(rec, time.time())
            self._decide(rec, effects)

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.resolve_once()
            except Exception:  # noqa: BLE001 - keep resolving whatever happened
                log.exception("resolver pass failed")

    def resolve_once(self) -> None:
        now_ms = _now_ms()
        with self.store.transaction(write=False) as tx:
            unacked = tx.coordinated_unacknowledged()
            preparing = tx.coordinated_preparing()
            prepared = tx.participations_in("prepared")
        # A request thread that stalled past the deadline (or died) leaves a transfer undecided.
        with self._active_lock:
            active = set(self._active)
        for rec in preparing:
            if rec["transfer_id"] not in active and now_ms > rec["deadline_ms"] + STATUS_GRACE_MS:
                rec, effects = C.on_recover(rec, time.time())
                self._decide(rec, effects)
        if self.broker is None or not self.broker.connected:
            return
        # Re-sends and questions go out batched, one message per bank per pass, so that a
        # backlog after an outage costs a few messages, not one per transfer.
        outbox: dict[str, list] = {}
        keys = set()
        budget = RESENDS_PER_PASS  # oldest first; the rest waits for the next pass
        for rec in unacked:
            tid = rec["transfer_id"]
            keys.add(tid)
            if budget > 0 and self._resend.due(tid, now_ms):
                budget -= 1
                for eff in C.pending_decisions(rec):
                    outbox.setdefault(eff.bank, []).append(P.Decision(transfer_id=tid, outcome=eff.outcome))
                    self._count("decisions_sent", outcome=eff.outcome)
                self._resend.sent(tid, now_ms)
        self._resend.forget_except(keys)
        keys = set()
        for part in prepared:
            tid = part["transfer_id"]
            keys.add(tid)
            if PT.needs_outcome(part["state"], part["deadline_ms"], now_ms, STATUS_GRACE_MS) \
                    and self._ask.due(tid, now_ms):
                self._ask_outcome(part, outbox)
                self._ask.sent(tid, now_ms)
        self._ask.forget_except(keys)
        for item in outbox.pop(self.bank_id, []):
            if isinstance(item, P.StatusQuery):
                item = self._on_status_query(item)
            if isinstance(item, P.Decision):
                self._apply_locally(item)
        for bank, items in outbox.items():
            self._send_batches(bank, items)

    def _ask_outcome(self, part: dict, outbox: dict[str, list]) -> None:
        tid = part["transfer_id"]
        self._count("status_queries_sent")
        outbox.setdefault(part["coordinator"], []).append(P.StatusQuery(transfer_id=tid, bank=self.bank_id))
        if not self.config.cooperative_termination:
            return
        to_peer = P.StatusQuery(transfer_id=tid, bank=self.bank_id, deadline_ms=part["deadline_ms"])
        for peer in part["peers"]:
            if peer not in (self.bank_id, part["coordinator"]):
                outbox.setdefault(peer, []).append(to_peer)

    # ===================================================================== figures
    def figures(self) -> dict:
        """The ledger's totals and the 2PC work in progress (health, metrics, audit)."""
        with self.store.transaction(write=False) as tx:
            return tx.counts()

    def _count(self, name: str, **labels) -> None:
        if self.metrics is not None:
            self.metrics.inc(name, **labels)
