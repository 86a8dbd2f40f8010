"""The signed YES votes a COMMIT must carry, as a participant checks them.

Here this bank is "beta"; "alfa" coordinates and "gama" holds the other leg. A COMMIT is applied
at beta only with gama's own signed YES; beta's own vote and the coordinator's are never needed,
so their signatures are not checked, and a vote envelope whose signature checked out once is not
checked again. Nothing of that may let a forged envelope through.
"""
from __future__ import annotations

import base64
from types import SimpleNamespace

import pytest

from bank_node import protocol as P
from bank_node.interbank import participant as participant_module
from bank_node.interbank.participant import Participant
from bank_node.interbank.signing import Keyring, new_key

NS = "test-consortium"
KEYS = {bank: new_key() for bank in ("alfa", "beta", "gama", "mallory")}


def keyring(bank: str) -> Keyring:
    return Keyring(KEYS[bank][0], {b: pub for b, (_, pub) in KEYS.items() if b != "mallory"})


class CountingKeyring(Keyring):
    def __init__(self, bank: str):
        super().__init__(KEYS[bank][0], {b: pub for b, (_, pub) in KEYS.items() if b != "mallory"})
        self.checks: list[str] = []

    def verify(self, bank, body, signature):
        self.checks.append(bank)
        return super().verify(bank, body, signature)


def vote_envelope(bank: str, *votes: tuple[str, str], signer: str | None = None, ns: str = NS) -> P.VoteProof:
    body = P.encode(bank, *[P.VoteMsg(transfer_id=t, bank=bank, vote=v) for t, v in votes], ns=ns)
    return P.VoteProof(bank=bank, envelope=base64.b64encode(body).decode(),
                       signature=keyring(signer or bank).sign(body))


@pytest.fixture
def beta():
    ring = CountingKeyring("beta")
    rt = SimpleNamespace(bank_id="beta", keyring=ring, config=SimpleNamespace(consortium=NS))
    return Participant(rt, outbox=None), ring


def test_only_the_other_participants_votes_are_checked_and_count(beta):
    part, ring = beta
    proofs = [vote_envelope("gama", ("t1", "yes"), ("t2", "no")), vote_envelope("beta", ("t1", "yes")),
              vote_envelope("alfa", ("t1", "yes"))]
    assert part.voted_yes(proofs, coordinator="alfa") == {("gama", "t1")}
    assert ring.checks == ["gama"]


def test_a_vote_envelope_is_checked_once_and_still_proves_its_votes(beta):
    part, ring = beta
    proof = vote_envelope("gama", ("t1", "yes"), ("t2", "yes"))
    assert part.voted_yes([proof], "alfa") == {("gama", "t1"), ("gama", "t2")}
    assert part.voted_yes([proof], "alfa") == {("gama", "t1"), ("gama", "t2")}
    assert ring.checks == ["gama"]


@pytest.mark.parametrize("forgery", ["signed by another", "other body, real signature", "other consortium",
                                     "sender is not the voter", "not base64"])
def test_a_forged_proof_proves_nothing_even_after_the_real_one_was_remembered(beta, forgery):
    part, ring = beta
    real = vote_envelope("gama", ("t1", "no"))
    assert part.voted_yes([real], "alfa") == set()
    if forgery == "signed by another":
        fake = vote_envelope("gama", ("t1", "yes"), signer="mallory")
    elif forgery == "other body, real signature":
        made_up = P.encode("gama", P.VoteMsg(transfer_id="t1", bank="gama", vote="yes"), ns=NS)
        fake = P.VoteProof(bank="gama", envelope=base64.b64encode(made_up).decode(), signature=real.signature)
    elif forgery == "other consortium":
        fake = vote_envelope("gama", ("t1", "yes"), ns="elsewhere")
    elif forgery == "sender is not the voter":
        body = P.encode("alfa", P.VoteMsg(transfer_id="t1", bank="gama", vote="yes"), ns=NS)
        fake = P.VoteProof(bank="gama", envelope=base64.b64encode(body).decode(), signature=keyring("gama").sign(body))
    else:
        fake = P.VoteProof(bank="gama", envelope="%%%", signature=real.signature)
    checks = len(ring.checks)
    assert part.voted_yes([fake], "alfa") == set()
    assert part.voted_yes([fake], "alfa") == set()
    assert len(part._proven) == 1                    # the real NO only: a failed proof is not remembered
    if forgery != "not base64":
        assert len(ring.checks) == checks + 2        # and is checked again each time


def test_the_remembered_envelopes_are_bounded(beta, monkeypatch):
    part, ring = beta
    monkeypatch.setattr(participant_module, "PROVEN_CACHE", 3)
    for i in range(5):
        assert part.voted_yes([vote_envelope("gama", (f"t{i}", "yes"))], "alfa") == {("gama", f"t{i}")}
    assert len(part._proven) == 3
