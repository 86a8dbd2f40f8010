"""Inbox: every message from this bank's queue is decoded, checked and dispatched here.

In order: the envelope must parse as version 2 of the wire format and name this consortium;
its sender must be the bank the broker-checked ``user_id`` says it is; its signature must be
that bank's (when the consortium signs); and every item must be one the sender's role allows
(a PREPARE names its sender as coordinator, an acknowledgement or a question names its sender
as the bank it speaks for; votes and answers never travel on a bank's queue). A message that
fails any of this is refused, counted (``consorcio_messages_rejected_total{reason}``) and
dead-lettered: it never has an effect and is never redelivered.

Items are then grouped by type and handed to their handler through a registry; a handler
returns a Future when its effect goes through the group-commit writer, and the delivery is
acknowledged to the broker only after every such effect is durable (docs/protocol.md, rule 1).
"""
from __future__ import annotations

import logging
from collections import defaultdict
from concurrent.futures import Future
from typing import Callable

from broker import Delivery
from .. import protocol as P
from ..identity import AUDITOR
from .runtime import Runtime

log = logging.getLogger("interbank")

Handler = Callable[[Delivery, P.Envelope, list], "Future | None"]


class Inbox:
    def __init__(self, rt: Runtime, handlers: dict[type, Handler]):
        self.rt = rt
        self.handlers = handlers

    def handle(self, d: Delivery) -> None:
        """Entry point of every message from this bank's queue (on a broker worker thread)."""
        try:
            env = P.decode(d.body)
        except P.BadMessage as e:
            return self._refuse(d, "malformed", str(e))
        refusal = self._check(env, d)
        if refusal:
            return self._refuse(d, refusal, f"from {env.sender!r} as user {d.user_id!r}")
        groups: dict[type, list] = defaultdict(list)
        for item in env.items:
            groups[type(item)].append(item)
        pending: list[Future] = []
        for kind, items in groups.items():
            handler = self.handlers.get(kind)
            if handler is None:
                log.warning("unexpected %s message on the bank queue, dropped", kind.__name__)
                continue
            fut = handler(d, env, items)
            if fut is not None:
                pending.append(fut)
        if not pending:
            return d.ack()
        left = [len(pending)]

        def settle(f: Future) -> None:
            # Ack once everything this message caused is durable; a failed write means redelivery.
            if f.exception() is not None:
                d.reject(requeue=not d.redelivered)
                return
            left[0] -= 1
            if left[0] == 0:
                d.ack()
        for f in pending:
            f.add_done_callback(settle)

    def _check(self, env: P.Envelope, d: Delivery) -> str | None:
        """Who sent it, and may they send that? The broker guarantees user_id is the
        connection's user; we check that user is the bank the message claims, that the bank
        signed it, and that the bank has the role each item needs."""
        rt = self.rt
        if env.ns != rt.config.consortium:
            return "wrong_consortium"
        if env.sender not in rt.users:
            return "unknown_sender"
        if d.user_id is None:
            return "no_user_id"
        if d.user_id != rt.users[env.sender]:
            return "wrong_user_id"
        if rt.keyring is not None and env.sender != AUDITOR and \
                not rt.keyring.verify(env.sender, d.body, (d.headers or {}).get("sig")):
            return "bad_signature"
        for item in env.items:
            if (env.sender == AUDITOR) != isinstance(item, P.Audit):
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
        self.rt.count("messages_rejected", reason=reason)
        d.reject(requeue=False)
