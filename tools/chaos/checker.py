"""The chaos checker: every invariant of the consortium, audited from the banks' own ledgers.

- conservation: total money == deposits - withdrawals, where a deposit or withdrawal whose
  reply was lost first only bounds the total ("may or may not have happened"), then is
  retried with its Idempotency-Key, after which the total must be exact;
- no negative balance or available amount, no hold left, every journal sums to its balance;
- atomicity: every transfer has one outcome at every bank, with an entry at every leg if it
  committed and at none otherwise; what a client was told committed is applied, what it was
  told aborted is not;
- liveness: nothing in doubt 30 seconds after healing;
- books: at every bank, customer balances == deposits - withdrawals + its positions against the
  other banks, and every pair of honest banks agrees on what one owes the other.

With a lying bank in the run (``liar.py``), money it made up on its own word is allowed only as
claims the honest banks hold on it: the conservation checks count exactly that much extra
(the honest banks' claims on the liar beyond what the liar's own books admit), and each of
those claims must stay under the cap that bank set on the liar.

Ledgers are read through the storage adapter (``Tx.ledger_snapshot``), never with SQL of its own.
"""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Callable

from bank_node.storage import open_store

from .workload import Workload

QUIESCE_LIMIT_S = 30.0


def read_ledger(location: str | Path) -> dict:
    """One bank's ledger as the checker compares it (see ``Tx.ledger_snapshot``)."""
    store = open_store(location)
    try:
        with store.transaction(write=False) as tx:
            return tx.ledger_snapshot()
    finally:
        store.close()


def in_doubt(led: dict) -> dict:
    """What is still unsettled in one ledger (empty when nothing)."""
    d = {"holds": len(led["holds"]), "unacknowledged": len(led["pending_acks"]),
         "prepared": sum(1 for v in led["participations"].values() if v == "prepared"),
         "preparing": sum(1 for v in led["coordinated"].values() if v == "preparing")}
    return {k: v for k, v in d.items() if v}


def wait_quiescent(ledgers: Callable[[], dict[str, dict]], since: float) -> float | None:
    """Seconds from ``since`` until nothing is in doubt anywhere, or None past the limit."""
    while time.monotonic() - since < QUIESCE_LIMIT_S:
        if not any(in_doubt(led) for led in ledgers().values()):
            return time.monotonic() - since
        time.sleep(0.2)  # noqa: polling a condition with a deadline
    return None


def minted(led: dict[str, dict], liar: str | None) -> int:
    """Money the liar created: what the honest banks hold as claims on it beyond what its own
    books admit (zero without a liar, or when every pair agrees)."""
    if liar is None:
        return 0
    return sum(l["positions"].get(liar, 0) + led[liar]["positions"].get(b, 0) for b, l in led.items() if b != liar)


def check(work: Workload, ledgers: Callable[[], dict[str, dict]], quiet_after: float | None,
          liar: str | None = None, caps: dict[str, int] | None = None) -> dict[str, tuple[bool, str]]:
    """Every verdict, (ok, detail) by name. ``liar``: the bank that lies in this run, and
    ``caps``: what each honest bank lets it owe (cents)."""
    verdicts: dict[str, tuple[bool, str]] = {}
    led = ledgers()
    ops = work.history.ops
    # Resolve transfers whose reply was lost by asking their coordinator.
    for op in ops:
        if op.kind == "transfer" and op.outcome in ("unknown", "pending"):
            status, body = work.person(op.who).call(op.via, "GET", f"/api/transfers/{op.transfer_id}")
            op.resolved = body.get("status") if status == 200 else "never_started"
    # Conservation, first as bounds with the uncertain cash operations.
    made_up = minted(led, liar)
    total = sum(sum(l["balances"].values()) for l in led.values()) - made_up
    cash = lambda kind, outcome: sum(o.amount for o in ops if o.kind == kind and o.outcome == outcome)  # noqa: E731
    low = work.initial + cash("deposit", "ok") - cash("withdrawal", "ok") - cash("withdrawal", "unknown")
    high = work.initial + cash("deposit", "ok") - cash("withdrawal", "ok") + cash("deposit", "unknown")
    verdicts["conservation (bounds)"] = (low <= total <= high,
                                         f"total {total / 100:.2f} within [{low / 100:.2f}, {high / 100:.2f}]")
    journal = sum(l["deposits"] - l["withdrawals"] for l in led.values())
    verdicts["conservation (ledger)"] = (total == journal, f"total {total / 100:.2f} == deposits - withdrawals in "
                                                           f"the journals {journal / 100:.2f}")
    # Then exact: replay every uncertain cash operation with its Idempotency-Key.
    retried = 0
    for op in ops:
        if op.kind in ("deposit", "withdrawal") and op.outcome == "unknown":
            status, _ = work.person(op.who).call(op.via, "POST", f"/api/accounts/{op.account}/{op.kind}s",
                                                 {"amount": f"{op.amount / 100:.2f}"}, key=op.key)
            op.outcome = "ok" if status == 201 else "refused"
            retried += 1
    led = ledgers()
    made_up = minted(led, liar)
    total = sum(sum(l["balances"].values()) for l in led.values()) - made_up
    expected = work.initial + cash("deposit", "ok") - cash("withdrawal", "ok")
    verdicts["conservation (exact)"] = (total == expected, f"total {total / 100:.2f} == initial + deposits - "
                                                           f"withdrawals {expected / 100:.2f} after retrying "
                                                           f"{retried} lost replies"
                                        + (f" (less {made_up / 100:.2f} the liar made up)" if liar else ""))
    # Books: each bank's customers' money is its cash plus what the other banks owe it.
    unbalanced = {b: (sum(l["balances"].values()), l["deposits"] - l["withdrawals"] + sum(l["positions"].values()))
                  for b, l in led.items()}
    unbalanced = {b: v for b, v in unbalanced.items() if v[0] != v[1]}
    verdicts["each bank's books balance"] = (not unbalanced, f"{len(unbalanced)} banks out of balance"
                                             + (f": {unbalanced}" if unbalanced else ""))
    honest = [b for b in led if b != liar]
    disagree = [(a, b, led[a]["positions"].get(b, 0), led[b]["positions"].get(a, 0))
                for i, a in enumerate(honest) for b in honest[i + 1:]
                if led[a]["positions"].get(b, 0) != -led[b]["positions"].get(a, 0)]
    verdicts["honest banks agree on their positions"] = (not disagree, f"{len(disagree)} pairs disagree"
                                                         + (f": {disagree[:3]}" if disagree else ""))
    if liar is not None:
        over = {b: led[b]["positions"].get(liar, 0) for b in honest
                if led[b]["positions"].get(liar, 0) > (caps or {}).get(b, 0)}
        owed = {b: led[b]["positions"].get(liar, 0) / 100 for b in honest}
        verdicts["the liar's debts stay under the caps"] = (
            not over, f"{liar} owes {owed}; made up {made_up / 100:.2f}; caps {({b: c / 100 for b, c in (caps or {}).items()})}"
            + (f"; over the cap: {over}" if over else ""))
    # No overdraft; journals add up; no hold.
    negative = [(b, n, v) for b, l in led.items() for n, v in l["balances"].items() if v < 0]
    verdicts["no negative balance"] = (not negative, f"{len(negative)} negative")
    mismatched = [(b, n) for b, l in led.items() for n, v in l["balances"].items() if l["journal"].get(n, 0) != v]
    verdicts["statements sum to balances"] = (not mismatched, f"{len(mismatched)} accounts differ")
    holds = sum(len(l["holds"]) for l in led.values())
    verdicts["no hold left"] = (holds == 0, f"{holds} holds")
    # Atomicity and agreement.
    states: dict[str, set] = {}
    entries: Counter = Counter()
    for l in led.values():
        for tid, st in list(l["participations"].items()) + list(l["coordinated"].items()):
            states.setdefault(tid, set()).add(st)
        for tid, *_ in l["transfer_entries"]:
            entries[tid] += 1
    split = [t for t, s in states.items() if len(s) > 1]
    verdicts["one outcome per transfer"] = (not split, f"{len(split)} transfers with split outcomes")
    partial, wrong = [], []
    for op in ops:
        if op.kind != "transfer":
            continue
        n = entries.get(op.transfer_id, 0)
        if n not in (0, len(op.legs)):
            partial.append(op.transfer_id)
        final = op.resolved or op.outcome
        if op.outcome == "committed" and n != len(op.legs):
            wrong.append((op.transfer_id, "reported committed, not applied"))
        if op.outcome == "aborted" and n != 0:
            wrong.append((op.transfer_id, "reported aborted, applied"))
        if final == "committed" and n != len(op.legs):
            wrong.append((op.transfer_id, "committed at the coordinator, not applied"))
    verdicts["atomicity (all legs or none)"] = (not partial, f"{len(partial)} partially applied")
    verdicts["reported outcomes hold"] = (not wrong, f"{len(wrong)} contradictions" + (f": {wrong[:3]}" if wrong else ""))
    doubt = {b: d for b, l in led.items() if (d := in_doubt(l))}
    verdicts["nothing in doubt 30 s after healing"] = (
        quiet_after is not None,
        f"quiet after {quiet_after:.1f}s" if quiet_after is not None else f"still in doubt: {doubt}")
    return verdicts
