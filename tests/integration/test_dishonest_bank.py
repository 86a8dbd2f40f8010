"""A dishonest member bank, with nothing but its own broker identity and its own signing key.

gama is the dishonest member here: it sends by hand what an honest coordinator never would
(``tools/peer.py``). Each test performs one attack and checks that no money moved at an honest
bank and nothing leaked, or that what it can do is bounded by the caps the honest banks set on it
and written in their books as its own debt:

- a forged debit of another bank's customer (no mandate at the account's bank);
- a forged two-bank transfer (a COMMIT without the debit bank's signed YES);
- money from nothing (a credit with no debit; a credit backed by a debit "at" the liar);
- a lying YES vote (gama answers YES for accounts it does not have);
- a lookup of anyone's balances;
- a PREPARE whose deadline is years away;
- an ABORT or a question sent for a transfer id before its customer submits it;
- a transfer id reused at another bank.
"""
from __future__ import annotations

import base64
import threading
import time
import uuid

import pika
import pytest

from bank_node import protocol as P
from tools.peer import PeerBank, prepare
from tests.support import customer_everywhere, ledger, metric, operator_json, operator_text, rejected, wait_until
from tools.api_client import Customer

pytestmark = pytest.mark.integration
PER_CUSTOMER = 20   # answers in full about one customer, per asking bank and minute, in this world


@pytest.fixture
def world(make_cluster, new_cpf):
    """Ana, an honest customer of alfa and beta; Mallory, gama's accomplice, with accounts at
    alfa and gama. alfa sets a cap of 100.00 on what gama may owe it."""
    cluster = make_cluster(bank_options={"alfa": {"peer_caps": {"gama": "100.00"}}},
                           interbank={"lookups_per_minute_per_customer": PER_CUSTOMER})
    ana, acc = customer_everywhere(cluster, new_cpf(), "Ana Souza", "500.00", consent=False)
    mallory = Customer(new_cpf(), "Mallory Reis", ana.urls)
    mal = {}
    for bank in ("alfa", "gama"):
        mallory.join(bank)
        mal[bank] = mallory.open_account(bank)
    return cluster, ana, acc, mallory, mal


def cents(s: str) -> int:
    return int(s.replace(".", ""))


def test_a_forged_debit_without_the_holders_consent_moves_nothing(world):
    cluster, ana, acc, mallory, mal = world
    tid = str(uuid.uuid4())
    with PeerBank(cluster, "gama") as gama:
        # gama names itself coordinator and Ana as the initiator of a debit of her account at beta.
        vote = gama.ask("beta", prepare(tid, "gama", ana.cpf, [("beta", acc["beta"], 123_45, "debit"),
                                                               ("gama", mal["gama"], 123_45, "credit")])).items[0]
        assert (vote.vote, [r.code for r in vote.reasons]) == ("no", ["no_mandate"])
        gama.send("beta", P.Decision(transfer_id=tid, outcome="commit"))
    wait_until(lambda: rejected(cluster["beta"].url, "violation") >= 1, 10, "the COMMIT refused at beta")
    assert ana.account("beta", acc["beta"])["balance"] == ana.account("beta", acc["beta"])["available"] == "500.00"
    led = ledger(cluster, "beta")
    assert not led["holds"] and led["participations"][tid] == "aborted"


def test_a_forged_two_bank_transfer_moves_nothing(world):
    """gama coordinates a debit of Ana at beta into Mallory's account at alfa, then tells alfa to
    commit as if beta had agreed: alfa wants beta's own signed YES, which gama cannot make."""
    cluster, ana, acc, mallory, mal = world
    tid = str(uuid.uuid4())
    legs = [("beta", acc["beta"], 500_00, "debit"), ("alfa", mal["alfa"], 500_00, "credit")]
    with PeerBank(cluster, "gama") as gama:
        no = gama.ask("beta", prepare(tid, "gama", ana.cpf, legs))
        assert no.items[0].vote == "no"
        yes = gama.ask("alfa", prepare(tid, "gama", ana.cpf, legs))
        assert yes.items[0].vote == "yes"       # a credit: alfa has nothing to refuse yet
        # a bare COMMIT, then one "proved" by beta's real (NO) vote and by a vote gama signed itself
        gama.send("alfa", P.Decision(transfer_id=tid, outcome="commit"))
        beta_no = P.encode("beta", *no.items, ns=gama.config.consortium)
        made_up = P.encode("beta", P.VoteMsg(transfer_id=tid, bank="beta", vote="yes"), ns=gama.config.consortium)
        gama.send("alfa", P.VoteProof(bank="beta", envelope=base64.b64encode(beta_no).decode(),
                                      signature=gama.keyring.sign(beta_no)),
                  P.VoteProof(bank="beta", envelope=base64.b64encode(made_up).decode(),
                              signature=gama.keyring.sign(made_up)),
                  P.Decision(transfer_id=tid, outcome="commit"))
    wait_until(lambda: rejected(cluster["alfa"].url, "unproven_commit") >= 2, 10, "both COMMITs refused at alfa")
    assert mallory.balance("alfa", mal["alfa"]) == "0.00"
    assert ana.balance("beta", acc["beta"]) == "500.00"
    assert ledger(cluster, "alfa")["participations"][tid] == "prepared"   # in doubt, never credited
    assert ledger(cluster, "alfa")["positions"] == {}


def test_money_from_nothing_is_refused_or_bounded_by_the_cap_and_written_as_the_liars_debt(world):
    cluster, ana, acc, mallory, mal = world
    with PeerBank(cluster, "gama") as gama:
        # 1. a credit with nothing behind it, far over any limit: refused as a whole
        tid = str(uuid.uuid4())
        no = gama.ask("alfa", prepare(tid, "gama", mallory.cpf, [("alfa", mal["alfa"], 10**15, "credit"),
                                                                  ("gama", mal["gama"], 1, "credit")]))
        assert no.items[0].vote == "no" and {"not_one_credit", "amount_over_limit"} <= {r.code for r in no.items[0].reasons}
        gama.send("alfa", P.Decision(transfer_id=tid, outcome="commit"))
        # 2. a credit "backed" by a debit at gama itself: alfa may accept it, as gama's debt, up to its cap
        minted = []
        for amount in (60_00, 40_00, 1):
            tid = str(uuid.uuid4())
            vote = gama.ask("alfa", prepare(tid, "gama", mallory.cpf, [("gama", mal["gama"], amount, "debit"),
                                                                       ("alfa", mal["alfa"], amount, "credit")]))
            if vote.items[0].vote == "yes":
                gama.send("alfa", P.Decision(transfer_id=tid, outcome="commit"))
                minted.append(amount)
            else:
                assert [r.code for r in vote.items[0].reasons] == ["peer_cap_exceeded"]
    assert minted == [60_00, 40_00]   # 100.00 is alfa's cap on gama: the third credit is refused
    wait_until(lambda: mallory.balance("alfa", mal["alfa"]) == "100.00", 10, "the minted credits applied")
    # written in alfa's books as gama's debt, and visible as a disagreement with gama's own books
    assert ledger(cluster, "alfa")["positions"] == {"gama": 100_00}
    overview = operator_json(cluster["alfa"].url, "/api/operator/overview")
    assert overview["positions"] == {"gama": 100_00}
    from bank_node.config import load_config
    from tools import ops
    report = ops.audit(load_config(cluster.config_path))
    assert {p["banks"] for p in report["mismatched_pairs"]} == {("alfa", "gama")}
    assert not report["consortium_adds_up"]


def liar(cluster, bank: str, stop: threading.Event) -> None:
    """Replaces ``bank``'s process: votes YES to every PREPARE (signed with the bank's own key)
    and never acknowledges a decision."""
    with PeerBank(cluster, bank) as me:
        queue = me.names.bank_queue(bank)
        while not stop.is_set():
            method, props, body = me.ch.basic_get(queue, auto_ack=True)
            if method is None:
                me.conn.process_data_events(time_limit=0.05)
                continue
            env = P.decode(body)
            votes = [P.VoteMsg(transfer_id=i.transfer_id, bank=bank, vote="yes") for i in env.items
                     if isinstance(i, P.Prepare)]
            if votes and props.reply_to:
                reply, headers = me.seal(*votes)
                me.ch.basic_publish("", props.reply_to, reply, pika.BasicProperties(
                    correlation_id=props.correlation_id, user_id=me.user, headers=headers))


def test_a_lying_yes_vote_is_bounded_by_the_cap_and_recorded_as_the_liars_debt(make_cluster, new_cpf):
    """gama's process is replaced by a liar that votes YES for accounts it does not have. alfa,
    the honest coordinator and credit bank, credits its customer on gama's word only up to its
    cap on gama, records each as gama's debt, keeps gama's signed votes as evidence, and stops
    re-sending decisions gama never acknowledges after the configured time."""
    cluster = make_cluster(bank_options={"alfa": {"peer_caps": {"gama": "100.00"}}},
                           timeouts={"prepare_ttl_ms": 3000, "decision_resend_ms": 300, "status_query_ms": 300,
                                     "retry_cap_ms": 1000, "decision_resend_limit_s": 10})
    ana, acc = customer_everywhere(cluster, new_cpf(), amount="10.00")
    cluster["gama"].terminate()
    stop = threading.Event()
    t = threading.Thread(target=liar, args=(cluster, "gama", stop), daemon=True)
    t.start()
    try:
        outcomes = []
        for _ in range(3):   # 3 x 50.00 "from" Ana's account at gama, which holds 10.00
            _, body = ana.transfer("alfa", [("gama", acc["gama"], "50.00")], ("alfa", acc["alfa"]))
            outcomes.append((body["status"], body.get("reason")))
        assert outcomes == [("committed", None), ("committed", None), ("aborted", "peer_cap_exceeded")]
        assert ana.balance("alfa", acc["alfa"]) == "110.00"
        assert ledger(cluster, "alfa")["positions"] == {"gama": 100_00}
        # the decisions gama never acknowledges are re-sent for a while, then shown as stopped
        def stopped():
            o = operator_json(cluster["alfa"].url, "/api/operator/overview")
            return sum(1 for u in o["unacknowledged"] if u["resend_stopped"]) == 2
        wait_until(stopped, 30, "re-sends of the unacknowledged decisions stopped and shown")
    finally:
        stop.set()
        t.join(10)


def test_a_lookup_by_another_bank_never_carries_someone_elses_balance_and_is_rate_limited(world):
    cluster, ana, acc, mallory, mal = world
    with PeerBank(cluster, "gama") as gama:
        now = int(time.time() * 1000)
        env = gama.ask("beta", P.Lookup(cpf=ana.cpf, requester=mallory.cpf, deadline_ms=now + 2000))
        (res,) = env.items
        assert res.accounts and all(a.balance is None and a.available is None for a in res.accounts)
        assert "Ana Souza" not in str(res)
        # her 500.00 nowhere (an account's random number may hold the digits "500")
        assert all("500" not in str(v) for a in res.accounts for k, v in a.model_dump().items() if k != "number"), res
        # claiming that Ana herself asks, again and again: answered in full at most at her rate, and
        # told so at once past it (an honest bank shows it); past the per-bank rate, not answered
        answered = refused = 0
        for _ in range(3):
            reply = gama.ask("beta", *[P.Lookup(cpf=ana.cpf, requester=ana.cpf, deadline_ms=now + 5000)] * 40,
                             timeout=3)
            items = reply.items if reply else []
            answered += sum(1 for r in items if r.refused is None)
            refused += sum(1 for r in items if r.refused == "rate_limited")
            assert all(not r.accounts for r in items if r.refused), "a refusal carries no account"
    assert answered == PER_CUSTOMER, answered   # lookups_per_minute_per_customer
    assert refused >= 1
    assert answered + refused <= 3 * 40 and "consorcio_lookups_refused_total" in operator_text(cluster["beta"].url)


def test_a_customer_over_her_lookup_rate_is_told_at_once_which_banks_limit_her(world):
    """Her own bank asks the others for her no more often than they answer her (here at most
    once a second and PER_CUSTOMER times a minute): past that, the answer comes at once and says
    which banks it could not ask (never a wait for the deadline, never a bank "unreachable"
    that is not)."""
    cluster, ana, acc, mallory, mal = world
    seen = []
    for _ in range(5):
        started = time.monotonic()
        _, found = ana.call("alfa", "GET", "/api/consortium/accounts", expect=200)
        seen.append((time.monotonic() - started, found["unreachable_banks"], found["limited_banks"],
                     sorted({a["bank"] for a in found["accounts"]})))
    assert seen[0][1:] == ([], [], ["alfa", "beta", "gama"]), seen
    for took, unreachable, limited, banks in seen[1:]:
        assert limited == unreachable == ["beta", "gama"] and banks == ["alfa"], seen
        assert took < 1.0, f"told at once, not at the 1.5 s deadline: {took:.2f} s"


def test_one_customers_burst_of_lookups_leaves_the_others_answered_in_full(world):
    """Mallory asks for her accounts as fast as she can: her bank sends at most her share, so
    the other banks never go over the rate they answer alfa at, and Ana, right after, sees all
    of hers, without waiting."""
    cluster, ana, acc, mallory, mal = world
    for _ in range(60):
        _, found = mallory.call("alfa", "GET", "/api/consortium/accounts", expect=200)
    started = time.monotonic()
    _, found = ana.call("alfa", "GET", "/api/consortium/accounts", expect=200)
    assert (found["unreachable_banks"], found["limited_banks"]) == ([], []), found
    assert {a["bank"] for a in found["accounts"]} == {"alfa", "beta", "gama"}
    assert time.monotonic() - started < 1.0
    # nor did the other banks refuse alfa anything
    assert "consorcio_lookups_refused_total{" not in operator_text(cluster["beta"].url)


def test_a_prepare_with_a_deadline_years_away_holds_nothing(world):
    cluster, ana, acc, mallory, mal = world
    ana.grant("beta", acc["beta"], "gama")    # even with Ana's consent for gama
    tid = str(uuid.uuid4())
    far = int(time.time() * 1000) + 10 * 365 * 86_400_000
    with PeerBank(cluster, "gama") as gama:
        vote = gama.ask("beta", prepare(tid, "gama", ana.cpf, [("beta", acc["beta"], 500_00, "debit"),
                                                               ("gama", mal["gama"], 500_00, "credit")], far))
    assert [r.code for r in vote.items[0].reasons] == ["deadline_too_far"]
    assert not ledger(cluster, "beta")["holds"]
    assert ana.account("beta", acc["beta"])["available"] == "500.00"


def test_a_transfer_cannot_be_blocked_by_a_bank_that_knows_its_id_beforehand(world):
    """Ana's app picks the id; gama learns it and, before Ana submits, tells every bank it is
    aborted and asks about it, past any deadline. Nothing of it blocks Ana's transfer."""
    cluster, ana, acc, mallory, mal = world
    tid = str(uuid.uuid4())
    with PeerBank(cluster, "gama") as gama:
        for bank in ("alfa", "beta"):
            gama.send(bank, P.Decision(transfer_id=tid, outcome="abort"))
            gama.send(bank, P.StatusQuery(transfer_id=tid, bank="gama", coordinator="alfa"))
            gama.send(bank, P.StatusQuery(transfer_id=tid, bank="gama", coordinator="gama"))
    # handled first: each bank remembered an abort of that id under gama, its sender
    wait_until(lambda: all(metric(cluster[b].url, 'consorcio_decisions_applied_total{outcome="abort"}') >= 1
                           for b in ("alfa", "beta")), 10, "gama's ABORTs handled")
    status, body = ana.transfer("alfa", [("alfa", acc["alfa"], "10.00")], ("beta", acc["beta"]), transfer_id=tid)
    assert (status, body["status"]) == (201, "committed"), body
    assert ana.balance("beta", acc["beta"]) == "510.00"
    # and an id drawn from an Idempotency-Key is random, not derived from the key
    b = {"sources": [{"bank": "alfa", "account": acc["alfa"], "amount": "1.00"}],
         "destination": {"bank": "beta", "account": acc["beta"]}}
    ids = {ana.call("alfa", "POST", "/api/transfers", b, key="same-key-text")[1]["id"],
           ana.call("beta", "POST", "/api/transfers", b, key="same-key-text")[1]["id"]}
    assert len(ids) == 2


def test_an_id_reused_at_another_bank_is_refused_and_leaves_nothing_to_resend(world):
    cluster, ana, acc, mallory, mal = world
    ana.grant_everywhere(acc)
    tid = str(uuid.uuid4())
    assert ana.transfer("alfa", [("alfa", acc["alfa"], "10.00")], ("beta", acc["beta"]),
                        transfer_id=tid)[1]["status"] == "committed"
    # at beta, which took part in it: refused at once
    status, body = ana.transfer("beta", [("beta", acc["beta"], "1.00")], ("gama", acc["gama"]), transfer_id=tid)
    assert (status, body["code"]) == (409, "id_in_use")
    # at gama, which never saw it: beta votes NO (the id is alfa's there), gama aborts, owes nothing
    status, body = ana.transfer("gama", [("gama", acc["gama"], "1.00")], ("beta", acc["beta"]), transfer_id=tid)
    assert (body["status"], body["reason"]) == ("aborted", "id_in_use"), body
    wait_until(lambda: not ledger(cluster, "gama")["pending_acks"], 10, "nothing left to re-send at gama")
    assert ana.balance("beta", acc["beta"]) == "510.00"
