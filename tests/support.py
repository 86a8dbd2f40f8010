"""Small helpers for the integration tests: waiting on conditions, looking at a bank's ledger."""
from __future__ import annotations

import time
import urllib.request
from decimal import Decimal
from pathlib import Path

from tools.chaos.checker import read_ledger
from tools.api_client import Customer


def operator_text(url: str, path: str = "/metrics") -> str:
    """An operator route of a bank started by make_cluster, with the suite's operator token."""
    from tests.conftest import OPERATOR_TOKEN
    req = urllib.request.Request(url + path, headers={"X-Operator-Token": OPERATOR_TOKEN})
    return urllib.request.urlopen(req, timeout=10).read().decode()


def operator_json(url: str, path: str) -> dict:
    import json
    return json.loads(operator_text(url, path))


def metric(url: str, name: str, default: float = 0.0, **labels) -> float:
    """One sample of a bank's /metrics: ``name`` with exactly these ``labels`` (``default`` when
    the bank has not reported it yet)."""
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
    for line in operator_text(url).splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return default


def rejected(url: str, reason: str) -> float:
    """How many messages a bank refused for ``reason`` (consorcio_messages_rejected_total)."""
    return metric(url, "consorcio_messages_rejected_total", reason=reason)


def wait_until(predicate, timeout: float = 20.0, what: str = "condition", interval: float = 0.05):
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")


def ledger(cluster, bank_id: str) -> dict:
    """Read a bank's ledger directly (read-only), on whichever back end it is: balances, holds,
    2PC records. White-box on purpose: the checker must see what the API might hide."""
    return read_ledger(cluster.ledger_location(bank_id))


def participation_states(cluster, bank_id: str, transfer_id: str) -> list[str]:
    """The states of every record ``bank_id`` keeps for ``transfer_id`` as a participant, the
    abort it remembered for an id it never saw a PREPARE of included (the ledger snapshot leaves
    those out)."""
    from bank_node.storage import open_store
    store = open_store(cluster.ledger_location(bank_id))
    try:
        with store.transaction(write=False) as tx:
            return [p.state for p in tx.participations_of(transfer_id)]
    finally:
        store.close()


def customer_everywhere(cluster, cpf: str, name: str = "Ana Souza", amount: str = "100.00", *, consent=True):
    """A customer registered at every bank of the cluster with one funded account in each, and
    (``consent``) a mandate at each bank for every other bank to debit it: returns (customer,
    {bank: account number})."""
    ana = Customer(cpf, name, {b: p.url for b, p in cluster.banks.items()})
    accounts = {}
    for bank in cluster.banks:
        ana.join(bank)
        accounts[bank] = ana.open_account(bank)
        ana.deposit(bank, accounts[bank], amount)
    if consent:
        ana.grant_everywhere(accounts)
    return ana, accounts


def another_process(cluster, bank_id: str, folder: Path, env: dict | None = None):
    """A second process of ``bank_id`` started by hand: the same ledger and broker queue, its
    own port (so that a test chooses which process it talks to). Started and healthy; the
    caller stops it."""
    import yaml
    from tools.consortia import free_ports
    from tools.supervisor import BankProcess
    first = cluster[bank_id]
    doc = yaml.safe_load(cluster.config_path.read_text())
    (port,) = free_ports(1)
    for entry in doc["banks"]:
        if entry["id"] == bank_id:
            entry["port"] = port
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / f"{bank_id}-second.yml"
    config.write_text(yaml.safe_dump(doc))
    second = BankProcess(bank_id, f"http://127.0.0.1:{port}", config, first.data_dir, folder / f"{bank_id}-second.log",
                         env={**first.env, **(env or {})})
    second.start()
    try:
        second.wait_healthy(60)
    except BaseException:
        second.kill()
        raise
    return second


def money(s: str) -> Decimal:
    return Decimal(s)
