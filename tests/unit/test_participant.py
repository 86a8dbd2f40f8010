"""The participant of two-phase commit as tables: (record, event) -> (vote, writes, new state).

docs/protocol.md: rule 2 (every handler idempotent), rule 3 (check, hold, record, then YES),
rule 4 (a YES voter never decides on its own), rule 6 (a late PREPARE, or one for a transfer
already aborted, is answered NO), and the trust rules: the whole transfer must add up, a debit
initiated elsewhere needs the holder's mandate here, a credit must fit under the cap this bank
sets on the debit bank. Here this bank is "beta".
"""
from __future__ import annotations

import pytest

from bank_node.domain import participant as PT
from bank_node.domain import settlement
from bank_node.domain.consent import Mandate
from bank_node.domain.ledger import AccountFigures, Limits
from bank_node.domain.participant import AccountView, Consent, Vote, needs_outcome, on_decision, on_prepare
from bank_node.domain.transfer import Leg

ANA, BOB, CAIO = "52998224725", "11144477735", "39053344705"
DEADLINE = 1_000_000
NOW = 900.0   # seconds (mandate expiries are compared with it)
TTL = 4_000

RULES = PT.Rules(bank_id="beta", bank_ids=("alfa", "beta", "gama"), max_legs=8, ttl_ms=TTL,
                 max_amount_of=lambda bank: 1_000_00, limits=Limits(1_000_00, 2_000_00),
                 caps={"alfa": 500_00, "gama": 500_00})


def acc(number, status, holders, balance, held=0, debited=0):
    return AccountView(number, status, frozenset(holders), AccountFigures(balance, held, debited))


ACCOUNTS = {
    "A1": acc("A1", "open", {ANA}, 100_00),
    "A2": acc("A2", "open", {ANA, BOB}, 50_00),          # joint
    "B1": acc("B1", "open", {BOB}, 70_00),
    "X1": acc("X1", "closed", {ANA}, 500_00),
    "P1": acc("P1", "pending", {ANA, BOB}, 500_00),      # a joint account not yet accepted by all
    "Z0": acc("Z0", "open", {ANA}, 0),
    "H1": acc("H1", "open", {ANA}, 100_00, held=80_00, debited=80_00),   # a pending transfer holds 80
}


def debit(account, amount, bank="beta"):
    return Leg(bank, account, amount, "debit")


def credit(account, amount, bank="beta"):
    return Leg(bank, account, amount, "credit")


def whole(*legs):
    """The legs given, made into a transfer that adds up: debits here go to a credit at gama;
    a credit here comes from a debit at alfa."""
    legs = list(legs)
    debits = sum(l.amount for l in legs if l.is_debit)
    credits = [l for l in legs if not l.is_debit]
    if not credits:
        legs.append(credit("G9", debits, "gama"))
    elif debits < credits[0].amount:
        legs.insert(0, debit("F9", credits[0].amount - debits, "alfa"))
    return tuple(legs)


def mandate(**kw):
    return Mandate("m-1", "A1", "alfa", ANA, 1.0, **kw)


def prepare(legs, *, existing=None, conflict=False, initiator=ANA, coordinator="beta", deadline=DEADLINE,
            now_ms=DEADLINE - 1, consents=None, exposure=None):
    return on_prepare(existing, conflict=conflict, coordinator=coordinator, initiator=initiator, deadline_ms=deadline,
                      legs=legs, rules=RULES, accounts=ACCOUNTS, consents=consents or {}, exposure=exposure or {},
                      now_ms=now_ms, now=NOW)


def record(state, legs, reasons=()):
    return PT.Participation("t-1", "beta", state, DEADLINE, ANA, legs, tuple(reasons), 1.0, 1.0)


NO = False
# (id, legs, keyword arguments) -> (vote yes, reasons, new state, holds, claims)
PREPARE_TABLE = [
    ("debit covered", whole(debit("A1", 30_00)), {}, True, (), "prepared", (("A1", 30_00),), ()),
    ("debit equal to available", whole(debit("A1", 100_00)), {}, True, (), "prepared", (("A1", 100_00),), ()),
    ("debit and credit here: hold only the debit", (debit("A1", 10_00), credit("B1", 10_00)), {},
     True, (), "prepared", (("A1", 10_00),), ()),
    ("credit here from alfa: no hold, a claim on alfa", whole(credit("B1", 10_00)), {},
     True, (), "prepared", (), (("alfa", 10_00),)),
    ("joint account: a co-holder may debit", whole(debit("A2", 50_00)), {"initiator": BOB},
     True, (), "prepared", (("A2", 50_00),), ()),
    ("exactly at the deadline still counts", whole(debit("A1", 1)), {"now_ms": DEADLINE},
     True, (), "prepared", (("A1", 1),), ()),
    ("pending holds count against the available amount", whole(debit("H1", 20_01)), {},
     NO, (("H1", "insufficient_funds"),), "aborted", (), ()),
    ("insufficient funds", whole(debit("A1", 100_01)), {}, NO, (("A1", "insufficient_funds"),), "aborted", (), ()),
    ("empty account", whole(debit("Z0", 1)), {}, NO, (("Z0", "insufficient_funds"),), "aborted", (), ()),
    ("one account debited twice is a duplicate leg", whole(debit("A1", 60_00), debit("A1", 60_00)), {},
     NO, (("A1", "duplicate_leg"),), "aborted", (), ()),
    ("initiator not a holder: the same answer as no account", whole(debit("B1", 1_00)), {},
     NO, (("B1", "not_found"),), "aborted", (), ()),
    ("unauthorized even when funds are there", whole(debit("A1", 1_00)), {"initiator": CAIO},
     NO, (("A1", "not_found"),), "aborted", (), ()),
    ("unknown debited account", whole(debit("NOPE", 1_00)), {}, NO, (("NOPE", "not_found"),), "aborted", (), ()),
    ("unknown credited account", whole(credit("NOPE", 1_00)), {}, NO, (("NOPE", "not_found"),), "aborted", (), ()),
    ("closed account cannot be credited", whole(credit("X1", 1_00)), {},
     NO, (("X1", "account_closed"),), "aborted", (), ()),
    ("closed account cannot be debited", whole(debit("X1", 1_00)), {},
     NO, (("X1", "account_closed"),), "aborted", (), ()),
    ("a pending account cannot be debited", whole(debit("P1", 1_00)), {},
     NO, (("P1", "account_pending"),), "aborted", (), ()),
    ("a pending account cannot be credited", whole(credit("P1", 1_00)), {"initiator": CAIO},
     NO, (("P1", "account_pending"),), "aborted", (), ()),
    ("someone else's pending account is not_found", whole(debit("P1", 1_00)), {"initiator": CAIO},
     NO, (("P1", "not_found"),), "aborted", (), ()),
    ("someone else's closed account is not_found too, not account_closed", whole(debit("X1", 1_00)),
     {"initiator": CAIO}, NO, (("X1", "not_found"),), "aborted", (), ()),
    ("every failing leg is named, a good leg does not save it",
     (debit("A1", 10_00), debit("B1", 1_00), credit("NOPE", 11_00)), {},
     NO, (("B1", "not_found"), ("NOPE", "not_found")), "aborted", (), ()),
    ("PREPARE after its deadline is NO, even if it would pass", whole(debit("A1", 1_00)), {"now_ms": DEADLINE + 1},
     NO, (("*", "timeout"),), "aborted", (), ()),
    # the whole transfer, checked here whatever the coordinator says
    ("debits that do not add up to the credit", (debit("A1", 10_00), credit("G9", 11_00, "gama")), {},
     NO, (("*", "unbalanced"),), "aborted", (), ()),
    ("a credit with no debit at all (money from nothing)", (credit("B1", 10_00),), {},
     NO, (("*", "unbalanced"),), "aborted", (), ()),
    ("two credits", (debit("A1", 2_00), credit("B1", 1_00), credit("G9", 1_00, "gama")), {},
     NO, (("*", "not_one_credit"),), "aborted", (), ()),
    ("a credit over the limit is refused too", whole(credit("B1", 1_000_01)), {},
     NO, (("F9", "amount_over_limit"), ("B1", "amount_over_limit")), "aborted", (), ()),
    ("a leg at a bank that is not a member", (debit("A1", 1_00), credit("Q1", 1_00, "zeta")), {},
     NO, (("Q1", "unknown_bank"),), "aborted", (), ()),
    ("a deadline years away cannot freeze money", whole(debit("A1", 1_00)),
     {"deadline": DEADLINE + 10 * 365 * 86_400_000}, NO, (("*", "deadline_too_far"),), "aborted", (), ()),
    ("a deadline within the TTL (and clock skew) is fine", whole(debit("A1", 1_00)),
     {"deadline": DEADLINE - 1 + TTL}, True, (), "prepared", (("A1", 1_00),), ()),
    ("nothing for this bank in it", (debit("F9", 1_00, "alfa"), credit("G9", 1_00, "gama")), {},
     NO, (("*", "no_leg_here"),), "aborted", (), ()),
    ("more legs than the consortium allows",
     tuple(debit(f"F{i}", 1, "alfa") for i in range(9)) + (credit("B1", 9),), {},
     NO, (("*", "too_many_legs"),), "aborted", (), ()),
    ("an id another coordinator uses here", whole(debit("A1", 1_00)), {"conflict": True},
     NO, (("*", "id_in_use"),), "aborted", (), ()),
    # consent: a debit initiated at another bank needs the holder's mandate here
    ("debit initiated elsewhere without a mandate", whole(debit("A1", 10_00)), {"coordinator": "alfa"},
     NO, (("A1", "no_mandate"),), "aborted", (), ()),
    ("with a mandate for that bank", whole(debit("A1", 10_00)),
     {"coordinator": "alfa", "consents": {"A1": Consent(mandate())}}, True, (), "prepared", (("A1", 10_00),), ()),
    ("over the mandate's limit per transfer", whole(debit("A1", 10_00)),
     {"coordinator": "alfa", "consents": {"A1": Consent(mandate(max_per_transfer=9_99))}},
     NO, (("A1", "mandate_limit_exceeded"),), "aborted", (), ()),
    ("over the mandate's limit per day, pending use included", whole(debit("A1", 10_00)),
     {"coordinator": "alfa", "consents": {"A1": Consent(mandate(max_per_day=15_00), used_today=5_01)}},
     NO, (("A1", "mandate_limit_exceeded"),), "aborted", (), ()),
    ("a revoked mandate stops debits at once", whole(debit("A1", 10_00)),
     {"coordinator": "alfa", "consents": {"A1": Consent(mandate(revoked_at=NOW - 1))}},
     NO, (("A1", "no_mandate"),), "aborted", (), ()),
    ("an expired mandate", whole(debit("A1", 10_00)),
     {"coordinator": "alfa", "consents": {"A1": Consent(mandate(expires_at=NOW))}},
     NO, (("A1", "no_mandate"),), "aborted", (), ()),
    ("a credit needs no mandate, whoever coordinates", whole(credit("B1", 5_00)), {"coordinator": "gama"},
     True, (), "prepared", (), (("alfa", 5_00),)),
    # caps: what a peer may owe this bank
    ("a credit up to the cap on the debit bank", whole(credit("B1", 100_00)), {"exposure": {"alfa": 400_00}},
     True, (), "prepared", (), (("alfa", 100_00),)),
    ("a credit past the cap on the debit bank (pending claims count)", whole(credit("B1", 100_01)),
     {"exposure": {"alfa": 400_00}}, NO, (("*", "peer_cap_exceeded"),), "aborted", (), ()),
    # duplicates: the first answer again, nothing written (rule 2)
    ("duplicate PREPARE after YES", whole(debit("A1", 1_00)),
     {"existing": record("prepared", whole(debit("A1", 1_00)))}, True, (), None, (), ()),
    ("duplicate PREPARE after YES, even past the deadline, funds since spent", whole(debit("Z0", 1_00)),
     {"existing": record("prepared", whole(debit("Z0", 1_00))), "now_ms": DEADLINE + 5}, True, (), None, (), ()),
    ("duplicate PREPARE after commit", whole(debit("A1", 1_00)),
     {"existing": record("committed", whole(debit("A1", 1_00)))}, True, (), None, (), ()),
    ("duplicate PREPARE after NO: same reasons", whole(debit("A1", 1_00)),
     {"existing": record("aborted", whole(debit("A1", 1_00)), [("A1", "insufficient_funds")])},
     NO, (("A1", "insufficient_funds"),), None, (), ()),
    ("PREPARE after an ABORT that overtook it", whole(debit("A1", 1_00)),
     {"existing": record("aborted", (), [("*", "aborted")])}, NO, (("*", "aborted"),), None, (), ()),
    ("a replay with other legs is tampered", whole(debit("A1", 2_00)),
     {"existing": record("prepared", whole(debit("A1", 1_00)))}, NO, (("*", "tampered"),), None, (), ()),
]


@pytest.mark.parametrize("legs, kw, yes, reasons, new_state, holds, claims",
                         [row[1:] for row in PREPARE_TABLE], ids=[row[0] for row in PREPARE_TABLE])
def test_on_prepare(legs, kw, yes, reasons, new_state, holds, claims):
    d = prepare(legs, **kw)
    assert d.vote == Vote(yes, reasons)
    assert (d.new_state, d.holds, d.claims) == (new_state, holds, claims)
    if not yes:
        assert d.holds == () and d.claims == () and d.mandate_uses == (), "a NO vote never places anything"


def test_a_mandated_debit_records_its_use_of_the_mandate():
    d = prepare(whole(debit("A1", 10_00)), coordinator="alfa", consents={"A1": Consent(mandate())})
    assert d.mandate_uses == (("m-1", "A1", 10_00),)


def test_a_debit_initiated_here_needs_no_mandate_and_records_no_use():
    d = prepare(whole(debit("A1", 10_00)))
    assert d.vote.yes and d.mandate_uses == ()


# (state, outcome) -> (new state, apply commit, release holds, acknowledge, violation?)
DECISION_TABLE = [
    ("prepared", "commit", "committed", True, False, True, False),
    ("committed", "commit", None, False, False, True, False),     # duplicate COMMIT: ack again only
    ("prepared", "abort", "aborted", False, True, True, False),
    ("aborted", "abort", None, False, False, True, False),        # duplicate ABORT, or ABORT after our NO
    (None, "abort", "aborted", False, False, True, False),        # ABORT before PREPARE: remember it
    (None, "commit", None, False, False, False, True),            # COMMIT never follows no YES
    ("aborted", "commit", None, False, False, False, True),
    ("committed", "abort", None, False, False, False, True),
]


@pytest.mark.parametrize("state, outcome, new_state, apply_commit, release, ack, violation", DECISION_TABLE,
                         ids=[f"{r[0]}+{r[1]}" for r in DECISION_TABLE])
def test_on_decision(state, outcome, new_state, apply_commit, release, ack, violation):
    e = on_decision(state, outcome)
    assert (e.new_state, e.apply_commit, e.release_holds, e.acknowledge) == (new_state, apply_commit, release, ack)
    assert (e.violation is not None) == violation
    assert not (e.apply_commit and e.release_holds), "commit turns holds into debits; it never just drops them"


GRACE = 500
# (state, now) -> must ask the coordinator for the outcome?
OUTCOME_TABLE = [
    ("prepared", DEADLINE - 1, False),
    ("prepared", DEADLINE + GRACE - 1, False),
    ("prepared", DEADLINE + GRACE, True),
    ("prepared", DEADLINE + 10 ** 9, True),   # again and again, however long it takes (rule 4)
    ("committed", DEADLINE + 10 ** 9, False),
    ("aborted", DEADLINE + 10 ** 9, False),
    (None, DEADLINE + 10 ** 9, False),
]


@pytest.mark.parametrize("state, now, asks", OUTCOME_TABLE)
def test_needs_outcome(state, now, asks):
    assert needs_outcome(state, DEADLINE, now, GRACE) is asks


# --- sequences: a tiny runtime folds events through the pure functions, as the real one does.

def run(events, legs=whole(debit("A1", 30_00)), initiator=ANA):
    rec, out = None, []
    for ev, now in events:
        now = now if now > 1000 else DEADLINE - 1000 + now   # small numbers: moments before the deadline
        if ev == "prepare":
            d = prepare(legs, existing=rec, initiator=initiator, now_ms=now)
            if d.new_state:
                rec = PT.Participation("t-1", "beta", d.new_state, DEADLINE, initiator, legs, d.vote.reasons, 1.0, 1.0)
            out.append("yes" if d.vote.yes else "no")
        elif ev == "timeout":
            out.append("ask" if needs_outcome(rec.state if rec else None, DEADLINE, now, GRACE) else "-")
        else:
            e = on_decision(rec.state if rec else None, ev)
            if e.new_state:
                rec = PT.decided(rec, transfer_id="t-1", coordinator="beta", new_state=e.new_state, now=2.0,
                                 evidence=None)
            out.append("ack" if e.acknowledge else "violation")
    return out, rec.state if rec else None


SEQUENCES = [
    ("happy commit", [("prepare", 1), ("commit", 2)], ["yes", "ack"], "committed"),
    ("redelivered PREPARE and COMMIT", [("prepare", 1), ("prepare", 2), ("commit", 3), ("commit", 4)],
     ["yes", "yes", "ack", "ack"], "committed"),
    ("abort after YES", [("prepare", 1), ("abort", 2), ("abort", 3)], ["yes", "ack", "ack"], "aborted"),
    ("ABORT before PREPARE: the late PREPARE is NO",
     [("abort", 1), ("prepare", 2)], ["ack", "no"], "aborted"),
    ("ABORT before PREPARE, PREPARE redelivered", [("abort", 1), ("prepare", 2), ("prepare", 3)],
     ["ack", "no", "no"], "aborted"),
    ("YES voter waits past the deadline: it asks, it never decides alone",
     [("prepare", 1), ("timeout", DEADLINE + GRACE), ("timeout", DEADLINE + 60_000)],
     ["yes", "ask", "ask"], "prepared"),
    ("after recovery the answer arrives: commit", [("prepare", 1), ("timeout", DEADLINE + GRACE), ("commit", 2)],
     ["yes", "ask", "ack"], "committed"),
    ("after recovery the answer arrives: presumed abort",
     [("prepare", 1), ("timeout", DEADLINE + GRACE), ("abort", 2), ("timeout", DEADLINE + 99_999)],
     ["yes", "ask", "ack", "-"], "aborted"),
    ("late PREPARE", [("prepare", DEADLINE + 1), ("abort", DEADLINE + 2)], ["no", "ack"], "aborted"),
    ("COMMIT after our NO is a protocol violation and is not acknowledged",
     [("prepare", DEADLINE + 1), ("commit", DEADLINE + 2)], ["no", "violation"], "aborted"),
    ("ABORT after COMMIT changes nothing", [("prepare", 1), ("commit", 2), ("abort", 3)],
     ["yes", "ack", "violation"], "committed"),
]


@pytest.mark.parametrize("events, outputs, final", [s[1:] for s in SEQUENCES], ids=[s[0] for s in SEQUENCES])
def test_sequences(events, outputs, final):
    assert run(events) == (outputs, final)


# --- the runtime's reading of each peer's exposure ---------------------------------------------
def test_exposure_is_read_from_the_ledger_once_and_only_when_a_cap_needs_it():
    """A PREPARE that credits nothing here checks no cap: its envelope reads no positions nor
    claims. Once read (in the envelope's transaction), what the envelope's own claims add is kept
    beside it, so the next transfer of the envelope is capped with them counted."""
    from bank_node.interbank.participant import Exposure

    class Tx:
        reads = 0

        def exposure(self):
            Tx.reads += 1
            return {"alfa": 70_00}

    exposure = Exposure(Tx())
    assert Tx.reads == 0
    assert settlement.cap_refusals({"alfa": 20_00}, dict(exposure), {"alfa": 100_00}) == []
    assert Tx.reads == 1
    exposure["alfa"] = exposure.get("alfa", 0) + 20_00   # the claim the first transfer added
    assert settlement.cap_refusals({"alfa": 20_00}, dict(exposure), {"alfa": 100_00}) == ["alfa"]
    assert exposure.get("gama", 0) == 0 and len(exposure) == 1 and Tx.reads == 1
