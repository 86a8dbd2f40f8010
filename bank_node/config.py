"""Layered configuration: code defaults, then ``consorcio.yml``, then the environment.

The file is validated with pydantic at start-up so that a typo stops the bank with a message
naming the file and the bad key, instead of surfacing later as a strange runtime error.
Only ``AMQP_URL`` is read from the environment; tests override by
writing their own file (each test gets its own consortium name, ports and data folder).
"""
from __future__ import annotations

import ipaddress
import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid; the message says where."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeouts(_Strict):
    prepare_ttl_ms: int = Field(4000, ge=100, le=600_000)
    """How long a PREPARE may wait for its vote: its AMQP expiration and its absolute deadline."""
    lookup_ttl_ms: int = Field(1500, ge=50, le=60_000)
    """Deadline of the consortium-wide account lookup (scatter-gather)."""
    decision_resend_ms: int = Field(1000, ge=50, le=600_000)
    """First interval between re-sends of an unacknowledged COMMIT/ABORT (doubles, capped)."""
    status_query_ms: int = Field(1000, ge=50, le=600_000)
    """First interval between a prepared participant's questions about the outcome."""
    retry_cap_ms: int = Field(5000, ge=100, le=600_000)
    """Upper bound of both back-offs above."""
    apply_wait_ms: int = Field(2000, ge=0, le=60_000)
    """Once its decision is durable, how long the coordinator waits for the other banks to
    acknowledge it before answering the customer, so that a balance read at any bank right after
    the answer shows the transfer. It never changes the outcome: past it, the customer is answered
    and the other banks apply the decision a moment later. 0 answers as soon as the decision is
    durable (the batch API and the benchmark's --no-wait measure that)."""
    decision_resend_limit_s: int = Field(3600, ge=10, le=30 * 24 * 3600)
    """How long an unacknowledged decision is re-sent. After that the coordinator stops (a
    participant that never answers, or a bank that reused an id, cannot make it re-send
    forever) and shows it in the operator view; a participant in doubt still asks, and is
    answered, for as long as it asks."""


def _money_limit(v: Decimal | None) -> Decimal | None:
    if v is not None and (not v.is_finite() or v <= 0 or v.as_tuple().exponent < -2):
        raise ValueError("must be a positive amount with at most two decimals")
    return v


class Limits(_Strict):
    max_amount: Decimal = Decimal("100000.00")
    """Largest amount of one deposit, withdrawal or transfer leg."""
    daily_max_amount: Decimal = Decimal("200000.00")
    """Per account and per day: the most that may be deposited, and separately the most that
    may leave it (withdrawals, transfer debits, and the holds of transfers still pending)."""
    day_utc_offset_min: int = Field(-180, ge=-14 * 60, le=14 * 60)
    """Where the limits' day starts: minutes from UTC (Brasília time, UTC-3, by default)."""
    max_transfer_legs: int = Field(8, ge=1, le=64)
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    max_batch_body_bytes: int = Field(1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    """Request size of POST /api/transfer-batches (up to 500 transfers)."""

    _positive = field_validator("max_amount", "daily_max_amount")(_money_limit)

    @model_validator(mode="after")
    def _daily_covers_one_operation(self) -> "Limits":
        if self.daily_max_amount < self.max_amount:
            raise ValueError(f"daily_max_amount ({self.daily_max_amount}) must be at least max_amount "
                             f"({self.max_amount}), or one allowed operation could never be made")
        return self


class BankLimits(_Strict):
    """A bank's own money limits, each falling back to the consortium's ``limits``."""
    max_amount: Decimal | None = None
    daily_max_amount: Decimal | None = None

    _positive = field_validator("max_amount", "daily_max_amount")(_money_limit)


class Settlement(_Strict):
    net_debit_cap: Decimal = Decimal("10000000.00")
    """Default net debit cap a bank sets on each peer: how much one peer may owe it (its
    position plus the credits of pending transfers) before further credits on that peer's word
    are voted NO (``peer_cap_exceeded``). A bank's entry in ``banks`` may set ``peer_caps``."""

    _positive = field_validator("net_debit_cap")(_money_limit)


class Signing(_Strict):
    """Ed25519 signatures on every inter-bank envelope.

    ``required``: each bank signs what it sends and refuses what is not signed by the bank it
    claims to come from; PREPAREs, votes and decisions are kept as evidence. Public keys come
    from each bank's ``public_key`` in ``banks`` (what a real consortium publishes), else from
    ``<keys_dir>/<bank>.pub``; a bank's private key from ``CONSORCIO_SIGNING_KEY`` (base64) or
    ``<keys_dir>/<bank>.key`` (the launcher and ``tools.ops broker-secrets`` make development
    keys there). ``off`` (the code default, for throw-away consortia): nothing is signed."""
    mode: Literal["off", "required"] = "off"
    keys_dir: str | None = None


class Interbank(_Strict):
    prepare_envelopes_in_flight: int = Field(2, ge=1, le=64)
    """PREPARE envelopes a coordinator keeps in flight to one peer; PREPAREs that arrive
    meanwhile ride in the next envelope (natural batching, no timers)."""
    lookups_per_minute_per_customer: int = Field(600, ge=1, le=100_000)
    """Answers in full (balances) a bank gives about one customer per asking bank and minute:
    how closely a dishonest bank can follow one customer's balances; past it the asking bank is
    told at once. Well above what an app refreshing, or a client polling, asks for (30 made a
    customer's other banks vanish from her screen after half a minute of polling)."""
    lookups_per_second_per_bank: int = Field(50, ge=1, le=100_000)
    """Account lookups a bank answers per requesting bank per second."""


# OWASP's argon2id configurations (Password Storage Cheat Sheet), all equally strong:
# (memory KiB, iterations), parallelism 1. A setting is strong enough when it is at least one
# of them in both memory and iterations.
OWASP_ARGON2ID = ((47104, 1), (19456, 2), (12288, 3), (9216, 4), (7168, 5))


class Security(_Strict):
    session_ttl_s: int = Field(3600, ge=60, le=30 * 24 * 3600)
    argon2_time_cost: int = Field(2, ge=1)
    argon2_memory_kib: int = Field(19456, ge=8)
    argon2_parallelism: int = Field(1, ge=1)
    allow_weak_hashing_for_tests: bool = False
    """Accept argon2 settings weaker than OWASP's in a configuration file. Only for test
    consortia, where hashing a password at full cost for every customer would be slow."""
    login_max_failures: int = Field(5, ge=1, le=1000)
    """Failed logins of one CPF from one client address within ``login_window_s`` before that
    address must wait (429) to try that CPF again. Never a lock on the CPF itself: the real
    customer, from another address, logs in as usual."""
    login_longer_waits: str = "10 per hour; 20 per day"
    """Further limits on the same failures (CPF and address), in the ``limits`` notation: the
    waits grow as the guessing goes on, instead of one hard lock."""
    login_max_failures_per_address: int = Field(20, ge=1, le=100_000)
    """Failed logins from one client address (any CPF) within the window before it is refused."""
    login_window_s: int = Field(300, ge=1, le=24 * 3600)
    register_max_per_address: int = Field(50, ge=1, le=100_000)
    """Registrations one client address may attempt within ``register_window_s``."""
    register_window_s: int = Field(3600, ge=1, le=24 * 3600)
    unknown_account_answers: str = "10 per 10 minutes"
    """How many "no such account" answers one customer may get (``limits`` notation) before
    every request naming an account is refused (429): account numbers cannot be enumerated."""
    rate_limit_storage: str = "memory://"
    """Where the throttles count (a ``limits`` storage URI): ``memory://`` for a bank that runs
    one process, ``redis://host:6379`` when several processes of one bank share the counts."""

    @field_validator("login_longer_waits", "unknown_account_answers")
    @classmethod
    def _limits_notation(cls, v: str) -> str:
        from limits import parse_many
        try:
            parse_many(v)
        except ValueError as e:
            raise ValueError(f"not in the limits notation (e.g. '10 per hour; 20 per day'): {e}") from e
        return v

    @field_validator("rate_limit_storage")
    @classmethod
    def _storage_uri(cls, v: str) -> str:
        if not re.fullmatch(r"(memory|redis|rediss|redis\+unix|redis\+cluster|redis\+sentinel)://.*", v):
            raise ValueError("must be memory:// or a redis:// URI")
        return v

    def hashing_weaknesses(self) -> list[str]:
        """What makes the argon2id settings weaker than OWASP's minimum (empty when none)."""
        out = []
        if not any(self.argon2_memory_kib >= m and self.argon2_time_cost >= t for m, t in OWASP_ARGON2ID):
            out.append(f"argon2_memory_kib={self.argon2_memory_kib} with argon2_time_cost={self.argon2_time_cost} "
                       "is below OWASP's minimum (19456 KiB with 2 iterations, or an equivalent pair)")
        return out


class Bank(_Strict):
    id: str
    name: str
    host: str = "127.0.0.1"
    """The bank's public host name, in the URL a browser uses. One host name per bank
    (``alfa.localhost``, ``beta.localhost``, ...: browsers resolve every ``*.localhost`` to the
    loopback) keeps the cookies of one bank from ever reaching another, which different ports
    of one host would not."""
    listen: str | None = None
    """The address the bank listens on (``--host`` / ``BANK_HOST`` override it). Default: the
    host when it is an IP address, else 127.0.0.1 (Python's resolver, unlike browsers and curl,
    may not resolve ``*.localhost``)."""
    port: int = Field(ge=1, le=65535)
    color: str = "#1f6feb"
    limits: BankLimits = BankLimits()
    """This bank's own money limits; what is left out falls back to the consortium's."""
    public_key: str | None = None
    """Base64 of the bank's Ed25519 public key (32 bytes), when the consortium signs."""
    peer_caps: dict[str, Decimal] = Field(default_factory=dict)
    """This bank's net debit cap on given peers (bank id -> amount), overriding
    ``settlement.net_debit_cap``."""
    storage: str | None = None
    """Where the bank's ledger lives: a ``postgresql://user@host:port/database`` URL (a database
    several processes of the bank can share), or a SQLite file path. Absent: the SQLite file
    ``<data dir>/<bank>.sqlite3``. The environment variable ``BANK_DATABASE_URL`` wins over it."""

    @field_validator("id")
    @classmethod
    def _id_shape(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", v):
            raise ValueError("bank id must be lower-case letters, digits, '-' or '_', starting with a letter")
        return v

    @field_validator("storage")
    @classmethod
    def _storage_shape(cls, v: str | None) -> str | None:
        from .storage import check_location
        return None if v is None else check_location(v)

    @field_validator("color")
    @classmethod
    def _color_shape(cls, v: str) -> str:
        if not re.fullmatch(r"#[0-9a-fA-F]{6}", v):
            raise ValueError("colour must look like #1f6feb")
        return v

    @property
    def url(self) -> str:
        """The public URL: what a browser, or a customer's curl, opens."""
        return f"http://{self.host}:{self.port}"

    @property
    def listen_address(self) -> str:
        if self.listen:
            return self.listen
        try:
            ipaddress.ip_address(self.host)
            return self.host
        except ValueError:
            return "127.0.0.1"

    @property
    def local_url(self) -> str:
        """How a program on the bank's own machine reaches it (the launcher's health checks, the
        operator's tools), without resolving the public host name."""
        addr = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.listen_address, self.listen_address)
        return f"http://{'[' + addr + ']' if ':' in addr else addr}:{self.port}"


class BrokerAuth(_Strict):
    """How banks prove who they are on the broker.

    ``shared``: every bank uses the user of ``broker_url`` (development only: banks cannot
    tell each other apart). ``per_bank``: each bank connects as its own RabbitMQ user
    ``<consortium>.<bank id>`` that may consume only its own queue, and every message's
    broker-checked ``user_id`` must be the bank it claims to come from. Passwords come from
    ``CONSORCIO_BROKER_PASSWORD`` or from ``secrets_file`` (bank id -> password; never
    committed; the launcher generates it)."""
    mode: Literal["shared", "per_bank"] = "shared"
    secrets_file: str | None = None


class BrokerSettings(_Strict):
    """How banks use the broker: the bounds the operator's provisioning gives every bank's queue,
    what a bank refuses before reading it, and how fast it notices a broken broker."""
    max_message_bytes: int = Field(256 * 1024, ge=4096, le=128 * 1024 * 1024)
    """Largest message a bank sends or reads: a bigger one is dead-lettered unread (and refused
    by the broker itself where we configure its nodes: ``max_message_size``)."""
    queue_max_length: int = Field(10_000, ge=10, le=10_000_000)
    """Messages waiting in one bank's queue before the broker refuses new ones (the sender's
    confirm is a nack: a refused PREPARE is an abort, a refused decision is re-sent later)."""
    queue_max_bytes: int = Field(64 * 1024 * 1024, ge=1024 * 1024, le=16 * 1024 ** 3)
    """Bytes waiting in one bank's queue before the broker refuses new ones."""
    delivery_limit: int = Field(20, ge=2, le=1000)
    """Deliveries of one message before it is dead-lettered instead of looping (every crash or
    lost connection of its consumer counts one)."""
    dead_letter_max_length: int = Field(50_000, ge=100, le=10_000_000)
    """Refused messages kept in the dead-letter queue for inspection (the oldest go first)."""
    sender_items_per_s: float = Field(3000.0, gt=0, le=1_000_000)
    """Items per second one bank may have handled by another (per_bank mode): past that, its
    messages are refused unread, before any database work."""
    sender_burst_items: int = Field(4096, ge=64, le=1_000_000)
    """Items one bank may send at once; at least the largest envelope an honest bank sends."""
    sender_workers: int = Field(2, ge=1, le=64)
    """Message workers that one sender's messages may keep busy at the same time."""
    heartbeat_s: int = Field(5, ge=1, le=600)
    """AMQP heartbeat: a silent broker node is given up after about twice this."""
    probe_interval_s: float = Field(3.0, ge=0.2, le=300)
    """How often a bank checks that the exchange and its binding still route to its queue."""


def _broker_urls(v: object) -> object:
    """``broker_url`` may be one URL, several separated by commas, or a list: one string here."""
    if isinstance(v, (list, tuple)):
        if not v or not all(isinstance(u, str) and u.strip() for u in v):
            raise ValueError("must be a URL or a non-empty list of URLs")
        v = ",".join(u.strip() for u in v)
    if isinstance(v, str):
        urls = [u.strip() for u in v.split(",") if u.strip()]
        if not urls:
            raise ValueError("must be a URL or a non-empty list of URLs")
        for u in urls:
            if not re.match(r"^amqps?://", u):
                raise ValueError(f"{u.split('@')[-1]!r} is not an amqp:// or amqps:// URL")
        return ",".join(urls)
    return v


class ConsortiumConfig(_Strict):
    consortium: str = "consorcio"
    """Namespace of every exchange and queue, so several consortia can share one broker."""
    broker_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    """One broker URL, or the URLs of a cluster's nodes (a list, or separated by commas)."""
    broker: BrokerSettings = BrokerSettings()
    http_threads: int = Field(24, ge=1, le=256)
    http_connections: int = Field(1000, ge=1, le=100_000)
    """Open HTTP connections a bank keeps at most; beyond it, new ones wait unaccepted until one
    closes (waitress's own default, 100, let the 101st keep-alive client wait for seconds)."""
    timeouts: Timeouts = Timeouts()
    limits: Limits = Limits()
    security: Security = Security()
    broker_auth: BrokerAuth = BrokerAuth()
    signing: Signing = Signing()
    settlement: Settlement = Settlement()
    interbank: Interbank = Interbank()
    cooperative_termination: bool = False
    """A prepared participant whose coordinator is silent asks the other participants too, and
    accepts the coordinator's own signed decision relayed by one of them (never a peer's word).
    Needs ``signing.mode: required``."""
    banks: list[Bank]

    _urls = field_validator("broker_url", mode="before")(_broker_urls)

    @property
    def broker_urls(self) -> list[str]:
        """Every broker node's URL (one for a single broker)."""
        return self.broker_url.split(",")

    @field_validator("consortium")
    @classmethod
    def _ns_shape(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", v):
            raise ValueError("consortium name must be letters, digits, '.', '-' or '_'")
        return v

    @field_validator("banks")
    @classmethod
    def _unique_banks(cls, banks: list[Bank]) -> list[Bank]:
        # A field validator (not a model one), so the error is reported at the key "banks".
        if not banks:
            raise ValueError("at least one bank is needed")
        ids = [b.id for b in banks]
        dup_ids = sorted({i for i in ids if ids.count(i) > 1})
        if dup_ids:
            raise ValueError(f"duplicate bank id {', '.join(dup_ids)}")
        ports = [(b.host, b.port) for b in banks] + [(b.listen_address, b.port) for b in banks
                                                      if b.listen_address != b.host]
        dup_ports = sorted({f"{h}:{p}" for h, p in ports if ports.count((h, p)) > 1})
        if dup_ports:
            raise ValueError(f"two banks share the address {', '.join(dup_ports)}")
        return banks

    @model_validator(mode="after")
    def _relays_need_signatures(self) -> "ConsortiumConfig":
        if self.cooperative_termination and self.signing.mode != "required":
            raise ValueError("cooperative_termination needs signing.mode: required (a peer may only relay "
                             "the coordinator's signed decision)")
        for b in self.banks:
            unknown = sorted(set(b.peer_caps) - {x.id for x in self.banks})
            if unknown:
                raise ValueError(f"banks: {b.id}: peer_caps names unknown banks: {', '.join(unknown)}")
        return self

    def peer_cap(self, bank_id: str, peer: str) -> Decimal:
        """How much ``peer`` may owe ``bank_id`` (its net debit cap there)."""
        return self.bank(bank_id).peer_caps.get(peer, self.settlement.net_debit_cap)

    @model_validator(mode="after")
    def _bank_limits_consistent(self) -> "ConsortiumConfig":
        for b in self.banks:
            lim = self.limits_for(b.id)
            if lim.daily_max_amount < lim.max_amount:
                raise ValueError(f"banks: {b.id}: limits.daily_max_amount ({lim.daily_max_amount}) must be at least "
                                 f"max_amount ({lim.max_amount})")
        return self

    def limits_for(self, bank_id: str) -> Limits:
        """The money limits a bank applies to its own accounts: its ``limits`` entry in
        ``banks``, falling back to the consortium's ``limits``."""
        own = self.bank(bank_id).limits
        update = {k: v for k, v in own.model_dump().items() if v is not None}
        return self.limits.model_copy(update=update) if update else self.limits

    def bank(self, bank_id: str) -> Bank:
        for b in self.banks:
            if b.id == bank_id:
                return b
        raise ConfigError(f"bank {bank_id!r} is not in the consortium (known: {', '.join(self.bank_ids)})")

    @property
    def bank_ids(self) -> list[str]:
        return [b.id for b in self.banks]


def _describe(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  {where}: {e['msg']}")
    return "\n".join(lines)


WEAK_HASHING_ENV = "CONSORCIO_ALLOW_WEAK_HASHING_FOR_TESTS"


def load_config(path: str | os.PathLike, env: dict[str, str] | None = None) -> ConsortiumConfig:
    """Read and validate ``path``; ``AMQP_URL`` in ``env`` (default: os.environ) wins.

    This is how every bank process and the launcher read their configuration, so it is also
    where production rules are enforced: argon2id settings weaker than OWASP's are refused
    unless the file says ``security.allow_weak_hashing_for_tests: true`` (or the environment
    has CONSORCIO_ALLOW_WEAK_HASHING_FOR_TESTS=1, for test suites that start banks from
    configuration files they do not write themselves)."""
    env = os.environ if env is None else env
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the configuration: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    if env.get("AMQP_URL"):
        raw["broker_url"] = env["AMQP_URL"]
    # Relative secret files and folders live next to the configuration file.
    for section, key in (("broker_auth", "secrets_file"), ("signing", "keys_dir")):
        part = raw.get(section)
        if isinstance(part, dict) and isinstance(part.get(key), str):
            part[key] = str((p.parent / part[key]).resolve())
    try:
        config = ConsortiumConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{p}: invalid configuration:\n{_describe(e)}") from e
    weak = config.security.hashing_weaknesses()
    if weak and not (config.security.allow_weak_hashing_for_tests or env.get(WEAK_HASHING_ENV) == "1"):
        raise ConfigError(f"{p}: invalid configuration:\n" + "\n".join(f"  security: {w}" for w in weak)
                          + "\n  (a test consortium may set security.allow_weak_hashing_for_tests: true)")
    return config
