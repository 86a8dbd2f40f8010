"""Two-phase commit across real bank processes and a real RabbitMQ (CONTRACT sections 4 and 5)."""
from __future__ import annotations

import pytest

from bank_node.client import Customer

pytestmark = pytest.mark.integration


@pytest.fixture
def trio(make_cluster, new_cpf):
    cluster = make_cluster()
    urls = {b: p.url for b, p in cluster.banks.items()}
    ana = Customer(new_cpf(), "Ana Souza", urls)
    accounts = {}
    for bank in urls:
        ana.join(bank)
        accounts[bank] = ana.open_account(bank)
        ana.deposit(bank, accounts[bank], "100.00")
    return cluster, ana, accounts


def test_two_source_transfer_commits_with_exact_balances(trio):
    cluster, ana, acc = trio
    status, body = ana.transfer("alfa", [("alfa", acc["alfa"], "10.00"), ("beta", acc["beta"], "25.50")],
                                ("gama", acc["gama"]))
    assert (status, body["status"]) == (201, "committed"), body
    assert ana.balance("alfa", acc["alfa"]) == "90.00"
    assert ana.balance("beta", acc["beta"]) == "74.50"
    assert ana.balance("gama", acc["gama"]) == "135.50"
