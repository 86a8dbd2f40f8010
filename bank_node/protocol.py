"""The inter-bank wire format: pydantic models with a ``type`` discriminator and a version.

One AMQP message carries an ``Envelope`` holding one or more items, so that many transfers
share one message, one signature and one fsync at the receiver (docs/protocol.md, "Messages").
The envelope names its consortium and its sender; the sender's Ed25519 signature over the exact
body travels in the AMQP header ``sig``. Anything that does not parse as version 2 is refused by
``decode`` and dead-lettered by the consumer, never retried.
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

VERSION = 2
#: Items in one envelope at most: a bound on what one message can make a bank do.
MAX_ITEMS = 256

Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
Digits = Annotated[str, Field(pattern=r"^[0-9]{11}$|^[0-9]{14}$")]  # ASCII: \d would take "١"
BankId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
Account = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[0-9A-Za-z*-]+$")]
Cents = Annotated[int, Field(gt=0, le=10**15)]
# Absolute deadlines in epoch milliseconds. Bounded, because they are stored in the ledger
# (SQLite integers are 64-bit: a larger one crashed the handler) and compared with the clock.
EpochMs = Annotated[int, Field(ge=0, le=2**53)]


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Leg(_Msg):
    bank: BankId
    account: Account
    amount: Cents
    direction: Literal["debit", "credit"]


class Reason(_Msg):
    account: Account
    code: Annotated[str, Field(max_length=64)]


class Prepare(_Msg):
    """Coordinator -> participant, RPC: check, hold, record, then vote (rule 3). It carries the
    whole transfer, every leg with its bank, so that each participant checks that it adds up."""
    type: Literal["prepare"] = "prepare"
    transfer_id: Id
    coordinator: BankId
    initiator: Digits
    deadline_ms: EpochMs
    legs: list[Leg] = Field(min_length=2, max_length=65)


class VoteMsg(_Msg):
    """Participant -> coordinator's reply queue: the answer to a PREPARE."""
    type: Literal["vote"] = "vote"
    transfer_id: Id
    bank: BankId
    vote: Literal["yes", "no"]
    reasons: list[Reason] = Field(default_factory=list, max_length=64)


class Decision(_Msg):
    """Coordinator -> participant's durable queue (a peer may only relay it: see ``Relay``)."""
    type: Literal["decision"] = "decision"
    transfer_id: Id
    outcome: Literal["commit", "abort"]


class VoteProof(_Msg):
    """Rides with COMMITs: a participant's own signed vote envelope, relayed by the coordinator, so
    that every other participant can check that bank really voted YES before it applies a COMMIT
    (a credit on another bank's word needs that bank's signed YES, not the coordinator's say-so)."""
    type: Literal["vote_proof"] = "vote_proof"
    bank: BankId
    envelope: Annotated[str, Field(max_length=400_000)]   # base64 of the participant's vote envelope
    signature: Annotated[str, Field(max_length=200)]


class DecisionAck(_Msg):
    """Participant -> coordinator's durable queue: the decision is applied and durable."""
    type: Literal["decision_ack"] = "decision_ack"
    transfer_id: Id
    bank: BankId
    outcome: Literal["commit", "abort"]


class StatusQuery(_Msg):
    """A prepared participant in doubt asks the coordinator (rule 4), or a peer, for the outcome."""
    type: Literal["status_query"] = "status_query"
    transfer_id: Id
    bank: BankId
    coordinator: BankId


class Relay(_Msg):
    """Cooperative termination among banks that do not trust each other: a peer answers a
    participant in doubt with the coordinator's own signed decision envelope, which the asker
    verifies against the coordinator's public key. A peer can relay a decision, never make one."""
    type: Literal["relay"] = "relay"
    transfer_id: Id
    coordinator: BankId
    envelope: Annotated[str, Field(max_length=400_000)]   # base64 of the coordinator's body
    signature: Annotated[str, Field(max_length=200)]


class Lookup(_Msg):
    """Scatter-gather request: which accounts does this CPF hold at your bank?"""
    type: Literal["lookup"] = "lookup"
    cpf: Digits
    requester: Digits
    deadline_ms: EpochMs


class AccountSummary(_Msg):
    bank: BankId
    number: Account
    kind: Literal["individual", "joint", "business"]
    holder: Annotated[str, Field(max_length=200)]
    balance: int | None = None
    available: int | None = None
    company_name: Annotated[str, Field(max_length=200)] | None = None


class LookupResult(_Msg):
    type: Literal["lookup_result"] = "lookup_result"
    bank: BankId
    accounts: list[AccountSummary] = Field(default_factory=list, max_length=1000)
    refused: Literal["rate_limited"] | None = None
    """Set (with no accounts) when the customer asked for has had their share of answers in
    full for now: the asking bank says so at once instead of waiting out the deadline."""


# --- Account verification (the customer's app): is there such an account, and whose is it? ------
# Asked before a transfer to a typed bank and account number is reviewed, so the customer sees
# the masked holder name before confirming. The answer never carries a balance.
class AccountQuery(_Msg):
    """Any bank -> the bank holding the account, RPC: does this account exist, whose is it?"""
    type: Literal["account_query"] = "account_query"
    number: Account
    requester: Digits
    deadline_ms: EpochMs


class AccountInfo(_Msg):
    """The answer: ``found`` false when there is no open account of that number."""
    type: Literal["account_info"] = "account_info"
    bank: BankId
    number: Account
    found: bool
    kind: Literal["individual", "joint", "business"] | None = None
    holder: Annotated[str, Field(max_length=200)] | None = None
# --- end of account verification --------------------------------------------------------------


class Audit(_Msg):
    """Operator's request: your totals, so the consortium can check that its money adds up."""
    type: Literal["audit"] = "audit"
    deadline_ms: EpochMs


class AuditResult(_Msg):
    type: Literal["audit_result"] = "audit_result"
    bank: BankId
    accounts: int
    balance_total: int
    deposits_total: int
    withdrawals_total: int
    transfers_in_total: int
    transfers_out_total: int
    holds_total: int
    in_doubt: int
    unacknowledged: int
    positions: dict[BankId, int] = Field(default_factory=dict, max_length=256)
    claims_total: int = 0


Message = Annotated[Union[Prepare, VoteMsg, Decision, VoteProof, DecisionAck, StatusQuery, Relay, Lookup,
                          LookupResult, Audit, AuditResult, AccountQuery, AccountInfo],
                    Field(discriminator="type")]


class Envelope(_Msg):
    v: Literal[2] = VERSION
    ns: Annotated[str, Field(max_length=64)] = ""   # the consortium: a signed envelope means nothing elsewhere
    sender: BankId
    items: list[Message] = Field(min_length=1, max_length=MAX_ITEMS)


class BadMessage(ValueError):
    """A message that is not valid version-2 JSON of a known type."""


def encode(sender: str, *items: _Msg, ns: str = "") -> bytes:
    return Envelope(ns=ns, sender=sender, items=list(items)).model_dump_json().encode()


def decode(body: bytes) -> Envelope:
    try:
        return Envelope.model_validate_json(body)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadMessage(f"{where}: {first['msg']}") from e
    except (ValueError, UnicodeDecodeError) as e:
        raise BadMessage(str(e)) from e
