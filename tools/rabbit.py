"""Local RabbitMQ nodes for the tools and tests, and the broker faults of the chaos nemesis.

A ``PrivateBroker`` is a RabbitMQ node of its own (its own name, ports and data folder), so that
restarting "the broker" disturbs nobody else on this machine. A ``BrokerControl`` runs
``rabbitmqctl`` against one node: closing one consortium's connections, restarting the node.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from broker.errors import BrokerError
from broker.provision import rabbitmqctl

from .consortia import free_ports


@dataclass(frozen=True)
class BrokerControl:
    """rabbitmqctl against one node (``None``: this machine's default node)."""
    node: str | None = None

    def ctl(self, *args: str, timeout: float = 60) -> str:
        return rabbitmqctl(list(args), self.node, timeout)

    def close_connections(self, namespace: str) -> int:
        """Close this consortium's broker connections only (their connection_name starts with
        the namespace), so other consortia on the same broker are left alone."""
        closed = 0
        for line in self.ctl("list_connections", "pid", "client_properties").splitlines():
            if f'"connection_name","{namespace}:' in line:
                pid = line.split("\t", 1)[0].strip()
                try:
                    self.ctl("close_connection", pid, "chaos nemesis")
                    closed += 1
                except BrokerError:
                    pass
        return closed

    def restart(self) -> None:
        self.ctl("stop_app")
        self.ctl("start_app")

    def ensure_running(self) -> None:
        if shutil.which("rabbitmqctl") is None:
            return
        try:
            self.ctl("await_startup", timeout=120)
        except BrokerError:
            self.ctl("start_app")


class PrivateBroker:
    """A RabbitMQ node of the caller's own. Needs rabbitmq-server installed; the node runs as
    the rabbitmq user, as Debian's package sets it up."""

    def __init__(self) -> None:
        # Its own folder under /tmp: the rabbitmq user must be able to reach it.
        self.dir = Path(tempfile.mkdtemp(prefix="consorcio-rmq-"))
        self.port, self.dist_port = free_ports(2)
        self.node = f"chaos{os.getpid()}{uuid.uuid4().hex[:4]}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    @property
    def control(self) -> BrokerControl:
        return BrokerControl(self.node)

    def start(self, deadline_s: float = 90) -> "PrivateBroker":
        if shutil.which("rabbitmq-server") is None:
            raise RuntimeError("rabbitmq-server is not installed")
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(self.dir)], capture_output=True)
        env = {**os.environ, "RABBITMQ_NODENAME": self.node, "RABBITMQ_DIST_PORT": str(self.dist_port),
               "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
               "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"), "RABBITMQ_LOG_BASE": str(self.dir / "log"),
               "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "plugins"),
               "RABBITMQ_PID_FILE": str(self.dir / "pid")}
        subprocess.run(["rabbitmq-server", "-detached"], env=env, capture_output=True, timeout=60, cwd=str(self.dir))
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            out = subprocess.run(["rabbitmqctl", "-q", "-n", self.node, "await_startup", "--timeout", "10"],
                                 capture_output=True, text=True)
            if out.returncode == 0:
                return self
            time.sleep(0.5)  # noqa: the node is still booting; polled with a deadline
        raise RuntimeError(f"private RabbitMQ node {self.node} did not start (logs in {self.dir / 'log'})")

    def stop(self) -> None:
        subprocess.run(["rabbitmqctl", "-q", "-n", self.node, "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)
