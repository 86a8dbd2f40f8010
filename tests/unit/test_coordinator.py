"""The coordinator of two-phase commit as tables: (record, event) -> (effects, new record).

docs/protocol.md, rule 5: COMMIT only when every leg voted YES before the deadline, the
decision persisted before it is sent; no vote by the deadline, any NO or any error is ABORT;
presumed abort answers a status question about a transfer with no record. Rule 7: recovery.
"""
from __future__ import annotations

import copy
from dataclasses import replace

import pytest

from bank_node.domain import coordinator as C
from bank_node.domain.coordinator import Persist, SendDecision, SendPrepare
from bank_node.domain.transfer import Leg

DEADLINE = 1_000_000
BEFORE, AFTER = DEADLINE - 1, DEADLINE + 1
LEGS = (
    Leg("beta", "111", 10_00, "debit"),
    Leg("alfa", "222", 5_00, "debit"),
    Leg("beta", "333", 1_00, "debit"),
    Leg("gama", "444", 16_00, "credit"),
)


def record(state="preparing", votes=None, acked=None):
    """A coordinator record in a given state: votes and acks per bank (alfa, beta, gama)."""
    rec, _ = C.begin("t-1", "ana", "hash", LEGS, DEADLINE, 0.0)
    for bank, v in (votes or {}).items():
        rec = rec.with_peer(bank, vote=v)
    for bank, a in (acked or {}).items():
        rec = rec.with_peer(bank, acked=a)
    if state != "preparing":
        rec = replace(rec, state=state, decided_at=1.0)
    return rec


def votes_of(rec):
    return {b: p.vote for b, p in rec.participants.items()}


def acks_of(rec):
    return {b: p.acked for b, p in rec.participants.items()}


def reasons_of(rec):
    return sorted((f.bank, f.reason) for f in rec.failures)


def test_begin_persists_before_any_prepare_and_asks_each_bank_once():
    rec, effects = C.begin("t-1", "ana", "hash", LEGS, DEADLINE, 0.0)
    assert effects == [Persist(), SendPrepare("alfa"), SendPrepare("beta"), SendPrepare("gama")]
    assert rec.state == "preparing"
    assert votes_of(rec) == {"alfa": None, "beta": None, "gama": None}
    assert C.public_status(rec.state) == "pending"


Y, N = "yes", "no"
COMMIT_ALL = [Persist(), SendDecision("alfa", "commit"), SendDecision("beta", "commit"),
              SendDecision("gama", "commit")]

# (id, record before, (bank, yes, now_ms)) -> (effects, state, votes after, failures)
VOTE_TABLE = [
    ("first YES waits for the others", record(), ("beta", True, BEFORE),
     [], "preparing", {"alfa": None, "beta": Y, "gama": None}, []),
    ("last YES commits: persist, then send to every bank", record(votes={"alfa": Y, "beta": Y}), ("gama", True, BEFORE),
     COMMIT_ALL, "committed", {"alfa": Y, "beta": Y, "gama": Y}, []),
    ("last YES exactly at the deadline commits", record(votes={"alfa": Y, "beta": Y}), ("gama", True, DEADLINE),
     COMMIT_ALL, "committed", {"alfa": Y, "beta": Y, "gama": Y}, []),
    ("a NO aborts at once; the NO voter needs no ABORT", record(votes={"alfa": Y}), ("beta", False, BEFORE),
     [Persist(), SendDecision("alfa", "abort"), SendDecision("gama", "abort")], "aborted",
     {"alfa": Y, "beta": N, "gama": None}, [("beta", "insufficient_funds")]),
    ("a NO as the first vote aborts at once", record(), ("gama", False, BEFORE),
     [Persist(), SendDecision("alfa", "abort"), SendDecision("beta", "abort")], "aborted",
     {"alfa": None, "beta": None, "gama": N}, [("gama", "insufficient_funds")]),
    ("duplicate YES changes nothing", record(votes={"beta": Y}), ("beta", True, BEFORE),
     [], "preparing", {"alfa": None, "beta": Y, "gama": None}, []),
    ("a NO after the same bank's YES changes nothing", record(votes={"beta": Y}), ("beta", False, BEFORE),
     [], "preparing", {"alfa": None, "beta": Y, "gama": None}, []),
    ("late YES after the deadline does not count (even the last one)", record(votes={"alfa": Y, "beta": Y}),
     ("gama", True, AFTER), [], "preparing", {"alfa": Y, "beta": Y, "gama": None}, []),
    ("late NO after the deadline is ignored too", record(), ("gama", False, AFTER),
     [], "preparing", {"alfa": None, "beta": None, "gama": None}, []),
    ("vote from a bank that is not a participant", record(votes={"alfa": Y, "beta": Y}), ("zeta", True, BEFORE),
     [], "preparing", {"alfa": Y, "beta": Y, "gama": None}, []),
    ("YES after a COMMIT decision", record("committed", votes={"alfa": Y, "beta": Y, "gama": Y}),
     ("gama", True, BEFORE), [], "committed", {"alfa": Y, "beta": Y, "gama": Y}, []),
    ("YES after an ABORT decision does not revive it", record("aborted", votes={"alfa": Y, "beta": N}),
     ("gama", True, BEFORE), [], "aborted", {"alfa": Y, "beta": N, "gama": None}, []),
    ("NO after a COMMIT decision", record("committed", votes={"alfa": Y, "beta": Y, "gama": Y}),
     ("gama", False, BEFORE), [], "committed", {"alfa": Y, "beta": Y, "gama": Y}, []),
]


@pytest.mark.parametrize("rec, event, effects, state, votes, failures",
                         [r[1:] for r in VOTE_TABLE], ids=[r[0] for r in VOTE_TABLE])
def test_on_vote(rec, event, effects, state, votes, failures):
    before = copy.deepcopy(rec)
    bank, yes, now_ms = event
    new, eff = C.on_vote(rec, bank, yes, [("111", "insufficient_funds")] if not yes else [], now_ms, 2.0)
    assert rec == before, "the pure function never mutates the stored record"
    assert eff == effects
    assert new.state == state
    assert votes_of(new) == votes
    assert reasons_of(new) == failures
    if effects:
        assert effects[0] == Persist(), "the decision is persisted before anything is sent"
        assert new.pending_acks == sum(isinstance(e, SendDecision) for e in effects)
        assert new.decided_at == 2.0


def test_a_no_without_reasons_is_still_named():
    new, _ = C.on_vote(record(), "beta", False, [], BEFORE, 2.0)
    assert reasons_of(new) == [("beta", "refused")]


def test_reasons_of_a_no_name_each_refused_account():
    new, _ = C.on_vote(record(), "beta", False, [("111", "forbidden"), ("333", "not_found")], BEFORE, 2.0)
    assert sorted((f.account, f.reason) for f in new.failures) == [("111", "forbidden"),
                                                                              ("333", "not_found")]


# (id, record, unreachable banks) -> (effects, state, failures)
DEADLINE_TABLE = [
    ("silent banks time out: ABORT to every bank that did not say NO", record(votes={"alfa": Y}), set(),
     [Persist(), SendDecision("alfa", "abort"), SendDecision("beta", "abort"), SendDecision("gama", "abort")],
     "aborted", [("beta", "timeout"), ("gama", "timeout")]),
    ("a bank nobody consumes for is named unreachable", record(votes={"alfa": Y, "gama": Y}), {"beta"},
     [Persist(), SendDecision("alfa", "abort"), SendDecision("beta", "abort"), SendDecision("gama", "abort")],
     "aborted", [("beta", "bank_unreachable")]),
    ("nobody answered", record(), {"alfa", "beta", "gama"},
     [Persist(), SendDecision("alfa", "abort"), SendDecision("beta", "abort"), SendDecision("gama", "abort")],
     "aborted", [("alfa", "bank_unreachable"), ("beta", "bank_unreachable"), ("gama", "bank_unreachable")]),
    ("deadline after a COMMIT changes nothing", record("committed", votes={"alfa": Y, "beta": Y, "gama": Y}),
     set(), [], "committed", []),
    ("deadline after an ABORT changes nothing", record("aborted", votes={"beta": N}), set(), [], "aborted", []),
]


@pytest.mark.parametrize("rec, unreachable, effects, state, failures",
                         [r[1:] for r in DEADLINE_TABLE], ids=[r[0] for r in DEADLINE_TABLE])
def test_on_deadline(rec, unreachable, effects, state, failures):
    before = copy.deepcopy(rec)
    new, eff = C.on_deadline(rec, unreachable, 3.0)
    assert rec == before
    assert (eff, new.state, reasons_of(new)) == (effects, state, failures)


UNSENT_TABLE = [
    ("prepare never left: abort, that bank owed nothing",
     record(votes={"alfa": Y}), "beta",
     [Persist(), SendDecision("alfa", "abort"), SendDecision("gama", "abort")], "aborted", 2),
    ("every prepare failed to leave: nobody owed a decision",
     record(votes={"alfa": "unsent", "gama": "unsent"}), "beta", [Persist()], "aborted", 0),
    ("after a decision, a late publish failure changes nothing",
     record("committed", votes={"alfa": Y, "beta": Y, "gama": Y}), "beta", [], "committed", 3),
    ("unknown bank changes nothing", record(), "zeta", [], "preparing", 0),
]


@pytest.mark.parametrize("rec, bank, effects, state, pending", [r[1:] for r in UNSENT_TABLE],
                         ids=[r[0] for r in UNSENT_TABLE])
def test_on_unsent(rec, bank, effects, state, pending):
    """A PREPARE that never reached the broker: ABORT, and no decision owed to that bank (no
    re-send storm after a broker outage)."""
    before = copy.deepcopy(rec)
    new, eff = C.on_unsent(rec, bank, 3.0)
    assert rec == before
    assert (eff, new.state, new.pending_acks) == (effects, state, pending)
    if state == "aborted":
        assert (new.participants[bank].vote, new.participants[bank].acked) == ("unsent", True)
        assert ("beta", "bank_unreachable") in reasons_of(new)


def test_all_prepares_unsent_owes_nothing():
    rec = record()
    for bank in ("alfa", "beta"):
        rec, eff = C.on_unsent(rec, bank, 3.0) if rec.state == "preparing" else (rec, [])
    # The first failure decided: alfa unsent (acked), beta and gama may have prepared.
    assert rec.state == "aborted"
    assert acks_of(rec) == {"alfa": True, "beta": False, "gama": False}
    assert rec.pending_acks == 2


@pytest.mark.parametrize("rec, effects, state", [
    (record(votes={"alfa": Y}),
     [Persist(), SendDecision("alfa", "abort"), SendDecision("beta", "abort"), SendDecision("gama", "abort")],
     "aborted"),
    (record("committed", votes={"alfa": Y, "beta": Y, "gama": Y}), [], "committed"),
], ids=["error while preparing aborts", "error after commit changes nothing"])
def test_on_error(rec, effects, state):
    new, eff = C.on_error(rec, "beta", "bank_unreachable", 3.0)
    assert (eff, new.state) == (effects, state)
    if state == "aborted":
        assert ("beta", "bank_unreachable") in reasons_of(new)


ALL_YES = {"alfa": Y, "beta": Y, "gama": Y}
# (id, record, (bank, outcome)) -> (effects, acks after, pending acks)
ACK_TABLE = [
    ("ack of the commit", record("committed", ALL_YES), ("beta", "commit"),
     [Persist()], {"alfa": False, "beta": True, "gama": False}, 2),
    ("last ack", record("committed", ALL_YES, {"alfa": True, "gama": True}), ("beta", "commit"),
     [Persist()], {"alfa": True, "beta": True, "gama": True}, 0),
    ("duplicate ack", record("committed", ALL_YES, {"beta": True}), ("beta", "commit"),
     [], {"alfa": False, "beta": True, "gama": False}, 2),
    ("ack before any decision is ignored", record(votes={"beta": Y}), ("beta", "commit"),
     [], {"alfa": False, "beta": False, "gama": False}, 0),
    ("ack of abort before any decision is ignored", record(), ("beta", "abort"),
     [], {"alfa": False, "beta": False, "gama": False}, 0),
    ("ack of the wrong outcome is ignored", record("committed", ALL_YES), ("beta", "abort"),
     [], {"alfa": False, "beta": False, "gama": False}, 3),
    ("ack of commit for an aborted transfer is ignored", record("aborted", {"alfa": Y}), ("alfa", "commit"),
     [], {"alfa": False, "beta": False, "gama": False}, 3),
    ("ack of the abort", record("aborted", {"alfa": Y, "beta": N}, {"beta": True}), ("alfa", "abort"),
     [Persist()], {"alfa": True, "beta": True, "gama": False}, 1),
    ("ack from a stranger is ignored", record("committed", ALL_YES), ("zeta", "commit"),
     [], {"alfa": False, "beta": False, "gama": False}, 3),
]


@pytest.mark.parametrize("rec, event, effects, acks, pending", [r[1:] for r in ACK_TABLE],
                         ids=[r[0] for r in ACK_TABLE])
def test_on_ack(rec, event, effects, acks, pending):
    before = copy.deepcopy(rec)
    new, eff = C.on_ack(rec, *event, 5)
    assert rec == before
    assert (eff, acks_of(new), new.pending_acks) == (effects, acks, pending)
    assert new.state == before.state, "an acknowledgement never changes the outcome"


# (id, record or None) -> answer to the participant "beta" asking for the outcome
STATUS_TABLE = [
    ("no record at all: presumed abort", None, [SendDecision("beta", "abort")]),
    ("still preparing: say nothing yet", record(votes={"beta": Y}), []),
    ("committed", record("committed", ALL_YES), [SendDecision("beta", "commit")]),
    ("committed and already acked: answer again", record("committed", ALL_YES, {"beta": True}),
     [SendDecision("beta", "commit")]),
    ("aborted", record("aborted", {"beta": Y, "gama": N}), [SendDecision("beta", "abort")]),
]


@pytest.mark.parametrize("rec, effects", [r[1:] for r in STATUS_TABLE], ids=[r[0] for r in STATUS_TABLE])
def test_on_status_query(rec, effects):
    assert C.on_status_query(rec, "beta") == effects


# (id, record) -> (effects, state, failures) after a restart of the coordinator
RECOVER_TABLE = [
    ("undecided, nobody voted: abort everyone", record(),
     [Persist(), SendDecision("alfa", "abort"), SendDecision("beta", "abort"), SendDecision("gama", "abort")],
     "aborted", [("alfa", "timeout"), ("beta", "timeout"), ("gama", "timeout")]),
    ("undecided with two YES: still abort (never commit on recovery)", record(votes={"alfa": Y, "beta": Y}),
     [Persist(), SendDecision("alfa", "abort"), SendDecision("beta", "abort"), SendDecision("gama", "abort")],
     "aborted", [("gama", "timeout")]),
    ("committed, beta not acked: re-send COMMIT to beta only", record("committed", ALL_YES,
                                                                       {"alfa": True, "gama": True}),
     [SendDecision("beta", "commit")], "committed", []),
    ("committed and fully acked: nothing to do", record("committed", ALL_YES,
                                                        {"alfa": True, "beta": True, "gama": True}),
     [], "committed", []),
    ("aborted, re-send ABORT to those who have not acked", record("aborted", {"alfa": Y, "beta": N}, {"beta": True}),
     [SendDecision("alfa", "abort"), SendDecision("gama", "abort")], "aborted", []),
]


@pytest.mark.parametrize("rec, effects, state, failures", [r[1:] for r in RECOVER_TABLE],
                         ids=[r[0] for r in RECOVER_TABLE])
def test_on_recover(rec, effects, state, failures):
    before = copy.deepcopy(rec)
    new, eff = C.on_recover(rec, 9.0)
    assert rec == before
    assert (eff, new.state, reasons_of(new)) == (effects, state, failures)
    assert C.pending_decisions(new) == [e for e in eff if isinstance(e, SendDecision)]


def test_recovery_of_an_undecided_transfer_where_everyone_voted_is_still_an_abort_with_a_reason():
    rec = record(votes={"alfa": Y, "beta": Y, "gama": Y})  # crash between the last vote and the decision
    new, eff = C.on_recover(rec, 9.0)
    assert new.state == "aborted" and new.failures, "an abort always says why"
    assert eff[0] == Persist()


@pytest.mark.parametrize("state, public", [("preparing", "pending"), ("committed", "committed"),
                                           ("aborted", "aborted")])
def test_public_status(state, public):
    assert C.public_status(record(state).state) == public


# --- whole runs: fold events through the pure functions like the runtime does.

def run(events):
    rec, _ = C.begin("t-1", "ana", "hash", LEGS, DEADLINE, 0.0)
    sent = []
    for ev in events:
        kind, *args = ev
        if kind == "vote":
            rec, eff = C.on_vote(rec, args[0], args[1], [], args[2], 1.0)
        elif kind == "deadline":
            rec, eff = C.on_deadline(rec, set(), 1.0)
        elif kind == "ack":
            rec, eff = C.on_ack(rec, args[0], args[1], 5)
        else:
            rec, eff = C.on_recover(rec, 1.0)
        sent += [(e.bank, e.outcome) for e in eff if isinstance(e, SendDecision)]
    return rec.state, rec.pending_acks, sent


def test_run_commit_then_acks_in_any_order_with_duplicates():
    state, pending, sent = run([("vote", "gama", True, 1), ("vote", "alfa", True, 2), ("ack", "alfa", "commit"),
                                ("vote", "beta", True, 3), ("ack", "gama", "commit"), ("ack", "gama", "commit"),
                                ("ack", "alfa", "commit"), ("ack", "beta", "commit"), ("vote", "beta", False, 4)])
    assert state == "committed" and pending == 0
    assert sorted(sent) == [("alfa", "commit"), ("beta", "commit"), ("gama", "commit")]


def test_run_deadline_then_late_vote_then_recovery_resends_only_missing_acks():
    state, pending, sent = run([("vote", "alfa", True, 1), ("deadline",), ("vote", "beta", True, AFTER),
                                ("vote", "gama", True, AFTER), ("ack", "alfa", "abort"), ("recover",)])
    assert state == "aborted" and pending == 2
    assert sent[:3] == [("alfa", "abort"), ("beta", "abort"), ("gama", "abort")]
    assert sent[3:] == [("beta", "abort"), ("gama", "abort")]
