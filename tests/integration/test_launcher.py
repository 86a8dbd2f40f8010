"""The one-command local consortium : ``python -m tools.launch``
starts every bank of the config, prints each bank's URL once all are healthy, streams their logs
with the bank id in front, and on SIGINT stops them all, leaving no process behind.

The launcher runs as a subprocess, exactly as a person runs it; every wait is a condition with a
deadline, and whatever a test started is killed at the end even when the test fails.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tools.consortia import free_ports, write_config
from tools.http import http_json
from tools.supervisor import ROOT
from bank_node.config import load_config
from tools.consortia import BANK_IDS
from tools.launch import LaunchError, consortium_of_size, plan_broker_start
from tests.conftest import delete_namespace
from tests.support import wait_until

pytestmark = pytest.mark.integration

BANKS = ("alfa", "beta", "gama")
URL_LINE = re.compile(r"^\s+(?P<bank>[a-z][a-z0-9_-]*)\s+.*\s(?P<url>http://\S+)\s+\(pid (?P<pid>\d+)\)\s*$")


class Launched:
    """The launcher as a child process; a thread collects its output line by line."""

    def __init__(self, *args: str):
        env = dict(os.environ, PYTHONUNBUFFERED="1", NO_COLOR="1")
        env.pop("CONSORCIO_OPERATOR_TOKEN", None)      # the launcher makes its development token
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen([sys.executable, "-m", "tools.launch", *args], cwd=str(ROOT), env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self.lines: list[str] = []
        self.eof = False
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self.eof = True
            self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for(self, predicate, deadline_s: float, what: str):
        """Block until ``predicate(lines)`` is truthy; fail with the output at the deadline or at EOF."""
        end = time.monotonic() + deadline_s
        with self._cond:
            while True:
                found = predicate(list(self.lines))
                if found:
                    return found
                left = end - time.monotonic()
                if self.eof or left <= 0:
                    pytest.fail(f"launcher: no {what} ({'it exited' if self.eof else f'after {deadline_s}s'})"
                                f"; output:\n" + "\n".join(self.lines))
                self._cond.wait(left)

    def wait_exit(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self.wait_for(lambda _: self.eof, 10, "end of output")
        return code


def running(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie, dead but not yet reaped, is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def processes_mentioning(text: str) -> list[int]:
    """Live processes with ``text`` in their command line (the test's own config path is unique)."""
    pids = [int(d) for d in os.listdir("/proc") if d.isdigit() and int(d) != os.getpid()]
    return [p for p in pids if any(text in arg for arg in cmdline(p)) and running(p)]


@pytest.fixture
def consortium_file(tmp_path, amqp_url, namespace):
    """A three-bank config of its own (namespace, free ports, each bank on its own host name as in
    consorcio.yml); its queues are deleted afterwards."""
    ports = dict(zip(BANKS, free_ports(len(BANKS))))
    cfg = write_config(tmp_path / "consorcio.yml", consortium=namespace, broker_url=amqp_url,
                       banks=[{"id": b, "name": f"Banco {b.capitalize()}", "host": f"{b}.localhost", "port": p}
                              for b, p in ports.items()],
                       security={"argon2_time_cost": 1, "argon2_memory_kib": 1024})
    yield cfg, ports
    delete_namespace(amqp_url, namespace, list(BANKS))


@pytest.fixture
def launch(tmp_path):
    """Factory: launch(*args) -> Launched. Kills the launcher and anything it left at teardown."""
    started: list[Launched] = []

    def start(*args: str) -> Launched:
        started.append(Launched(*args))
        return started[-1]

    yield start
    for launched in started:
        if launched.proc.poll() is None:
            launched.proc.kill()
            launched.proc.wait(10)
    for pid in processes_mentioning(str(tmp_path)):
        os.kill(pid, signal.SIGKILL)


def banner(lines: list[str]) -> dict[str, tuple[str, int]] | None:
    """{bank: (url, pid)} once the launcher has printed the line of every bank."""
    found = {}
    for line in lines:
        m = URL_LINE.match(line)
        if m:
            found[m["bank"]] = (m["url"], int(m["pid"]))
    return found if set(found) >= set(BANKS) else None


def test_launcher_starts_every_bank_and_sigint_leaves_no_process_behind(consortium_file, launch, tmp_path, namespace):
    cfg, ports = consortium_file
    launcher = launch("--config", str(cfg), "--data-dir", str(tmp_path / "data"))

    printed = launcher.wait_for(banner, 120, "URL line for every bank")

    assert {b: url for b, (url, _) in printed.items()} == {b: f"http://{b}.localhost:{p}" for b, p in ports.items()}
    assert "share the host name" not in launcher.output
    for bank, (url, pid) in printed.items():
        # Python's resolver may not know *.localhost: the bank listens on 127.0.0.1.
        status, health = http_json("GET", f"http://127.0.0.1:{ports[bank]}/api/health", timeout=10)
        assert status == 200, health
        assert (health["bank"], health["consortium"], health["broker"]) == (bank, namespace, "connected")
        assert running(pid), f"pid {pid} printed for {bank} is not running"
        args = cmdline(pid)
        assert "bank_node" in args and args[args.index("--bank") + 1] == bank, args
    # Every bank's log is streamed with its id in front, and also kept in a file per bank.
    for bank in BANKS:
        launcher.wait_for(lambda lines, b=bank: any(line.startswith(f"{b} ") and " | " in line for line in lines),
                          10, f"log line prefixed by {bank}")
        assert (tmp_path / "data" / f"{bank}.log").stat().st_size > 0

    launcher.proc.send_signal(signal.SIGINT)

    assert launcher.wait_exit(60) == 0, launcher.output
    pids = [pid for _, pid in printed.values()]
    wait_until(lambda: not any(running(p) for p in pids), 10, f"bank processes {pids} gone")
    assert processes_mentioning(str(cfg)) == []
    for bank, (url, _) in printed.items():
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", ports[bank]), timeout=2).close()
    # Stopped gracefully by the launcher itself (not merely orphaned): each bank said goodbye
    # through the launcher's output before the launcher exited, and exited with 0.
    for bank in BANKS:
        assert re.search(rf"^{bank}\s+\| .*bank {bank} stopped", launcher.output, re.M), launcher.output
    assert "exit codes: alfa=0, beta=0, gama=0" in launcher.output, launcher.output


def test_launcher_refuses_a_taken_port_with_a_one_line_reason(consortium_file, launch, tmp_path):
    cfg, ports = consortium_file
    squatter = socket.create_server(("127.0.0.1", ports["beta"]))
    try:
        launcher = launch("--config", str(cfg), "--data-dir", str(tmp_path / "data"))
        code = launcher.wait_exit(60)
    finally:
        squatter.close()
    assert code != 0
    errors = [line for line in launcher.lines if line.startswith("error:")]
    assert len(errors) == 1, launcher.output
    assert f"port {ports['beta']}" in errors[0] and "beta" in errors[0] and "in use" in errors[0], errors[0]
    assert processes_mentioning(str(cfg)) == [], "no bank may be started when a port is taken"


def test_launcher_gives_banks_an_operator_token_and_says_how_to_use_it(consortium_file, launch, tmp_path):
    """No token in the environment: the launcher makes a development one (mode 600, kept across
    launches), gives it to every bank, and prints how to send it; python -m tools.ops view finds
    it, while a request without it is refused even from this machine."""
    cfg, ports = consortium_file
    data = tmp_path / "data"
    launcher = launch("--config", str(cfg), "--data-dir", str(data))
    launcher.wait_for(banner, 120, "URL line for every bank")
    launcher.wait_for(lambda lines: any("python -m tools.ops view" in line for line in lines), 10, "how to use it")
    token_file = data / "operator-token"
    token = token_file.read_text().strip()
    assert len(token) >= 16 and (token_file.stat().st_mode & 0o777) == 0o600
    assert token not in launcher.output                       # the path is printed, never the token
    assert f"cat {token_file}" in launcher.output and "X-Operator-Token" in launcher.output
    local = f"http://127.0.0.1:{ports['alfa']}"
    assert http_json("GET", f"{local}/api/operator/overview")[0] == 403
    assert http_json("GET", f"{local}/api/operator/overview", headers={"X-Operator-Token": token})[0] == 200
    env = {k: v for k, v in os.environ.items() if k != "CONSORCIO_OPERATOR_TOKEN"}
    out = subprocess.run([sys.executable, "-m", "tools.ops", "view", "--config", str(cfg), "--bank", "beta",
                          "--token-file", str(token_file)], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "Banco Beta (beta)" in out.stdout, out.stderr


def test_launcher_warns_when_banks_share_a_host_name(tmp_path, amqp_url, namespace, launch):
    ports = free_ports(2)
    cfg = write_config(tmp_path / "consorcio.yml", consortium=namespace, broker_url=amqp_url,
                       banks=[{"id": b, "name": f"Banco {b.capitalize()}", "host": "127.0.0.1", "port": p}
                              for b, p in zip(("alfa", "beta"), ports)],
                       security={"argon2_time_cost": 1, "argon2_memory_kib": 1024})
    try:
        launcher = launch("--config", str(cfg), "--data-dir", str(tmp_path / "data"))
        launcher.wait_for(lambda lines: any("share the host name" in line for line in lines), 120, "the warning")
        (line,) = [line for line in launcher.lines if "share the host name" in line]
        assert line.startswith("warning: banks alfa, beta share the host name 127.0.0.1") and "cookies" in line
        launcher.proc.send_signal(signal.SIGINT)
        assert launcher.wait_exit(60) == 0, launcher.output
    finally:
        delete_namespace(amqp_url, namespace, ["alfa", "beta"])


def test_banks_n_names_banks_in_order_on_consecutive_ports_and_keeps_the_rest(tmp_path):
    doc = {"consortium": "demo", "broker_url": "amqp://guest:guest@127.0.0.1:5672/%2F",
           "timeouts": {"prepare_ttl_ms": 3000},
           "banks": [{"id": "alfa", "name": "Banco Alfa", "host": "127.0.0.1", "port": 8001}]}
    grown = consortium_of_size(doc, 5)
    assert [b["id"] for b in grown["banks"]] == ["alfa", "beta", "gama", "delta", "epsilon"]
    assert [b["port"] for b in grown["banks"]] == [8001, 8002, 8003, 8004, 8005]
    assert grown["timeouts"] == {"prepare_ttl_ms": 3000} and grown["consortium"] == "demo"
    write_config(tmp_path / "c.yml", **{k: v for k, v in grown.items()})
    assert load_config(tmp_path / "c.yml", env={}).bank_ids == list(BANK_IDS[:5])
    with pytest.raises(LaunchError):
        consortium_of_size(doc, 0)
    with pytest.raises(LaunchError):
        consortium_of_size(doc, len(BANK_IDS) + 1)


def test_broker_start_plan_says_what_to_run_when_it_cannot_start_one():
    # Installed: start it.
    cmds, _ = plan_broker_start("127.0.0.1", 5672, server="/usr/sbin/rabbitmq-server", is_root=True, has_apt=True)
    assert cmds == [["/usr/sbin/rabbitmq-server", "-detached"]]
    # Missing, root with apt: install Debian's package, then start it.
    cmds, _ = plan_broker_start("localhost", 5672, server=None, is_root=True, has_apt=True)
    assert cmds[-2:] == [["apt-get", "install", "-y", "-q", "rabbitmq-server"], ["rabbitmq-server", "-detached"]]
    # Missing and not root: exactly what to run.
    with pytest.raises(LaunchError, match=r"run: sudo apt-get install -y rabbitmq-server && sudo rabbitmq-server -detached"):
        plan_broker_start("127.0.0.1", 5672, server=None, is_root=False, has_apt=True)
    # A remote broker is never started from here.
    with pytest.raises(LaunchError, match="AMQP_URL"):
        plan_broker_start("rabbit.example", 5672, server="/usr/sbin/rabbitmq-server", is_root=True, has_apt=True)


@pytest.mark.skipif(shutil.which("curl") is None, reason="the README's examples use curl")
def test_the_readme_curl_examples_work_against_a_launched_consortium(consortium_file, launch, tmp_path):
    """The README's API walk-through, run as written, only with this test's ports: every call
    must succeed and the transfer must move the money."""
    cfg, ports = consortium_file
    launcher = launch("--config", str(cfg), "--data-dir", str(tmp_path / "data"))
    urls = {b: url for b, (url, _) in launcher.wait_for(banner, 120, "URL line for every bank").items()}
    readme = (ROOT / "README.md").read_text()
    (script,) = re.findall(r"```bash\n(A=http://alfa\.localhost:8001.*?)```", readme, re.S)
    assert "B=http://beta.localhost:8002" in script
    assert urls["alfa"].startswith("http://alfa.localhost:")     # curl resolves it, as a browser does
    script = script.replace("A=http://alfa.localhost:8001", f"A={urls['alfa']}", 1)
    script = script.replace("B=http://beta.localhost:8002", f"B={urls['beta']}", 1)
    # Any HTTP error fails the script, as any failing command does.
    script = "set -euo pipefail\ncurl() { command curl --fail-with-body \"$@\"; }\n" + script
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.stdout.count('"status":"committed"') == 1, done.stdout
    assert '"balance":"110.00"' in done.stdout, done.stdout  # 150.00 deposited, 40.00 sent to Beta
    assert '"balance_after":"40.00"' in done.stdout, done.stdout


@pytest.mark.skipif(shutil.which("rabbitmqctl", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None,
                    reason="per-bank broker users are created with rabbitmqctl")
def test_launcher_gives_each_bank_its_own_broker_user_when_per_bank(tmp_path, amqp_url, namespace, launch):
    from broker.provision import deprovision
    ports = dict(zip(BANKS, free_ports(len(BANKS))))
    cfg = write_config(tmp_path / "consorcio.yml", consortium=namespace, broker_url=amqp_url,
                       banks=[{"id": b, "name": f"Banco {b.capitalize()}", "port": p} for b, p in ports.items()],
                       security={"argon2_time_cost": 1, "argon2_memory_kib": 1024},
                       broker_auth={"mode": "per_bank"})
    try:
        launcher = launch("--config", str(cfg), "--data-dir", str(tmp_path / "data"))
        launcher.wait_for(banner, 120, "URL line for every bank")

        secrets_file = tmp_path / "data" / "broker-secrets.yml"
        assert secrets_file.stat().st_mode & 0o777 == 0o600
        assert set(yaml.safe_load(secrets_file.read_text())) == {*BANKS, "auditor"}

        def missing() -> set[str]:
            users = subprocess.run(["rabbitmqctl", "-q", "list_connections", "user"], capture_output=True, text=True,
                                   timeout=60, env=dict(os.environ, PATH=os.environ["PATH"] + ":/usr/sbin:/sbin"))
            return {f"{namespace}.{b}" for b in BANKS} - set(users.stdout.split())
        # Each bank is connected as its own user (a bank that is reconnecting at the moment of a
        # listing is missing from it only until it is back).
        wait_until(lambda: not missing(), 30, "every bank connected as its own broker user", interval=0.5)

        launcher.proc.send_signal(signal.SIGINT)
        assert launcher.wait_exit(60) == 0, launcher.output
    finally:
        deprovision(namespace, [*BANKS, "auditor"])
        delete_namespace(amqp_url, namespace, list(BANKS))


def rabbit_node_pids(names: set[str]) -> list[int]:
    """Live RabbitMQ VMs of these node names (a node's name is in its environment, not its command line)."""
    found = []
    for pid in [int(d) for d in os.listdir("/proc") if d.isdigit()]:
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(e.startswith(b"RABBITMQ_NODENAME=") and e.split(b"=", 1)[1].decode() in names for e in env) \
                and running(pid) and "beam" in " ".join(cmdline(pid)):
            found.append(pid)
    return found


@pytest.mark.skipif(shutil.which("rabbitmq-server", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None,
                    reason="a local RabbitMQ cluster needs rabbitmq-server")
def test_broker_nodes_3_runs_the_banks_on_a_cluster_of_its_own_and_stops_it(tmp_path, namespace, launch):
    """`./scripts/run-consortium --broker-nodes 3`: a 3-node cluster started here, every bank given
    every node (and its own broker user), the cluster stopped with the banks on Ctrl-C."""
    ports = dict(zip(BANKS, free_ports(len(BANKS))))
    cfg = write_config(tmp_path / "consorcio.yml", consortium=namespace, broker_url="amqp://guest:guest@127.0.0.1:5672/%2F",
                       banks=[{"id": b, "name": f"Banco {b.capitalize()}", "port": p} for b, p in ports.items()],
                       security={"argon2_time_cost": 1, "argon2_memory_kib": 1024},
                       broker_auth={"mode": "per_bank"})
    launcher = launch("--config", str(cfg), "--data-dir", str(tmp_path / "data"), "--broker-nodes", "3")
    names: set[str] = set()
    try:
        printed = launcher.wait_for(banner, 240, "URL line for every bank")
        nodes = launcher.wait_for(lambda lines: next((re.findall(r"\((127\.0\.0\.1:\d+)\)", line) for line in lines
                                                      if "RabbitMQ cluster of 3 nodes ready" in line), None),
                                  5, "the cluster's nodes")
        names = set(re.findall(r"(consorcio\w+-\d@localhost)", launcher.output))
        assert len(set(nodes)) == 3 and len(names) == 3 and len(rabbit_node_pids(names)) == 3
        assert "a cluster of 3 nodes" in launcher.output
        for bank, (url, _) in printed.items():
            status, health = http_json("GET", f"{url}/api/health", timeout=10)
            assert health["broker"] == "connected" and health["broker_node"] in nodes, health
        launcher.proc.send_signal(signal.SIGINT)
        assert launcher.wait_exit(120) == 0, launcher.output
        assert "stopping the RabbitMQ cluster this command started" in launcher.output
        wait_until(lambda: not rabbit_node_pids(names), 30, f"the cluster's nodes {sorted(names)} gone")
    finally:
        for pid in rabbit_node_pids(names):  # a launcher killed by the fixture cannot stop them itself
            os.kill(pid, signal.SIGKILL)
