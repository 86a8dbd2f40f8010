"""The coordinator's outbox: per-peer batching of PREPAREs.

PREPAREs queued together leave together, one envelope per peer, however many slots are free;
a slot that frees up leaves what waited for the coordinator's next pump, which takes everything
queued by then.
"""
from __future__ import annotations

import time
from concurrent.futures import Future
from types import SimpleNamespace

from bank_node import protocol as P
from bank_node.interbank.outbox import Outbox


class FakeBroker:
    """Records each request (its bank and transfer ids) and leaves its future to the test."""

    def __init__(self):
        self.requests: list[tuple[str, list[str], SimpleNamespace]] = []

    def request(self, bank, body, *, expiration_ms, expect_user, headers, with_headers):
        req = SimpleNamespace(correlation_id=f"c{len(self.requests)}", future=Future())
        self.requests.append((bank, [i.transfer_id for i in P.decode(body).items], req))
        return req

    def forget(self, correlation_id):
        pass


def outbox(in_flight: int = 2):
    broker = FakeBroker()
    rt = SimpleNamespace(bank_id="alfa", broker=broker, users={"beta": "beta", "gama": "gama"},
                         config=SimpleNamespace(interbank=SimpleNamespace(prepare_envelopes_in_flight=in_flight)),
                         seal=lambda *items: (P.encode("alfa", *items, ns="t"), None), count=lambda *a, **k: None)
    replies = []
    return Outbox(rt, on_reply=lambda sent, reply, error: replies.append((sent.transfer_ids, error))), broker, replies


def prepare(tid: str) -> P.Prepare:
    return P.Prepare(transfer_id=tid, coordinator="alfa", initiator="52998224725",
                     deadline_ms=int(time.time() * 1000) + 60_000,
                     legs=[P.Leg(bank="beta", account="100000001", amount=100, direction="debit"),
                           P.Leg(bank="gama", account="100000002", amount=100, direction="credit")])


def test_prepares_queued_together_leave_in_one_envelope_per_peer():
    box, broker, _ = outbox(in_flight=2)
    for i in range(5):
        box.prepare("beta", prepare(f"t{i}"))
        box.prepare("gama", prepare(f"t{i}"))
    assert broker.requests == []   # nothing leaves before the pump
    box.pump()
    sent = sorted((bank, ids) for bank, ids, _ in broker.requests)
    assert sent == [("beta", [f"t{i}" for i in range(5)]), ("gama", [f"t{i}" for i in range(5)])]
    box.pump()   # nothing left: nothing more leaves
    assert len(broker.requests) == 2


def test_what_waits_for_a_slot_leaves_at_the_pump_after_the_slot_frees_up():
    box, broker, replies = outbox(in_flight=1)
    box.prepare("beta", prepare("t0"))
    box.pump()
    box.prepare("beta", prepare("t1"))
    box.prepare("beta", prepare("t2"))
    box.pump()
    assert [ids for _, ids, _ in broker.requests] == [["t0"]]   # the one slot is taken
    broker.requests[0][2].future.set_result((b"votes", None))
    assert replies == [(["t0"], None)] and len(broker.requests) == 1
    box.prepare("beta", prepare("t3"))   # queued before the coordinator pumps: rides along
    box.pump()
    assert [ids for _, ids, _ in broker.requests] == [["t0"], ["t1", "t2", "t3"]]
