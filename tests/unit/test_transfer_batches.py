"""Transfer batches (POST /api/transfer-batches) and the batched protocol under them.

Each item of a batch commits or aborts on its own; the PREPAREs of many transfers travel to a
bank together and are prepared in one transaction with a savepoint each, so one bad transfer is
one NO and never spoils the others; and if that transaction cannot commit, no vote leaves at all.
"""
from __future__ import annotations

import sqlite3
import time
import uuid
from contextlib import contextmanager


from bank_node import protocol as P
from bank_node.node import BankNode

from .conftest import assert_problem


def customer_at(nodes, banks, funds: dict[str, str] | None = None):
    """One customer with an account at each of ``banks``, funded as ``funds`` says, each account
    debitable by the other banks (consent given at its own bank)."""
    (_, first), *_ = [nodes[b] for b in banks]
    cpf = first.new_cpf()
    tokens, accounts = {}, {}
    for b in banks:
        node, api = nodes[b]
        assert api.register(cpf).status_code == 201
        tokens[b] = api.login(cpf)
        accounts[b] = api.open_account(tokens[b], [cpf])
        if (funds or {}).get(b):
            assert api.deposit(tokens[b], accounts[b], funds[b]).status_code == 201
        for other in banks:
            if other != b:
                r = api.call("POST", "/api/mandates", {"account": accounts[b], "bank": other}, token=tokens[b])
                assert r.status_code == 201, r.get_json()
    return cpf, tokens, accounts


def balance(nodes, bank: str, tokens: dict, accounts: dict) -> str:
    _, api = nodes[bank]
    return api.account(tokens[bank], accounts[bank])["balance"]


def holds(node) -> list:
    with node.store.transaction(write=False) as tx:
        return tx.ledger_snapshot()["holds"]


def test_items_without_ids_get_their_own_and_are_answered_in_order(consortium):
    nodes = consortium(("alfa", "beta"))
    _, tokens, acc = customer_at(nodes, ("alfa", "beta"), {"alfa": "10.00"})
    _, api = nodes["alfa"]
    items = [{"sources": [{"bank": "alfa", "account": acc["alfa"], "amount": amount}],
              "destination": {"bank": "beta", "account": acc["beta"]}} for amount in ("1.00", "20.00", "2.00")]
    named = str(uuid.uuid4())
    items[2]["id"] = named
    r = api.call("POST", "/api/transfer-batches", {"items": items}, token=tokens["alfa"])
    assert r.status_code == 201, r.get_json()
    out = r.get_json()["items"]
    assert [i["status"] for i in out] == ["committed", "aborted", "committed"]
    assert out[1]["reason"] == "insufficient_funds"
    assert out[2]["id"] == named and len({i["id"] for i in out}) == 3
    nodes.net.settle()
    assert balance(nodes, "alfa", tokens, acc) == "7.00" and balance(nodes, "beta", tokens, acc) == "3.00"


def test_two_items_with_one_id_are_refused_whole(consortium):
    nodes = consortium(("alfa", "beta"))
    _, tokens, acc = customer_at(nodes, ("alfa", "beta"), {"alfa": "10.00"})
    _, api = nodes["alfa"]
    same = str(uuid.uuid4())
    item = {"id": same, "sources": [{"bank": "alfa", "account": acc["alfa"], "amount": "1.00"}],
            "destination": {"bank": "beta", "account": acc["beta"]}}
    assert_problem(api.call("POST", "/api/transfer-batches", {"items": [item, item]}, token=tokens["alfa"]),
                   422, "invalid_input")
    assert balance(nodes, "alfa", tokens, acc) == "10.00"


def test_a_hundred_transfers_with_one_bad_leg_give_99_commits_and_travel_in_few_envelopes(consortium):
    nodes = consortium(("alfa", "beta"))
    _, tokens, acc = customer_at(nodes, ("alfa", "beta"), {"beta": "99.00"})
    alfa, api = nodes["alfa"]
    items = [{"sources": [{"bank": "beta", "account": acc["beta"], "amount": "1.00"}],
              "destination": {"bank": "alfa", "account": acc["alfa"]}} for _ in range(100)]
    items[37]["sources"][0]["account"] = "00000000"          # no such account at beta
    r = api.call("POST", "/api/transfer-batches", {"items": items}, token=tokens["alfa"])
    assert r.status_code == 201, r.get_json()
    out = r.get_json()["items"]
    assert [i["status"] for i in out].count("committed") == 99
    assert out[37]["status"] == "aborted" and out[37]["reason"] == "not_found", out[37]
    nodes.net.settle()
    assert balance(nodes, "beta", tokens, acc) == "0.00" and balance(nodes, "alfa", tokens, acc) == "99.00"
    assert holds(nodes["beta"][0]) == []
    # Batched: the hundred PREPAREs reached beta in far fewer envelopes than transfers.
    envelopes = [P.decode(d.body) for bank, d in nodes.net.deliveries if bank == "beta"
                 and any(isinstance(i, P.Prepare) for i in P.decode(d.body).items)]
    assert sum(len(e.items) for e in envelopes) == 100
    assert len(envelopes) <= 10, [len(e.items) for e in envelopes]


def prepares(cpf: str, acc: dict, n: int, bad: int | None = None) -> list[P.Prepare]:
    """``n`` whole-transfer PREPAREs from alfa: 1.00 from the customer's beta account into the
    alfa one (item ``bad`` from an account beta does not have)."""
    deadline = int(time.time() * 1000) + 3_000   # within the PREPARE TTL a participant accepts
    return [P.Prepare(transfer_id=str(uuid.uuid4()), coordinator="alfa", initiator=cpf, deadline_ms=deadline,
                      legs=[P.Leg(bank="beta", account="00000000" if i == bad else acc["beta"], amount=100,
                                  direction="debit"),
                            P.Leg(bank="alfa", account=acc["alfa"], amount=100, direction="credit")])
            for i in range(n)]


def test_one_envelope_of_a_hundred_prepares_with_one_bad_leg_is_99_yes_and_1_no(consortium):
    """Straight at the participant: one envelope, one transaction, a savepoint per transfer."""
    nodes = consortium(("alfa", "beta"))
    cpf, tokens, acc = customer_at(nodes, ("alfa", "beta"), {"beta": "99.00"})
    alfa, _ = nodes["alfa"]
    beta, _ = nodes["beta"]
    items = prepares(cpf, acc, 100, bad=37)
    body, headers = alfa.transfers.rt.seal(*items)
    votes = alfa.broker.request("beta", body, expiration_ms=10_000, headers=headers).future.result(10)
    env = P.decode(votes)
    assert env.sender == "beta" and len(env.items) == 100
    by_id = {v.transfer_id: v for v in env.items}
    assert [by_id[i.transfer_id].vote for i in items].count("yes") == 99
    bad = by_id[items[37].transfer_id]
    assert bad.vote == "no" and [(r.account, r.code) for r in bad.reasons] == [("00000000", "not_found")]
    with beta.store.transaction(write=False) as tx:
        assert tx.holds_total(acc["beta"]) == 99 * 100


@contextmanager
def failing_commits(node, times: int = 1):
    """The next ``times`` write transactions of ``node`` cannot commit (a disk error at COMMIT):
    everything written in them is rolled back."""
    original = node.store.transaction
    left = [times]

    @contextmanager
    def transaction(write: bool = True, durable: bool = True, lock_timeout_s=None):
        with original(write, durable, lock_timeout_s) as tx:
            yield tx
            if write and left[0] > 0:
                left[0] -= 1
                raise sqlite3.OperationalError("disk I/O error")
    node.store.transaction = transaction
    try:
        yield left
    finally:
        node.store.transaction = original


def test_an_envelope_whose_commit_fails_gets_no_vote_and_leaves_no_hold(consortium):
    nodes = consortium(("alfa", "beta"))
    cpf, tokens, acc = customer_at(nodes, ("alfa", "beta"), {"beta": "50.00"})
    alfa, _ = nodes["alfa"]
    beta, _ = nodes["beta"]
    body, headers = alfa.transfers.rt.seal(*prepares(cpf, acc, 10))
    with failing_commits(beta) as left:
        pending = alfa.broker.request("beta", body, expiration_ms=3_000, headers=headers)
        nodes.net.settle()
        assert left[0] == 0, "beta never tried to write the PREPAREs"
    assert not pending.future.done(), "a vote left although nothing was written"
    (d,) = [d for bank, d in nodes.net.deliveries if bank == "beta" and d.body == body]
    assert d.settled == ["reject-requeue"]            # the broker would hand it over again
    assert holds(beta) == []
    # After a restart (recovery), nothing held and nothing in doubt at beta either.
    config, data = beta.config, beta.data_dir
    beta.stop()
    again = BankNode(config, "beta", data, connect_broker=False)
    try:
        again.transfers.resolver.recover()
        assert holds(again) == []
        with again.store.transaction(write=False) as tx:
            assert tx.participations_in("prepared") == []
            assert tx.get_account(acc["beta"])["balance"] == 5000
    finally:
        again.stop()


def test_through_the_api_a_failed_commit_at_a_participant_aborts_exactly_what_it_held(consortium):
    """The transfers whose PREPAREs were in the lost transaction abort at their deadline; the
    others commit; every one is all-or-nothing and nothing stays held."""
    nodes = consortium(("alfa", "beta"), timeouts={"prepare_ttl_ms": 1500})
    cpf, tokens, acc = customer_at(nodes, ("alfa", "beta"), {"beta": "50.00"})
    alfa, api = nodes["alfa"]
    beta, _ = nodes["beta"]
    items = [{"sources": [{"bank": "beta", "account": acc["beta"], "amount": "1.00"}],
              "destination": {"bank": "alfa", "account": acc["alfa"]}} for _ in range(10)]
    with failing_commits(beta) as left:
        r = api.call("POST", "/api/transfer-batches", {"items": items}, token=tokens["alfa"])
        assert left[0] == 0, "beta never tried to write the PREPAREs"
    assert r.status_code == 201, r.get_json()
    out = r.get_json()["items"]
    aborted = [i for i in out if i["status"] == "aborted"]
    assert aborted and all(i["reason"] == "timeout" for i in aborted), out
    assert {i["status"] for i in out} <= {"committed", "aborted"}
    nodes.net.settle()
    committed = len(out) - len(aborted)
    assert holds(beta) == []
    assert balance(nodes, "beta", tokens, acc) == f"{50 - committed}.00"
    assert balance(nodes, "alfa", tokens, acc) == f"{committed}.00"
