"""Several processes serving one bank: ``python -m bank_node --bank alfa --workers N``.

One Python process runs one bank's requests on one CPU at a time; N worker processes use N.
The parent opens the bank's listening socket (and the operator's Unix socket, if any) once and
starts N children that each serve them with waitress (the kernel hands each new connection to
one of them), each with its own broker connection consuming the bank's queue and its own
handle on the one ledger. The parent serves nothing itself: it supervises. A child that dies is
started again (after 1 s, doubling up to 30 s while it keeps dying young); SIGTERM or SIGINT
stops every child gracefully, then the parent; a child that exits with a start-up error (status
2) stops the whole bank, since its siblings would fail the same way.

What must be right across the processes, and where it is made so:
- the ledger: every check-and-write is one serialized transaction (SQLite's ``BEGIN IMMEDIATE``
  on a shared WAL file with a busy timeout; PostgreSQL's own), so idempotency keys, holds and
  decisions are exactly-once whichever process a request or message reaches;
- sessions (API tokens, web UI sessions) and the cookie-signing key live with the ledger;
- throttles count in ``security.rate_limit_storage``: ``memory://`` would count per process and
  multiply every limit by N, so the bank refuses to start workers with it (use ``redis://``);
- votes come back to the process that sent the PREPAREs (direct reply-to); an acknowledgement
  may reach another process: it is written to the ledger, where the waiting request looks;
- one resolver at a time: the ``resolver`` leadership of the ledger (``storage/leadership.py``);
- ``/metrics`` adds up every process's figures, which they write to a folder the parent makes
  (``metrics.py``).
"""
from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable

from prometheus_client.multiprocess import mark_process_dead

from .metrics import SHARED_DIR_ENV

log = logging.getLogger("bank_node")

FIRST_RESTART_S = 1.0
MAX_RESTART_S = 30.0
HEALTHY_AFTER_S = 60.0     # a child that lived this long starts again after FIRST_RESTART_S
STOP_GRACE_S = 30.0
START_UP_ERROR = 2         # the exit status of a bank that refused to start (configuration, port...)


def parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when its parent dies (prctl
    PR_SET_PDEATHSIG), so a parent killed with -9 leaves no orphaned bank process behind.
    libc is loaded here, in the parent: the child between fork and exec only makes one call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def arm() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)
    return arm


def listen_tcp(host: str, port: int) -> socket.socket:
    """The bank's listening socket, made once by the parent and inherited by every child."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=1024)
    sock.set_inheritable(True)
    return sock


def listen_unix(path: str) -> socket.socket:
    """The operator's Unix socket (mode 600), made once by the parent; a socket file left by a
    bank that died is replaced, anything else at ``path`` is an error."""
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


@dataclass
class _Child:
    index: int
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    backoff_s: float = FIRST_RESTART_S


class Workers:
    """The parent: starts, watches and stops the children. ``child_args`` is the command line
    of one child (``python -m bank_node`` and its options, the inherited sockets included)."""

    def __init__(self, bank_id: str, n: int, child_args: list[str], sockets: list[socket.socket]):
        self.bank_id = bank_id
        self.children = [_Child(i) for i in range(n)]
        self.child_args = child_args
        self.sockets = sockets
        self._stopping = False
        self._preexec = parent_death_signal()
        self._figures = tempfile.mkdtemp(prefix=f"consorcio-{bank_id}-metrics-")
        self._env = {**os.environ, SHARED_DIR_ENV: self._figures}

    def run(self) -> int:
        """Until SIGTERM or SIGINT (or a child's start-up error): the parent's exit status."""
        def stop(signum, frame):
            self._stopping = True
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        for child in self.children:
            self._start(child)
        status = 0
        try:
            while not self._stopping:
                failed = self._watch()
                if failed:
                    status = START_UP_ERROR
                    break
                time.sleep(0.2)
        finally:
            self._stop_all()
            for s in self.sockets:
                s.close()
            shutil.rmtree(self._figures, ignore_errors=True)
        log.info("bank %s: every worker stopped", self.bank_id)
        return status

    def _start(self, child: _Child) -> None:
        fds = tuple(s.fileno() for s in self.sockets)
        child.proc = subprocess.Popen(self.child_args, pass_fds=fds, preexec_fn=self._preexec, env=self._env)
        child.started_at = time.monotonic()
        child.restart_at = None
        log.info("bank %s: worker %d started (pid %d)", self.bank_id, child.index, child.proc.pid)

    def _watch(self) -> bool:
        """Start again the children that died (after their backoff); True when one refused to
        start at all."""
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    self._start(child)
                continue
            code = child.proc.poll()
            if code is None:
                continue
            if code == START_UP_ERROR:
                log.error("bank %s: worker %d could not start (status %d); stopping the bank", self.bank_id,
                          child.index, code)
                return True
            mark_process_dead(child.proc.pid, self._figures)   # its per-process gauges go; its counts stay
            if now - child.started_at >= HEALTHY_AFTER_S:
                child.backoff_s = FIRST_RESTART_S
            log.warning("bank %s: worker %d (pid %d) exited with status %s; starting it again in %.0f s",
                        self.bank_id, child.index, child.proc.pid, code, child.backoff_s)
            child.restart_at = now + child.backoff_s
            child.backoff_s = min(child.backoff_s * 2, MAX_RESTART_S)
        return False

    def _stop_all(self) -> None:
        """One SIGTERM each (a second would cut a graceful shutdown short), then wait; a child
        still running after the grace period is killed."""
        running = [c.proc for c in self.children if c.proc is not None and c.proc.poll() is None]
        for p in running:
            p.send_signal(signal.SIGTERM)
        end = time.monotonic() + STOP_GRACE_S
        for p in running:
            try:
                p.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
