"""Local RabbitMQ nodes for the tools and tests, and the broker faults of the chaos nemesis.

A ``PrivateBroker`` is a RabbitMQ node of its own (its own name, ports and data folder), so that
restarting "the broker" disturbs nobody else on this machine. A ``BrokerCluster`` is several such
nodes joined into one RabbitMQ cluster (``rabbitmqctl join_cluster``): what
``./scripts/run-consortium --broker-nodes 3``, ``python -m tools.chaos --broker-nodes 3`` and the
fail-over tests run on. A ``BrokerControl`` runs ``rabbitmqctl`` against one node: closing one
consortium's connections, restarting the node.

The nodes run as the ``rabbitmq`` user, as Debian's package sets it up, so they share that
user's Erlang cookie and can cluster with each other. None of this touches the machine's own
broker (rabbit@localhost on port 5672): other people's tests run there.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from broker.errors import BrokerError
from broker.provision import rabbitmqctl

from .consortia import free_ports

#: What a node started here refuses: the broker's own bound on a message (``max_message_size``),
#: the same figure as ``broker.max_message_bytes`` in consorcio.yml by default.
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024


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


class RabbitNode:
    """One RabbitMQ node of the caller's own: a unique node name, its own AMQP and distribution
    ports, its data, logs and configuration under one folder in /tmp (the rabbitmq user must be
    able to reach it). The OS process can be killed with -9 and paused, for the chaos faults."""

    def __init__(self, name: str, folder: Path, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 extra_conf: str = ""):
        self.dir = folder
        self.port, self.dist_port = free_ports(2)
        self.node = f"{name}@localhost"
        self.max_message_bytes = max_message_bytes
        self.extra_conf = extra_conf  # more rabbitmq.conf lines (e.g. a TLS listener)
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    @property
    def address(self) -> str:
        """host:port, as a bank reports the node it is connected to."""
        return f"127.0.0.1:{self.port}"

    @property
    def control(self) -> BrokerControl:
        return BrokerControl(self.node)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "RABBITMQ_NODENAME": self.node, "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
                "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"), "RABBITMQ_LOG_BASE": str(self.dir / "log"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "plugins"),
                "RABBITMQ_PID_FILE": str(self.dir / "pid")}

    def launch(self) -> None:
        """Start the node in the background (returns before it is ready: see ``await_ready``)."""
        if shutil.which("rabbitmq-server") is None:
            raise RuntimeError("rabbitmq-server is not installed (Debian: apt-get install rabbitmq-server)")
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\n"
            f"max_message_size = {self.max_message_bytes}\n"
            # A node cut off from the majority stops serving rather than diverging.
            "cluster_partition_handling = pause_minority\n" + self.extra_conf)
        subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(self.dir)], capture_output=True)
        subprocess.run(["rabbitmq-server", "-detached"], env=self.env, capture_output=True, timeout=60,
                       cwd=str(self.dir))

    def await_ready(self, deadline_s: float = 90) -> None:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            out = subprocess.run(["rabbitmqctl", "-q", "-n", self.node, "await_startup", "--timeout", "10"],
                                 capture_output=True, text=True)
            if out.returncode == 0:
                return
            time.sleep(0.5)  # noqa: the node is still booting; polled with a deadline
        raise RuntimeError(f"RabbitMQ node {self.node} did not start (logs in {self.dir / 'log'})")

    @property
    def pid(self) -> int | None:
        """The OS process of the node's Erlang VM (from its pid file), or None when not running."""
        try:
            pid = int((self.dir / "pid").read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        return pid if stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X") else None

    def kill(self) -> None:
        """kill -9: the node vanishes without a word to its clients or its peers."""
        pid = self.pid
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            end = time.monotonic() + 30
            while self.pid is not None and time.monotonic() < end:
                time.sleep(0.05)  # noqa: waiting for the kernel to reap it, with a deadline
        (self.dir / "pid").unlink(missing_ok=True)

    def pause(self) -> None:
        """SIGSTOP: the node's sockets stay open but nothing answers (a hung machine)."""
        pid = self.pid
        if pid is not None:
            os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        pid = self.pid
        if pid is not None:
            os.kill(pid, signal.SIGCONT)

    def stop(self) -> None:
        self.resume()
        subprocess.run(["rabbitmqctl", "-q", "-n", self.node, "stop"], capture_output=True, timeout=60)
        if self.pid is not None:
            self.kill()


class PrivateBroker:
    """A RabbitMQ node of the caller's own. Needs rabbitmq-server installed; the node runs as
    the rabbitmq user, as Debian's package sets it up."""

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, extra_conf: str = "") -> None:
        # Its own folder under /tmp: the rabbitmq user must be able to reach it.
        self.dir = Path(tempfile.mkdtemp(prefix="consorcio-rmq-"))
        self._node = RabbitNode(f"chaos{os.getpid()}{uuid.uuid4().hex[:4]}", self.dir, max_message_bytes, extra_conf)
        self.port, self.dist_port = self._node.port, self._node.dist_port
        self.node = self._node.node
        self.url = self._node.url

    @property
    def control(self) -> BrokerControl:
        return BrokerControl(self.node)

    def start(self, deadline_s: float = 90) -> "PrivateBroker":
        self._node.launch()
        self._node.await_ready(deadline_s)
        return self

    def stop(self) -> None:
        self._node.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class BrokerCluster:
    """``n`` RabbitMQ nodes on this machine clustered into one: node 1 starts the cluster, the
    others ``join_cluster`` it. Quorum queues declared afterwards get a member on every node, so
    the consortium survives losing any one of them (with three: a majority is two)."""

    def __init__(self, n: int = 3, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, prefix: str = "consorcio"):
        if n < 1:
            raise ValueError("a cluster needs at least one node")
        self.dir = Path(tempfile.mkdtemp(prefix=f"{prefix}-rmq-cluster-"))
        self.dir.chmod(0o755)
        tag = f"{prefix}{os.getpid()}{uuid.uuid4().hex[:4]}"
        self.nodes = [RabbitNode(f"{tag}-{i + 1}", self.dir / f"node{i + 1}", max_message_bytes) for i in range(n)]

    @property
    def urls(self) -> list[str]:
        """Every node's AMQP URL (user guest): what each bank is given, in this order."""
        return [n.url for n in self.nodes]

    def node_at(self, address: str) -> RabbitNode:
        """The node a bank says it is connected to (``/api/health`` broker_node, host:port)."""
        for n in self.nodes:
            if n.address == address:
                return n
        raise KeyError(f"no node of this cluster listens at {address}")

    def start(self, deadline_s: float = 120) -> "BrokerCluster":
        """Boot every node at once (that is most of the time), then join nodes 2..n to node 1."""
        first = self.nodes[0]
        try:
            with ThreadPoolExecutor(len(self.nodes)) as pool:
                list(pool.map(lambda node: node.launch(), self.nodes))
                list(pool.map(lambda node: node.await_ready(deadline_s), self.nodes))
            for node in self.nodes[1:]:
                node.control.ctl("stop_app")
                node.control.ctl("join_cluster", first.node)
                node.control.ctl("start_app")
            self.await_members(deadline_s)
        except BaseException:
            self.stop()
            raise
        return self

    def running_nodes(self) -> set[str]:
        for node in self.nodes:
            if node.pid is None:
                continue
            try:
                status = json.loads(node.control.ctl("cluster_status", "--formatter", "json", timeout=20))
            except (BrokerError, ValueError):
                continue
            return set(status.get("running_nodes", [])) & {n.node for n in self.nodes}
        return set()

    def await_members(self, deadline_s: float = 60) -> None:
        """Until every node runs as a member of the cluster."""
        want = {n.node for n in self.nodes}
        end = time.monotonic() + deadline_s
        while self.running_nodes() != want:
            if time.monotonic() > end:
                raise RuntimeError(f"cluster nodes not all running after {deadline_s}s: "
                                   f"{sorted(self.running_nodes())} of {sorted(want)}")
            time.sleep(0.5)  # noqa: polled with a deadline

    def kill(self, i: int) -> RabbitNode:
        self.nodes[i].kill()
        return self.nodes[i]

    def restart(self, i: int, deadline_s: float = 90) -> None:
        """Start a killed node again: it rejoins the cluster on its own (its membership is on disk)."""
        node = self.nodes[i]
        node.resume()
        if node.pid is None:
            node.launch()
        node.await_ready(deadline_s)

    def heal(self, deadline_s: float = 120) -> None:
        """Every node running and resumed, every one a member again."""
        for i, node in enumerate(self.nodes):
            node.resume()
            if node.pid is None:
                self.restart(i, deadline_s)
        self.await_members(deadline_s)

    def stop(self) -> None:
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda node: node.stop(), reversed(self.nodes)))
        shutil.rmtree(self.dir, ignore_errors=True)
