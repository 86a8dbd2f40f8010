"""The coordinator side of two-phase commit, as pure functions over a transfer record.

The bank where a customer starts a transfer coordinates it. Each function takes the record
(a plain dict, as stored) and an event, and returns the new record and the effects to perform.
The runtime writes the record durably *before* performing the effects, which is what makes
"the COMMIT decision is written durably before any COMMIT is sent" true (docs/protocol.md,
rule 5). With presumed abort, a transfer with no record, or never decided, is aborted.

States: preparing -> committed | aborted. ``participants`` maps each bank to
``{"vote": None | "yes" | "no", "acked": bool}``; ``pending_acks`` counts the banks that must
still acknowledge the decision (they are re-sent it until they do).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["commit", "abort"]


@dataclass(frozen=True)
class SendPrepare:
    bank: str


@dataclass(frozen=True)
class SendDecision:
    bank: str
    outcome: Outcome


@dataclass(frozen=True)
class Persist:
    pass


Effect = SendPrepare | SendDecision | Persist


def begin(transfer_id: str, initiator: str, request_hash: str, legs: list[dict], deadline_ms: int,
          now: float) -> tuple[dict, list[Effect]]:
    """A new transfer: recorded as preparing before any PREPARE leaves, so that a restart
    knows it must abort it."""
    banks = sorted({leg["bank"] for leg in legs})
    rec = {
        "transfer_id": transfer_id, "initiator": initiator, "request_hash": request_hash,
        "state": "preparing", "deadline_ms": deadline_ms, "legs": legs,
        "participants": {b: {"vote": None, "acked": False} for b in banks},
        "failures": [], "pending_acks": 0, "created_at": now, "decided_at": None,
    }
    return rec, [Persist()] + [SendPrepare(b) for b in banks]


def _decide(rec: dict, outcome: Outcome, now: float) -> tuple[dict, list[Effect]]:
    rec["state"] = "committed" if outcome == "commit" else "aborted"
    rec["decided_at"] = now
    effects: list[Effect] = [Persist()]
    for bank, p in sorted(rec["participants"].items()):
        if outcome == "abort" and p["vote"] in ("no", "unsent"):
            # It voted NO (and recorded the abort on its own), or its PREPARE never left:
            # either way it holds nothing for this transfer and needs no decision.
            p["acked"] = True
        else:
            effects.append(SendDecision(bank, outcome))
    rec["pending_acks"] = sum(1 for p in rec["participants"].values() if not p["acked"])
    return rec, effects


def on_vote(rec: dict, bank: str, yes: bool, reasons: list[tuple[str, str]], now_ms: int,
            now: float) -> tuple[dict, list[Effect]]:
    """A vote counts only while preparing and before the deadline; any NO aborts at once,
    the last YES commits. Late or duplicate votes change nothing."""
    if rec["state"] != "preparing" or bank not in rec["participants"] or now_ms > rec["deadline_ms"]:
        return rec, []
    p = rec["participants"][bank]
    if p["vote"] is not None:
        return rec, []
    rec = copy.deepcopy(rec)
    p = rec["participants"][bank]
    p["vote"] = "yes" if yes else "no"
    if not yes:
        rec["failures"] += [{"bank": bank, "account": a, "reason": c} for a, c in reasons] or \
            [{"bank": bank, "account": "*", "reason": "refused"}]
        return _decide(rec, "abort", now)
    if all(q["vote"] == "yes" for q in rec["participants"].values()):
        return _decide(rec, "commit", now)
    return rec, []


def on_deadline(rec: dict, unreachable: set[str], now: float) -> tuple[dict, list[Effect]]:
    """No vote by the deadline means ABORT: the silent banks are named, as unreachable when
    nobody consumes their queue, else as having timed out."""
    if rec["state"] != "preparing":
        return rec, []
    rec = copy.deepcopy(rec)
    for bank, p in sorted(rec["participants"].items()):
        if p["vote"] is None:
            rec["failures"].append({"bank": bank, "account": "*",
                                    "reason": "bank_unreachable" if bank in unreachable else "timeout"})
    return _decide(rec, "abort", now)


def on_error(rec: dict, bank: str | None, reason: str, now: float) -> tuple[dict, list[Effect]]:
    """Any error while preparing (a PREPARE nobody can route, the broker gone) is an ABORT."""
    if rec["state"] != "preparing":
        return rec, []
    rec = copy.deepcopy(rec)
    rec["failures"].append({"bank": bank or "*", "account": "*", "reason": reason})
    return _decide(rec, "abort", now)


def on_unsent(rec: dict, bank: str, now: float) -> tuple[dict, list[Effect]]:
    """The PREPARE for ``bank`` never reached the broker (no connection, no queue): ABORT, and
    that bank, which cannot have prepared, is not sent the decision (no re-send storm of
    ABORTs for transfers nobody saw after a broker outage)."""
    if rec["state"] != "preparing" or bank not in rec["participants"]:
        return rec, []
    rec = copy.deepcopy(rec)
    rec["participants"][bank]["vote"] = "unsent"
    rec["failures"].append({"bank": bank, "account": "*", "reason": "bank_unreachable"})
    return _decide(rec, "abort", now)


def on_ack(rec: dict, bank: str, outcome: Outcome) -> tuple[dict, list[Effect]]:
    expected = "commit" if rec["state"] == "committed" else "abort"
    if rec["state"] == "preparing" or outcome != expected or bank not in rec["participants"] \
            or rec["participants"][bank]["acked"]:
        return rec, []
    rec = copy.deepcopy(rec)
    rec["participants"][bank]["acked"] = True
    rec["pending_acks"] = sum(1 for p in rec["participants"].values() if not p["acked"])
    return rec, [Persist()]


def on_status_query(rec: dict | None, bank: str) -> list[Effect]:
    """Answer a participant in doubt. Presumed abort: no record means aborted. While still
    preparing, say nothing: the decision will be sent when it is made."""
    if rec is None:
        return [SendDecision(bank, "abort")]
    if rec["state"] == "preparing":
        return []
    return [SendDecision(bank, "commit" if rec["state"] == "committed" else "abort")]


def on_recover(rec: dict, now: float) -> tuple[dict, list[Effect]]:
    """After a restart: an undecided transfer is aborted (its request thread is gone); a decided
    one is re-sent to every participant that has not acknowledged it."""
    if rec["state"] == "preparing":
        rec = copy.deepcopy(rec)
        for bank, p in sorted(rec["participants"].items()):
            if p["vote"] is None:
                rec["failures"].append({"bank": bank, "account": "*", "reason": "timeout"})
        if not rec["failures"]:
            rec["failures"].append({"bank": "*", "account": "*", "reason": "coordinator_restarted"})
        return _decide(rec, "abort", now)
    return rec, pending_decisions(rec)


def pending_decisions(rec: dict) -> list[Effect]:
    if rec["state"] == "preparing":
        return []
    outcome: Outcome = "commit" if rec["state"] == "committed" else "abort"
    return [SendDecision(b, outcome) for b, p in sorted(rec["participants"].items()) if not p["acked"]]


def public_status(rec: dict) -> str:
    return {"preparing": "pending", "committed": "committed", "aborted": "aborted"}[rec["state"]]
