"""Throughput and latency of cross-bank transfers, every write durable.

    python -m tools.bench [--transfers 600] [--clients 16] [--banks 3] [--legs 2]

Starts its own consortium (own broker namespace, ports and data folder), creates customers
with an account in every bank, then runs concurrent clients that issue transfers of
``--legs`` source legs from different banks into an account at another bank. Prints
transfers per second, the latency percentiles, and the outcome counts; with ``--json`` it
also writes them to a file. Conflicts are rare by design (each client has its own
customer), so the figures measure the protocol, not contention.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

from broker.provision import delete_namespace

from bank_node.domain.documents import make_cpf

from .api_client import Customer
from .consortia import BANK_IDS, LOCAL_AMQP, TEST_SECURITY, bank_entries, free_ports, write_config
from .supervisor import Cluster


def run(transfers: int, clients: int, banks: int, legs: int, amqp_url: str, workdir: Path,
        quiet: bool = False) -> dict:
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    ids = BANK_IDS[:banks]
    cfg = write_config(workdir / "consorcio.yml", consortium=namespace, broker_url=amqp_url,
                       banks=bank_entries(free_ports(banks)),
                       http_threads=max(24, clients + 8), security=TEST_SECURITY)
    cluster = Cluster(cfg, workdir / "data")
    try:
        cluster.start()
        urls = {b: p.url for b, p in cluster.banks.items()}
        people = []
        for i in range(clients):
            c = Customer(make_cpf(f"{400000000 + 7919 * i:09d}"), f"Cliente {i}", urls)
            c.accounts = {}
            for b in ids:
                c.join(b)
                c.accounts[b] = c.open_account(b)
                c.deposit(b, c.accounts[b], "90000.00")
            c.grant_everywhere(c.accounts)
            people.append(c)
        latencies: list[float] = []
        outcomes: Counter = Counter()
        lock = threading.Lock()
        per_client = max(1, transfers // clients)

        def client(k: int) -> None:
            c = people[k]
            for n in range(per_client):
                srcs = [ids[(n + j) % banks] for j in range(min(legs, banks - 1))]
                dest_bank = ids[(n + len(srcs)) % banks]
                dest = people[(k + 1) % clients]
                t = time.perf_counter()
                status, body = c.transfer(srcs[0], [(b, c.accounts[b], "1.00") for b in srcs],
                                          (dest_bank, dest.accounts[dest_bank]))
                dt = time.perf_counter() - t
                with lock:
                    latencies.append(dt)
                    outcomes[body.get("status", body.get("code", str(status)))] += 1

        if not quiet:
            print(f"{banks} banks, {clients} clients, {per_client * clients} transfers of {legs} source legs...",
                  flush=True)
        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        latencies.sort()
        pct = lambda p: latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000  # noqa: E731
        return {
            "banks": banks, "clients": clients, "legs": legs, "transfers": len(latencies),
            "seconds": round(elapsed, 2), "transfers_per_s": round(len(latencies) / elapsed, 1),
            "latency_ms": {"mean": round(statistics.mean(latencies) * 1000, 1), "p50": round(pct(50), 1),
                           "p95": round(pct(95), 1), "p99": round(pct(99), 1), "max": round(latencies[-1] * 1000, 1)},
            "outcomes": dict(outcomes),
        }
    finally:
        cluster.stop()
        delete_namespace(amqp_url, namespace, ids)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--transfers", type=int, default=600)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--banks", type=int, default=3, choices=range(2, len(BANK_IDS) + 1))
    ap.add_argument("--legs", type=int, default=2, help="source legs per transfer (each at another bank)")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="consorcio-bench-"))
    try:
        r = run(args.transfers, args.clients, args.banks, args.legs, os.environ.get("AMQP_URL") or LOCAL_AMQP, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    lat = r["latency_ms"]
    print(f"{r['transfers']} transfers in {r['seconds']} s: {r['transfers_per_s']} transfers/s "
          f"({r['banks']} banks, {r['clients']} clients, {r['legs']} source legs each, every write fsynced)")
    print(f"latency ms: mean {lat['mean']}  p50 {lat['p50']}  p95 {lat['p95']}  p99 {lat['p99']}  max {lat['max']}")
    print("outcomes:", ", ".join(f"{k} {v}" for k, v in sorted(r["outcomes"].items())))
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))
    return 0 if set(r["outcomes"]) == {"committed"} else 1


if __name__ == "__main__":
    sys.exit(main())
