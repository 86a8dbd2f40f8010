"""Layered configuration: code defaults, then ``consorcio.yml``, then the environment.

The file is validated with pydantic at start-up so that a typo stops the bank with a message
naming the file and the bad key, instead of surfacing later as a strange runtime error.
Only ``AMQP_URL`` is read from the environment (CONTRACT section 6); tests override by
writing their own file (each test gets its own consortium name, ports and data folder).
"""
from __future__ import annotations

import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


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
    """After deciding, how long the coordinator waits for the participants' acknowledgements
    before answering, so the next balance read shows the transfer (it never changes the outcome)."""


class Limits(_Strict):
    max_amount: Decimal = Decimal("100000.00")
    """Largest amount of one deposit, withdrawal or transfer leg."""
    max_transfer_legs: int = Field(8, ge=1, le=64)
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)

    @field_validator("max_amount")
    @classmethod
    def _positive(cls, v: Decimal) -> Decimal:
        if not v.is_finite() or v <= 0 or v.as_tuple().exponent < -2:
            raise ValueError("must be a positive amount with at most two decimals")
        return v


class Security(_Strict):
    session_ttl_s: int = Field(3600, ge=60, le=30 * 24 * 3600)
    argon2_time_cost: int = Field(2, ge=1)
    argon2_memory_kib: int = Field(19456, ge=8)
    argon2_parallelism: int = Field(1, ge=1)


class Bank(_Strict):
    id: str
    name: str
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    color: str = "#1f6feb"

    @field_validator("id")
    @classmethod
    def _id_shape(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", v):
            raise ValueError("bank id must be lower-case letters, digits, '-' or '_', starting with a letter")
        return v

    @field_validator("color")
    @classmethod
    def _color_shape(cls, v: str) -> str:
        if not re.fullmatch(r"#[0-9a-fA-F]{6}", v):
            raise ValueError("colour must look like #1f6feb")
        return v

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


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


class ConsortiumConfig(_Strict):
    consortium: str = "consorcio"
    """Namespace of every exchange and queue, so several consortia can share one broker."""
    broker_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    http_threads: int = Field(24, ge=1, le=256)
    timeouts: Timeouts = Timeouts()
    limits: Limits = Limits()
    security: Security = Security()
    broker_auth: BrokerAuth = BrokerAuth()
    cooperative_termination: bool = True
    """A prepared participant whose coordinator is silent may adopt a decision from another
    participant. Safe among banks that trust each other; with banks that do not, a lying peer
    could split a transfer, so set it to false and only the coordinator's decision counts."""
    banks: list[Bank]

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
        ports = [(b.host, b.port) for b in banks]
        dup_ports = sorted({f"{h}:{p}" for h, p in ports if ports.count((h, p)) > 1})
        if dup_ports:
            raise ValueError(f"two banks share the address {', '.join(dup_ports)}")
        return banks

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


def load_config(path: str | os.PathLike, env: dict[str, str] | None = None) -> ConsortiumConfig:
    """Read and validate ``path``; ``AMQP_URL`` in ``env`` (default: os.environ) wins."""
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
    auth = raw.get("broker_auth")
    if isinstance(auth, dict) and isinstance(auth.get("secrets_file"), str):
        # A relative secrets file lives next to the configuration file.
        auth["secrets_file"] = str((p.parent / auth["secrets_file"]).resolve())
    try:
        return ConsortiumConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{p}: invalid configuration:\n{_describe(e)}") from e
