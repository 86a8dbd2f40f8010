"""Small helpers for the integration tests: waiting on conditions, looking at a bank's ledger."""
from __future__ import annotations

import sqlite3
import time
from decimal import Decimal
from pathlib import Path


def wait_until(predicate, timeout: float = 20.0, what: str = "condition", interval: float = 0.05):
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")


def ledger(data_dir: Path, bank_id: str) -> dict:
    """Read a bank's ledger file directly (read-only): balances, holds, 2PC records.
    White-box on purpose: the checker must see what the API might hide."""
    path = Path(data_dir) / bank_id / f"{bank_id}.sqlite3"
    c = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        q = lambda sql: c.execute(sql).fetchall()  # noqa: E731
        return {
            "balances": dict(q("SELECT number, balance FROM accounts")),
            "journal": dict(q("SELECT number, SUM(amount) FROM entries GROUP BY number")),
            "holds": q("SELECT transfer_id, number, amount FROM holds"),
            "participations": dict(q("SELECT transfer_id, state FROM participations")),
            "coordinated": dict(q("SELECT transfer_id, state FROM coordinated")),
            "pending_acks": q("SELECT transfer_id FROM coordinated WHERE pending_acks > 0"),
            "transfer_entries": q("SELECT transfer_id, number, kind, amount FROM entries WHERE transfer_id IS NOT NULL"),
            "deposits": q("SELECT COALESCE(SUM(amount), 0) FROM entries WHERE kind = 'deposit'")[0][0],
            "withdrawals": q("SELECT COALESCE(-SUM(amount), 0) FROM entries WHERE kind = 'withdrawal'")[0][0],
        }
    finally:
        c.close()


def money(s: str) -> Decimal:
    return Decimal(s)
