"""Counters of what the bank does, labelled, thread-safe; exported by /metrics."""
from __future__ import annotations

import threading
from collections import Counter


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: Counter = Counter()

    def inc(self, name: str, n: int = 1, **labels) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self.counters[key] += n

    def snapshot(self) -> dict:
        with self._lock:
            return dict(self.counters)
