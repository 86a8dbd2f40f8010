"""Customers on the API: login and registration throttling, password rules, and
argon2id settings at least OWASP's outside test consortia."""
from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from bank_node.app import create_app
from bank_node.config import ConfigError, Security, load_config
from bank_node.domain import errors as E
from bank_node.domain.passwords import COMMON_PASSWORDS, check_password
from bank_node.node import BankNode
from bank_node.services.throttle import SlidingWindow

from .conftest import PASSWORD, Api, assert_problem, make_config

WRONG = "not-the-password"


class Clock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(node, monkeypatch):
    c = Clock(node.banking.clock())
    monkeypatch.setattr(node.banking, "clock", c)
    return c


def login(api, cpf, password, addr="10.0.0.1"):
    return api.client.post("/api/sessions", json={"cpf": cpf, "password": password},
                           environ_base={"REMOTE_ADDR": addr})


# ============================================================================ login throttling

def test_after_max_failures_a_cpf_gets_429_with_retry_after_even_with_the_right_password(api, node, clock):
    cpf, _ = api.customer()
    limit, window = node.config.security.login_max_failures, node.config.security.login_window_s
    for _ in range(limit):
        assert_problem(login(api, cpf, WRONG), 401, "invalid_credentials")
    clock.t += 10
    r = login(api, cpf, PASSWORD)
    body = assert_problem(r, 429, "too_many_attempts")
    assert int(r.headers["Retry-After"]) == window - 10
    assert body["retry_after"] == window - 10
    assert "CPF" in body["detail"] and str(window - 10) in body["detail"]
    # from another address too: the CPF is what is being guessed
    assert_problem(login(api, cpf, PASSWORD, addr="10.9.9.9"), 429, "too_many_attempts")
    clock.t += window - 10
    assert login(api, cpf, PASSWORD).status_code == 201


def test_the_window_slides(api, node, clock):
    cpf, _ = api.customer()
    limit, window = node.config.security.login_max_failures, node.config.security.login_window_s
    for _ in range(limit - 1):
        assert_problem(login(api, cpf, WRONG), 401)
    clock.t += window - 1
    assert_problem(login(api, cpf, WRONG), 401)        # the limit-th failure, one second before the first expires
    r = login(api, cpf, PASSWORD)
    assert_problem(r, 429, "too_many_attempts")
    assert r.headers["Retry-After"] == "1"
    clock.t += 1                                        # the first failures left the window
    assert login(api, cpf, PASSWORD).status_code == 201


def test_a_success_resets_the_cpfs_counter(api, node, clock):
    cpf, _ = api.customer()
    limit = node.config.security.login_max_failures
    for _ in range(limit - 1):
        assert_problem(login(api, cpf, WRONG), 401)
    assert login(api, cpf, PASSWORD).status_code == 201
    for _ in range(limit - 1):
        assert_problem(login(api, cpf, WRONG), 401)    # a fresh budget, not one failure left
    assert login(api, cpf, PASSWORD).status_code == 201


def test_an_unknown_cpf_is_throttled_exactly_like_a_known_one(api, node, clock, new_cpf):
    """The 429 must not tell a registered CPF from an unregistered one."""
    known, _ = api.customer()
    unknown = new_cpf()
    limit = node.config.security.login_max_failures
    answers = {}
    for cpf in (known, unknown):
        for _ in range(limit):
            assert_problem(login(api, cpf, WRONG, addr=f"10.1.0.{len(answers)}"), 401, "invalid_credentials")
        r = login(api, cpf, WRONG, addr=f"10.2.0.{len(answers)}")
        answers[cpf] = (r.status_code, r.headers.get("Retry-After"), r.get_json()["detail"])
    assert answers[known] == answers[unknown]


def test_one_address_guessing_many_cpfs_is_throttled(api, node, clock, new_cpf):
    per_address = node.config.security.login_max_failures_per_address
    for _ in range(per_address):   # a new CPF each time: only the address is over its limit
        assert_problem(login(api, new_cpf(), WRONG, addr="203.0.113.7"), 401)
    r = login(api, new_cpf(), WRONG, addr="203.0.113.7")
    body = assert_problem(r, 429, "too_many_attempts")
    assert "address" in body["detail"] and int(r.headers["Retry-After"]) >= 1
    # another address is not affected, and the per-address refusal did not count against the CPF
    cpf, _ = api.customer()
    assert login(api, cpf, PASSWORD, addr="198.51.100.1").status_code == 201


def test_a_successful_login_does_not_count_against_the_address(api, node, clock):
    cpf, _ = api.customer()
    for _ in range(node.config.security.login_max_failures_per_address + 5):
        assert login(api, cpf, PASSWORD, addr="192.0.2.1").status_code == 201


def test_concurrent_guesses_cannot_slip_past_the_limit(api, node, clock):
    cpf, _ = api.customer()
    limit = node.config.security.login_max_failures
    app = api.client.application
    start = threading.Barrier(4 * limit)

    def guess(i):
        c = app.test_client()
        start.wait()
        return c.post("/api/sessions", json={"cpf": cpf, "password": f"wrong-{i}"},
                      environ_base={"REMOTE_ADDR": f"10.3.0.{i}"}).status_code
    with ThreadPoolExecutor(4 * limit) as pool:
        codes = list(pool.map(guess, range(4 * limit)))
    assert codes.count(401) == limit, codes          # exactly `limit` passwords were checked
    assert codes.count(429) == 3 * limit


def test_the_throttle_is_in_the_service_so_the_web_ui_gets_it(node, clock, new_cpf):
    cpf = new_cpf()
    node.banking.register(cpf, "Ana Souza", PASSWORD)
    for _ in range(node.config.security.login_max_failures):
        with pytest.raises(E.Unauthorized):
            node.banking.login(cpf, WRONG, client="10.4.0.1")
    with pytest.raises(E.TooManyAttempts) as exc:
        node.banking.login(cpf, PASSWORD, client="10.4.0.2")
    assert exc.value.status == 429 and exc.value.retry_after > 0


def test_the_web_ui_login_form_is_throttled_too(node, clock, new_cpf):
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


def test_sliding_window_forgets_idle_keys_beyond_its_bound():
    clock = Clock()
    w = SlidingWindow(2, 60, clock=clock, max_keys=3)
    for k in "abcd":
        assert w.take(k) == 0
        clock.t += 1
    assert len(w._events) == 3 and "a" not in w._events
    assert w.take("b") == 0 and w.take("b") == 57     # b's first event at t+1 leaves at t+61
    w.forgive("b")
    assert w.take("b") == 0


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
