"""The throttles of other banks' lookups count where the customers' throttles count: with a
shared store (Redis), every process of a bank sees one rate, so running more processes gives a
dishonest bank no more answers; a store that does not answer refuses (failing closed)."""
from __future__ import annotations

import uuid

import pytest

from bank_node.services.throttles import Throttles

from .conftest import make_config

REDIS = "redis://127.0.0.1:6379/0"


def throttles(storage: str, consortium: str, per_bank: int = 3, per_customer: int = 2) -> Throttles:
    config = make_config(consortium=consortium,
                         security={"rate_limit_storage": storage},
                         interbank={"lookups_per_second_per_bank": per_bank,
                                    "lookups_per_minute_per_customer": per_customer})
    return Throttles(config, "alfa")


def test_a_peer_over_its_lookup_rate_is_refused_and_others_are_not():
    t = throttles("memory://", "unit")
    assert [t.peer_lookup("gama") for _ in range(4)] == [True, True, True, False]
    assert t.peer_lookup("beta")                                  # another bank has its own rate


def test_answers_in_full_about_one_customer_have_their_own_smaller_rate():
    t = throttles("memory://", "unit", per_bank=100)
    assert [t.peer_lookup("gama", "12345678909") for _ in range(3)] == [True, True, False]
    assert t.peer_lookup("gama", "98765432100") and t.peer_lookup("gama")


@pytest.fixture
def redis_consortium():
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.fail(f"no Redis at {REDIS} (the shared throttles need one)")
    name = f"t-{uuid.uuid4().hex[:12]}"
    yield name
    keys = list(client.scan_iter(match=f"*{name}*"))
    if keys:
        client.delete(*keys)


def test_two_processes_of_a_bank_share_one_lookup_rate(redis_consortium):
    one, two = throttles(REDIS, redis_consortium), throttles(REDIS, redis_consortium)
    answered = [t.peer_lookup("gama") for t in (one, two, one, two, one, two)]
    assert answered.count(True) == 3, answered


def test_a_store_that_does_not_answer_refuses_the_lookup():
    t = throttles("redis://127.0.0.1:1/0", "unit")               # nothing listens on port 1
    assert t.peer_lookup("gama") is False
