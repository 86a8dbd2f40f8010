"""Broker users and permissions for a consortium: one RabbitMQ user per bank.

A bank's user may declare and consume only its own queue (and its private reply queues),
publish only to the consortium's exchange and to reply queues, so no bank can read another
bank's messages. Messages carry the AMQP ``user_id``, which the broker checks against the
connection's user: a bank cannot claim to be another. Provisioning uses ``rabbitmqctl``
(the local launcher and the tests); docker compose loads the same users from a definitions
file instead.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import yaml

from .errors import BrokerError
from .names import Names


def user_of(namespace: str, principal: str) -> str:
    """The broker user of a bank (or of the auditor) in a consortium."""
    return f"{namespace}.{principal}"


def permissions(namespace: str, principal: str) -> tuple[str, str, str]:
    """(configure, write, read) regexes for one bank's user."""
    n = Names(namespace)
    e = re.escape
    own = e(n.bank_queue(principal))
    shared = "|".join(e(x) for x in (n.exchange, n.dead_letter_exchange, n.dead_letter_queue))
    configure = f"^({shared}|{own}|amq\\.gen-.*)$"
    write = f"^({e(n.exchange)}|{e(n.dead_letter_exchange)}|{e(n.dead_letter_queue)}|{own}|amq\\.default|amq\\.gen-.*)$"
    read = f"^({e(n.exchange)}|{e(n.dead_letter_exchange)}|{own}|amq\\.gen-.*)$"
    return configure, write, read


def with_credentials(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def username_in(url: str) -> str:
    return unquote(urlsplit(url).username or "guest")


def vhost_of(url: str) -> str:
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def load_passwords(path: Path) -> dict[str, str]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as e:
        raise BrokerError(f"{path}: cannot read the broker secrets: {e.strerror}") from e
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise BrokerError(f"{path}: expected a mapping of bank id to password")
    return {str(k): v for k, v in data.items()}


def ensure_passwords(path: Path, principals: list[str]) -> dict[str, str]:
    """Development defaults: make a random password for every principal that has none, and
    keep them in ``path`` (mode 600; never committed)."""
    existing = load_passwords(path) if path.exists() else {}
    changed = False
    for p in principals:
        if p not in existing:
            existing[p] = secrets.token_urlsafe(24)
            changed = True
    if changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(existing, sort_keys=True))
        path.chmod(0o600)
    return existing


def rabbitmqctl(args: list[str], node: str | None = None, timeout: float = 60) -> str:
    """Run one rabbitmqctl command (on ``node``, default the local default node)."""
    cmd = ["rabbitmqctl", "-q"] + (["-n", node] if node else []) + args
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as e:
        raise BrokerError("rabbitmqctl is not installed on this machine") from e
    if out.returncode != 0:
        raise BrokerError(f"rabbitmqctl {args[0]}: {(out.stderr or out.stdout).strip()}")
    return out.stdout


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password))."""
    salt = salt if salt is not None else secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def definitions(namespace: str, passwords: dict[str, str], vhost: str = "/") -> dict:
    """Users and permissions as a RabbitMQ definitions document (``rabbitmqctl
    import_definitions``, or ``load_definitions`` in a container's rabbitmq.conf)."""
    users, perms = [], []
    for principal, password in sorted(passwords.items()):
        user = user_of(namespace, principal)
        users.append({"name": user, "password_hash": password_hash(password),
                      "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []})
        configure, write, read = permissions(namespace, principal)
        perms.append({"user": user, "vhost": vhost, "configure": configure, "write": write, "read": read})
    return {"users": users, "vhosts": [{"name": vhost}], "permissions": perms}


def provision(namespace: str, passwords: dict[str, str], vhost: str = "/", node: str | None = None) -> None:
    """Create (or update) one user per principal with its permissions, idempotently, in one
    ``import_definitions`` (a rabbitmqctl call costs seconds)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(definitions(namespace, passwords, vhost), f)
    try:
        os.chmod(f.name, 0o644)  # the broker's own user reads it
        rabbitmqctl(["import_definitions", f.name], node)
    finally:
        os.unlink(f.name)


def deprovision(namespace: str, principals: list[str], node: str | None = None) -> None:
    for p in principals:
        try:
            rabbitmqctl(["delete_user", user_of(namespace, p)], node)
        except BrokerError:
            pass


def delete_namespace(url: str, namespace: str, bank_ids: list[str]) -> None:
    """Remove a consortium's queues and exchanges (tests and tools clean up after themselves)."""
    import pika
    try:
        conn = pika.BlockingConnection(pika.URLParameters(url))
    except Exception:  # noqa: BLE001 - nothing to clean on a broker we cannot reach
        return
    n = Names(namespace)
    try:
        ch = conn.channel()
        for q in [n.bank_queue(b) for b in bank_ids] + [n.dead_letter_queue]:
            ch.queue_delete(q)
        for ex in (n.exchange, n.dead_letter_exchange):
            ch.exchange_delete(ex)
    finally:
        if conn.is_open:
            conn.close()
