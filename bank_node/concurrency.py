"""How one bank process does many things at once: greenlets on one OS thread, or OS threads.

A bank waits on many things at the same time: HTTP requests, the broker's I/O, the group-commit
writer, the coordinator, the resolver. The code is written with ``threading`` (threads, locks,
events, futures, queues). ``python -m bank_node`` runs it on **gevent** by default: every
``threading.Thread`` is a greenlet of one OS thread, and a hand-off between them is a switch in
user space instead of a wake-up through the kernel and a fight for the GIL. On the project's
2-core machine that took about a quarter of the banks' CPU per transfer away (README,
Throughput). ``BANK_CONCURRENCY=threads`` (or ``--concurrency threads``) runs the same code on OS
threads, as unit tests and embedding code do (nothing is patched unless ``patch()`` is called);
so does a bank whose ledger is PostgreSQL, unless told otherwise (``requested``).

What this asks of the code, and where it is kept:
- a call that blocks the OS thread for long without giving the CPU back stalls every request of
  the bank: such calls go through ``off_loop`` (Argon2 password hashing, ~30 ms each);
- SQLite statements block the one thread for their duration (tens of microseconds); the fsync
  of a durable commit goes through ``off_loop`` too (``storage/sqlite.py``): in place while the
  commits made in place take under ``QUICK_DISK_S``, on threads of its own when they are slower;
  PostgreSQL's driver (psycopg 3) and the broker's, Redis's and HTTP's sockets wait cooperatively;
- signals are handled by a greenlet of their own (``on_signal``), so that a SIGTERM stops the
  bank from its main greenlet, never in the middle of whichever greenlet was running.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

MODES = ("gevent", "threads")
ENV = "BANK_CONCURRENCY"
_patched_as: str | None = None   # the mode ``patch`` was given, in the process that called it


def requested(argv: list[str] | None = None) -> str:
    """The mode asked for on the command line (``--concurrency X`` / ``--concurrency=X``), else
    in ``BANK_CONCURRENCY``; else gevent, or threads for a bank whose ledger is PostgreSQL (its
    driver waits for each round trip through gevent's poll, which measured about 5% slower and
    up to a fifth more CPU than OS threads: README, Throughput). Read before anything else is
    imported, since patching must come first. Without ``argv``: this process's command line, as
    ``patch`` resolved it (the consortium file is read once)."""
    if argv is None and _patched_as is not None:
        return _patched_as
    argv = sys.argv[1:] if argv is None else argv
    mode = _option(argv, "--concurrency") or os.environ.get(ENV)
    return mode or ("threads" if _ledger_is_postgres(argv) else "gevent")


def _option(argv: list[str], name: str) -> str | None:
    value = None
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def _ledger_is_postgres(argv: list[str]) -> bool:
    """Whether the bank this command line starts keeps its ledger in PostgreSQL, as the bank will
    read it (``storage_setting``); False when the file or the bank cannot be read here (the bank
    then says what is wrong). Only the YAML is read: nothing that patching must precede."""
    from types import SimpleNamespace

    import yaml

    from .storage import is_postgres_url, storage_setting
    path, bank_id = _option(argv, "--config") or "consorcio.yml", _option(argv, "--bank")
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        entry = next(b for b in raw["banks"] if isinstance(b, dict) and b.get("id") == bank_id)
    except Exception:  # noqa: BLE001 - the bank's own start-up reports a bad file
        entry = {}
    setting, _ = storage_setting(SimpleNamespace(id=bank_id, storage=entry.get("storage")), path)
    return is_postgres_url(setting)


def patch(mode: str) -> None:
    """Make ``threading``, ``socket``, ``select``, ``queue`` and ``time.sleep`` cooperative
    (gevent), or leave everything as it is (threads). Call it first, before other imports."""
    global _patched_as
    _patched_as = mode
    if mode == "gevent":
        from gevent import monkey
        monkey.patch_all()


_active: bool | None = None


def active() -> bool:
    """Whether this process runs on gevent's greenlets (patched by ``patch`` or by whoever
    embeds the bank, such as a gevent worker of gunicorn); looked up once."""
    global _active
    if _active is None:
        if "gevent" in sys.modules:
            from gevent import monkey
            _active = monkey.is_module_patched("threading")
        else:
            _active = False
    return _active


DISK_THREADS = 2
_disk_pool = None

QUICK_DISK_S = 0.005
"""A disk wait is made in place while recent ones took less than this (see ``off_loop``)."""
PROBE_EVERY = 16
"""While disk waits go to the threads, the one after this many is made in place, to time it."""
_disk_recent_s = 0.0   # a moving average of the disk waits made in place
_disk_probe_after = PROBE_EVERY   # disk waits on the threads before the next one in place
_disk_on_threads = 0   # disk waits on the threads since the last one in place


def off_loop(fn: Callable[..., Any], *args: Any, disk: bool = False) -> Any:
    """``fn(*args)`` on an OS thread when greenlets are in use (the other greenlets run meanwhile;
    ``fn`` must not touch greenlet-side objects), else right here.

    ``disk``: a wait for the disk (a commit: its WAL writes and fsync, now and then a
    checkpoint). Handing it to an OS thread and back costs two context switches and a thread's
    wake-up, 40-100 µs of CPU, while a commit in place holds this bank alone: the machine's other
    processes use the CPU meanwhile. On the project's machine a commit takes 0.3-0.4 ms (p50) and
    a few milliseconds when it checkpoints; made in place, the banks spent 2-4% less CPU per
    transfer than with a 1 ms limit. So it is made in place while the disk waits made in place
    lately (a moving average) took under ``QUICK_DISK_S``, and on OS threads of its own
    otherwise (a disk slow enough to stall the bank's requests), where it never queues behind CPU
    work such as a crowd of logins' password hashes in gevent's pool.

    Only a wait made in place is timed: one on a thread also counts the time the thread then
    waits for the interpreter lock, which a busy bank holds for up to its switch interval (5 ms),
    so a busy bank would take a quick disk for a slow one and never come back. While the waits
    go to the threads, one in ``PROBE_EVERY`` is made in place to time the disk again: a quick
    one brings the waits back in place, and each slow one doubles the interval (up to 64 times),
    so that a slow disk holds the bank for one wait in many."""
    if not active():
        return fn(*args)
    import gevent
    if not disk:
        return gevent.get_hub().threadpool.apply(fn, args)
    global _disk_pool, _disk_on_threads
    probe = _disk_recent_s >= QUICK_DISK_S   # the disk was slow lately: a wait in place times it again
    if not probe or _disk_on_threads >= _disk_probe_after:
        return _disk_wait_in_place(fn, args, probe)
    _disk_on_threads += 1
    if _disk_pool is None:
        from gevent.threadpool import ThreadPool
        _disk_pool = ThreadPool(DISK_THREADS)
    return _disk_pool.apply(fn, args)


def _disk_wait_in_place(fn: Callable[..., Any], args: tuple, probe: bool) -> Any:
    """``fn(*args)`` here, timed: a wait while the disk is quick moves the moving average; a
    probe that finds the disk quick again brings the waits back in place, a slow one doubles
    the interval to the next probe."""
    global _disk_recent_s, _disk_on_threads, _disk_probe_after
    start = time.perf_counter()
    try:
        return fn(*args)
    finally:
        took = time.perf_counter() - start
        _disk_on_threads = 0
        if not probe:
            _disk_recent_s += (took - _disk_recent_s) * 0.2
        elif took < QUICK_DISK_S:
            _disk_recent_s = took
        if not probe or took < QUICK_DISK_S:
            _disk_probe_after = PROBE_EVERY
        else:
            _disk_probe_after = min(_disk_probe_after * 2, PROBE_EVERY * 64)


def on_signal(signum: int, handler: Callable[[], None]) -> None:
    """Run ``handler()`` when ``signum`` arrives: in a greenlet of its own on gevent, else as a
    plain signal handler of the main thread."""
    if active():
        import gevent
        gevent.signal_handler(signum, handler)
    else:
        import signal
        signal.signal(signum, lambda s, f: handler())


def exit_on(*signums: int) -> None:
    """The first of ``signums`` raises SystemExit(0) in the task calling this (the main one),
    whichever task the signal interrupted; later ones are ignored, so that a second SIGTERM does
    not cut a graceful shutdown short."""
    if active():
        import gevent
        main = gevent.getcurrent()
    fired = []

    def stop() -> None:
        if fired:
            return
        fired.append(True)
        if active():
            gevent.kill(main, SystemExit(0))
        else:
            raise SystemExit(0)   # a plain handler runs in the main thread
    for signum in signums:
        on_signal(signum, stop)


def print_tasks() -> None:
    """Every greenlet's stack (and each OS thread's), to stderr: where a bank on greenlets is."""
    from gevent.util import print_run_info
    print_run_info(file=sys.stderr)
    sys.stderr.flush()
