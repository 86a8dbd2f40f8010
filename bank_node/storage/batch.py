"""Group commit: one writer thread turns many small units of work into one transaction.

Request threads, message handlers and the coordinator hand the ``BatchWriter`` units of work
(functions of a ``Tx``) and get a Future back. The writer drains whatever is queued, runs each
unit inside its own savepoint of one transaction, commits once (one fsync for all of them), and
only then resolves the futures: a unit's caller learns its result after it is durable
(docs/protocol.md, rule 1). A unit that raises is rolled back to its savepoint alone and its
future gets the exception; if the commit itself fails, every unit of the batch fails with
``StorageError`` and nothing of it is said to anyone.

No timers: a batch is whatever arrived while the previous one was being written, so a lone unit
is written at once and a crowd shares one commit.
"""
from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

from .port import StorageError, Store, Tx

log = logging.getLogger("storage")

MAX_BATCH = 512

LOCK_TIMEOUT_S = 1.0
"""The longest a batch waits for the ledger's writer lock while another process of the bank
(on a shared PostgreSQL database) writes: past it every unit of the batch fails with
``StorageError`` (a PREPARE gets no vote, a decision is applied when it is re-sent), rather than
the writer stalling behind the other process. SQLite's writers queue in-process instead."""


@dataclass
class _Unit:
    fn: Callable[[Tx], Any]
    durable: bool
    future: Future = field(default_factory=Future)


class BatchWriter:
    def __init__(self, store: Store, name: str = "writer", max_batch: int = MAX_BATCH,
                 after_batch: Callable[[int], None] | None = None):
        self.store = store
        self.name = name
        self.max_batch = max_batch
        # Called with the batch's size once every future of a committed batch is resolved (and
        # their callbacks have run): where what they queued for other banks is sent together.
        self.after_batch = after_batch
        self._q: queue.SimpleQueue[_Unit | None] = queue.SimpleQueue()
        self.position = 0   # while a unit runs: how many units of its group commit ran before it
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._starting = threading.Lock()

    def start(self) -> "BatchWriter":
        with self._starting:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._q.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def submit(self, fn: Callable[[Tx], Any], *, durable: bool = True) -> Future:
        unit = _Unit(fn, durable)
        if self._stopping.is_set():
            unit.future.set_exception(StorageError("the bank is stopping"))
            return unit.future
        if self._thread is None:
            self.start()   # the first unit starts the writer (a node used without start(), in tests)
        self._q.put(unit)
        return unit.future

    def run(self, fn: Callable[[Tx], Any], *, durable: bool = True, timeout: float | None = 60) -> Any:
        """Submit and wait: the unit's result once it is durable (or its exception)."""
        return self.submit(fn, durable=durable).result(timeout)

    # the writer thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            first = self._q.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    more = self._q.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._stopping.set()
                    break
                batch.append(more)
            self._write(batch)
            if self._stopping.is_set() and self._q.empty():
                break
        self._fail_rest()

    def _write(self, batch: list[_Unit]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        try:
            with self.store.transaction(durable=any(u.durable for u in batch),
                                        lock_timeout_s=LOCK_TIMEOUT_S) as tx:
                for self.position, unit in enumerate(batch):
                    try:
                        with tx.savepoint():
                            outcomes.append((True, unit.fn(tx)))
                    except Exception as e:  # noqa: BLE001 - this unit alone is undone
                        outcomes.append((False, e))
        except Exception as e:  # noqa: BLE001 - the commit failed: nothing of the batch happened
            err = e if isinstance(e, StorageError) else StorageError(f"{type(e).__name__}: {e}")
            log.error("%s: a batch of %d units was not written: %s", self.name, len(batch), err)
            for unit in batch:
                unit.future.set_exception(err)
            return
        for unit, (ok, value) in zip(batch, outcomes):
            try:
                unit.future.set_result(value) if ok else unit.future.set_exception(value)
            except Exception:  # noqa: BLE001 - a callback failed; the others still run
                log.exception("%s: a unit's completion failed", self.name)
        if self.after_batch is not None:
            try:
                self.after_batch(len(batch))
            except Exception:  # noqa: BLE001
                log.exception("%s: after-batch step failed", self.name)

    def _fail_rest(self) -> None:
        while True:
            try:
                unit = self._q.get_nowait()
            except queue.Empty:
                return
            if unit is not None:
                unit.future.set_exception(StorageError("the bank is stopping"))
