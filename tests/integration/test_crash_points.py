"""The crash-point matrix: a bank dies with SIGKILL at each named point of the protocol, is
restarted, and the transfer ends the way docs/protocol.md says, with no hold left; with the
banks' ledgers on SQLite and on PostgreSQL.

alfa coordinates a transfer of 10.00 from alfa and 20.00 from beta into gama. Coordinator
points are armed at alfa, participant points at beta (``CONSORCIO_CRASH_AT``, see
bank_node/faults.py). The points inside batches (an envelope's holds durable and no vote sent,
half an envelope of decisions applied, a decision in the middle of a group commit) are also
reached under a batch of ten transfers: every one of them must end all-or-nothing.
"""
from __future__ import annotations

import uuid

import pytest

from bank_node.faults import POINTS
from tests.support import customer_everywhere, ledger, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.both_backends]

UNCHANGED = {"alfa": "100.00", "beta": "100.00", "gama": "100.00"}
MOVED = {"alfa": "90.00", "beta": "80.00", "gama": "130.00"}

BATCH_POINTS = {"coordinator.mid_group_commit", "participant.mid_decision_batch"}

MATRIX = [
    # (crash point, bank that dies, expected outcome)
    ("coordinator.before_prepare", "alfa", "aborted"),
    ("coordinator.after_some_prepares", "alfa", "aborted"),
    ("coordinator.before_decision_durable", "alfa", "aborted"),
    ("coordinator.after_commit_durable", "alfa", "committed"),
    ("coordinator.after_some_decisions", "alfa", "committed"),
    ("participant.before_prepare_durable", "beta", "aborted"),
    ("participant.after_prepare_durable", "beta", "aborted"),
    ("participant.before_commit_applied", "beta", "committed"),
    ("participant.after_commit_applied", "beta", "committed"),
]
# Points only a batch reaches (more than one unit in a commit, more than one decision in an
# envelope), and batch runs of points that a lone transfer reaches too.
BATCH_MATRIX = [
    ("participant.after_prepare_durable", "beta"),
    ("participant.mid_decision_batch", "beta"),
    ("coordinator.mid_group_commit", "alfa"),
]


def died_at(cluster, victim: str, point: str, timeout: float) -> bool:
    """Did ``victim`` kill itself at ``point`` (its log says so, and it is gone)?"""
    bank = cluster[victim]
    try:
        wait_until(lambda: bank.proc.poll() is not None, timeout, f"{victim} to die")
    except AssertionError:
        return False
    return bank.proc.returncode == -9 and f"CRASH POINT {point}" in bank.log_path.read_text(errors="replace")


def test_the_matrix_covers_every_crash_point():
    assert sorted([p for p, _, _ in MATRIX] + sorted(BATCH_POINTS)) == sorted(POINTS)


@pytest.mark.parametrize("point,victim,expected", MATRIX, ids=[m[0] for m in MATRIX])
def test_crash_point(make_cluster, new_cpf, point, victim, expected):
    cluster = make_cluster()
    ana, acc = customer_everywhere(cluster, new_cpf())

    cluster.restart(victim, extra_env={"CONSORCIO_CRASH_AT": point})
    ana.login(victim)  # sessions survive restarts, but log in again anyway: cheap
    tid = str(uuid.uuid4())
    try:
        ana.transfer("alfa", [("alfa", acc["alfa"], "10.00"), ("beta", acc["beta"], "20.00")],
                     ("gama", acc["gama"]), transfer_id=tid, timeout=30)
    except OSError:
        pass  # the coordinator died under our request: the outcome is asked below
    assert died_at(cluster, victim, point, 30), f"{victim} did not die at {point}"

    if point == "participant.after_prepare_durable":
        # The hold is durable while beta is down, and stays until beta learns the outcome.
        held = ledger(cluster, "beta")["holds"]
        assert [(t, a) for t, _, a in held] == [(tid, 2000)]

    cluster[victim].start()
    cluster[victim].wait_healthy()

    def outcome():
        status, body = ana.call("alfa", "GET", f"/api/transfers/{tid}")
        return body.get("status") if status == 200 and body.get("status") != "pending" else None

    assert wait_until(outcome, 30, f"a decision for {tid}") == expected
    want = MOVED if expected == "committed" else UNCHANGED
    wait_until(lambda: {b: ana.balance(b, n) for b, n in acc.items()} == want, 30, f"balances {want}")
    for bank in acc:
        wait_until(lambda: not ledger(cluster, bank)["holds"], 30, f"no hold at {bank}")
    wait_until(lambda: not ledger(cluster, "alfa")["pending_acks"], 30, "every decision acknowledged")
    states = {b: ledger(cluster, b)["participations"].get(tid) for b in acc}
    if expected == "committed":
        assert set(states.values()) == {"committed"}, states
    else:   # a bank whose PREPARE never arrived (or never became durable) holds no record of it at all
        assert set(states.values()) - {None} == {"aborted"} and states["alfa"] == "aborted", states
    # Applied exactly once: one journal entry per leg.
    entries = [e for b in acc for e in ledger(cluster, b)["transfer_entries"] if e[0] == tid]
    assert len(entries) == (3 if expected == "committed" else 0), entries


@pytest.mark.parametrize("point,victim", BATCH_MATRIX, ids=[m[0] for m in BATCH_MATRIX])
def test_crash_point_under_a_batch(make_cluster, new_cpf, point, victim):
    """Batches of ten transfers (1.00 from alfa and 2.00 from beta into gama each) until the
    victim dies at the point; after its restart every transfer is decided, applied everywhere
    or nowhere, and nothing is held or left unacknowledged."""
    cluster = make_cluster()
    ana, acc = customer_everywhere(cluster, new_cpf())
    cluster.restart(victim, extra_env={"CONSORCIO_CRASH_AT": point})
    ana.login(victim)
    tids: list[str] = []
    for _ in range(3):   # a point inside a batch needs two units in a commit: almost always the first batch
        batch = [str(uuid.uuid4()) for _ in range(10)]
        tids += batch
        items = [{"id": tid, "sources": [{"bank": "alfa", "account": acc["alfa"], "amount": "1.00"},
                                         {"bank": "beta", "account": acc["beta"], "amount": "2.00"}],
                  "destination": {"bank": "gama", "account": acc["gama"]}} for tid in batch]
        try:
            ana.call("alfa", "POST", "/api/transfer-batches", {"items": items}, timeout=30)
        except OSError:
            pass   # the coordinator died under our request
        if died_at(cluster, victim, point, 10):
            break
    else:
        pytest.fail(f"{victim} never reached {point} in three batches")

    cluster[victim].start()
    cluster[victim].wait_healthy()

    def outcome(tid: str):
        status, body = ana.call("alfa", "GET", f"/api/transfers/{tid}")
        if status == 404:
            return "never"   # its begin record was in a group commit that never happened
        return body.get("status") if status == 200 and body.get("status") != "pending" else None
    outcomes = {tid: wait_until(lambda: outcome(tid), 30, f"a decision for {tid}") for tid in tids}
    assert set(outcomes.values()) <= {"committed", "aborted", "never"}, outcomes
    n = sum(1 for o in outcomes.values() if o == "committed")
    want = {"alfa": f"{100 - n}.00", "beta": f"{100 - 2 * n}.00", "gama": f"{100 + 3 * n}.00"}
    wait_until(lambda: {b: ana.balance(b, num) for b, num in acc.items()} == want, 30, f"balances {want}")
    for bank in acc:
        wait_until(lambda: not ledger(cluster, bank)["holds"], 30, f"no hold at {bank}")
    wait_until(lambda: not ledger(cluster, "alfa")["pending_acks"], 30, "every decision acknowledged")
    books = {b: ledger(cluster, b) for b in acc}
    for tid, o in outcomes.items():
        states = {b: books[b]["participations"].get(tid) for b in acc}
        if o == "committed":
            assert set(states.values()) == {"committed"}, (tid, states)
        else:
            assert set(states.values()) - {None, "aborted"} == set(), (tid, o, states)
        entries = [e for b in acc for e in books[b]["transfer_entries"] if e[0] == tid]
        assert len(entries) == (3 if o == "committed" else 0), (tid, entries)
