"""Run a whole consortium of bank processes on this machine, and supervise them.

Used by the one-command launcher (``python -m tools.launch``), by the integration tests
and by the chaos workload: provision the consortium's exchanges and queues on the broker (banks
declare nothing), start every bank of a config as its own process, wait until each answers
``/api/health`` (a condition with a deadline, never a fixed sleep), and kill -9, pause, resume,
restart or stop any of them.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from bank_node.config import Bank
from bank_node.workers import parent_death_signal

from .http import http_json

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class BankProcess:
    bank_id: str
    url: str
    config_path: Path
    data_dir: Path
    log_path: Path
    env: dict = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    on_line: Callable[[str, str], None] | None = None
    """If set, the bank's output is piped: each line is appended to ``log_path`` and handed to
    ``on_line(bank_id, line)`` (the launcher prints it with a prefix). Else it goes to the file only."""
    die_with_parent: bool = False
    """Ask the kernel to stop the bank if the process that started it dies (Linux only)."""
    workers: int = 1
    """Processes serving the bank (``--workers``); ``proc`` is then their parent."""
    consortium: str | None = None
    """The consortium's name in the config: a health answer counts only if it names this bank of
    this consortium (another bank, started on the same port by someone else, is not ours)."""
    _pump: threading.Thread | None = field(default=None, repr=False)

    def start(self, extra_env: dict | None = None) -> None:
        env = {**os.environ, **self.env, **(extra_env or {})}
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        env.setdefault("PYTHONUNBUFFERED", "1")
        # glibc gives every thread that allocates its own malloc arena; a bank has ~35 threads
        # (HTTP, message workers), and two arenas cut its memory after some traffic by about a
        # tenth (Python's own allocator serves small objects; the Dockerfile sets the same).
        env.setdefault("MALLOC_ARENA_MAX", "2")
        cmd = [sys.executable, "-m", "bank_node", "--config", str(self.config_path), "--bank", self.bank_id,
               "--data-dir", str(self.data_dir), *(["--workers", str(self.workers)] if self.workers > 1 else [])]
        preexec = parent_death_signal() if self.die_with_parent else None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.on_line is None:
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(cmd, cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=preexec)
            log.close()
            return
        self.proc = subprocess.Popen(cmd, cwd=str(ROOT), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=preexec)
        self._pump = threading.Thread(target=self._pump_output, args=(self.proc,), daemon=True,
                                      name=f"log-{self.bank_id}")
        self._pump.start()

    def _pump_output(self, proc: subprocess.Popen) -> None:
        """Copy the bank's output to its log file and to ``on_line``, line by line, until EOF."""
        with open(self.log_path, "ab") as log:
            for raw in proc.stdout:
                log.write(raw)
                log.flush()
                try:
                    self.on_line(self.bank_id, raw.decode("utf-8", errors="replace").rstrip("\r\n"))
                except Exception:  # noqa: BLE001 - a broken sink must not stop the copy to the file
                    pass
        proc.stdout.close()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def health(self, timeout: float = 2.0) -> dict | None:
        try:
            status, body = http_json("GET", f"{self.url}/api/health", timeout=timeout)
            return body if status == 200 else None
        except (OSError, ValueError):
            return None

    def _names_this_bank(self, h: dict) -> bool:
        return h.get("bank") == self.bank_id and (self.consortium is None or h.get("consortium") == self.consortium)

    def ready(self, h: dict | None, need_broker: bool = True) -> bool:
        """Whether health answer ``h`` says this bank is up: it names this bank (and consortium),
        and (``need_broker``) its broker is connected."""
        return h is not None and self._names_this_bank(h) and (not need_broker or h.get("broker") == "connected")

    def stranger(self, h: dict | None) -> str:
        """What answers on this bank's address, if it is not this bank ("" if it is, or none)."""
        if h is None or self._names_this_bank(h):
            return ""
        return (f"; {self.url} answers as bank {h.get('bank')!r} of consortium {h.get('consortium')!r}, "
                f"not this one (another process holds its port)")

    def wait_healthy(self, deadline_s: float = 30.0, need_broker: bool = True) -> dict:
        end = time.monotonic() + deadline_s
        delay = 0.02
        while time.monotonic() < end:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"bank {self.bank_id} exited with {self.proc.returncode}; "
                                   f"log: {self.log_path}\n{self.tail()}")
            h = self.health()
            if self.ready(h, need_broker):
                return h
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)
        raise TimeoutError(f"bank {self.bank_id} not healthy after {deadline_s}s{self.stranger(self.health())}; "
                           f"log:\n{self.tail()}")

    def kill(self) -> None:
        """kill -9: no goodbye, no flush. What it had committed must survive."""
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
        self.wait_exit()

    def terminate(self, timeout: float = 15) -> int | None:
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.wait_exit()

    def wait_exit(self, timeout: float = 15) -> int | None:
        if self.proc is None:
            return None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(5)
        if self._pump is not None:
            self._pump.join(5)  # the last lines of a stopping bank still reach the sink
        return code

    def pause(self) -> None:
        if self.alive:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.alive:
            self.proc.send_signal(signal.SIGCONT)

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class Cluster:
    """Several bank processes of one consortium config."""

    def __init__(self, config_path: Path, data_root: Path, env: dict | None = None, *,
                 on_line: Callable[[str, str], None] | None = None, die_with_parent: bool = False,
                 provision: bool = True, workers: dict[str, int] | None = None):
        self.config_path = Path(config_path)
        self.provision = provision
        self.data_root = Path(data_root)
        doc = yaml.safe_load(self.config_path.read_text())
        self.doc = doc
        self.namespace = doc.get("consortium", "consorcio")
        self.banks: dict[str, BankProcess] = {}
        for b in doc["banks"]:
            # The address the bank listens on, not its public host name, which Python may not resolve.
            url = Bank.model_validate(b).local_url
            self.banks[b["id"]] = BankProcess(
                b["id"], url, self.config_path, self.data_root / b["id"],
                self.data_root / f"{b['id']}.log", env=dict(env or {}), on_line=on_line,
                die_with_parent=die_with_parent, workers=(workers or {}).get(b["id"], 1),
                consortium=self.namespace)

    def __getitem__(self, bank_id: str) -> BankProcess:
        return self.banks[bank_id]

    def ledger_location(self, bank_id: str):
        """Where ``bank_id`` keeps its ledger: its ``storage`` setting, else its SQLite file."""
        from bank_node.storage import ledger_location
        entry = next(b for b in self.doc["banks"] if b["id"] == bank_id)
        return ledger_location(bank_id, self.banks[bank_id].data_dir, entry.get("storage"))

    def start(self, deadline_s: float = 60.0, *,
              progress: Callable[[list[str], list[str], float], None] | None = None,
              cancelled: Callable[[], bool] | None = None) -> "Cluster":
        self.data_root.mkdir(parents=True, exist_ok=True)
        if self.provision:
            self.provision_broker()
        for b in self.banks.values():
            b.start()
        self.wait_healthy(deadline_s, progress=progress, cancelled=cancelled)
        return self

    def provision_broker(self) -> None:
        """The operator's part: the consortium's exchanges, queues and bindings, declared with the
        configuration's own broker credentials (each bank then connects with its own, which may
        declare nothing)."""
        from bank_node.config import load_config
        from bank_node.messaging import topology_of
        from broker.provision import provision_topology
        config = load_config(self.config_path, env={**os.environ, **next(iter(self.banks.values())).env}
                             if self.banks else None)
        provision_topology(config.broker_urls, topology_of(config))

    def wait_healthy(self, deadline_s: float = 60.0, *, need_broker: bool = True,
                     progress: Callable[[list[str], list[str], float], None] | None = None,
                     progress_every_s: float = 5.0,
                     cancelled: Callable[[], bool] | None = None) -> dict[str, dict]:
        """Poll every bank's ``/api/health`` until all answer (with the broker connected).

        ``progress(ready, waiting, seconds)`` is called when a bank turns healthy and every
        ``progress_every_s`` while some are still waiting. Raises RuntimeError naming the bank if
        one exits, TimeoutError naming the stragglers at the deadline, and InterruptedError as
        soon as ``cancelled()`` is true (Ctrl-C in the launcher).
        """
        t0 = time.monotonic()
        end = t0 + deadline_s
        next_note = t0 + progress_every_s
        healthy: dict[str, dict] = {}
        delay = 0.02
        while True:
            changed = False
            for b in self.banks.values():
                if b.bank_id in healthy:
                    continue
                if b.proc is not None and b.proc.poll() is not None:
                    raise RuntimeError(f"bank {b.bank_id} exited with {b.proc.returncode}; "
                                       f"log: {b.log_path}\n{b.tail()}")
                h = b.health(timeout=1.0)
                if b.ready(h, need_broker):
                    healthy[b.bank_id] = h
                    changed = True
            now = time.monotonic()
            if progress is not None and (changed or now >= next_note):
                progress(list(healthy), [b for b in self.banks if b not in healthy], now - t0)
                next_note = now + progress_every_s
            if len(healthy) == len(self.banks):
                return healthy
            if cancelled is not None and cancelled():
                raise InterruptedError("stopped while waiting for the banks")
            if time.monotonic() >= end:
                late = [b for b in self.banks if b not in healthy]
                raise TimeoutError(f"bank(s) {', '.join(late)} not healthy after {deadline_s:g}s; log:\n"
                                   + "\n".join(self.banks[b].stranger(self.banks[b].health(timeout=1.0))
                                               + self.banks[b].tail(15) for b in late))
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)

    def pids(self) -> dict[str, int]:
        return {b.bank_id: b.pid for b in self.banks.values() if b.pid is not None}

    def restart(self, bank_id: str, extra_env: dict | None = None, deadline_s: float = 30.0) -> None:
        b = self.banks[bank_id]
        b.kill()
        b.start(extra_env)
        b.wait_healthy(deadline_s)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM every bank at once, then wait; one that outlives ``timeout`` is killed.
        Exactly one SIGTERM each: a second one would land in the middle of a graceful shutdown."""
        for b in self.banks.values():
            b.resume()
            if b.alive:
                b.proc.send_signal(signal.SIGTERM)
        for b in self.banks.values():
            b.wait_exit(timeout)
