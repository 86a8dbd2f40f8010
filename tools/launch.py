"""python -m tools.launch [--config consorcio.yml] [--banks N] [--data-dir data]

The whole consortium on one machine with one command : make sure a RabbitMQ
answers on the configured broker URL (starting the local one, or installing Debian's package when
running as root, or saying exactly what to run), start every bank as its own process, wait until
each answers ``/api/health`` with its broker connected, print each bank's URL, stream every bank's
log with its id in front, and on Ctrl-C / SIGTERM stop them all (and the broker, if this command
started it) so that no process is left behind. With ``broker_auth: {mode: per_bank}`` it also
creates each bank's own broker user (development passwords in a secrets file beside the data).
Before any bank starts it provisions the consortium's exchanges, queues and bindings (banks
declare nothing). ``--broker-nodes 3`` runs the consortium on a 3-node RabbitMQ cluster of its
own on this machine (``tools.rabbit.BrokerCluster``) when the config does not name one already,
gives every bank every node's URL, and stops the cluster with the banks.

Process supervision is :class:`tools.supervisor.Cluster`, the same code the integration tests
use, so what the README promises is what the tests exercise.
"""
from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Callable

import yaml

from bank_node.config import ConfigError, ConsortiumConfig, load_config

from .consortia import BANK_IDS, COLORS
from .ops import DEV_TOKEN_FILE
from .supervisor import Cluster

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0", "::"})
SBIN_PATH = os.pathsep.join(("/usr/local/sbin", "/usr/sbin", "/sbin"))


class LaunchError(Exception):
    """Why the consortium cannot start, in one line a person can act on."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------------------------
# Pure helpers (unit-tested): the size of the consortium, free ports, what it takes to get a broker


def consortium_of_size(doc: dict, n: int) -> dict:
    """``doc`` (a parsed consorcio.yml) with ``n`` banks: ids alfa, beta, gama, delta, ...
    on consecutive ports from the first bank's port (8001 by default); every other key is kept.
    When the first bank has a ``*.localhost`` host name, each bank gets its own
    (``beta.localhost``, ...), so that none shares another's cookies."""
    if not 1 <= n <= len(BANK_IDS):
        raise LaunchError(f"--banks must be from 1 to {len(BANK_IDS)}, not {n}", code=2)
    first = (doc.get("banks") or [{}])[0]
    host, base = first.get("host", "127.0.0.1"), int(first.get("port", 8001))
    if base + n - 1 > 65535:
        raise LaunchError(f"--banks {n} from port {base} goes past port 65535", code=2)
    own_host = host == "localhost" or host.endswith(".localhost")
    banks = [{"id": bank_id, "name": f"Banco {bank_id.capitalize()}",
              "host": f"{bank_id}.localhost" if own_host else host, "port": base + i,
              "color": COLORS[i % len(COLORS)]} for i, bank_id in enumerate(BANK_IDS[:n])]
    if "listen" in first:
        for b in banks:
            b["listen"] = first["listen"]
    return {**doc, "banks": banks}


def port_in_use(host: str, port: int) -> str | None:
    """The reason ``host:port`` cannot be listened on, or None when a bank could take it."""
    try:
        # create_server sets SO_REUSEADDR like waitress, so a port in TIME_WAIT counts as free.
        socket.create_server((host, port)).close()
        return None
    except OSError as e:
        return os.strerror(e.errno) if e.errno else str(e)


def busy_ports(config: ConsortiumConfig) -> list[str]:
    """One phrase per bank whose port is taken, e.g. ``"port 8001 of bank alfa (Address already in use)"``."""
    out = []
    for b in config.banks:
        why = port_in_use(b.listen_address, b.port)
        if why:
            out.append(f"port {b.port} of bank {b.id} ({why})")
    return out


def shared_hosts(config: ConsortiumConfig) -> list[str]:
    """One warning per public host name that several banks share: a browser sends the cookies
    of a host to every port of it, so one bank would receive another's."""
    by_host: dict[str, list[str]] = {}
    for b in config.banks:
        by_host.setdefault(b.host, []).append(b.id)
    return [f"banks {', '.join(ids)} share the host name {host}: a browser would send the cookies of one to "
            f"the others; give each its own (e.g. {ids[0]}.localhost, {ids[1]}.localhost)"
            for host, ids in by_host.items() if len(ids) > 1]


def operator_token(data_root: Path, env: dict | None = None) -> tuple[str, str]:
    """The operator token every bank gets (CONSORCIO_OPERATOR_TOKEN): the environment's, else a
    development token kept in ``data_root/operator-token`` (mode 600, made once). Returns the
    token and where it came from."""
    env = os.environ if env is None else env
    if env.get("CONSORCIO_OPERATOR_TOKEN"):
        return env["CONSORCIO_OPERATOR_TOKEN"], "CONSORCIO_OPERATOR_TOKEN"
    path = data_root / "operator-token"
    if not path.exists() or not path.read_text().strip():
        data_root.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(24) + "\n")
    path.chmod(0o600)
    return path.read_text().strip(), str(path)


def broker_address(url: str) -> tuple[str, int, str]:
    """(host, port, the URL without its password) of an AMQP URL."""
    u = urllib.parse.urlsplit(url)
    host = u.hostname or "localhost"
    port = u.port or (5671 if u.scheme == "amqps" else 5672)
    netloc = (f"{u.username}@" if u.username else "") + (f"[{host}]" if ":" in host else host) + f":{port}"
    return host, port, urllib.parse.urlunsplit((u.scheme, netloc, u.path, "", ""))


def plan_broker_start(host: str, port: int, *, server: str | None, is_root: bool,
                      has_apt: bool) -> tuple[list[list[str]], str]:
    """What to run to get a RabbitMQ answering on ``host:port`` here, and the one-line advice
    to print if that fails. Raises LaunchError with exactly what to run when nothing can be done."""
    where = f"{host}:{port}"
    if host not in LOCAL_HOSTS:
        raise LaunchError(f"no RabbitMQ answers at {where}; start that broker, or point AMQP_URL "
                          f"(or broker_url in the config) at one that runs")
    sudo = "" if is_root else "sudo "
    start = f"{sudo}rabbitmq-server -detached"
    if server is None:
        install = f"{sudo}apt-get install -y rabbitmq-server"
        if is_root and has_apt:
            return ([["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "rabbitmq-server"],
                     ["rabbitmq-server", "-detached"]], f"{install} && {start}")
        raise LaunchError(f"no RabbitMQ answers at {where} and rabbitmq-server is not installed; run: "
                          f"{install} && {start}   (or set AMQP_URL to a broker you have)")
    return [[server, "-detached"]], start


# ---------------------------------------------------------------------------------------------
# The broker


REFUSED_CREDENTIALS = "the broker refused the user name or password of the URL"
REFUSED_VHOST = "the broker refused access to the URL's virtual host"
REFUSALS = (REFUSED_CREDENTIALS, REFUSED_VHOST)


def amqp_answers(url: str, timeout: float = 3.0) -> tuple[bool, str]:
    """True when an AMQP handshake with these credentials succeeds; else the reason."""
    import pika
    import pika.exceptions as px
    try:
        params = pika.URLParameters(url)
        params.socket_timeout = timeout
        params.stack_timeout = timeout + 2
        params.connection_attempts = 1
        params.retry_delay = 0
        pika.BlockingConnection(params).close()
        return True, ""
    except (px.ProbableAuthenticationError, px.AuthenticationError):
        return False, REFUSED_CREDENTIALS
    except px.ProbableAccessDeniedError:
        return False, REFUSED_VHOST
    except Exception as e:  # noqa: BLE001 - every other failure means "not answering (yet)"
        return False, str(e) or type(e).__name__


def tcp_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def bank_log_format(requested: str, terminal: bool) -> str:
    """How the banks write their logs: as asked (``json`` or ``text``), else readable text when
    a person watches the launcher in a terminal and JSON (one event a line, for tools) when its
    output goes to a file or a pipe."""
    if requested in ("json", "text"):
        return requested
    return "text" if terminal else "json"


# ---------------------------------------------------------------------------------------------
# The launcher


class Launcher:
    def __init__(self, args: argparse.Namespace, out=None):
        self.args = args
        self.out = out or sys.stdout
        self.color = self.out.isatty() and not os.environ.get("NO_COLOR")
        self._print_lock = threading.Lock()
        self.stop_requested = threading.Event()
        self.cluster: Cluster | None = None
        self.started_broker: list[str] | None = None  # rabbitmqctl command that stops it
        self.broker_env: dict[str, str] = {}
        self.broker_cluster = None                     # a tools.rabbit.BrokerCluster this command started
        self.bank_env: dict[str, str] = {}             # AMQP_URL of that cluster, for every bank
        self._width = 4
        self._colors: dict[str, str] = {}

    # -- output --------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        with self._print_lock:
            print(text, file=self.out, flush=True)

    def bank_line(self, bank_id: str, line: str) -> None:
        prefix = f"{bank_id:<{self._width}} |"
        if self.color and bank_id in self._colors:
            prefix = f"{self._colors[bank_id]}{prefix}\x1b[0m"
        self.say(f"{prefix} {line}")

    # -- signals -------------------------------------------------------------------------------

    def _on_signal(self, signum, frame) -> None:
        if self.stop_requested.is_set() and self.cluster is not None:
            # A second Ctrl-C while stopping: do not wait for a graceful exit any longer.
            # (os.write, not print: the main thread may hold the print lock right now.)
            os.write(2, b"second stop request: killing the banks with SIGKILL\n")
            for b in self.cluster.banks.values():
                if b.alive:
                    b.resume()
                    b.proc.kill()
            return
        self.stop_requested.set()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    # -- steps ---------------------------------------------------------------------------------

    def load(self) -> tuple[Path, ConsortiumConfig]:
        path = Path(self.args.config).resolve()
        env = {**os.environ, **self.bank_env}
        try:
            config = load_config(path, env)
        except ConfigError as e:
            raise LaunchError(str(e), code=2) from e
        per_bank_without_secrets = config.broker_auth.mode == "per_bank" and not config.broker_auth.secrets_file
        if self.args.banks is not None or per_bank_without_secrets:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
            data_root = Path(self.args.data_dir).resolve()
            data_root.mkdir(parents=True, exist_ok=True)
            doc, name = raw, "consorcio.yml"
            if self.args.banks is not None:
                doc, name = consortium_of_size(raw, self.args.banks), f"consorcio-{self.args.banks}-banks.yml"
            if per_bank_without_secrets:
                # Development passwords of the banks' broker users, kept with the data (never committed).
                doc = {**doc, "broker_auth": {**raw["broker_auth"], "secrets_file": str(data_root / "broker-secrets.yml")}}
            path = data_root / name
            path.write_text(f"# Written by python -m tools.launch from {self.args.config}; edit that file "
                            f"instead.\n" + yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
            try:
                config = load_config(path, env)
            except ConfigError as e:
                raise LaunchError(str(e), code=2) from e
        if env.get("BANK_DATABASE_URL") and len(config.banks) > 1:
            # Every bank would open the same database as its own ledger.
            raise LaunchError("BANK_DATABASE_URL names one bank's ledger, and this launcher starts "
                              f"{len(config.banks)} banks: unset it and give each bank its own `storage` "
                              f"in {self.args.config}", code=2)
        return path, config

    def ensure_bank_users(self, config: ConsortiumConfig) -> None:
        """broker_auth.mode per_bank: one RabbitMQ user per bank and for the auditor, with
        development passwords generated into the secrets file when missing (rabbitmqctl)."""
        if config.broker_auth.mode != "per_bank":
            return
        from broker.errors import BrokerError
        from broker.provision import ensure_passwords, provision, vhost_of
        from bank_node.identity import AUDITOR
        secrets_path = Path(config.broker_auth.secrets_file)
        node = self.broker_cluster.nodes[0].node if self.broker_cluster is not None else None
        try:
            passwords = ensure_passwords(secrets_path, [*config.bank_ids, AUDITOR])
            provision(config.consortium, passwords, vhost=vhost_of(config.broker_url), node=node)
        except BrokerError as e:
            raise LaunchError(f"cannot create the banks' broker users (broker_auth: per_bank): {e}; create them "
                              f"with rabbitmqctl as root, passwords in {secrets_path}") from e
        self.say(f"broker users {config.consortium}.<bank> ready for {', '.join(config.bank_ids)} "
                 f"(passwords in {secrets_path})")

    def ensure_signing_keys(self, config: ConsortiumConfig) -> None:
        """signing.mode required: a development Ed25519 key pair for every bank that has none in
        signing.keys_dir (a bank's ``public_key`` in the config wins over its file)."""
        if config.signing.mode != "required":
            return
        from bank_node.interbank.signing import write_key_pair
        if not config.signing.keys_dir:
            raise LaunchError("signing.mode is required but signing.keys_dir names no folder for the keys", code=2)
        folder = Path(config.signing.keys_dir)
        for bank in config.bank_ids:
            write_key_pair(folder, bank)
        self.say(f"signing keys of {', '.join(config.bank_ids)} ready in {folder}")

    def ensure_topology(self, config: ConsortiumConfig) -> None:
        """The consortium's exchanges, queues (quorum, bounded) and bindings, declared with the
        configuration's credentials before any bank starts: banks may declare nothing."""
        from bank_node.messaging import topology_of
        from broker.errors import BrokerError
        from broker.provision import provision_topology
        try:
            provision_topology(config.broker_urls, topology_of(config), say=self.say)
        except BrokerError as e:
            raise LaunchError(str(e)) from e
        self.say(f"broker provisioned for {config.consortium!r}: exchange, dead-letter queue and a quorum queue "
                 f"per bank")

    def start_broker_cluster(self, n: int) -> None:
        """A RabbitMQ cluster of ``n`` nodes of this command's own (own node names, ports, data)."""
        from tools.rabbit import BrokerCluster
        self.say(f"starting a {n}-node RabbitMQ cluster on this machine (about 20 s) ...")
        t0 = time.monotonic()
        try:
            self.broker_cluster = BrokerCluster(n)
            self.broker_cluster.start()
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            self.broker_cluster = None
            raise LaunchError(f"cannot start a {n}-node RabbitMQ cluster here: {e}") from e
        self.bank_env["AMQP_URL"] = ",".join(self.broker_cluster.urls)
        nodes = ", ".join(f"{node.node} ({node.address})" for node in self.broker_cluster.nodes)
        self.say(f"RabbitMQ cluster of {n} nodes ready after {time.monotonic() - t0:.1f}s: {nodes}")

    def ensure_brokers(self, urls: list[str]) -> None:
        """One URL: that broker (started here if it is local and down). Several: a cluster that
        someone else runs; one node answering is enough (the banks fail over among them)."""
        if len(urls) == 1:
            self.ensure_broker(urls[0])
            return
        reasons = []
        for url in urls:
            ok, why = amqp_answers(url)
            _, _, shown = broker_address(url)
            if ok:
                self.say(f"RabbitMQ answers at {shown} (one of {len(urls)} nodes)")
                return
            reasons.append(f"{shown}: {why}")
        raise LaunchError("no node of the broker cluster answers (" + "; ".join(reasons) + ")")

    def ensure_broker(self, url: str) -> None:
        host, port, shown = broker_address(url)
        ok, why = amqp_answers(url)
        if ok:
            self.say(f"RabbitMQ answers at {shown}")
            return
        if why in REFUSALS:
            raise LaunchError(f"RabbitMQ at {shown}: {why}; fix the URL in AMQP_URL or broker_url")
        if tcp_answers(host, port):
            # Something listens: a broker still booting, or not a broker at all. Never start a second.
            self.wait_for_broker(url, shown, first_reason=why)
            return
        server = shutil.which("rabbitmq-server", path=os.environ.get("PATH", "") + os.pathsep + SBIN_PATH)
        commands, advice = plan_broker_start(host, port, server=server, is_root=os.geteuid() == 0,
                                             has_apt=shutil.which("apt-get") is not None)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        env["PATH"] = env.get("PATH", "") + os.pathsep + SBIN_PATH
        if port != 5672:
            env["RABBITMQ_NODE_PORT"] = str(port)
        self.broker_env = env
        self.say(f"no RabbitMQ answers at {host}:{port}; starting one")
        for cmd in commands:
            self.say(f"running: {' '.join(cmd)}")
            try:
                done = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                      timeout=900)
                failed = done.returncode != 0
                detail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] if failed else []
            except (OSError, subprocess.TimeoutExpired) as e:
                failed, detail = True, [str(e)]
            if failed:
                if cmd[-1] == "-detached" and tcp_answers(host, port):
                    break  # the package's own service start won the race: a broker is there, wait for it below
                raise LaunchError(f"`{' '.join(cmd)}` failed ({' '.join(detail) or 'no output'}); run: {advice}")
        ctl = shutil.which("rabbitmqctl", path=env["PATH"])
        self.started_broker = [ctl, "stop"] if ctl else None
        self.wait_for_broker(url, shown)

    def wait_for_broker(self, url: str, shown: str, first_reason: str = "") -> None:
        t0 = time.monotonic()
        end = t0 + self.args.wait
        next_note = t0
        why = first_reason
        while True:
            ok, why = amqp_answers(url)
            if ok:
                self.say(f"RabbitMQ answers at {shown} (after {time.monotonic() - t0:.1f}s)")
                return
            if why in REFUSALS:
                raise LaunchError(f"RabbitMQ at {shown}: {why}; fix the URL in AMQP_URL or broker_url")
            if self.stop_requested.is_set():
                raise InterruptedError
            now = time.monotonic()
            if now >= end:
                raise LaunchError(f"RabbitMQ at {shown} did not answer within {self.args.wait:g}s ({why})")
            if now >= next_note:
                self.say(f"waiting for RabbitMQ at {shown} ... ({now - t0:.0f}s)")
                next_note = now + 5
            self.stop_requested.wait(0.5)

    def start_banks(self, config_path: Path, config: ConsortiumConfig) -> None:
        data_root = Path(self.args.data_dir).resolve()
        self._width = max(len(b.id) for b in config.banks)
        self._colors = {b.id: "\x1b[38;2;{};{};{}m".format(*bytes.fromhex(b.color[1:])) for b in config.banks}
        log_format = bank_log_format(getattr(self.args, "log_format", "auto"), self.out.isatty())
        self.token, self.token_source = operator_token(data_root)
        self.cluster = Cluster(config_path, data_root,
                               env={"CONSORCIO_OPERATOR_TOKEN": self.token, "LOG_FORMAT": log_format, **self.bank_env},
                               on_line=self.bank_line, die_with_parent=True, provision=False)
        n = len(config.banks)
        self.say(f"starting {n} bank{'s' if n > 1 else ''} of consortium {config.consortium!r}: "
                 f"{', '.join(config.bank_ids)} (data and logs in {data_root})")

        def progress(ready: list[str], waiting: list[str], elapsed: float) -> None:
            if waiting:
                self.say(f"[{len(ready)}/{n} healthy, {elapsed:.1f}s] waiting for {', '.join(waiting)}")
            else:
                self.say(f"[{n}/{n} healthy, {elapsed:.1f}s] every bank is up")

        try:
            self.cluster.start(self.args.wait, progress=progress, cancelled=self.stop_requested.is_set)
        except (RuntimeError, TimeoutError) as e:
            raise LaunchError(str(e).splitlines()[0]) from e

    def banner(self, config: ConsortiumConfig) -> None:
        shown = broker_address(config.broker_urls[0])[2] if len(config.broker_urls) == 1 else \
            f"a cluster of {len(config.broker_urls)} nodes: " + ", ".join(
                broker_address(u)[2].split("@")[-1] for u in config.broker_urls)
        name_w = max(len(b.name) for b in config.banks)
        lines = ["", f"Consortium {config.consortium!r} is running ({len(config.banks)} banks, broker {shown}):"]
        for b in config.banks:
            lines.append(f"  {b.id:<{self._width}}  {b.name:<{name_w}}  {b.url}  (pid {self.cluster[b.id].pid})")
        first = config.banks[0]
        lines += [f"Web UI at each URL; REST API under /api (try: curl {first.url}/api/health).",
                  "(Browsers and curl resolve *.localhost to this machine; a program whose resolver does not can "
                  f"use the address the bank listens on, e.g. {first.local_url}.)"]
        if self.token_source == "CONSORCIO_OPERATOR_TOKEN":
            how = "the token of CONSORCIO_OPERATOR_TOKEN"
            export = ""
        else:
            how = f"the development token in {self.token_source}"
            export = f"export CONSORCIO_OPERATOR_TOKEN=$(cat {self.token_source}); "
        lines += [f"Operator routes (/operator, /api/operator/*, /metrics) need {how}, sent as X-Operator-Token:",
                  f"  {export}curl -H \"X-Operator-Token: $CONSORCIO_OPERATOR_TOKEN\" {first.url}/metrics",
                  f"  python -m tools.ops view --bank {first.id}"
                  + ("" if self.token_source == "CONSORCIO_OPERATOR_TOKEN"
                     or Path(self.token_source) == Path(DEV_TOKEN_FILE).resolve()
                     else f" --token-file {self.token_source}")]
        lines += [f"warning: {w}" for w in shared_hosts(config)]
        lines += ["Press Ctrl-C to stop every bank" + (" and the broker." if self.started_broker or self.broker_cluster
                                                       else "."), ""]
        self.say("\n".join(lines))

    def supervise(self) -> int:
        """Until a stop is asked: report banks that exit on their own (the others keep running)."""
        reported: set[str] = set()
        while not self.stop_requested.wait(0.5):
            for b in self.cluster.banks.values():
                if b.bank_id not in reported and not b.alive:
                    reported.add(b.bank_id)
                    code = b.proc.returncode
                    self.say(f"bank {b.bank_id} exited with code {code}; the others keep running. Restart it with:"
                             f" python -m bank_node --config {b.config_path} --bank {b.bank_id}"
                             f" --data-dir {b.data_dir}")
            if len(reported) == len(self.cluster.banks):
                self.say("every bank has exited; stopping")
                return 1
        return 0

    def shutdown(self) -> None:
        if self.cluster is not None:
            alive = [b.bank_id for b in self.cluster.banks.values() if b.alive]
            if alive:
                self.say(f"stopping {', '.join(alive)} ...")
            self.cluster.stop()
            codes = ", ".join(f"{b.bank_id}={b.proc.returncode}" for b in self.cluster.banks.values()
                              if b.proc is not None)
            self.say(f"every bank has stopped (exit codes: {codes})")
        if self.broker_cluster is not None:
            if self.args.keep_broker:
                self.say("the RabbitMQ cluster keeps running; stop it with: " + "; ".join(
                    f"rabbitmqctl -n {node.node} stop" for node in self.broker_cluster.nodes))
            else:
                self.say("stopping the RabbitMQ cluster this command started")
                self.broker_cluster.stop()
        if self.started_broker and not self.args.keep_broker:
            self.say("stopping the RabbitMQ this command started (keep it running next time with --keep-broker)")
            try:
                subprocess.run(self.started_broker, env=self.broker_env, stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=120)
            except (OSError, subprocess.TimeoutExpired) as e:
                self.say(f"could not stop RabbitMQ ({e}); stop it with: rabbitmqctl stop")

    def run(self) -> int:
        self.install_signal_handlers()
        config_path, config = self.load()
        taken = busy_ports(config)
        if taken:
            raise LaunchError(f"{'; '.join(taken)}: stop what listens there, or choose other ports in "
                              f"{self.args.config}", code=2)
        try:
            nodes = self.args.broker_nodes
            if nodes > 1 and len(config.broker_urls) < nodes:
                self.start_broker_cluster(nodes)
                config_path, config = self.load()
            else:
                self.ensure_brokers(config.broker_urls)
            self.ensure_bank_users(config)
            self.ensure_topology(config)
            self.ensure_signing_keys(config)
            if self.stop_requested.is_set():
                raise InterruptedError
            self.start_banks(config_path, config)
            self.banner(config)
            return self.supervise()
        except InterruptedError:
            self.say("stop requested during start-up")
            return 0
        finally:
            self.shutdown()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.launch",
                                 description="Run the whole consortium on this machine: a RabbitMQ if none "
                                             "answers, then every bank as its own process. Ctrl-C stops all.")
    ap.add_argument("--config", default="consorcio.yml", help="consortium file (default: consorcio.yml)")
    ap.add_argument("--banks", type=int, default=None, metavar="N",
                    help="run N banks (alfa, beta, gama, delta, ...) on ports from the config's first port "
                         "upwards, keeping the rest of the config")
    ap.add_argument("--data-dir", default="data", help="ledgers in DIR/<bank>/, logs in DIR/<bank>.log "
                                                       "(default: data)")
    ap.add_argument("--wait", type=float, default=90.0, metavar="SECONDS",
                    help="how long to wait for the broker and for the banks to be healthy (default: 90)")
    ap.add_argument("--broker-nodes", type=int, default=1, metavar="N",
                    help="run on a RabbitMQ cluster of N nodes: the config's, if it names N URLs, else one "
                         "this command starts on this machine (own node names, ports and data) and stops on "
                         "Ctrl-C (default: 1, the configured broker)")
    ap.add_argument("--log-format", choices=("auto", "json", "text"), default=os.environ.get("LOG_FORMAT") or "auto",
                    help="the banks' logs: text when this command's output is a terminal and JSON otherwise "
                         "(auto, the default), or always json or text (env LOG_FORMAT)")
    ap.add_argument("--keep-broker", action="store_true",
                    help="leave a RabbitMQ (or cluster) started by this command running after the consortium stops")
    args = ap.parse_args(argv)
    if args.broker_nodes < 1:
        ap.error("--broker-nodes must be at least 1")
    launcher = Launcher(args)
    try:
        return launcher.run()
    except LaunchError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return e.code


if __name__ == "__main__":
    sys.exit(main())
