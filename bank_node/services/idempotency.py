"""Exactly once for API writes: the same Idempotency-Key with the same request answers the
first answer again with no second effect; the same key with another request is a 409.

One home for the rule: the key's shape is checked here (``check_key``), and ``run_once`` stores
the answer in the same transaction as the effect, so that a retry can never apply it twice
(docs/protocol.md, invariants: exactly once). Keys are scoped per caller: one customer's key
never collides with another's. Transfers keep their key beside the transfer id they name (the
coordinator's begin transaction, ``services/transfers.py``).
"""
from __future__ import annotations

from typing import Any, Callable

from ..domain import errors as E
from ..storage.port import Store, Tx

MAX_KEY_LENGTH = 200


def check_key(key: str | None) -> None:
    if key is not None and (not (1 <= len(key) <= MAX_KEY_LENGTH) or not key.isprintable()):
        raise E.InvalidInput(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters")


def run_once(store: Store, scope: str, key: str | None, fingerprint: str, action: Callable[[Tx], tuple[int, Any]],
             now: Callable[[], float]) -> tuple[int, Any]:
    """Run ``action`` once per (scope, key).

    The first answer is remembered whatever it was: a success, or a refusal that depended on
    the ledger (insufficient funds, not found...). Otherwise a refused withdrawal retried after a
    deposit would move money the customer was told would not move. Input that fails validation
    never reaches this point."""
    check_key(key)
    refused: E.DomainError | None = None
    try:
        with store.transaction() as tx:
            if key is not None:
                seen = tx.get_idempotent(scope, key)
                if seen is not None:
                    if seen["request_hash"] != fingerprint:
                        raise E.IdempotencyMismatch("this Idempotency-Key was already used for a different request")
                    if seen["status"] >= 400:
                        raise replayed_refusal(seen["status"], seen["body"])
                    return seen["status"], seen["body"]
            try:
                status, body = action(tx)
            except E.DomainError as e:
                refused = e
                raise  # rolls back whatever the action wrote
            if key is not None:
                tx.put_idempotent(scope, key, fingerprint, status, body, now())
            return status, body
    except E.DomainError as e:
        # A throttle's 429 (or 503) says "not now", nothing about the ledger: a retry after the
        # wait must be performed, not answered with the refusal.
        if key is not None and e is refused and e.status not in (429, 503):
            with store.transaction() as tx:
                if tx.get_idempotent(scope, key) is None:
                    tx.put_idempotent(scope, key, fingerprint, e.status, refusal_record(e), now())
        raise


def refusal_record(e: E.DomainError) -> dict:
    return {"refused": type(e).__name__, "code": e.code, "title": e.title, "detail": e.detail, "extra": e.extra}


def replayed_refusal(status: int, rec: dict) -> E.DomainError:
    """The stored refusal as the same exception type (callers such as the web UI catch
    ``InsufficientFunds``); only types of the domain error module come back typed."""
    cls = getattr(E, str(rec.get("refused", "")), None)
    if not (isinstance(cls, type) and issubclass(cls, E.DomainError)):
        cls = E.DomainError
    err = cls(rec["detail"], code=rec["code"], status=status, **rec.get("extra", {}))
    err.title = rec["title"]
    return err
