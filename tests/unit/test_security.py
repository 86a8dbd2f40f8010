"""Customers on the API: login and registration throttling, password rules, and
argon2id settings at least OWASP's outside test consortia."""
from __future__ import annotations

import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from bank_node.app import create_app
from bank_node.config import ConfigError, Security, load_config
from bank_node.domain import errors as E
from bank_node.domain.passwords import COMMON_PASSWORDS, check_password
from bank_node.node import BankNode
from bank_node.services.throttles import Throttles

from tests.conftest import TEST_REDIS

from .conftest import PASSWORD, Api, assert_problem, make_config

WRONG = "not-the-password"
ATTACKER, CUSTOMER = "203.0.113.66", "198.51.100.20"


def login(api, cpf, password, addr="10.0.0.1"):
    return api.client.post("/api/sessions", json={"cpf": cpf, "password": password},
                           environ_base={"REMOTE_ADDR": addr})


def first_wait_over(api, cpf, addr):
    """Whether the first (short) step of the throttle of this CPF and address has room again;
    asked of the throttle itself, since a login attempt would count."""
    t = api.client.application.extensions["bank_node"].banking.throttles
    return t.limiter.test(t.login_steps[0], *t.scope, "login", cpf, addr)


def wait_until(cond, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.05)


# ============================================================================ login throttling

def test_five_wrong_passwords_from_an_attackers_address_do_not_lock_the_customer_out(api, node):
    """The lockout attack: an attacker who knows Ana's CPF fails her password from their
    address until refused; Ana, from hers, logs in at once, and even the attacker's own next
    try with the right password is refused (the wait is not a password check)."""
    cpf, _ = api.customer()
    limit, window = node.config.security.login_max_failures, node.config.security.login_window_s
    for _ in range(limit):
        assert_problem(login(api, cpf, WRONG, addr=ATTACKER), 401, "invalid_credentials")
    for _ in range(3):
        r = login(api, cpf, WRONG, addr=ATTACKER)
        body = assert_problem(r, 429, "too_many_attempts")
        assert window - 5 <= int(r.headers["Retry-After"]) <= window and body["retry_after"] == int(r.headers["Retry-After"])
        assert "CPF" in body["detail"] and "address" in body["detail"]
    assert_problem(login(api, cpf, PASSWORD, addr=ATTACKER), 429, "too_many_attempts")
    assert login(api, cpf, PASSWORD, addr=CUSTOMER).status_code == 201
    # and the customer's own slips from her address have a budget of their own
    assert_problem(login(api, cpf, WRONG, addr=CUSTOMER), 401, "invalid_credentials")
    assert login(api, cpf, PASSWORD, addr=CUSTOMER).status_code == 201


def test_the_waits_grow_as_the_guessing_goes_on(tmp_path, new_cpf):
    """First a short wait, then, as failures pile up, a much longer one: no hard lock, but
    guessing slows down sharply (here 2 per second, then 4 per hour)."""
    node = BankNode(make_config(security={"login_max_failures": 2, "login_window_s": 1,
                                          "login_longer_waits": "4 per hour"}), "alfa", tmp_path / "d",
                    connect_broker=False)
    try:
        api = Api(create_app(node, testing=True).test_client(), new_cpf)
        cpf, _ = api.customer()
        waits = []
        for _ in range(2):
            for _ in range(2):
                assert_problem(login(api, cpf, WRONG, addr=ATTACKER), 401)
            r = login(api, cpf, WRONG, addr=ATTACKER)
            assert_problem(r, 429, "too_many_attempts")
            waits.append(int(r.headers["Retry-After"]))
            wait_until(lambda: first_wait_over(api, cpf, ATTACKER), 5, "the short wait is over")
        assert waits[0] == 1 and waits[1] >= 3500, waits
        r = login(api, cpf, PASSWORD, addr=ATTACKER)
        assert_problem(r, 429, "too_many_attempts")
        assert int(r.headers["Retry-After"]) >= 3500
        assert login(api, cpf, PASSWORD, addr=CUSTOMER).status_code == 201
    finally:
        node.stop()


def test_a_success_clears_the_cpf_from_that_address(api, node):
    cpf, _ = api.customer()
    limit = node.config.security.login_max_failures
    for _ in range(limit - 1):
        assert_problem(login(api, cpf, WRONG), 401)
    assert login(api, cpf, PASSWORD).status_code == 201
    for _ in range(limit - 1):
        assert_problem(login(api, cpf, WRONG), 401)    # a fresh budget, not one failure left
    assert login(api, cpf, PASSWORD).status_code == 201


def test_an_unknown_cpf_is_throttled_exactly_like_a_known_one(api, node, new_cpf):
    """The 429 must not tell a registered CPF from an unregistered one."""
    known, _ = api.customer()
    unknown = new_cpf()
    limit = node.config.security.login_max_failures
    answers = {}
    for cpf in (known, unknown):
        for _ in range(limit):
            assert_problem(login(api, cpf, WRONG, addr=f"10.1.0.{len(answers)}"), 401, "invalid_credentials")
        r = login(api, cpf, WRONG, addr=f"10.1.0.{len(answers)}")
        answers[cpf] = (r.status_code, r.get_json()["code"], r.get_json()["detail"].split(";")[0])
    assert answers[known] == answers[unknown]


def test_one_address_guessing_many_cpfs_is_throttled(api, node, new_cpf):
    per_address = node.config.security.login_max_failures_per_address
    for _ in range(per_address):   # a new CPF each time: only the address is over its limit
        assert_problem(login(api, new_cpf(), WRONG, addr="203.0.113.7"), 401)
    r = login(api, new_cpf(), WRONG, addr="203.0.113.7")
    body = assert_problem(r, 429, "too_many_attempts")
    assert "address" in body["detail"] and int(r.headers["Retry-After"]) >= 1
    # another address is not affected
    cpf, _ = api.customer()
    assert login(api, cpf, PASSWORD, addr="198.51.100.1").status_code == 201


def test_a_successful_login_does_not_count_against_the_address(api, node):
    cpf, _ = api.customer()
    for _ in range(node.config.security.login_max_failures_per_address + 5):
        assert login(api, cpf, PASSWORD, addr="192.0.2.1").status_code == 201


def test_concurrent_guesses_cannot_slip_past_the_limit(api, node):
    cpf, _ = api.customer()
    limit = node.config.security.login_max_failures
    app = api.client.application
    start = threading.Barrier(4 * limit)

    def guess(i):
        c = app.test_client()
        start.wait()
        return c.post("/api/sessions", json={"cpf": cpf, "password": f"wrong-{i}"},
                      environ_base={"REMOTE_ADDR": ATTACKER}).status_code
    with ThreadPoolExecutor(4 * limit) as pool:
        codes = list(pool.map(guess, range(4 * limit)))
    assert codes.count(401) == limit, codes          # exactly `limit` passwords were checked
    assert codes.count(429) == 3 * limit


def test_the_throttle_is_in_the_service_so_the_web_ui_gets_it(node, new_cpf):
    cpf = new_cpf()
    node.banking.register(cpf, "Ana Souza", PASSWORD)
    for _ in range(node.config.security.login_max_failures):
        with pytest.raises(E.Unauthorized):
            node.banking.login(cpf, WRONG, client="10.4.0.1")
    with pytest.raises(E.TooManyAttempts) as exc:
        node.banking.login(cpf, PASSWORD, client="10.4.0.1")
    assert exc.value.status == 429 and exc.value.retry_after > 0
    assert node.banking.login(cpf, PASSWORD, client="10.4.0.2")["cpf"] == cpf


def test_the_web_ui_login_form_is_throttled_too(node, new_cpf):
    """The web UI's login form calls the same service with the browser's address."""
    cpf = new_cpf()
    node.banking.register(cpf, "Ana Souza", PASSWORD)
    browser = create_app(node, testing=True).test_client()

    def submit(password):
        page = browser.get("/entrar").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        return browser.post("/entrar", data={"csrf_token": token, "cpf": cpf, "password": password})
    for _ in range(node.config.security.login_max_failures):
        assert submit(WRONG).status_code == 401
    r = submit(PASSWORD)
    assert r.status_code == 429, "logged in despite the throttle"
    assert int(r.headers["Retry-After"]) > 0
    assert "Muitas tentativas: aguarde" in r.get_data(as_text=True)  # the customer's words (pt-BR default)


def test_throttle_limits_come_from_the_configuration(tmp_path, new_cpf):
    node = BankNode(make_config(security={"login_max_failures": 2, "login_window_s": 60}), "alfa",
                    tmp_path / "d", connect_broker=False)
    try:
        api = Api(create_app(node, testing=True).test_client(), new_cpf)
        cpf, _ = api.customer()
        assert_problem(login(api, cpf, WRONG), 401)
        assert_problem(login(api, cpf, WRONG), 401)
        r = login(api, cpf, PASSWORD)
        assert_problem(r, 429, "too_many_attempts")
        assert 1 <= int(r.headers["Retry-After"]) <= 60
    finally:
        node.stop()


@pytest.mark.parametrize("key, value", [("login_longer_waits", "ten per hour"),
                                        ("unknown_account_answers", "10 per fortnight"),
                                        ("rate_limit_storage", "mongodb://127.0.0.1")])
def test_a_bad_throttle_setting_stops_the_bank_at_start(key, value):
    with pytest.raises(ValueError, match=key):
        make_config(security={key: value})


def test_registration_is_throttled_per_address(tmp_path, new_cpf):
    node = BankNode(make_config(security={"register_max_per_address": 3, "register_window_s": 600}), "alfa",
                    tmp_path / "d", connect_broker=False)
    try:
        api = Api(create_app(node, testing=True).test_client(), new_cpf)

        def register(addr):
            return api.client.post("/api/customers", json={"cpf": new_cpf(), "name": "Ana Souza",
                                                           "password": PASSWORD},
                                   environ_base={"REMOTE_ADDR": addr})
        for _ in range(3):
            assert register("10.5.0.1").status_code == 201
        r = register("10.5.0.1")
        body = assert_problem(r, 429, "too_many_attempts")
        assert "registrations" in body["detail"] and 1 <= int(r.headers["Retry-After"]) <= 600
        assert register("10.5.0.2").status_code == 201
        # invalid input is refused before it counts
        bad = api.client.post("/api/customers", json={"cpf": "123", "name": "Ana", "password": PASSWORD},
                              environ_base={"REMOTE_ADDR": "10.5.0.3"})
        assert_problem(bad, 422, "invalid_document")
    finally:
        node.stop()


# ============================================================ throttles shared by the processes of one bank

@pytest.fixture
def redis_namespace():
    """A consortium name of its own, and its keys removed from the shared Redis afterwards."""
    import redis
    name = f"unit-{uuid.uuid4().hex[:12]}"
    yield name
    r = redis.Redis.from_url(TEST_REDIS)
    keys = list(r.scan_iter(match=f"*{name}*"))
    if keys:
        r.delete(*keys)


def test_two_processes_of_one_bank_share_the_login_throttle_through_redis(tmp_path, new_cpf, redis_namespace):
    """Two nodes of one bank over one ledger, as two processes behind one address would be:
    failures at one count at the other. With memory:// they would not, which is the control."""
    for storage, shared in ((TEST_REDIS, True), ("memory://", False)):
        cfg = make_config(consortium=redis_namespace, security={"rate_limit_storage": storage})
        one = BankNode(cfg, "alfa", tmp_path / storage[:5], connect_broker=False)
        two = BankNode(cfg, "alfa", tmp_path / storage[:5], connect_broker=False)
        try:
            cpf = new_cpf()
            one.banking.register(cpf, "Ana Souza", PASSWORD)
            for _ in range(cfg.security.login_max_failures):
                with pytest.raises(E.Unauthorized):
                    one.banking.login(cpf, WRONG, client=ATTACKER)
            if shared:
                with pytest.raises(E.TooManyAttempts):
                    two.banking.login(cpf, PASSWORD, client=ATTACKER)
            else:
                assert two.banking.login(cpf, PASSWORD, client=ATTACKER)["cpf"] == cpf
            assert two.banking.login(cpf, PASSWORD, client=CUSTOMER)["cpf"] == cpf
        finally:
            one.stop()
            two.stop()


def test_two_banks_sharing_one_redis_never_share_a_count(tmp_path, new_cpf, redis_namespace):
    cfg = make_config(consortium=redis_namespace, security={"rate_limit_storage": TEST_REDIS})
    alfa = BankNode(cfg, "alfa", tmp_path / "a", connect_broker=False)
    beta = BankNode(cfg, "beta", tmp_path / "b", connect_broker=False)
    try:
        cpf = new_cpf()
        for node in (alfa, beta):
            node.banking.register(cpf, "Ana Souza", PASSWORD)
        for _ in range(cfg.security.login_max_failures):
            with pytest.raises(E.Unauthorized):
                alfa.banking.login(cpf, WRONG, client=ATTACKER)
        with pytest.raises(E.TooManyAttempts):
            alfa.banking.login(cpf, PASSWORD, client=ATTACKER)
        assert beta.banking.login(cpf, PASSWORD, client=ATTACKER)["cpf"] == cpf
    finally:
        alfa.stop()
        beta.stop()


def test_without_its_redis_a_bank_refuses_logins_rather_than_counting_nothing(tmp_path, new_cpf):
    node = BankNode(make_config(security={"rate_limit_storage": "redis://127.0.0.1:1"}), "alfa", tmp_path / "d",
                    connect_broker=False)
    try:
        api = Api(create_app(node, testing=True).test_client(), new_cpf)
        r = api.call("POST", "/api/sessions", {"cpf": new_cpf(), "password": PASSWORD})
        assert_problem(r, 503, "throttle_unavailable")
    finally:
        node.stop()


# ============================================================================ password rules

@pytest.mark.parametrize("password, code, words", [
    ("curta", "weak_password", "at least 8"),
    ("x" * 257, "weak_password", "at most 256"),
    ("12345678", "common_password", "most common"),
    ("Password123", "common_password", "most common"),
    ("SENHA123", "common_password", "most common"),
    ("qwertyuiop", "common_password", "most common"),
    ("aaaaaaaaaaaa", "common_password", "most common"),
    ("CPF", "password_contains_cpf", "CPF"),
    ("x-CPF-y", "password_contains_cpf", "CPF"),
    ("PUNCT!", "password_contains_cpf", "CPF"),
])
def test_password_rules_are_clear_422s(api, new_cpf, password, code, words):
    cpf = new_cpf()
    punct = f"{cpf[:3]}.{cpf[3:6]}.{cpf[6:9]}-{cpf[9:]}"
    password = password.replace("PUNCT", punct).replace("CPF", cpf)
    body = assert_problem(api.call("POST", "/api/customers", {"cpf": cpf, "name": "Ana Souza", "password": password}),
                          422, code)
    assert words in body["detail"]
    assert password not in body["detail"]            # never echo the password back
    assert api.register(cpf).status_code == 201      # nothing was created


def test_good_passwords_pass_and_the_deny_list_is_only_long_ones():
    check_password("correct horse battery staple", "52998224725")
    check_password("senha-muito-boa", "52998224725")
    check_password("5299822472", "52998224725")       # part of the CPF is not the CPF
    assert all(len(p) >= 8 for p in COMMON_PASSWORDS)


# ============================================================================ argon2id parameters

def test_default_argon2id_parameters_are_at_least_owasps():
    s = Security()
    assert (s.argon2_memory_kib, s.argon2_time_cost, s.argon2_parallelism) >= (19456, 2, 1)
    assert s.hashing_weaknesses() == []


@pytest.mark.parametrize("memory, time_cost, weak", [
    (19456, 2, False), (47104, 1, False), (12288, 3, False), (7168, 5, False), (65536, 3, False),
    (19455, 2, True), (19456, 1, True), (1024, 1, True), (47103, 1, True), (7168, 4, True),
])
def test_owasp_equivalent_pairs(memory, time_cost, weak):
    assert bool(Security(argon2_memory_kib=memory, argon2_time_cost=time_cost).hashing_weaknesses()) == weak


def _file(tmp_path, security):
    p = tmp_path / "c.yml"
    p.write_text(yaml.safe_dump({"banks": [{"id": "alfa", "name": "A", "port": 9000}], "security": security}))
    return p


def test_a_production_file_with_weak_hashing_is_refused_naming_the_keys(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_config(_file(tmp_path, {"argon2_time_cost": 1, "argon2_memory_kib": 1024}), env={})
    msg = str(exc.value)
    assert "c.yml" in msg and "argon2_memory_kib" in msg and "OWASP" in msg
    assert "allow_weak_hashing_for_tests" in msg


def test_weak_hashing_needs_the_explicit_test_flag(tmp_path):
    weak = {"argon2_time_cost": 1, "argon2_memory_kib": 1024}
    cfg = load_config(_file(tmp_path, {**weak, "allow_weak_hashing_for_tests": True}), env={})
    assert cfg.security.argon2_memory_kib == 1024
    assert load_config(_file(tmp_path, weak), env={"CONSORCIO_ALLOW_WEAK_HASHING_FOR_TESTS": "1"})
    with pytest.raises(ConfigError):
        load_config(_file(tmp_path, weak), env={"CONSORCIO_ALLOW_WEAK_HASHING_FOR_TESTS": "yes"})
    assert load_config(_file(tmp_path, {"argon2_memory_kib": 65536}), env={}).security.argon2_memory_kib == 65536


def test_the_bank_hashes_with_the_configured_parameters(node, new_cpf):
    cpf = new_cpf()
    node.banking.register(cpf, "Ana Souza", PASSWORD)
    h = node.banking.customer(cpf)["password_hash"]
    sec = node.config.security
    assert h.startswith("$argon2id$")
    assert f"m={sec.argon2_memory_kib},t={sec.argon2_time_cost},p={sec.argon2_parallelism}" in h


# ============================================================ other banks' lookups, counted with the throttles
# With a shared store, every process of a bank sees one rate: more processes give a dishonest
# bank no more answers; a store that does not answer refuses (failing closed).

def throttles(storage: str, consortium: str, per_bank: int = 3, per_customer: int = 2) -> Throttles:
    config = make_config(consortium=consortium,
                         security={"rate_limit_storage": storage},
                         interbank={"lookups_per_second_per_bank": per_bank,
                                    "lookups_per_minute_per_customer": per_customer})
    return Throttles(config, "alfa")


def test_a_peer_over_its_lookup_rate_is_refused_and_others_are_not():
    t = throttles("memory://", "unit")
    assert [t.lookup_refusal("gama") for _ in range(4)] == [None, None, None, "bank"]
    assert t.lookup_refusal("beta") is None                       # another bank has its own rate


def test_answers_in_full_about_one_customer_have_their_own_smaller_rate():
    t = throttles("memory://", "unit", per_bank=100)
    assert [t.lookup_refusal("gama", "12345678909") for _ in range(3)] == [None, None, "customer"]
    assert t.lookup_refusal("gama", "98765432100") is None and t.lookup_refusal("gama") is None


def test_a_bank_asks_the_others_under_their_rate_and_each_customer_within_a_share_of_it():
    t = throttles("memory://", "unit", per_bank=10, per_customer=120)   # 2 a second for one customer
    assert [t.may_ask_peers("12345678909") for _ in range(3)] == [True, True, False]
    asked = [t.may_ask_peers(f"cliente-{i}") for i in range(12)]
    assert asked == [True] * 7 + [False] * 5, "9 a second in all (a margin under the others' 10), 2 taken"


def test_two_processes_of_a_bank_share_one_lookup_rate(redis_namespace):
    one, two = throttles(TEST_REDIS, redis_namespace), throttles(TEST_REDIS, redis_namespace)
    answered = [t.lookup_refusal("gama") for t in (one, two, one, two, one, two)]
    assert answered.count(None) == 3, answered


def test_a_store_that_does_not_answer_refuses_the_lookup():
    t = throttles("redis://127.0.0.1:1/0", "unit")               # nothing listens on port 1
    assert t.lookup_refusal("gama") == "bank"
