"""The throttles of one bank: password guessing, mass registration, and the enumeration of
account numbers, counted with the ``limits`` library in moving windows.

Where they count is ``security.rate_limit_storage``: ``memory://`` when the bank is one process
(a restart forgets the counts, which gives a guesser one more window and no more), a
``redis://`` URI when several processes serve one bank, so that a guess at one process counts at
all of them. The keys carry the consortium and the bank id, so two banks sharing one Redis never
share a count.

Logins are throttled per client address and per CPF *and* address, never per CPF alone: five
wrong passwords from an attacker's address make that address wait, and the real customer logs
in from theirs as usual. The waits of one CPF and address grow with the failures (the first
step, then ``login_longer_waits``), rather than one hard lock.
"""
from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager
from typing import Iterator, Sequence

from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond, parse_many
from limits.errors import StorageError as LimitsStorageError
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from ..config import ConsortiumConfig
from ..domain import errors as E

log = logging.getLogger("bank_node.throttles")


class ThrottleUnavailable(E.DomainError):
    """The shared store of the throttles does not answer: refuse rather than let guesses
    through uncounted (failing closed)."""
    code = "throttle_unavailable"
    status = 503
    title = "Service unavailable"


class Throttles:
    def __init__(self, config: ConsortiumConfig, bank_id: str):
        sec = config.security
        self.scope = (config.consortium, bank_id)
        self.storage = storage_from_string(sec.rate_limit_storage, wrap_exceptions=True,
                                           **({"key_prefix": "consorcio"} if sec.rate_limit_storage != "memory://"
                                              else {}))
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.login_steps: list[RateLimitItem] = [RateLimitItemPerSecond(sec.login_max_failures, sec.login_window_s),
                                                 *parse_many(sec.login_longer_waits)]
        self.login_per_address = RateLimitItemPerSecond(sec.login_max_failures_per_address, sec.login_window_s)
        self.register_per_address = RateLimitItemPerSecond(sec.register_max_per_address, sec.register_window_s)
        self.unknown_accounts = parse_many(sec.unknown_account_answers)
        ib = config.interbank
        self.lookups_per_bank = RateLimitItemPerSecond(ib.lookups_per_second_per_bank)
        self.full_lookups_per_customer = RateLimitItemPerMinute(ib.lookups_per_minute_per_customer)
        # What this bank asks of the others: under their per-bank rate (a margin for the clocks
        # of two moving windows), and each customer at most their share of it.
        self.asked_per_second = RateLimitItemPerSecond(max(1, ib.lookups_per_second_per_bank * 9 // 10))
        self.asked_per_customer = [RateLimitItemPerMinute(ib.lookups_per_minute_per_customer),
                                   RateLimitItemPerSecond(max(1, ib.lookups_per_minute_per_customer // 60))]

    # ------------------------------------------------------------------------------- logins
    def before_login(self, cpf: str | None, client: str | None) -> None:
        """Refuse (TooManyAttempts) when this address, or this CPF from this address, must wait;
        else count the attempt as a failure of the CPF and address in advance (atomically with
        the check, so that concurrent guesses cannot all slip in under the limit; a success
        takes it back with ``login_succeeded``). The answer is the same for a registered CPF and
        an unknown one."""
        addr = client or "-"
        with self._store():
            wait = self._wait(self._unavailable([self.login_per_address], "login-address", addr))
            if wait:
                raise E.TooManyAttempts(f"too many failed logins from your address; try again in {wait} s",
                                        retry_after=wait)
            if cpf is None:
                return
            ids = ("login", cpf, addr)
            wait = self._wait(self._unavailable(self.login_steps, *ids))
            if not wait:
                # The first step (the fewest failures, the shortest window) is taken atomically:
                # of concurrent guesses, exactly as many as it has room for go on. The longer
                # waits are counted too, without refusing the guess that already took the first
                # step (a refused guess must not use up a step it never got to try): they refuse
                # the next attempts, overshooting by at most the guesses in flight at once.
                first, *longer = self.login_steps
                if not self.limiter.hit(first, *self.scope, *ids):   # lost a race with a concurrent guess
                    wait = self._wait(self._unavailable(self.login_steps, *ids)) or 1
                else:
                    for item in longer:
                        self.limiter.hit(item, *self.scope, *ids)
            if wait:
                raise E.TooManyAttempts(f"too many failed logins for this CPF from your address; try again "
                                        f"in {wait} s", retry_after=wait)

    def login_failed(self, client: str | None) -> None:
        """Count a failure against the address. Counted after the password check, so that
        successes never use up an office's shared address; concurrent guesses from one address
        can overshoot its limit by at most the requests in flight (the CPF and address steps
        are exact)."""
        with self._store():
            self.limiter.hit(self.login_per_address, *self.scope, "login-address", client or "-")

    def login_succeeded(self, cpf: str, client: str | None) -> None:
        """The right password: this CPF from this address starts afresh."""
        with self._store():
            for item in self.login_steps:
                self.limiter.clear(item, *self.scope, "login", cpf, client or "-")

    # ------------------------------------------------------------------------- registrations
    def registration(self, client: str) -> None:
        with self._store():
            if not self.limiter.hit(self.register_per_address, *self.scope, "register", client):
                wait = self._wait([(self.register_per_address, ("register", client))])
                raise E.TooManyAttempts(f"too many registrations from your address; try again in {wait} s",
                                        retry_after=wait)

    # ---------------------------------------------------------------- account number guesses
    def before_account_lookup(self, caller: str) -> None:
        """Refuse every request of ``caller`` that names an account once that caller has had
        its share of "no such account" answers: guessing numbers is slowed to a crawl."""
        with self._store():
            wait = self._wait(self._unavailable(self.unknown_accounts, "unknown-account", caller))
        if wait:
            raise E.TooManyAttempts(f"too many requests for accounts that are not yours; try again in {wait} s",
                                    retry_after=wait)

    def unknown_account(self, caller: str, n: int = 1) -> None:
        """``caller`` was told "no such account" ``n`` times."""
        with self._store():
            for item in self.unknown_accounts:
                self.limiter.hit(item, *self.scope, "unknown-account", caller, cost=n)

    # ------------------------------------------------------------------ other banks' lookups
    def lookup_refusal(self, bank: str, requester: str | None = None) -> str | None:
        """Count one lookup that ``bank`` asks of this one (and, for an answer in full about
        ``requester``'s own CPF, one for that customer of that bank). None: answer it. "bank":
        that bank is over its rate, or the count cannot be kept (failing closed); it gets no
        answer at all, so that a flood costs this bank no signatures. "customer": only that
        customer's answers in full are over their rate; the bank is told so at once (an honest
        customer refreshing the app waits for nothing). Counted where the other throttles count,
        so that every process of this bank sees the same rate."""
        try:
            if not self.limiter.hit(self.lookups_per_bank, *self.scope, "lookup", bank):
                return "bank"
            if requester is not None and not self.limiter.hit(self.full_lookups_per_customer, *self.scope,
                                                               "lookup", bank, requester):
                return "customer"
            return None
        except LimitsStorageError:
            log.warning("lookup from %s refused: the throttles' store does not answer", bank)
            return "bank"

    def may_ask_peers(self, requester: str) -> bool:
        """Count one lookup that this bank is about to ask of the others for ``requester``: False
        when that customer has asked too often, or this bank would go over the rate at which the
        others answer it (past which they would stay silent, for every customer of this bank).
        One customer's burst takes at most their share of that rate, not everyone's."""
        try:
            return all(self.limiter.hit(item, *self.scope, "ask", requester) for item in self.asked_per_customer) \
                and self.limiter.hit(self.asked_per_second, *self.scope, "ask")
        except LimitsStorageError:
            log.warning("lookup of the other banks not sent: the throttles' store does not answer")
            return False

    # --------------------------------------------------------------------------------- helpers
    def _unavailable(self, items: Sequence[RateLimitItem], *ids: str) -> list[tuple[RateLimitItem, tuple]]:
        return [(item, ids) for item in items if not self.limiter.test(item, *self.scope, *ids)]

    def _wait(self, refused: list[tuple[RateLimitItem, tuple]]) -> int:
        """Whole seconds until every refused item has room again (0: none refused)."""
        wait = 0.0
        for item, item_ids in refused:
            stats = self.limiter.get_window_stats(item, *self.scope, *item_ids)
            wait = max(wait, stats.reset_time - time.time())
        return max(1, math.ceil(wait)) if refused else 0

    @staticmethod
    @contextmanager
    def _store() -> Iterator[None]:
        try:
            yield
        except LimitsStorageError as e:
            raise ThrottleUnavailable("the bank cannot count attempts right now; try again shortly") from e
