"""Throw-away consortia for the tools and tests: bank ids, free ports, configuration files.

One list of bank ids serves the launcher (``--banks N``), the benchmark, the chaos workload and
the tests, so that "the fifth bank" is called the same everywhere."""
from __future__ import annotations

import os
import random
import socket
from pathlib import Path

import yaml

#: Bank ids in order (the first three are those of consorcio.yml); ``--banks N`` takes the first N.
BANK_IDS = ("alfa", "beta", "gama", "delta", "epsilon", "zeta", "eta", "teta", "iota", "capa", "lambda",
            "mi", "ni", "csi", "omicron", "pi", "ro", "sigma", "tau", "ipsilon", "fi", "qui", "psi", "omega")
COLORS = ("#1f6feb", "#2da44e", "#bf3989", "#d4a72c", "#8250df", "#cf222e", "#1b7c83", "#bc4c00")
LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672/%2F"
LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
"""The PostgreSQL server tests and the benchmark use unless PG_URL names another."""
LOCAL_REDIS = "redis://127.0.0.1:6379/0"
"""Where several processes of a bank share their throttle counts in tests and the benchmark."""
#: Fast password hashing for throw-away consortia (a production file refuses it).
TEST_SECURITY = {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "allow_weak_hashing_for_tests": True}


def free_ports(n: int) -> list[int]:
    """``n`` ports free now, for banks to listen on a moment later. Drawn at random below the
    kernel's ephemeral range: a port the kernel hands out itself (bind to port 0) may meanwhile
    become the local port of any outgoing connection on the machine (to the broker, a database,
    another bank), and a bank starting on it would find it taken. Processes that pick ports side
    by side (the test suite's parallel workers) each draw from a share of their own, named by
    ``CONSORCIO_PORT_SHARE`` ("2/4": the third of four): two of them could otherwise draw the
    same port between one's check and its bank's bind, and the other's bank would answer for it."""
    rng, (low, high) = random.SystemRandom(), _listen_range()
    socks: list[socket.socket] = []
    try:
        while len(socks) < n:
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", rng.randrange(low, high)))   # taken already (by us too): draw again
            except OSError:
                s.close()
                continue
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


LISTEN_PORTS = (20000, 32768)
"""Where ``free_ports`` draws from: below Linux's default ephemeral range (32768-60999), or below
the machine's own if it starts lower (anywhere unprivileged, if it leaves no room)."""

PORT_SHARE_ENV = "CONSORCIO_PORT_SHARE"


def _listen_range() -> tuple[int, int]:
    """The ports this process may draw from: the range below the ephemeral one, cut to this
    process's share of it (``CONSORCIO_PORT_SHARE``)."""
    low, high = _unshared_range()
    share = os.environ.get(PORT_SHARE_ENV, "").strip()
    if not share:
        return low, high
    try:
        index, count = (int(x) for x in share.split("/"))
        if not 0 <= index < count:
            raise ValueError
    except ValueError:
        raise ValueError(f"{PORT_SHARE_ENV}={share!r}: expected INDEX/COUNT with 0 <= INDEX < COUNT") from None
    size = (high - low) // count
    return low + index * size, low + (index + 1) * size


def _unshared_range() -> tuple[int, int]:
    try:
        start = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return LISTEN_PORTS
    if start >= LISTEN_PORTS[1]:
        return LISTEN_PORTS
    return (1024, start) if start > 2048 else (1024, 65536)


def write_config(path: Path, *, consortium: str, broker_url: str, banks: list[dict], **extra) -> Path:
    doc = {"consortium": consortium, "broker_url": broker_url, "banks": banks, **extra}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def bank_entries(ports: list[int], host: str = "127.0.0.1") -> list[dict]:
    """Banks alfa, beta, ... on the given ports, as entries of a configuration's ``banks``."""
    if len(ports) > len(BANK_IDS):
        raise ValueError(f"at most {len(BANK_IDS)} banks")
    return [{"id": b, "name": f"Banco {b.capitalize()}", "host": host, "port": p, "color": COLORS[i % len(COLORS)]}
            for i, (b, p) in enumerate(zip(BANK_IDS, ports))]
