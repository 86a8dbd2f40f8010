"""A consortium of 20 banks on one broker, some of them down.

The consortium-wide lookup asks every bank and answers within its TTL, naming the banks that
stayed silent; an 8-leg transfer across 9 banks commits; and what each bank costs in memory
when idle is measured (and bounded, so a regression shows).
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest

from tools.consortia import BANK_IDS

pytestmark = pytest.mark.integration

TWENTY = BANK_IDS[:20]
DOWN = ("delta", "zeta", "iota", "pi", "ipsilon")


def memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of a process in MB; PSS shares the pages of shared libraries among the processes
    that map them, so it is what one more bank really costs."""
    rss = int(next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if line.startswith("VmRSS:")).split()[1])
    pss = int(next(line for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
                   if line.startswith("Pss:")).split()[1])
    return rss / 1024, pss / 1024


def test_twenty_banks_lookup_names_the_silent_ones_within_its_ttl(make_cluster, new_cpf):
    cluster = make_cluster(banks=TWENTY, start=False, timeouts={"lookup_ttl_ms": 1500, "prepare_ttl_ms": 5000})
    t0 = time.monotonic()
    cluster.start(deadline_s=240)
    started_in = time.monotonic() - t0
    time.sleep(2)  # noqa: idle for a moment before measuring what an idle bank costs
    idle = [memory_mb(b.pid) for b in cluster.banks.values()]

    from tools.api_client import Customer
    ana = Customer(new_cpf(), "Ana Souza", {b: p.url for b, p in cluster.banks.items()})
    nine = [b for b in TWENTY if b not in DOWN][:9]
    accounts = {}
    for bank in nine:
        ana.join(bank)
        accounts[bank] = ana.open_account(bank)
        ana.deposit(bank, accounts[bank], "10.00")
    for b in nine[1:8]:   # consent, at each debited bank, for the coordinating one
        ana.grant(b, accounts[b], nine[0])
    t = time.monotonic()
    _, body = ana.transfer(nine[0], [(b, accounts[b], "1.00") for b in nine[:8]], (nine[8], accounts[nine[8]]))
    eight_legs_s = time.monotonic() - t
    assert body["status"] == "committed", body
    assert ana.balance(nine[8], accounts[nine[8]]) == "18.00"

    for bank in DOWN:
        cluster[bank].kill()
    t = time.monotonic()
    _, found = ana.call("alfa", "GET", f"/api/consortium/accounts?cpf={ana.cpf}", expect=200)
    lookup_s = time.monotonic() - t
    assert lookup_s < 1.5 + 1.0, f"the lookup took {lookup_s:.2f}s, its TTL is 1.5s"
    assert found["unreachable_banks"] == list(DOWN)
    assert {a["bank"] for a in found["accounts"]} == set(nine)

    rss = statistics.mean(r for r, _ in idle)
    pss = statistics.mean(p for _, p in idle)
    print(f"\n20 banks healthy in {started_in:.1f}s; idle memory per bank: RSS {rss:.1f} MB, PSS {pss:.1f} MB; "
          f"8-leg transfer across 9 banks {eight_legs_s * 1000:.0f} ms; lookup with 5 banks down "
          f"{lookup_s * 1000:.0f} ms")
    assert pss < 80, f"an idle bank costs {pss:.1f} MB"
