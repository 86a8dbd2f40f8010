"""Fairness among senders: one bank's flood must not starve the others' messages.

Every message on a bank's queue carries the broker-checked ``user_id`` of the bank that sent it
(the broker refuses a publish whose user_id is not the connection's user). Deliveries are queued
per sender and the workers take them in turn, one sender after another, with at most
``per_sender_workers`` of them busy with one sender's messages at once: a sender whose messages
are slow to handle (big envelopes, many database writes) occupies a bounded share of the
workers and the others' messages go past it.

Each sender also has a budget of items per second (a token bucket): a message whose items the
sender cannot afford right now is refused at once, before it is decoded or touches the database
(the consumer dead-letters it). For the consortium that is benign: a refused PREPARE is an abort,
a refused decision is re-sent later.

Nothing here knows what a message means: senders are user ids, costs are numbers.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class SenderLimits:
    items_per_s: float = 500.0
    """Sustained items per second one sender may have handled."""
    burst_items: int = 1024
    """Items one sender may spend at once (the bucket's size); at least the largest envelope an
    honest bank sends, or such an envelope would never be handled."""
    per_sender_workers: int = 2
    """Workers that may be busy with one sender's messages at the same time."""


class SenderBudget:
    """A token bucket per sender, refilled at ``rate`` items per second up to ``burst``."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        if rate <= 0 or burst < 1:
            raise ValueError("a budget needs a positive rate and a burst of at least one item")
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # sender -> (tokens, at)
        self._lock = threading.Lock()

    def _level(self, sender: str, now: float) -> float:
        tokens, at = self._buckets.get(sender, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) * self.rate)

    def can_afford(self, sender: str, items: int = 1) -> bool:
        with self._lock:
            return self._level(sender, self.clock()) >= items

    def take(self, sender: str, items: int) -> bool:
        """Spend ``items`` of the sender's budget if it has them; False (nothing spent) if not."""
        with self._lock:
            now = self.clock()
            level = self._level(sender, now)
            if level < items:
                self._buckets[sender] = (level, now)
                return False
            self._buckets[sender] = (level - items, now)
            return True


class FairDispatch(Generic[T]):
    """Per-sender FIFO queues served round-robin, with at most ``per_sender`` items of one
    sender in progress at once. ``get`` blocks until an item may be taken; ``done`` must follow."""

    def __init__(self, per_sender: int):
        if per_sender < 1:
            raise ValueError("per_sender must be at least 1")
        self.per_sender = per_sender
        self._queues: dict[str, deque[T]] = {}
        self._turn: deque[str] = deque()   # senders with queued items, in serving order
        self._busy: dict[str, int] = {}
        self._closed = False
        self._cond = threading.Condition()

    def put(self, sender: str, item: T) -> None:
        with self._cond:
            q = self._queues.get(sender)
            if q is None:
                q = self._queues[sender] = deque()
                self._turn.append(sender)
            q.append(item)
            self._cond.notify()

    def _pick(self) -> tuple[str, T] | None:
        for _ in range(len(self._turn)):
            sender = self._turn.popleft()
            if self._busy.get(sender, 0) >= self.per_sender:
                self._turn.append(sender)  # its turn comes again when one of its items is done
                continue
            q = self._queues[sender]
            item = q.popleft()
            if q:
                self._turn.append(sender)
            else:
                del self._queues[sender]
            self._busy[sender] = self._busy.get(sender, 0) + 1
            return sender, item
        return None

    def get(self, timeout: float | None = None) -> tuple[str, T] | None:
        """The next (sender, item), or None after ``timeout`` or once closed."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._closed:
                picked = self._pick()
                if picked is not None:
                    return picked
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)
            return None

    def done(self, sender: str) -> None:
        """The worker that calls this takes its next item with ``get`` right after: the one item
        this may make eligible is its own to take, so no other worker is woken (a wake-up per
        message costs more than the handling of a small one)."""
        with self._cond:
            n = self._busy.get(sender, 0) - 1
            if n > 0:
                self._busy[sender] = n
            else:
                self._busy.pop(sender, None)

    def drain(self) -> list[T]:
        """Remove and return every queued item (not those in progress)."""
        with self._cond:
            items = [i for q in self._queues.values() for i in q]
            self._queues.clear()
            self._turn.clear()
            return items

    def queued(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._queues.values())

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
