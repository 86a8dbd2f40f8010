"""Cooperative termination: a prepared participant whose coordinator is down asks the other
participants, and adopts the decision one of them already knows."""
from __future__ import annotations

import uuid

import pytest

from tests.support import customer_everywhere, ledger, wait_until

pytestmark = pytest.mark.integration


def test_participant_learns_commit_from_a_peer_while_the_coordinator_is_down(make_cluster, new_cpf):
    cluster = make_cluster()
    ana, acc = customer_everywhere(cluster, new_cpf())
    # alfa coordinates a transfer between beta and gama only, and dies right after its COMMIT
    # reached beta: gama is prepared, holding nothing but a pending credit, with nobody to ask
    # but its peer.
    cluster.restart("alfa", extra_env={"CONSORCIO_CRASH_AT": "coordinator.after_some_decisions"})
    ana.login("alfa")
    tid = str(uuid.uuid4())
    try:
        ana.transfer("alfa", [("beta", acc["beta"], "15.00")], ("gama", acc["gama"]), transfer_id=tid)
    except OSError:
        pass
    assert cluster["alfa"].wait_exit(30) == -9
    wait_until(lambda: ledger(cluster.data_root, "gama")["participations"].get(tid) == "committed", 30,
               "gama learns the commit from beta")
    assert ana.balance("gama", acc["gama"]) == "115.00"
    assert ana.balance("beta", acc["beta"]) == "85.00"
    assert cluster["alfa"].alive is False  # learnt without the coordinator
    # When alfa comes back, it collects the acknowledgements and nothing is left in doubt.
    cluster["alfa"].start()
    cluster["alfa"].wait_healthy()
    wait_until(lambda: not ledger(cluster.data_root, "alfa")["pending_acks"], 30, "acks collected")
    assert ana.balance("gama", acc["gama"]) == "115.00"


def test_participant_with_no_vote_aborts_for_good_when_asked_after_the_deadline(make_cluster, new_cpf):
    """A peer that never saw the PREPARE, asked after the deadline, records the abort and
    answers it; the late PREPARE is then refused."""
    cluster = make_cluster()
    ana, acc = customer_everywhere(cluster, new_cpf())
    # gama is paused through the whole transfer: it never votes; beta votes YES and is in
    # doubt only until the coordinator's ABORT (or gama's) reaches it.
    cluster["gama"].pause()
    try:
        _, body = ana.transfer("alfa", [("beta", acc["beta"], "15.00")], ("gama", acc["gama"]))
    finally:
        cluster["gama"].resume()
    assert body["status"] == "aborted"
    tid = body["id"]
    wait_until(lambda: ledger(cluster.data_root, "gama")["participations"].get(tid) == "aborted", 30)
    wait_until(lambda: ledger(cluster.data_root, "beta")["participations"].get(tid) == "aborted", 30)
    assert not ledger(cluster.data_root, "beta")["holds"]
    assert ana.balance("gama", acc["gama"]) == "100.00" and ana.balance("beta", acc["beta"]) == "100.00"
