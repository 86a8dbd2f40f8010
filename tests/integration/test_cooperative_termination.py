"""Cooperative termination among banks that do not trust each other: a prepared participant
whose coordinator is down asks the other participants too, and adopts the coordinator's own
signed decision that one of them relays. A peer can relay a decision, never make one: a lying
peer cannot split a transfer."""
from __future__ import annotations

import base64
import uuid

import pytest

from bank_node import protocol as P
from tools.peer import PeerBank
from tests.support import customer_everywhere, ledger, participation_states, rejected, wait_until

pytestmark = pytest.mark.integration


def alfa_dies_coordinating(make_cluster, new_cpf, crash_point: str):
    """Three banks with cooperative termination; alfa coordinates a transfer of 15.00 from Ana's
    account at beta to hers at gama and dies (kill -9) at ``crash_point``: (cluster, ana,
    {bank: account}, transfer id)."""
    cluster = make_cluster(cooperative_termination=True)
    ana, acc = customer_everywhere(cluster, new_cpf())
    cluster.restart("alfa", extra_env={"CONSORCIO_CRASH_AT": crash_point})
    ana.login("alfa")
    tid = str(uuid.uuid4())
    try:
        ana.transfer("alfa", [("beta", acc["beta"], "15.00")], ("gama", acc["gama"]), transfer_id=tid)
    except OSError:
        pass
    assert cluster["alfa"].wait_exit(30) == -9
    return cluster, ana, acc, tid


def test_participant_learns_commit_from_a_peer_while_the_coordinator_is_down(make_cluster, new_cpf):
    # alfa coordinates a transfer between beta and gama only, and dies right after its COMMIT
    # reached beta: gama is prepared, holding nothing but a pending credit, with nobody to ask
    # but its peer.
    cluster, ana, acc, tid = alfa_dies_coordinating(make_cluster, new_cpf, "coordinator.after_some_decisions")
    wait_until(lambda: ledger(cluster, "gama")["participations"].get(tid) == "committed", 30,
               "gama learns the commit from beta")
    assert ana.balance("gama", acc["gama"]) == "115.00"
    assert ana.balance("beta", acc["beta"]) == "85.00"
    assert cluster["alfa"].alive is False  # learnt without the coordinator
    # When alfa comes back, it collects the acknowledgements and nothing is left in doubt.
    cluster["alfa"].start()
    cluster["alfa"].wait_healthy()
    wait_until(lambda: not ledger(cluster, "alfa")["pending_acks"], 30, "acks collected")
    assert ana.balance("gama", acc["gama"]) == "115.00"


def test_a_participant_that_never_voted_learns_the_abort_and_refuses_the_late_prepare(make_cluster, new_cpf):
    """gama, paused through the whole transfer, never votes: the coordinator aborts at the
    deadline and gama, once it runs again, records the ABORT; the PREPARE it finds waiting is
    answered NO."""
    cluster = make_cluster(cooperative_termination=True)
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
    # gama may handle the ABORT before the PREPARE that waited beside it (or find that PREPARE
    # expired): it then remembers the abort of an id it never prepared, which the ledger
    # snapshot leaves out; either way the transfer is aborted there.
    wait_until(lambda: "aborted" in participation_states(cluster, "gama", tid), 30,
               "gama remembers the abort")
    assert "committed" not in participation_states(cluster, "gama", tid)
    wait_until(lambda: ledger(cluster, "beta")["participations"].get(tid) == "aborted", 30)
    assert not ledger(cluster, "beta")["holds"]
    assert ana.balance("gama", acc["gama"]) == "100.00" and ana.balance("beta", acc["beta"]) == "100.00"

def test_a_lying_peer_cannot_split_a_transfer(make_cluster, new_cpf):
    """alfa dies before its decision is durable: beta and gama are prepared, the outcome is
    presumed abort. beta lies to gama: a COMMIT of its own, and a "relay" of a COMMIT that alfa
    never signed. gama refuses both and ends aborted with beta, as alfa decides on restart."""
    cluster, ana, acc, tid = alfa_dies_coordinating(make_cluster, new_cpf, "coordinator.before_decision_durable")
    wait_until(lambda: ledger(cluster, "gama")["participations"].get(tid) == "prepared", 10, "gama prepared")
    with PeerBank(cluster, "beta") as beta:
        beta.send("gama", P.Decision(transfer_id=tid, outcome="commit"))          # beta is not its coordinator
        made_up = P.encode("alfa", P.Decision(transfer_id=tid, outcome="commit"), ns=beta.config.consortium)
        beta.send("gama", P.Relay(transfer_id=tid, coordinator="alfa", envelope=base64.b64encode(made_up).decode(),
                                  signature=beta.keyring.sign(made_up)))          # signed by beta, not alfa
    gama = cluster["gama"].url
    # Counted once each lie was handled (and refused): only then is gama's ledger looked at.
    wait_until(lambda: rejected(gama, "forged_relay") >= 1 and rejected(gama, "not_coordinator") >= 1, 10,
               "both lies refused at gama")
    assert ledger(cluster, "gama")["participations"].get(tid) == "prepared"
    assert ana.balance("gama", acc["gama"]) == "100.00"
    cluster["alfa"].start()
    cluster["alfa"].wait_healthy()
    for bank in ("beta", "gama"):
        wait_until(lambda: ledger(cluster, bank)["participations"].get(tid) == "aborted", 30,
                   f"{bank} aborted with alfa")
    assert ana.balance("gama", acc["gama"]) == "100.00" and ana.balance("beta", acc["beta"]) == "100.00"
