"""The seed of a load test (``python -m bank_node.ops seed``): many customers with valid CPFs
and funded accounts in bulk, who then log in and bank as any customer does; bad input refused
before anything is written; a ledger that holds anything refused, so a second run changes
nothing."""
from __future__ import annotations

import pytest

from bank_node import ops
from bank_node.domain import errors as E
from bank_node.domain.documents import normalize_cpf
from bank_node.services.banking import account_number
from bank_node.services.seed import FIRST_CPF, MAX_ACCOUNTS, seed, seeded_cpf
from bank_node.storage import open_store
from tools.consortia import TEST_SECURITY, write_config

PASSWORD = "senha-de-carga-1"
BOTH = pytest.mark.both_backends   # what touches the ledger; bad input is refused before it, on SQLite only


def counts(node) -> dict:
    with node.store.transaction(write=False) as tx:
        return tx.counts()


@BOTH
def test_seeded_customers_log_in_and_bank_with_their_funded_accounts(node, api):
    steps = []
    done = seed(node.banking, 1200, PASSWORD, "250.00", lambda d, t: steps.append((d, t)), chunk=500)
    assert done.accounts == 1200 and done.opening_balance == "250.00"
    assert steps == [(500, 1200), (1000, 1200), (1200, 1200)], "progress after every chunk"
    c = counts(node)
    assert (c["accounts"], c["balance_total"], c["deposits_total"]) == (1200, 1200 * 250_00, 1200 * 250_00)
    with node.store.transaction(write=False) as tx:
        balances = tx.ledger_snapshot()["balances"]
    assert all(n == account_number(int(n[:8])) for n in balances), "account numbers carry their check digit"
    for i in (0, 777, 1199):
        cpf = seeded_cpf(i)
        assert normalize_cpf(cpf) == cpf and cpf.startswith(str(FIRST_CPF + i))
        token = api.login(cpf, PASSWORD)
        (acc,) = api.call("GET", "/api/accounts", token=token).get_json()["accounts"]
        assert (acc["kind"], acc["status"], acc["balance"], acc["available"]) == ("individual", "open", "250.00", "250.00")
        assert [(e["kind"], e["amount"]) for e in api.statement(token, acc["number"])] == [("deposit", "250.00")]
        assert api.withdraw(token, acc["number"], "100.00").status_code == 201
        assert api.account(token, acc["number"])["balance"] == "150.00"
    assert api.call("POST", "/api/sessions", {"cpf": seeded_cpf(1200), "password": PASSWORD}).status_code == 401


@BOTH
def test_a_second_seed_into_the_same_ledger_is_refused_and_changes_nothing(node):
    seed(node.banking, 50, PASSWORD)
    before = counts(node)
    with pytest.raises(E.Conflict) as e:
        seed(node.banking, 50, PASSWORD)
    assert e.value.code == "ledger_not_empty" and "empty ledger" in e.value.detail
    assert counts(node) == before


@BOTH
def test_a_ledger_with_a_real_customer_is_refused(node, api, new_cpf):
    assert api.register(new_cpf()).status_code == 201
    with pytest.raises(E.Conflict):
        seed(node.banking, 10, PASSWORD)
    assert counts(node)["accounts"] == 0


@pytest.mark.parametrize("accounts, password, balance", [
    (0, PASSWORD, None), (-5, PASSWORD, None), (MAX_ACCOUNTS + 1, PASSWORD, None), ("12", PASSWORD, None),
    (True, PASSWORD, None), (10, "curta", None), (10, "12345678", None), (10, PASSWORD, "-5.00"),
    (10, PASSWORD, "dez reais"), (10, PASSWORD, "1.001"), (10, PASSWORD, "99999999.00"),
])
def test_bad_input_is_refused_before_anything_is_written(node, accounts, password, balance):
    with pytest.raises(E.InvalidInput):
        seed(node.banking, accounts, password, balance)
    with node.store.transaction(write=False) as tx:
        assert tx.is_empty()


@pytest.fixture
def config_file(tmp_path):
    return write_config(tmp_path / "c.yml", consortium="seed", broker_url="amqp://x/", security=TEST_SECURITY,
                        banks=[{"id": "alfa", "name": "Banco Alfa", "port": 18001}])


@BOTH
def test_the_command_seeds_the_banks_own_ledger_then_refuses_a_second_run(tmp_path, config_file, capsys, backend,
                                                                         monkeypatch):
    """Where the bank itself would open it: BANK_DATABASE_URL (PostgreSQL, by COPY), else the
    SQLite file in the data folder."""
    location = backend.location(tmp_path / "alfa", "alfa")
    if backend.name == "postgres":
        monkeypatch.setenv("BANK_DATABASE_URL", str(location))
    argv = ["seed", "--config", str(config_file), "--bank", "alfa", "--data-dir", str(tmp_path / "alfa"),
            "--accounts", "1_200", "--password", PASSWORD]
    assert ops.main(argv) == 0
    out, err = capsys.readouterr()
    assert "seeded 1,200 accounts at alfa" in out and "each holding 1000.00" in out
    assert "seeded 1,200 of 1,200 accounts (100%)" in err
    store = open_store(location)
    try:
        with store.transaction(write=False) as tx:
            assert (tx.counts()["accounts"], tx.counts()["balance_total"]) == (1200, 1200 * 1000_00)
    finally:
        store.close()
    assert ops.main(argv) == 1
    assert "already holds customers or accounts" in capsys.readouterr().err


def test_the_command_prints_the_password_it_made_up(tmp_path, config_file, capsys):
    assert ops.main(["seed", "--config", str(config_file), "--bank", "alfa", "--data-dir", str(tmp_path / "a"),
                     "--accounts", "3", "--balance", "0"]) == 0
    out = capsys.readouterr().out
    assert "each holding 0.00" in out and "every seeded customer's password: " in out


@pytest.mark.parametrize("args, code, message", [
    (["--accounts", "0"], 2, "must be from 1 to 10,000,000"),
    (["--accounts", "um milhão"], 2, "is not a whole number"),
    (["--accounts", "10", "--bank", "zeta"], 2, "zeta"),
    (["--accounts", "10", "--balance", "-1"], 1, "error: "),
    (["--accounts", "10", "--password", "curta"], 1, "at least 8 characters"),
])
def test_the_command_says_what_is_wrong_with_its_input(tmp_path, config_file, capsys, args, code, message):
    argv = ["seed", "--config", str(config_file), "--data-dir", str(tmp_path / "a"), "--bank", "alfa", *args]
    try:
        assert ops.main(argv) == code
    except SystemExit as e:   # argparse's own refusals
        assert e.code == code
    assert message in capsys.readouterr().err


def test_the_command_names_the_setting_of_a_ledger_it_cannot_open(tmp_path, config_file, capsys, monkeypatch):
    monkeypatch.setenv("BANK_DATABASE_URL", "mysql://alfa@db/alfa")
    assert ops.main(["seed", "--config", str(config_file), "--bank", "alfa", "--accounts", "5"]) == 1
    assert "cannot open the ledger of bank alfa (BANK_DATABASE_URL)" in capsys.readouterr().err
