"""The lying bank: a member of the consortium that cheats, during a chaos run.

Its bank node runs as every other (the workload uses it, the nemesis kills and pauses it), but
its operator also sends, with the bank's own broker identity and signing key, what an honest
bank never would, one message at a random moment after another:

- ``unbalanced``: a PREPARE whose legs do not add up (a credit bigger than its debits);
- ``no_consent``: a debit of an honest bank's customer who never consented to the liar, then a COMMIT;
- ``unproven_commit``: a credit at one honest bank "paid" by a debit at another, and a COMMIT
  without that other bank's signed YES;
- ``foreign_decision``: a COMMIT or ABORT for a transfer another bank coordinates;
- ``forged_sender``: an envelope that claims to come from an honest bank;
- ``bad_signature``: an envelope whose signature is not the liar's;
- ``forged_ack``: an acknowledgement in an honest bank's name;
- ``far_deadline``: a PREPARE whose deadline is a day away;
- ``vote_on_queue``: a vote pushed onto a bank's queue, where only requests travel;
- ``replay``: one of its own earlier envelopes, sent again verbatim;
- ``mint``: a credit at an honest bank backed by a debit "at" the liar, then a COMMIT: the one
  attack the protocol lets through by design (the honest bank credits its customer on the
  liar's word), bounded by the net debit cap each bank sets on the liar and written in its books
  as the liar's debt.

None of the others may have any effect: the checker audits the honest banks' books, the money
the liar created must equal exactly the claims the honest banks hold on it beyond what the
liar's own books admit, and each of those claims must stay under its cap.
"""
from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import Counter
from typing import Callable

from bank_node import protocol as P

from ..peer import PeerBank, prepare

ATTACKS = ("unbalanced", "no_consent", "unproven_commit", "foreign_decision", "forged_sender",
           "bad_signature", "forged_ack", "far_deadline", "vote_on_queue", "replay", "mint")


class Liar:
    def __init__(self, seed: int, cluster, bank_id: str, targets: Callable[[], list[tuple[str, str, str]]],
                 foreign: Callable[[], list[tuple[str, str, list[str]]]], say: Callable[[str], None]):
        """``targets()``: (bank, account, holder cpf) of honest customers' accounts; ``foreign()``:
        (transfer id, coordinator, participant banks) of transfers with a leg at the liar that
        other banks coordinate (what the liar's own ledger tells it)."""
        self.rng = random.Random(seed * 31 + 5)
        self.cluster = cluster
        self.bank_id = bank_id
        self.targets = targets
        self.foreign = foreign
        self.say = say
        self.sent: Counter = Counter()
        self.minted_attempts = 0
        self.minted_yes = 0
        self._peer: PeerBank | None = None
        self._sent_bodies: list[tuple[str, bytes, dict]] = []

    # the loop ---------------------------------------------------------------------------------
    def run(self, until: float, stop: threading.Event) -> None:
        logging.getLogger("pika").setLevel(logging.CRITICAL)   # its reconnects while the broker is down
        while time.monotonic() < until - 2 and not stop.wait(self.rng.uniform(0.05, 0.3)):
            attack = self.rng.choice(ATTACKS)
            try:
                peer = self._connect()
                if getattr(self, attack)(peer):
                    self.sent[attack] += 1
            except Exception as e:  # noqa: BLE001 - the nemesis closes connections too: reconnect next time
                self.sent[f"{attack} (not sent: {type(e).__name__})"] += 1
                self._close()
                stop.wait(0.5)
        self._close()

    def _connect(self) -> PeerBank:
        if self._peer is None or not self._peer.conn.is_open:
            self._peer = PeerBank(self.cluster, self.bank_id)
        return self._peer

    def _close(self) -> None:
        if self._peer is not None:
            try:
                self._peer.close()
            except Exception:  # noqa: BLE001 - it is gone either way
                pass
            self._peer = None

    # helpers ------------------------------------------------------------------------------------
    def _target(self) -> tuple[str, str, str] | None:
        honest = [t for t in self.targets() if t[0] != self.bank_id]
        return self.rng.choice(honest) if honest else None

    def _send(self, peer: PeerBank, to: str, *items, **seal) -> None:
        body, headers = peer.seal(*items, **seal)
        self._sent_bodies.append((to, body, headers))
        del self._sent_bodies[:-50]
        peer.publish(to, body, headers)

    def _voted_yes(self, peer: PeerBank, to: str, item: P.Prepare) -> bool:
        """Send a PREPARE as an RPC and wait for the vote (a liar that wants its COMMIT taken
        waits for the YES, as a coordinator would)."""
        reply = peer.ask(to, item, timeout=3)
        return reply is not None and any(isinstance(v, P.VoteMsg) and v.vote == "yes" for v in reply.items)

    def _fake_account(self) -> str:
        return f"9{self.rng.randrange(10 ** 7):07d}"   # an account the liar's books never had

    def _prepare(self, tid: str, initiator: str, legs: list, deadline_ms: int | None = None) -> P.Prepare:
        return prepare(tid, self.bank_id, initiator, legs, deadline_ms)

    # the attacks ----------------------------------------------------------------------------------
    def unbalanced(self, peer: PeerBank) -> bool:
        t = self._target()
        if t is None:
            return False
        bank, account, cpf = t
        tid = str(uuid.uuid4())
        self._send(peer, bank, self._prepare(tid, cpf, [(self.bank_id, self._fake_account(), 10_00, "debit"),
                                                        (bank, account, 20_00, "credit")]))
        self._send(peer, bank, P.Decision(transfer_id=tid, outcome="commit"))
        return True

    def no_consent(self, peer: PeerBank) -> bool:
        t = self._target()
        if t is None:
            return False
        bank, account, cpf = t
        tid = str(uuid.uuid4())
        self._send(peer, bank, self._prepare(tid, cpf, [(bank, account, 50_00, "debit"),
                                                        (self.bank_id, self._fake_account(), 50_00, "credit")]))
        self._send(peer, bank, P.Decision(transfer_id=tid, outcome="commit"))
        return True

    def unproven_commit(self, peer: PeerBank) -> bool:
        credit, debit = self._target(), self._target()
        if credit is None or debit is None or credit[0] == debit[0]:
            return False
        tid = str(uuid.uuid4())
        legs = [(debit[0], debit[1], 30_00, "debit"), (credit[0], credit[1], 30_00, "credit")]
        # The debit bank never hears of it; the credit bank votes YES on its own legs' merits.
        if self._voted_yes(peer, credit[0], self._prepare(tid, debit[2], legs)):
            self._send(peer, credit[0], P.Decision(transfer_id=tid, outcome="commit"))
        return True

    def foreign_decision(self, peer: PeerBank) -> bool:
        others = self.foreign()
        if not others:
            return False
        tid, coordinator, banks = self.rng.choice(others)
        victims = [b for b in banks if b not in (self.bank_id, coordinator)] or [coordinator]
        self._send(peer, self.rng.choice(victims),
                   P.Decision(transfer_id=tid, outcome=self.rng.choice(["commit", "abort"])))
        return True

    def forged_sender(self, peer: PeerBank) -> bool:
        t = self._target()
        if t is None:
            return False
        bank, account, cpf = t
        other = self.rng.choice([b for b in self.cluster.banks if b not in (bank, self.bank_id)] or [bank])
        tid = str(uuid.uuid4())
        item = prepare(tid, other, cpf, [(self.bank_id, self._fake_account(), 10_00, "debit"),
                                         (bank, account, 10_00, "credit")])
        self._send(peer, bank, item, sender=other)   # signed with the liar's key, in another bank's name
        return True

    def bad_signature(self, peer: PeerBank) -> bool:
        t = self._target()
        if t is None:
            return False
        bank, account, cpf = t
        body = P.encode(self.bank_id, self._prepare(str(uuid.uuid4()), cpf, [
            (self.bank_id, self._fake_account(), 10_00, "debit"), (bank, account, 10_00, "credit")]),
            ns=peer.config.consortium)
        peer.publish(bank, body, {"sig": "A" * 86 + "=="})
        return True

    def forged_ack(self, peer: PeerBank) -> bool:
        others = self.foreign()
        if not others:
            return False
        tid, coordinator, banks = self.rng.choice(others)
        someone = self.rng.choice([b for b in banks if b != self.bank_id] or [coordinator])
        self._send(peer, coordinator, P.DecisionAck(transfer_id=tid, bank=someone, outcome="commit"))
        return True

    def far_deadline(self, peer: PeerBank) -> bool:
        t = self._target()
        if t is None:
            return False
        bank, account, cpf = t
        self._send(peer, bank, self._prepare(str(uuid.uuid4()), cpf, [
            (bank, account, 5_00, "debit"), (self.bank_id, self._fake_account(), 5_00, "credit")],
            deadline_ms=int(time.time() * 1000) + 86_400_000))
        return True

    def vote_on_queue(self, peer: PeerBank) -> bool:
        t = self._target()
        if t is None:
            return False
        self._send(peer, t[0], P.VoteMsg(transfer_id=str(uuid.uuid4()), bank=self.bank_id, vote="yes"))
        return True

    def replay(self, peer: PeerBank) -> bool:
        if not self._sent_bodies:
            return False
        to, body, headers = self.rng.choice(self._sent_bodies)
        peer.publish(to, body, headers)
        return True

    def mint(self, peer: PeerBank) -> bool:
        t = self._target()
        if t is None:
            return False
        bank, account, cpf = t
        tid = str(uuid.uuid4())
        amount = self.rng.randint(10_00, 60_00)
        self.minted_attempts += 1
        if self._voted_yes(peer, bank, self._prepare(tid, cpf, [(self.bank_id, self._fake_account(), amount, "debit"),
                                                                (bank, account, amount, "credit")])):
            self._send(peer, bank, P.Decision(transfer_id=tid, outcome="commit"))
            self.minted_yes += 1
        return True

    def summary(self) -> dict:
        return {"bank": self.bank_id, "sent": dict(sorted(self.sent.items())),
                "mints": f"{self.minted_yes} of {self.minted_attempts} voted YES"}
