"""Transfer latency and statement paging with a million accounts in a bank, against a thousand.

    python -m tools.scale [--accounts 1000,1000000] [--storage sqlite|postgres] [--clients 4] [--seconds 5] [--rounds 10]
                          [--pages 10] [--page-seconds 3] [--max-ratio 1.2] [--json FILE]

For each account count, a consortium of two banks (own broker namespace, ports and data folder,
as ``tools.bench`` makes them) whose bank under test, alfa, is seeded with that many customers and
funded accounts (``bank_node.ops seed``) before it starts. Then the same work against each:

- **Transfers** (``tools.bench.load``, closed loop, ``--clients`` customers with an account in
  each bank): into seeded accounts spread over the whole of alfa's ledger, in turn from the
  customer's alfa account (alfa coordinates, both legs at alfa) and from their beta account
  (beta coordinates, alfa holds the credit leg).
- **Statement pages**: every customer reads their alfa statement 20 entries a page, following
  ``next`` for ``--pages`` pages (their account has an entry per transfer by then), again and
  again for ``--page-seconds``.

Both consortia run at once and each round measures every one of them in turn, in the order
A B, then B A (so that a load that grows or falls during a round, from the other users of a
shared machine, favours neither). Prints p50 and p95 of each (the median over the rounds), the
banks' CPU per transfer (what such noise moves least), and each larger ledger's ratio to the
first's: the median of the rounds' own ratios, each taken between measurements seconds apart.
Exits 1 when a ratio exceeds ``--max-ratio``.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bank_node.config import load_config
from bank_node.services.banking import Banking
from bank_node.services.seed import seed, seeded_cpf
from bank_node.storage import open_store

from .bench import Bench, load, percentile
from .consortia import LOCAL_AMQP

BANK = "alfa"
DESTINATIONS = 64
PAGE = 20


class SeededBench(Bench):
    """A two-bank ``Bench`` whose alfa holds ``accounts`` seeded customers before it starts,
    and whose transfers pay into them."""

    def __init__(self, accounts: int, amqp_url: str, workdir: Path, clients: int, storage: str = "sqlite"):
        super().__init__(2, 1, amqp_url, workdir, clients, apply_wait=True, quiet=True, storage=storage)
        self.accounts = accounts
        self.destinations: list[str] = []

    def seed(self) -> float:
        """Seed alfa's ledger where its process will find it; the seconds it took."""
        config = load_config(self.cluster.config_path)
        store = open_store(self.cluster.ledger_location(BANK))
        try:
            done = seed(Banking(config, BANK, store), self.accounts,
                        "senha-de-carga-1", "1000.00")
            with store.transaction(write=False) as tx:   # spread over the ledger, from first to last
                self.destinations = [tx.account_numbers_of(seeded_cpf(i * self.accounts // DESTINATIONS))[0]
                                     for i in range(DESTINATIONS)]
        finally:
            store.close()
        return done.seconds

    def plan(self, k: int, n: int) -> tuple[str, dict]:
        via = self.ids[n % 2]
        dest = self.destinations[(k * 7 + n) % len(self.destinations)]
        return via, {"sources": [{"bank": via, "account": self.people[k]["accounts"][via], "amount": "0.01"}],
                     "destination": {"bank": BANK, "account": dest}}

    def statement_pages(self, pages: int, seconds: float) -> list[float]:
        """Seconds per statement page: every customer's alfa statement, ``pages`` pages deep, over
        and over for ``seconds``."""
        port = self.ports()[BANK]
        out: list[float] = []
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        until = time.monotonic() + seconds
        try:
            while not out or time.monotonic() < until:
                self._read_statements(conn, pages, out)
        finally:
            conn.close()
        return out

    def _read_statements(self, conn: http.client.HTTPConnection, pages: int, out: list[float]) -> None:
        for person in self.people:
            headers = {"Authorization": f"Bearer {person['tokens'][BANK]}"}
            query = f"limit={PAGE}"
            for _ in range(pages):
                t = time.perf_counter()
                conn.request("GET", f"/api/accounts/{person['accounts'][BANK]}/statement?{query}",
                             headers=headers)
                resp = conn.getresponse()
                body = json.loads(resp.read())
                out.append(time.perf_counter() - t)
                if resp.status != 200:
                    raise RuntimeError(f"statement page: {resp.status} {body}")
                if not body.get("next"):
                    break
                query = f"limit={PAGE}&before={body['next']}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.scale", description=__doc__.split("\n\n")[0])
    ap.add_argument("--accounts", default="1000,1000000", help="seeded accounts in alfa, comma-separated")
    ap.add_argument("--clients", type=int, default=4, help="concurrent customers sending transfers")
    ap.add_argument("--seconds", type=float, default=5.0, help="seconds of transfers per round and consortium")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--pages", type=int, default=10, help="statement pages deep, per customer")
    ap.add_argument("--page-seconds", type=float, default=3.0, help="seconds of statement pages per round and consortium")
    ap.add_argument("--max-ratio", type=float, default=1.2)
    ap.add_argument("--storage", default="sqlite", choices=["sqlite", "postgres"],
                    help="the banks' ledgers: SQLite files, or a PostgreSQL database per bank (on PG_URL, default "
                         "the local server; dropped afterwards)")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    sizes = [int(a) for a in args.accounts.replace("_", "").split(",")]
    url = os.environ.get("AMQP_URL") or LOCAL_AMQP
    workdir = Path(tempfile.mkdtemp(prefix="consorcio-scale-"))
    benches = [SeededBench(n, url, workdir / f"{n}-accounts", args.clients, args.storage) for n in sizes]
    figures = {n: {"transfer_p50": [], "transfer_p95": [], "page_p50": [], "page_p95": [], "cpu_ms": [],
                   "outcomes": {}} for n in sizes}
    try:
        for b in benches:
            print(f"seeding {b.accounts:,} accounts into alfa ...", flush=True)
            print(f"  {b.seed():.1f} s", flush=True)
            b.start(args.clients)
            load(b, args.clients, 2.0)   # warm-up: connections, caches
        for r in range(args.rounds):
            for b in (benches if r % 2 == 0 else benches[::-1]):
                point = load(b, args.clients, args.seconds)
                pages = b.statement_pages(args.pages, args.page_seconds)
                f = figures[b.accounts]
                f["transfer_p50"].append(point["latency_ms"]["p50"])
                f["transfer_p95"].append(point["latency_ms"]["p95"])
                f["page_p50"].append(round(percentile(pages, 50) * 1000, 2))
                f["page_p95"].append(round(percentile(pages, 95) * 1000, 2))
                f["cpu_ms"].append(point["bank_cpu_ms_per_transfer"])
                for o, v in point["outcomes"].items():
                    f["outcomes"][o] = f["outcomes"].get(o, 0) + v
                print(f"round {r + 1}, {b.accounts:>9,} accounts: transfers p50 {f['transfer_p50'][-1]} ms "
                      f"p95 {f['transfer_p95'][-1]} ms ({point['transfers_per_s']}/s, banks' CPU "
                      f"{f['cpu_ms'][-1]} ms each, {point['outcomes']}); "
                      f"statement pages p50 {f['page_p50'][-1]} ms p95 {f['page_p95'][-1]} ms ({len(pages)})",
                      flush=True)
    finally:
        for b in benches:
            b.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return report(figures, sizes, args)


def report(figures: dict, sizes: list[int], args) -> int:
    """The medians over the rounds, and each larger ledger's ratio to the first's: the median of
    the rounds' own ratios (measurements of one round are seconds apart)."""
    base = sizes[0]
    metrics = [k for k in figures[base] if k != "outcomes"]
    med = {n: {k: round(statistics.median(figures[n][k]), 2) for k in metrics} for n in sizes}
    ratios = {n: {k: statistics.median(a / b if b else float("inf")
                                       for a, b in zip(figures[n][k], figures[base][k])) for k in metrics}
              for n in sizes if n != base}
    print()
    print(f"{'accounts':>10} {'transfer p50':>13} {'p95':>8} {'page p50':>9} {'p95':>8} {'CPU/transfer':>13}   "
          f"(ms, median of {args.rounds} rounds; ratio to {base:,}: median of the rounds' ratios)")
    for n in sizes:
        m = med[n]
        print(f"{n:>10,} {m['transfer_p50']:>13} {m['transfer_p95']:>8} {m['page_p50']:>9} {m['page_p95']:>8} "
              f"{m['cpu_ms']:>13}" + ("" if n == base else "   ratio " + "  ".join(
                  f"{k} {v:.2f}" for k, v in ratios[n].items())))
    worst = max((v for r in ratios.values() for v in r.values()), default=0.0)
    bad = [o for f in figures.values() for o in f["outcomes"] if o != "committed"]
    if args.json:
        Path(args.json).write_text(json.dumps({"figures": figures, "medians": med, "ratios": ratios,
                                               "worst_ratio": worst}, indent=2))
    ok = worst <= args.max_ratio and not bad
    print(f"worst ratio {worst:.2f} (limit {args.max_ratio}); " + ("ok" if ok else "NOT OK")
          + (f"; outcomes other than committed: {bad}" if bad else ""))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
