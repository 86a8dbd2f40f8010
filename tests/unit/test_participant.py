"""The participant of two-phase commit as tables: (state, event) -> (effects, new state).

docs/protocol.md: rule 2 (every handler idempotent), rule 3 (check, hold, record, then YES),
rule 4 (a YES voter never decides on its own), rule 6 (a late PREPARE, or one for a transfer
already aborted, is answered NO).
"""
from __future__ import annotations

import pytest

from bank_node.domain.participant import AccountView, Leg, Vote, needs_outcome, on_decision, on_prepare

ANA, BOB, CAIO = "52998224725", "11144477735", "39053344705"
DEADLINE = 1_000_000

ACCOUNTS = {
    "A1": AccountView("A1", "open", frozenset({ANA}), 100_00),
    "A2": AccountView("A2", "open", frozenset({ANA, BOB}), 50_00),     # joint
    "B1": AccountView("B1", "open", frozenset({BOB}), 70_00),
    "X1": AccountView("X1", "closed", frozenset({ANA}), 500_00),
    "Z0": AccountView("Z0", "open", frozenset({ANA}), 0),
    "P1": AccountView("P1", "pending", frozenset({ANA, BOB}), 500_00),   # Bob has not accepted it yet
}


def debit(acc, amount):
    return Leg(acc, amount, "debit")


def credit(acc, amount):
    return Leg(acc, amount, "credit")


# (id, state, stored reasons, legs, initiator, now) -> (vote yes, reasons, new state, holds)
PREPARE_TABLE = [
    ("debit covered", None, [], [debit("A1", 30_00)], ANA, DEADLINE - 1,
     True, (), "prepared", (("A1", 30_00),)),
    ("debit equal to available", None, [], [debit("A1", 100_00)], ANA, DEADLINE - 1,
     True, (), "prepared", (("A1", 100_00),)),
    ("debit and credit at this bank: hold only the debit", None, [], [debit("A1", 10_00), credit("B1", 10_00)],
     ANA, DEADLINE - 1, True, (), "prepared", (("A1", 10_00),)),
    ("credit only: no hold, any initiator", None, [], [credit("B1", 10_00)], ANA, DEADLINE - 1,
     True, (), "prepared", ()),
    ("joint account: a co-holder may debit", None, [], [debit("A2", 50_00)], BOB, DEADLINE - 1,
     True, (), "prepared", (("A2", 50_00),)),
    ("exactly at the deadline still counts", None, [], [debit("A1", 1)], ANA, DEADLINE,
     True, (), "prepared", (("A1", 1),)),
    ("insufficient funds", None, [], [debit("A1", 100_01)], ANA, DEADLINE - 1,
     False, (("A1", "insufficient_funds"),), "aborted", ()),
    ("empty account", None, [], [debit("Z0", 1)], ANA, DEADLINE - 1,
     False, (("Z0", "insufficient_funds"),), "aborted", ()),
    ("two debits of one account add up", None, [], [debit("A1", 60_00), debit("A1", 60_00)], ANA, DEADLINE - 1,
     False, (("A1", "insufficient_funds"),), "aborted", ()),
    # someone else's account reads exactly as a missing one: a transfer is no existence oracle
    ("initiator not a holder of the debited account", None, [], [debit("B1", 1_00)], ANA, DEADLINE - 1,
     False, (("B1", "not_found"),), "aborted", ()),
    ("unauthorized even when funds are there", None, [], [debit("A1", 1_00)], CAIO, DEADLINE - 1,
     False, (("A1", "not_found"),), "aborted", ()),
    ("someone else's closed account is not_found too, not account_closed", None, [], [debit("X1", 1_00)], CAIO,
     DEADLINE - 1, False, (("X1", "not_found"),), "aborted", ()),
    ("a pending account cannot be debited", None, [], [debit("P1", 1_00)], ANA, DEADLINE - 1,
     False, (("P1", "account_pending"),), "aborted", ()),
    ("a pending account cannot be credited", None, [], [credit("P1", 1_00)], CAIO, DEADLINE - 1,
     False, (("P1", "account_pending"),), "aborted", ()),
    ("someone else's pending account is not_found", None, [], [debit("P1", 1_00)], CAIO, DEADLINE - 1,
     False, (("P1", "not_found"),), "aborted", ()),
    ("unknown debited account", None, [], [debit("NOPE", 1_00)], ANA, DEADLINE - 1,
     False, (("NOPE", "not_found"),), "aborted", ()),
    ("unknown credited account", None, [], [credit("NOPE", 1_00)], ANA, DEADLINE - 1,
     False, (("NOPE", "not_found"),), "aborted", ()),
    ("closed account cannot be credited", None, [], [credit("X1", 1_00)], ANA, DEADLINE - 1,
     False, (("X1", "account_closed"),), "aborted", ()),
    ("closed account cannot be debited", None, [], [debit("X1", 1_00)], ANA, DEADLINE - 1,
     False, (("X1", "account_closed"),), "aborted", ()),
    ("every failing leg is named, a good leg does not save it", None, [],
     [debit("A1", 10_00), debit("B1", 1_00), credit("NOPE", 11_00)], ANA, DEADLINE - 1,
     False, (("B1", "not_found"), ("NOPE", "not_found")), "aborted", ()),
    ("PREPARE after its deadline is NO, even if it would pass", None, [], [debit("A1", 1_00)], ANA, DEADLINE + 1,
     False, (("*", "timeout"),), "aborted", ()),
    # duplicates: the first answer again, nothing written (rule 2)
    ("duplicate PREPARE after YES", "prepared", [], [debit("A1", 1_00)], ANA, DEADLINE - 1,
     True, (), None, ()),
    ("duplicate PREPARE after YES, even past the deadline", "prepared", [], [debit("A1", 1_00)], ANA, DEADLINE + 5,
     True, (), None, ()),
    ("duplicate PREPARE after YES, funds since spent", "prepared", [], [debit("Z0", 1_00)], ANA, DEADLINE - 1,
     True, (), None, ()),
    ("duplicate PREPARE after commit", "committed", [], [debit("A1", 1_00)], ANA, DEADLINE - 1,
     True, (), None, ()),
    ("duplicate PREPARE after NO: same reasons", "aborted", [["A1", "insufficient_funds"]], [debit("A1", 1_00)],
     ANA, DEADLINE - 1, False, (("A1", "insufficient_funds"),), None, ()),
    ("PREPARE after an ABORT that overtook it", "aborted", [["*", "aborted"]], [debit("A1", 1_00)],
     ANA, DEADLINE - 1, False, (("*", "aborted"),), None, ()),
]


@pytest.mark.parametrize(
    "state, stored, legs, initiator, now, yes, reasons, new_state, holds",
    [row[1:] for row in PREPARE_TABLE], ids=[row[0] for row in PREPARE_TABLE])
def test_on_prepare(state, stored, legs, initiator, now, yes, reasons, new_state, holds):
    d = on_prepare(state, stored, legs, initiator, DEADLINE, now, ACCOUNTS)
    assert d.vote == Vote(yes, reasons)
    assert d.new_state == new_state
    assert d.holds == holds
    if not yes:
        assert d.holds == (), "a NO vote never places a hold"


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

def run(events, legs=(debit("A1", 30_00),), initiator=ANA):
    state, reasons, out = None, [], []
    for ev, now in events:
        if ev == "prepare":
            d = on_prepare(state, reasons, list(legs), initiator, DEADLINE, now, ACCOUNTS)
            if d.new_state:
                state, reasons = d.new_state, [list(r) for r in d.vote.reasons]
            out.append("yes" if d.vote.yes else "no")
        elif ev == "timeout":
            out.append("ask" if needs_outcome(state, DEADLINE, now, GRACE) else "-")
        else:
            e = on_decision(state, ev)
            state = e.new_state or state
            out.append("ack" if e.acknowledge else "violation")
    return out, state


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
