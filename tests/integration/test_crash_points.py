"""The crash-point matrix: a bank dies with SIGKILL at each named point of the protocol, is
restarted, and the transfer ends the way docs/protocol.md says, with no hold left.

alfa coordinates a transfer of 10.00 from alfa and 20.00 from beta into gama. Coordinator
points are armed at alfa, participant points at beta (``CONSORCIO_CRASH_AT``, see
bank_node/faults.py).
"""
from __future__ import annotations

import uuid

import pytest

from bank_node.faults import POINTS
from tests.support import customer_everywhere, ledger, wait_until

pytestmark = pytest.mark.integration

UNCHANGED = {"alfa": "100.00", "beta": "100.00", "gama": "100.00"}
MOVED = {"alfa": "90.00", "beta": "80.00", "gama": "130.00"}

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


def test_the_matrix_covers_every_crash_point():
    assert sorted(p for p, _, _ in MATRIX) == sorted(POINTS)


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
    assert cluster[victim].wait_exit(30) == -9, f"{victim} did not die at {point}"

    if point == "participant.after_prepare_durable":
        # The hold is durable while beta is down, and stays until beta learns the outcome.
        held = ledger(cluster.data_root, "beta")["holds"]
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
        wait_until(lambda: not ledger(cluster.data_root, bank)["holds"], 30, f"no hold at {bank}")
    wait_until(lambda: not ledger(cluster.data_root, "alfa")["pending_acks"], 30, "every decision acknowledged")
    states = {b: ledger(cluster.data_root, b)["participations"].get(tid) for b in acc}
    if expected == "committed":
        assert set(states.values()) == {"committed"}, states
    else:   # a bank whose PREPARE never arrived (or never became durable) holds no record of it at all
        assert set(states.values()) - {None} == {"aborted"} and states["alfa"] == "aborted", states
    # Applied exactly once: one journal entry per leg.
    entries = [e for b in acc for e in ledger(cluster.data_root, b)["transfer_entries"] if e[0] == tid]
    assert len(entries) == (3 if expected == "committed" else 0), entries
