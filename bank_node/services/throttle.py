"""Sliding-window counters that slow down password guessing and mass registration.

In memory and per node, on purpose: a bank node is one process, and a restart that forgets
the counters only gives an attacker one more window of a few guesses per CPF. A consortium
that runs several processes per bank behind one address would need a shared store (the
ledger, or Redis) instead. Thread-safe: waitress serves requests from many threads.

Memory is bounded: a key keeps at most ``limit`` timestamps (``take`` counts nothing
when the window is full), and when more than
``max_keys`` keys are tracked the ones whose newest event is oldest are forgotten first (an
attacker spraying addresses can only push out other idle keys, never grow the process).
"""
from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from typing import Callable


class SlidingWindow:
    """At most ``limit`` events per key within ``window_s`` seconds."""

    def __init__(self, limit: int, window_s: float, *, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000):
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self.max_keys = max_keys
        self._events: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _live(self, key: str, now: float) -> deque[float] | None:
        q = self._events.get(key)
        if q is None:
            return None
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            del self._events[key]
            return None
        return q

    def take(self, key: str) -> int:
        """Count one event of ``key`` now if the window has room, and return 0; else count
        nothing and return the whole seconds until room is made (at least 1), for a
        Retry-After header. Check and count are one step, so concurrent callers cannot all
        slip in under the limit."""
        with self._lock:
            now = self.clock()
            q = self._live(key, now)
            if q is not None and len(q) >= self.limit:
                return max(1, math.ceil(q[0] + self.window_s - now))
            if q is None:
                q = self._events[key] = deque()
            q.append(now)
            self._events.move_to_end(key)
            while len(self._events) > self.max_keys:
                self._events.popitem(last=False)
            return 0

    def forgive(self, key: str) -> None:
        """Take back the newest event of ``key`` (it turned out not to count)."""
        with self._lock:
            q = self._events.get(key)
            if q:
                q.pop()
                if not q:
                    del self._events[key]

    def reset(self, key: str) -> None:
        with self._lock:
            self._events.pop(key, None)
