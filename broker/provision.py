"""The operator's side of the broker: one RabbitMQ user per bank with the least rights it
needs, and the consortium's exchanges, queues and bindings (``broker.topology``).

A bank's user may publish to the consortium's exchange, consume its own queue, and answer
requests on the requester's direct reply-to channel; nothing else. It configures nothing: no
declaring or deleting exchanges and queues, no bindings (so no wiretap of another bank's routing
key, no re-declaring the exchange as fanout), no reading another bank's queue or the dead-letter
queue. Requests' replies travel by RabbitMQ's direct reply-to, which needs no queue of its own.
Messages carry the AMQP ``user_id``, which the broker checks against the connection's user: a
bank cannot claim to be another.

Users are created with ``rabbitmqctl`` (the local launcher and the tests) or loaded from a
definitions file (docker compose); the topology is declared over AMQP with the operator's own
credentials, or loaded from the same definitions file.
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

from .errors import BrokerError, ProvisioningError
from .names import Names
from .topology import Topology

#: What an operator runs when a queue still has the type an older version declared.
MIGRATE_COMMAND = "python -m tools.ops migrate-queues"
#: What an operator runs to (re)create the consortium's exchanges, queues and bindings.
PROVISION_COMMAND = "python -m tools.ops provision"


def user_of(namespace: str, principal: str) -> str:
    """The broker user of a bank (or of the auditor) in a consortium."""
    return f"{namespace}.{principal}"


def permissions(namespace: str, principal: str) -> tuple[str, str, str]:
    """(configure, write, read) regexes for one bank's user (or the auditor's).

    configure: nothing. write: the consortium's exchange, and the default exchange (``amq.default``)
    through which direct reply-to answers travel. read: its own queue only (the auditor, which
    has no queue, nothing: direct reply-to needs no read right)."""
    n = Names(namespace)
    e = re.escape
    configure = "^$"
    write = f"^({e(n.exchange)}|amq\\.default)$"
    read = f"^{e(n.bank_queue(principal))}$"
    return configure, write, read


def with_credentials(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def split_urls(urls: str | list[str] | tuple[str, ...]) -> list[str]:
    """Several broker URLs, given as a list or as one string separated by commas (AMQP_URL)."""
    items = urls.split(",") if isinstance(urls, str) else list(urls)
    return [u.strip() for u in items if u and u.strip()]


def username_in(url: str) -> str:
    return unquote(urlsplit(split_urls(url)[0]).username or "guest")


def vhost_of(url: str) -> str:
    path = urlsplit(split_urls(url)[0]).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def address_of(url: str) -> str:
    """host:port of an AMQP URL, without credentials (what a bank says it is connected to)."""
    u = urlsplit(url)
    host = u.hostname or "localhost"
    port = u.port or (5671 if u.scheme == "amqps" else 5672)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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


def definitions(namespace: str, passwords: dict[str, str], vhost: str = "/",
                topology: Topology | None = None) -> dict:
    """Users and permissions (and, given a topology, its exchanges, queues and bindings) as a
    RabbitMQ definitions document (``rabbitmqctl import_definitions``, or ``load_definitions``)."""
    users, perms = [], []
    for principal, password in sorted(passwords.items()):
        user = user_of(namespace, principal)
        users.append({"name": user, "password_hash": password_hash(password),
                      "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []})
        configure, write, read = permissions(namespace, principal)
        perms.append({"user": user, "vhost": vhost, "configure": configure, "write": write, "read": read})
    doc = {"users": users, "vhosts": [{"name": vhost}], "permissions": perms}
    if topology is not None:
        doc.update(topology.definitions(vhost))
    return doc


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


def _connect(urls: str | list[str]):
    """A blocking connection with the operator's credentials to the first node that answers."""
    import pika
    last: Exception | None = None
    for url in split_urls(urls):
        params = pika.URLParameters(url)
        params.connection_attempts = 1
        params.socket_timeout = 5
        try:
            return pika.BlockingConnection(params)
        except Exception as e:  # noqa: BLE001 - try the next node
            last = e
    raise ProvisioningError(f"no broker answers at {', '.join(address_of(u) for u in split_urls(urls))}"
                            f" ({type(last).__name__}: {last})")


def _is_classic(conn, queue: str, topology: Topology) -> bool:
    """Whether ``queue`` is a classic queue as older versions declared them (durable, with the
    consortium's dead-letter exchange and nothing else). AMQP cannot ask a queue its type:
    declared again with just those arguments as a quorum queue, such a queue differs from the
    declaration only in its type, and that is the argument RabbitMQ names in its refusal."""
    import pika.exceptions as px
    ch = conn.channel()
    try:
        ch.queue_declare(queue, durable=True, arguments={"x-dead-letter-exchange": topology.names.dead_letter_exchange,
                                                         "x-queue-type": "quorum"})
        return False
    except px.ChannelClosedByBroker as err:
        return "'x-queue-type'" in err.reply_text
    finally:
        if ch.is_open:
            ch.close()


def _mismatch_error(queue: str, detail: str, classic: bool) -> ProvisioningError:
    kind = "a classic queue of an older version of the consortium" if classic else \
        "declared with other bounds (by an older version, or before a change of consorcio.yml)"
    return ProvisioningError(
        f"queue {queue!r} exists with other arguments than the consortium needs: it is {kind} ({detail}). "
        f"Stop the bank that consumes it, then run: {MIGRATE_COMMAND}")


def _declare_exchanges(ch_of, topology: Topology, say) -> None:
    """Declare the exchanges; one that exists with another type (someone re-declared the
    consortium's exchange as fanout to capture its traffic) is deleted and declared again, which
    also drops every binding that was made to it: the bindings are declared again afterwards."""
    import pika.exceptions as px
    for e in topology.exchanges:
        ch = ch_of()
        try:
            ch.exchange_declare(e.name, exchange_type=e.type, durable=True)
        except px.ChannelClosedByBroker as err:
            if err.reply_code != 406:
                raise ProvisioningError(f"cannot declare exchange {e.name!r}: {err.reply_text}") from err
            say(f"exchange {e.name} was not what the consortium needs ({err.reply_text}); declaring it again")
            ch = ch_of()
            ch.exchange_delete(e.name)
            ch.exchange_declare(e.name, exchange_type=e.type, durable=True)


def mismatched_queues(urls: str | list[str], topology: Topology) -> dict[str, str]:
    """The consortium's queues that exist with other arguments than it needs (a classic queue
    declared by an older version, or other bounds), each with the broker's reason. AMQP cannot
    ask a queue its type or arguments: this declares each queue as it should be, and RabbitMQ
    refuses (406) exactly those that differ; a queue that did not exist is created as it should be."""
    import pika.exceptions as px
    out: dict[str, str] = {}
    conn = _connect(urls)
    try:
        for q in topology.queues:
            ch = conn.channel()
            try:
                ch.queue_declare(q.name, durable=True, arguments=q.arguments)
            except px.ChannelClosedByBroker as err:
                if err.reply_code != 406:
                    raise ProvisioningError(f"cannot declare queue {q.name!r}: {err.reply_text}") from err
                out[q.name] = err.reply_text
            finally:
                if ch.is_open:
                    ch.close()
    finally:
        if conn.is_open:
            conn.close()
    return out


def provision_topology(urls: str | list[str], topology: Topology, say=lambda _: None) -> None:
    """Declare the consortium's exchanges, queues and bindings with the operator's credentials
    (idempotent; also what restores them after someone deleted or changed one). A queue that
    exists with other arguments (a classic queue of an older version) is reported by name with
    the command that migrates it: queues hold messages, so they are never deleted here."""
    import pika.exceptions as px
    conn = _connect(urls)
    try:
        channel = [conn.channel()]

        def ch_of():
            if not channel[0].is_open:
                channel[0] = conn.channel()
            return channel[0]
        _declare_exchanges(ch_of, topology, say)
        for q in topology.queues:
            try:
                ch_of().queue_declare(q.name, durable=True, arguments=q.arguments)
            except px.ChannelClosedByBroker as err:
                if err.reply_code == 406:
                    raise _mismatch_error(q.name, err.reply_text, _is_classic(conn, q.name, topology)) from err
                raise ProvisioningError(f"cannot declare queue {q.name!r}: {err.reply_text}") from err
        for b in topology.bindings:
            ch_of().queue_bind(b.destination, b.source, routing_key=b.routing_key)
    finally:
        if conn.is_open:
            conn.close()


def migrate_queues(urls: str | list[str], topology: Topology, *, dry_run: bool = False,
                   say=print) -> list[str]:
    """Re-create every queue of the consortium that exists with other arguments than it needs
    (a classic queue declared by an older version becomes the quorum queue it should be), then
    provision the rest.

    A queue is migrated only while nobody consumes it (its bank is stopped): it is deleted and
    declared again with its bounds and bindings. The messages it held are dropped, and the
    protocol makes that safe: decisions, acknowledgements and questions are re-sent by their
    senders until answered, a dropped PREPARE is an abort at its deadline, a dropped lookup a
    bank that did not answer. Returns the queues migrated (or, with ``dry_run``, to migrate)."""
    wanted = {q.name: q for q in topology.queues}
    todo = mismatched_queues(urls, topology)
    if not todo:
        say("every queue of the consortium is already as it should be")
    conn = _connect(urls)
    try:
        for name, why in todo.items():
            ch = conn.channel()
            ok = ch.queue_declare(name, passive=True)
            if ok.method.consumer_count:
                raise ProvisioningError(f"queue {name!r} has {ok.method.consumer_count} consumer(s): stop its bank "
                                        f"first, then run {MIGRATE_COMMAND} again")
            say(f"{'would re-create' if dry_run else 're-creating'} {name} as a quorum queue ({why}); "
                f"{ok.method.message_count} message(s) in it are dropped: their senders re-send what matters")
            if not dry_run:
                ch.queue_delete(name)
                ch.queue_declare(name, durable=True, arguments=wanted[name].arguments)
            ch.close()
    finally:
        if conn.is_open:
            conn.close()
    if not dry_run:
        provision_topology(urls, topology, say)
    return list(todo)


def delete_namespace(url: str, namespace: str, bank_ids: list[str]) -> None:
    """Remove a consortium's queues and exchanges (tests and tools clean up after themselves)."""
    import pika
    try:
        conn = _connect(url)
    except BrokerError:  # nothing to clean on a broker we cannot reach
        return
    n = Names(namespace)
    try:
        ch = conn.channel()
        for q in [n.bank_queue(b) for b in bank_ids] + [n.dead_letter_queue]:
            ch.queue_delete(q)
        for ex in (n.exchange, n.dead_letter_exchange):
            ch.exchange_delete(ex)
    except pika.exceptions.AMQPError:
        pass
    finally:
        if conn.is_open:
            conn.close()
