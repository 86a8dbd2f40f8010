"""Property tests (hostile input): parsing never crashes and never accepts what it
should refuse; the inter-bank wire format refuses garbage with BadMessage only; the message
handler survives any body and settles every delivery exactly once.

The CPF, CNPJ and amount properties compare the domain's parsers with small reference
implementations written here from the published rules, so "accepted" means "valid by the
rules", not "accepted by the same code".
"""
from __future__ import annotations

import json
import re
import time
import uuid
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bank_node import protocol as P
from bank_node.domain.documents import (format_cnpj, format_cpf, make_cnpj, make_cpf, normalize_cnpj,
                                        normalize_cpf)
from bank_node.domain.errors import InvalidAmount, InvalidDocument, InvalidInput
from bank_node.domain.money import format_cents, parse_amount
from bank_node.identity import AUDITOR, expected_user
from bank_node.node import BankNode

from .conftest import PASSWORD, make_config
from .loopback import FakeDelivery, done, handle

FAST = settings(max_examples=300, deadline=None)
LIMIT = 100_000_00

# ----------------------------------------------------------------------------- references

def ref_document_digits(value: object, size: int) -> str | None:
    """The published rule: digits with optional '.', '-', '/' and spaces; not all equal;
    both check digits right (mod 11, weights counting down, for CPF; the CNPJ weights)."""
    if not isinstance(value, str):
        return None
    d = "".join(ch for ch in value if ch not in ".-/ \t\n\r\x0b\x0c")
    if len(d) != size or not all("0" <= ch <= "9" for ch in d) or len(set(d)) == 1:
        return None
    if size == 11:
        weights = [list(range(10, 1, -1)), list(range(11, 1, -1))]
    else:
        weights = [[5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2], [6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]]
    for i, w in enumerate(weights):
        n = size - 2 + i
        r = sum(int(c) * k for c, k in zip(d[:n], w)) % 11
        if int(d[n]) != (0 if r < 2 else 11 - r):
            return None
    return d


def ref_amount_cents(value: object) -> int | None:
    if not isinstance(value, str) or isinstance(value, bool):
        return None
    text = value.strip(" \t\r\n")
    m = re.fullmatch(r"([0-9]{1,13})(?:\.([0-9]{1,2}))?", text, flags=re.ASCII)
    if not m:
        return None
    cents = int(m.group(1)) * 100 + int((m.group(2) or "0").ljust(2, "0"))
    return cents if 0 < cents <= LIMIT else None


# ----------------------------------------------------------------------------- strategies

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4) |
                           st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
DIGITS = st.text(alphabet="0123456789", min_size=0, max_size=16)
NOISY_DIGITS = st.text(alphabet="0123456789.-/ \t١２²", min_size=0, max_size=20)


def punctuated(d: str, kind: str) -> st.SearchStrategy[str]:
    pretty = format_cpf(d) if kind == "cpf" else format_cnpj(d)
    return st.sampled_from([d, pretty, f" {pretty} ", pretty.replace(".", ""), d[:3] + " " + d[3:]])


valid_cpfs = st.text(alphabet="0123456789", min_size=9, max_size=9).map(make_cpf).filter(lambda d: len(set(d)) > 1)
valid_cnpjs = st.text(alphabet="0123456789", min_size=12, max_size=12).map(make_cnpj).filter(
    lambda d: len(set(d)) > 1)


def mutated(d: str) -> st.SearchStrategy[str]:
    """One digit changed: always invalid by the check digits (or all equal)."""
    return st.tuples(st.integers(0, len(d) - 1), st.integers(1, 9)).map(
        lambda t: d[:t[0]] + str((int(d[t[0]]) + t[1]) % 10) + d[t[0] + 1:])


cpf_inputs = (JSON_VALUES | NOISY_DIGITS | DIGITS | valid_cpfs.flatmap(lambda d: punctuated(d, "cpf"))
              | valid_cpfs.flatmap(mutated))
cnpj_inputs = (JSON_VALUES | NOISY_DIGITS | DIGITS | valid_cnpjs.flatmap(lambda d: punctuated(d, "cnpj"))
               | valid_cnpjs.flatmap(mutated))
amount_inputs = (JSON_VALUES | st.decimals(allow_nan=True, allow_infinity=True).map(str)
                 | st.from_regex(r"\s?-?[0-9]{0,15}(\.[0-9]{0,4})?([eE][0-9])?\s?", fullmatch=True)
                 | st.integers(-10, 10**16).map(lambda c: format_cents(c)))


# ----------------------------------------------------------------------------- documents

@FAST
@given(cpf_inputs)
@example("529.982.247-25")
@example("52998224725\n")
@example("１２３４５６７８９０９")
@example("111.111.111-11")
def test_cpf_parsing_raises_only_invalid_document_and_accepts_exactly_the_valid(value):
    expected = ref_document_digits(value, 11)
    try:
        got = normalize_cpf(value)
    except InvalidDocument as e:
        assert expected is None, f"valid CPF {value!r} refused: {e.detail}"
        assert isinstance(e, InvalidInput) and e.status == 422 and e.detail
        return
    assert got == expected, f"invalid CPF {value!r} accepted as {got!r}"


@FAST
@given(cnpj_inputs)
@example("11.222.333/0001-81")
def test_cnpj_parsing_raises_only_invalid_document_and_accepts_exactly_the_valid(value):
    expected = ref_document_digits(value, 14)
    try:
        got = normalize_cnpj(value)
    except InvalidDocument as e:
        assert expected is None, f"valid CNPJ {value!r} refused: {e.detail}"
        return
    assert got == expected, f"invalid CNPJ {value!r} accepted as {got!r}"


@FAST
@given(valid_cpfs, valid_cnpjs)
def test_document_formatting_round_trips(cpf, cnpj):
    assert normalize_cpf(format_cpf(cpf)) == cpf
    assert normalize_cnpj(format_cnpj(cnpj)) == cnpj
    assert re.fullmatch(r"\d{3}\.\d{3}\.\d{3}-\d{2}", format_cpf(cpf))
    assert re.fullmatch(r"\d{2}\.\d{3}\.\d{3}/\d{4}-\d{2}", format_cnpj(cnpj))


# ----------------------------------------------------------------------------- amounts

@FAST
@given(amount_inputs)
@example("1e3")
@example("NaN")
@example("0.00")
@example("100000.01")
@example("１０.００")
@example(" 10.5 ")
@example("\x1c10.00")
@example("\u200310.00")
@example(True)
def test_amount_parsing_raises_only_invalid_amount_and_accepts_exactly_the_valid(value):
    expected = ref_amount_cents(value)
    try:
        got = parse_amount(value, limit_cents=LIMIT)
    except InvalidAmount as e:
        assert expected is None, f"valid amount {value!r} refused: {e.detail}"
        assert e.code == "invalid_amount" and e.status == 422 and "amount" in e.detail
        return
    assert type(got) is int and got == expected, f"{value!r} accepted as {got!r}, expected {expected!r}"


@FAST
@given(st.integers(1, LIMIT))
def test_amount_formatting_round_trips(cents):
    text = format_cents(cents)
    assert parse_amount(text, limit_cents=LIMIT) == cents
    assert Decimal(text) * 100 == cents and re.fullmatch(r"[0-9]+\.[0-9]{2}", text)


@FAST
@given(st.integers(-10**15, 10**15))
def test_format_cents_is_exact_for_any_sign(cents):
    assert Decimal(format_cents(cents)) * 100 == cents


# ----------------------------------------------------------------------------- the wire format

BANKS = ["alfa", "beta", "gama"]
tids = st.one_of(st.uuids().map(str), st.text(alphabet="abc123_.:-", min_size=1, max_size=64))
accounts = st.sampled_from(["123456785", "000000000", "1"]) | st.text(alphabet="0123456789", min_size=1, max_size=12)
legs = st.builds(P.Leg, bank=st.sampled_from(BANKS), account=accounts, amount=st.integers(1, 10**15),
                 direction=st.sampled_from(["debit", "credit"]))
deadlines = st.integers(0, 2**53)


def messages(account_pool: st.SearchStrategy[str] = accounts, cpf_pool=valid_cpfs):
    pool_legs = st.builds(P.Leg, bank=st.sampled_from(BANKS), account=account_pool, amount=st.integers(1, 10**15),
                          direction=st.sampled_from(["debit", "credit"]))
    return st.one_of(
        st.builds(P.Prepare, transfer_id=tids, coordinator=st.sampled_from(BANKS), initiator=cpf_pool,
                  deadline_ms=deadlines, legs=st.lists(pool_legs, min_size=2, max_size=4)),
        st.builds(P.Decision, transfer_id=tids, outcome=st.sampled_from(["commit", "abort"])),
        st.builds(P.DecisionAck, transfer_id=tids, bank=st.sampled_from(BANKS),
                  outcome=st.sampled_from(["commit", "abort"])),
        st.builds(P.StatusQuery, transfer_id=tids, bank=st.sampled_from(BANKS), coordinator=st.sampled_from(BANKS)),
        st.builds(P.Lookup, cpf=cpf_pool, requester=cpf_pool, deadline_ms=deadlines),
        st.builds(P.VoteMsg, transfer_id=tids, bank=st.sampled_from(BANKS), vote=st.sampled_from(["yes", "no"])),
        st.builds(P.Audit, deadline_ms=deadlines),
    )


NS = "unit"   # the consortium of make_config(): envelopes of another one are refused


def envelopes(msgs=None):
    return st.builds(lambda sender, items: P.encode(sender, *items, ns=NS),
                     st.sampled_from(BANKS + [AUDITOR]), st.lists(msgs if msgs is not None else messages(), min_size=1, max_size=3))


def json_mutations(body: bytes) -> st.SearchStrategy[bytes]:
    """Replace one value anywhere in a valid envelope by any JSON value, or drop a key."""
    doc = json.loads(body)
    paths = []

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                paths.append(path + [k])
                walk(v, path + [k])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                paths.append(path + [i])
                walk(v, path + [i])
    walk(doc, [])

    def apply(args):
        path, value, drop = args
        out = json.loads(body)
        parent = out
        for p in path[:-1]:
            parent = parent[p]
        if drop and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = value
        return json.dumps(out).encode()
    return st.tuples(st.sampled_from(paths), JSON_VALUES | deadlines | st.integers(), st.booleans()).map(apply)


def byte_mutations(body: bytes) -> st.SearchStrategy[bytes]:
    return st.tuples(st.integers(0, len(body) - 1), st.integers(0, 255), st.integers(0, 3)).map(
        lambda t: body[:t[0]] + (bytes([t[1]]) if t[2] else b"") + body[t[0] + (1 if t[2] != 2 else 0):])


hostile_bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    envelopes(),
    envelopes().flatmap(json_mutations),
    envelopes().flatmap(byte_mutations),
)


@settings(max_examples=400, deadline=None)
@given(hostile_bodies)
@example(b"")
@example(b"\xff\xfe")
@example(b'{"v": 1, "sender": "alfa", "items": [' + b"[" * 5000 + b"]" * 5000 + b"]}")
@example(b'{"v": 1, "sender": "alfa", "items": [{"type": "prepare", "deadline_ms": 1e400}]}')
def test_decode_raises_only_bad_message(body):
    try:
        env = P.decode(body)
    except P.BadMessage as e:
        assert str(e)
        return
    assert isinstance(env, P.Envelope)
    assert P.decode(env.model_dump_json().encode()) == env     # what it accepts is a fixed point
    for item in env.items:                                      # and is within the ledger's range
        deadline = getattr(item, "deadline_ms", None)
        assert deadline is None or 0 <= deadline <= 2**53
        for digits in (getattr(item, f, None) for f in ("initiator", "cpf", "requester")):
            assert digits is None or (digits.isascii() and digits.isdigit())


@settings(max_examples=100, deadline=None)
@given(envelopes())
def test_encode_decode_round_trips(body):
    env = P.decode(body)
    assert P.encode(env.sender, *env.items, ns=env.ns) == body


# ----------------------------------------------------------------------------- the message handler

class RecordingPort:
    """Stands in for the broker connection: records what the handler sends, delivers nothing."""
    connected = True
    reconnects = 0

    def __init__(self):
        self.sent: list[tuple] = []

    def reply(self, reply_to, correlation_id, body, headers=None):
        self.sent.append(("reply", reply_to, body))
        return done()

    def publish(self, bank, body, **kw):
        self.sent.append(("publish", bank, body))
        return done()

    def request(self, *a, **kw):  # pragma: no cover - a handler never asks
        raise AssertionError("a message handler must not make requests")

    def forget(self, cid):
        pass

    def stop(self):
        pass


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    """A bank with no broker (a recording port answers its replies) and one funded account,
    so that PREPAREs generated against it reach the ledger."""
    node = BankNode(make_config(), "alfa", tmp_path_factory.mktemp("handler"), connect_broker=False)
    port = RecordingPort()
    node.broker = node.transfers.broker = port
    cpf = make_cpf("123454321")
    node.banking.register(cpf, "Ana Souza", PASSWORD)
    _, acc = node.banking.open_account(cpf, "individual", [cpf])
    with node.store.transaction() as tx:  # a month ago: far from any limit of today, enough for every example
        tx.append_entry(acc["number"], "deposit", 1_000_000_00, time.time() - 30 * 86400, day=0)
    for other in ("beta", "gama"):   # the holder's consent for the other banks to debit it
        node.mandates.grant(cpf, {"account": acc["number"], "bank": other})
    yield {"node": node, "cpf": cpf, "number": acc["number"], "port": port}
    node.stop()


def raw_prepares(number: str, cpf: str):
    """PREPAREs written as JSON by hand, every number unbounded: what pydantic must bound."""
    wide = st.integers() | st.sampled_from([2**63, -2**63 - 1, 10**30, 0, -1])
    leg = st.fixed_dictionaries({"bank": st.sampled_from(["alfa", "beta", "zeta"]),
                                 "account": st.sampled_from([number, "1"]) | st.text(max_size=40),
                                 "amount": wide, "direction": st.sampled_from(["debit", "credit", "both"])})
    item = st.fixed_dictionaries({
        "type": st.just("prepare"), "transfer_id": tids, "coordinator": st.just("beta"),
        "initiator": st.sampled_from([cpf]) | st.text(max_size=20), "deadline_ms": wide,
        "legs": st.lists(leg, min_size=0, max_size=3)})
    return st.lists(item, min_size=1, max_size=2).map(
        lambda items: json.dumps({"v": 2, "ns": NS, "sender": "beta", "items": items}).encode())


def coherent_envelopes(number: str, cpf: str, transfer_id: str):
    """Envelopes a real peer bank could send (sender, roles and deadlines consistent), mostly
    about one transfer on the funded account, so that a few of them in a row move holds and
    money: PREPARE, then COMMIT or ABORT, questions, redeliveries..."""
    tid = st.sampled_from([transfer_id] * 5) | tids
    future = st.integers(10_000, 10**8).map(lambda ms: int(time.time() * 1000) + ms)

    def items(sender):
        amount = st.integers(1, 20_000)
        ours = st.builds(P.Leg, bank=st.just("alfa"), account=st.sampled_from([number] * 4) | accounts,
                         amount=amount, direction=st.sampled_from(["debit", "debit", "credit"]))
        # the other side of the leg at the sender's bank, so that most transfers add up
        whole = ours.flatmap(lambda leg: st.sampled_from([[leg, P.Leg(
            bank=sender, account="999", amount=leg.amount, direction="credit" if leg.direction == "debit" else "debit")]]))
        return st.one_of(
            st.builds(P.Prepare, transfer_id=tid, coordinator=st.just(sender),
                      initiator=st.sampled_from([cpf] * 4) | valid_cpfs, deadline_ms=future | future | deadlines,
                      legs=whole | st.lists(ours, min_size=2, max_size=3)),
            st.builds(P.Decision, transfer_id=tid, outcome=st.sampled_from(["commit", "abort"])),
            st.builds(P.StatusQuery, transfer_id=tid, bank=st.just(sender), coordinator=st.sampled_from(BANKS)),
            st.builds(P.DecisionAck, transfer_id=tid, bank=st.just(sender), outcome=st.sampled_from(["commit", "abort"])),
            st.builds(P.Lookup, cpf=st.sampled_from([cpf]) | valid_cpfs, requester=st.sampled_from([cpf]),
                      deadline_ms=future),
        )
    return st.sampled_from(["beta", "beta", "beta", "gama"]).flatmap(
        lambda sender: st.lists(items(sender), min_size=1, max_size=2).map(lambda xs: P.encode(sender, *xs, ns=NS)))


def handler_bodies(number: str, cpf: str, transfer_id: str):
    own = messages(st.sampled_from([number, "123456785"]) | accounts, st.sampled_from([cpf]) | valid_cpfs)
    coherent = coherent_envelopes(number, cpf, transfer_id)
    return st.one_of(hostile_bodies, envelopes(own), coherent, coherent, coherent, coherent.flatmap(json_mutations),
                     raw_prepares(number, cpf))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_handler_never_raises_and_settles_every_delivery_exactly_once(bank, data):
    """A few deliveries in a row (so that PREPAREs meet their COMMITs and ABORTs): each one is
    acked or rejected exactly once, nothing raises, and the ledger stays consistent."""
    node = bank["node"]
    bodies = handler_bodies(bank["number"], bank["cpf"], str(uuid.uuid4()))
    for _ in range(data.draw(st.integers(1, 6), label="deliveries")):
        body = data.draw(bodies, label="body")
        sender = data.draw(st.sampled_from(BANKS + [AUDITOR, "zeta"]), label="user of")
        right = expected_user(node.config, sender)
        user_id = data.draw(st.sampled_from([right, right, right, None, "alfa", "intruder"]), label="user_id")
        reply_to = data.draw(st.none() | st.just(f"amq.gen-{uuid.uuid4().hex[:8]}"), label="reply_to")
        d = FakeDelivery(body, correlation_id=uuid.uuid4().hex, reply_to=reply_to, user_id=user_id,
                         redelivered=data.draw(st.booleans(), label="redelivered"))
        handle(node, d)            # must not raise, whatever the body, and settle it once
        assert d.settled[0] in ("ack", "reject", "reject-requeue"), d.settled
        with node.store.transaction(write=False) as tx:   # the ledger's invariants still hold
            acc = tx.get_account(bank["number"])
            assert acc["balance"] == tx.journal_sum(bank["number"]) >= 0
            assert acc["balance"] - tx.holds_total(bank["number"]) >= 0


def ledger_of(node, number):
    with node.store.transaction(write=False) as tx:
        acc = tx.get_account(number)
        return acc["balance"], acc["balance"] - tx.holds_total(number), tx.journal_sum(number)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(amount=st.integers(1, 30_000), direction=st.sampled_from(["debit", "credit"]),
       script=st.lists(st.sampled_from(["prepare", "commit", "abort", "query", "garbage"]), min_size=1, max_size=7),
       coordinator=st.sampled_from(["beta", "gama"]))
def test_any_order_of_prepare_commit_abort_moves_money_once_or_not_at_all(bank, amount, direction, script,
                                                                          coordinator):
    """Redelivered, reordered, duplicated protocol messages about one leg: every delivery is
    settled once, the leg is applied at most once, and only after a PREPARE and a COMMIT."""
    node, number = bank["node"], bank["number"]
    tid = str(uuid.uuid4())   # a transfer never seen: the bank is shared by every example
    user = expected_user(node.config, coordinator)
    balance0, available0, _ = ledger_of(node, number)
    other = "credit" if direction == "debit" else "debit"
    prepare = P.encode(coordinator, P.Prepare(
        transfer_id=tid, coordinator=coordinator, initiator=bank["cpf"], deadline_ms=int(time.time() * 1000) + 3_000,
        legs=[P.Leg(bank="alfa", account=number, amount=amount, direction=direction),
              P.Leg(bank=coordinator, account="999", amount=amount, direction=other)]), ns=NS)
    bodies = {"prepare": prepare,
              "commit": P.encode(coordinator, P.Decision(transfer_id=tid, outcome="commit"), ns=NS),
              "abort": P.encode(coordinator, P.Decision(transfer_id=tid, outcome="abort"), ns=NS),
              "query": P.encode(coordinator, P.StatusQuery(transfer_id=tid, bank=coordinator, coordinator=coordinator),
                                ns=NS),
              "garbage": prepare[:-7]}
    state = None   # what the participant must have done, by the protocol's rules
    for step in script:
        d = FakeDelivery(bodies[step], correlation_id=uuid.uuid4().hex, reply_to="amq.gen-x", user_id=user)
        handle(node, d)
        if step == "prepare" and state is None:
            state = "prepared"
        elif step == "commit" and state == "prepared":
            state = "committed"
        elif step == "abort" and state in (None, "prepared"):
            state = "aborted"
    balance, available, journal = ledger_of(node, number)
    signed = amount if direction == "credit" else -amount
    assert balance == journal and available >= 0
    if state == "committed":
        assert balance == balance0 + signed
    else:
        assert balance == balance0
    held = amount if (state == "prepared" and direction == "debit") else 0
    assert available == balance - held - (balance0 - available0)


def test_a_prepare_with_an_absurd_deadline_is_refused_before_it_reaches_the_ledger(bank):
    node = bank["node"]
    for deadline in (2**63, 10**30, -1):
        body = json.dumps({"v": 2, "ns": NS, "sender": "beta", "items": [{
            "type": "prepare", "transfer_id": str(uuid.uuid4()), "coordinator": "beta", "initiator": bank["cpf"],
            "deadline_ms": deadline, "legs": [{"bank": "alfa", "account": bank["number"], "amount": 1,
                                               "direction": "debit"},
                                              {"bank": "beta", "account": "9", "amount": 1, "direction": "credit"}]}]})
        d = FakeDelivery(body.encode(), user_id=expected_user(node.config, "beta"))
        handle(node, d)
        assert d.settled == ["reject"], (deadline, d.settled)


def test_a_prepare_naming_one_account_twice_is_answered_no_not_a_crash(bank):
    """Found by the handler property: the second hold of one transfer on one account broke a
    UNIQUE constraint inside the handler."""
    node = bank["node"]
    tid = str(uuid.uuid4())
    body = P.encode("beta", P.Prepare(transfer_id=tid, coordinator="beta", initiator=bank["cpf"],
                                      deadline_ms=int(time.time() * 1000) + 3_000,
                                      legs=[P.Leg(bank="alfa", account=bank["number"], amount=1, direction="debit")] * 2
                                      + [P.Leg(bank="beta", account="9", amount=2, direction="credit")]), ns=NS)
    d = FakeDelivery(body, correlation_id="c1", reply_to="amq.gen-dup", user_id=expected_user(node.config, "beta"))
    handle(node, d)
    assert d.settled == ["ack"]
    vote = P.decode(bank["port"].sent[-1][2]).items[0]
    assert (vote.transfer_id, vote.vote, [(r.account, r.code) for r in vote.reasons]) == (
        tid, "no", [(bank["number"], "duplicate_leg")])


@given(st.one_of(st.floats(min_value=0, max_value=4e9, allow_nan=False),
                 st.integers(0, 4_000_000_000).flatmap(
                     lambda s: st.sampled_from([s + 0.9999995, s + 0.0000005, s + 0.9995, s + 0.999999, float(s)]))))
@example(1764470000.9999996)
def test_an_instant_is_written_as_datetime_writes_it(ts):
    """``iso`` formats each second's text once; what it writes is datetime's own ISO form, to the
    millisecond, including where rounding to the microsecond carries into the next second."""
    from datetime import datetime, timezone

    from bank_node.domain.calendar import iso
    expected = datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert iso(ts) == expected
    assert iso(ts + 1) == datetime.fromtimestamp(ts + 1, tz=timezone.utc).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")   # the cached second moves on
