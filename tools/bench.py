"""Throughput and latency of cross-bank transfers, every write durable.

    python -m tools.bench [--clients 1,8,16,64,128] [--seconds 8] [--banks 3] [--legs 2]
                          [--storage sqlite,postgres] [--workers 1,2]
                          [--rate N] [--batches] [--profile DIR] [--json FILE] [--no-wait]
                          [--p99 MS] [--target N]

Starts its own consortium (own broker namespace, ports and data folder; every bank signing its
messages, as consorcio.yml has them), creates one customer per client with a funded account in
every bank and consent at each bank for the others to debit it, then measures transfers of
``--legs`` source legs in different banks into an account at another bank, the coordinator
being one of the source banks, in turn.

- **Closed loop** (the default): for each client count, that many clients each send a transfer
  as soon as the last one is answered, for ``--seconds``; a table of transfers per second and
  latency percentiles per client count.
- **Open loop** (``--rate N``): transfers are offered at N per second whatever the answers, and
  each one's latency counts from the moment it was due (no coordinated omission).
- **Batches** (``--batches``): the same transfers through ``POST /api/transfer-batches``.
- **Raw broker RPC**: the round trips per second of a bare pika request/reply on the same
  broker, measured in the same run: the figure to compare with, since absolute numbers drift
  on a shared machine. The ratio of the two is printed.
- **Where the machine's CPU went** at each point: the cores kept busy by the banks, by the
  benchmark's own clients, by the rest (mostly the broker), and the time the hypervisor stole
  for other machines; clients taking a large share, or stolen time, would make the figures say
  less about the banks.
- ``--banks 3,10,20``: the same measurement for consortia of each size, side by side.
- ``--storage sqlite,postgres`` and ``--workers 1,2``: the same again with every bank's ledger in
  a PostgreSQL database of its own (created on ``PG_URL``, default the local server, and dropped
  afterwards) and with each bank served by that many processes (their throttles then count in
  Redis, ``REDIS_URL``). The banks' CPU counts every process of every bank, not the database
  server's.
- ``--profile DIR``: py-spy records every bank during the busiest point and writes flame graphs.
- **What a target leaves** (``--target N``, default 600): below the table, the whole machine's
  CPU per transfer (banks, clients, broker) at the best point within ``--p99`` (at the peak if
  none kept to it), the most
  transfers per second the machine's cores allow at that cost, and the most CPU per transfer
  the target leaves. When the first is above the last, no client count or quieter hour will
  reach the target at that latency: only a cheaper transfer will.

The load comes from several client processes (keep-alive HTTP connections, one per client), so
that the client is not the bottleneck. Conflicts are rare by design (each client is its own
customer), so the figures measure the protocol, not contention.
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from bank_node.domain.documents import make_cpf
from bank_node.storage import postgres_url
from broker.provision import delete_namespace

from .api_client import Customer
from .consortia import BANK_IDS, LOCAL_AMQP, LOCAL_PG, LOCAL_REDIS, TEST_SECURITY, bank_entries, free_ports, write_config
from .supervisor import Cluster

CLIENT_PROCESSES = 3


# ------------------------------------------------------------------------------- the consortium
class PostgresDatabases:
    """A database per bank on the PostgreSQL server of ``PG_URL`` (default: the local one),
    named after the run, dropped at its end."""

    def __init__(self, namespace: str):
        self.server = os.environ.get("PG_URL") or LOCAL_PG
        self.prefix = namespace.replace("-", "_")
        self.names: list[str] = []

    def create(self, bank_id: str) -> str:
        import psycopg
        name = f"{self.prefix}_{bank_id}"
        with psycopg.connect(self.server, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        self.names.append(name)
        return postgres_url(self.server, name)

    def drop_all(self) -> None:
        import psycopg
        with psycopg.connect(self.server, autocommit=True) as c:
            for name in self.names:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Bench:
    def __init__(self, banks: int, legs: int, amqp_url: str, workdir: Path, clients: int, apply_wait: bool,
                 quiet: bool = False, settings: list[str] = (), storage: str = "sqlite", workers: int = 1):
        self.ids = list(BANK_IDS[:banks])
        self.legs = min(legs, banks - 1)
        self.amqp_url = amqp_url
        self.quiet = quiet
        self.namespace = f"bench-{uuid.uuid4().hex[:8]}"
        keys = workdir / "keys"
        from bank_node.interbank.signing import write_key_pair
        for b in self.ids:
            write_key_pair(keys, b)
        doc = {"http_threads": max(24, clients + 8),
               "security": {**TEST_SECURITY, "register_max_per_address": 100_000},
               "signing": {"mode": "required", "keys_dir": str(keys)},
               "timeouts": {"apply_wait_ms": 2000 if apply_wait else 0}}
        for setting in settings:   # --set section.key=value: what-ifs on the consortium's settings
            path, _, value = setting.partition("=")
            *sections, key = path.split(".")
            node = doc
            for name in sections:
                node = node.setdefault(name, {})
            node[key] = yaml.safe_load(value)
        if workers > 1:   # every process of a bank must see the same throttle counts
            doc["security"]["rate_limit_storage"] = os.environ.get("REDIS_URL") or LOCAL_REDIS
        self.databases = PostgresDatabases(self.namespace) if storage == "postgres" else None
        entries = bank_entries(free_ports(banks))
        if self.databases is not None:
            for entry in entries:
                entry["storage"] = self.databases.create(entry["id"])
        cfg = write_config(workdir / "consorcio.yml", consortium=self.namespace, broker_url=amqp_url,
                           banks=entries, **doc)
        self.operator_token = uuid.uuid4().hex
        self.cluster = Cluster(cfg, workdir / "data", env={"CONSORCIO_OPERATOR_TOKEN": self.operator_token},
                               workers={b: workers for b in self.ids})
        self.people: list[dict] = []

    def say(self, msg: str) -> None:
        if not self.quiet:
            print(msg, flush=True)

    def start(self, clients: int) -> None:
        self.cluster.start(deadline_s=240)
        urls = {b: p.url for b, p in self.cluster.banks.items()}

        def person(i: int) -> dict:
            c = Customer(make_cpf(f"{400000000 + 7919 * i:09d}"), f"Cliente {i}", urls)
            accounts = {}
            for b in self.ids:
                c.join(b)
                accounts[b] = c.open_account(b)
                c.deposit(b, accounts[b], "90000.00")
            c.grant_everywhere(accounts)
            return {"cpf": c.cpf, "tokens": dict(c.tokens), "accounts": accounts}

        self.say(f"{len(self.ids)} banks up; {clients} customers with an account in each bank ...")
        with ThreadPoolExecutor(8) as pool:
            self.people = list(pool.map(person, range(clients)))

    def plan(self, k: int, n: int) -> tuple[str, dict]:
        """The n-th transfer of client k: (the coordinating bank, the request body)."""
        ids, me = self.ids, self.people[k]
        first = (k + n) % len(ids)
        srcs = [ids[(first + j) % len(ids)] for j in range(self.legs)]
        dest_bank = ids[(first + self.legs) % len(ids)]
        dest = self.people[(k + 1) % len(self.people)]["accounts"][dest_bank]
        return srcs[0], {"sources": [{"bank": b, "account": me["accounts"][b], "amount": "0.01"} for b in srcs],
                         "destination": {"bank": dest_bank, "account": dest}}

    def counters(self) -> Counter:
        """The banks' Prometheus counters, summed over the banks: the batching at work."""
        total: Counter = Counter()
        for p in self.cluster.banks.values():
            req = urllib.request.Request(p.url + "/metrics", headers={"X-Operator-Token": self.operator_token})
            for text in urllib.request.urlopen(req, timeout=10).read().decode().splitlines():
                if text.startswith("consorcio_") and " " in text:
                    name, value = text.rsplit(" ", 1)
                    total[name] += float(value)
        return total

    def stop(self) -> None:
        self.cluster.stop()
        delete_namespace(self.amqp_url, self.namespace, self.ids)
        if self.databases is not None:
            self.databases.drop_all()

    def pids(self) -> list[int]:
        """Every process of every bank (a bank of several workers is a parent and its children)."""
        return [pid for p in self.cluster.banks.values() for pid in process_tree(p.pid)]

    def ports(self) -> dict[str, int]:
        return {b: int(p.url.rsplit(":", 1)[1]) for b, p in self.cluster.banks.items()}


# ------------------------------------------------------------------------------- the load
def _client_process(args: tuple) -> dict:
    """One load process: its share of the clients as threads, each with keep-alive connections
    to every bank; closed loop until ``until``, or open loop at ``rate`` per second."""
    bench_people, plans_of, ports, start_at, until, rate, batch = args
    lat: list[float] = []
    outcomes: Counter = Counter()
    lock = threading.Lock()

    def do(conns: dict, k: int, n: int) -> tuple[float, Counter]:
        """One request: its latency and the outcome of each transfer it carried."""
        plans = plans_of[k]
        via, body = plans[n % len(plans)]
        if batch:   # the client's transfers in turn, all coordinated by ``via``
            path, payload = "/api/transfer-batches", {"items": [plans[(n + j) % len(plans)][1] for j in range(batch)]}
        else:
            path, payload = "/api/transfers", body
        conn = conns.get(via) or conns.setdefault(via, http.client.HTTPConnection("127.0.0.1", ports[via], timeout=60))
        data = json.dumps(payload)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {bench_people[k]['tokens'][via]}"}
        t = time.perf_counter()
        try:
            conn.request("POST", path, data, headers)
            resp = conn.getresponse()
            answer = json.loads(resp.read())
        except (OSError, http.client.HTTPException, ValueError):
            conns.pop(via, None)
            return time.perf_counter() - t, Counter(error=batch or 1)
        dt = time.perf_counter() - t
        if batch and resp.status == 201:
            return dt, Counter(i["status"] for i in answer["items"])
        return dt, Counter({answer.get("status") or answer.get("code") or str(resp.status): batch or 1})

    def closed(k: int) -> None:
        conns: dict = {}
        n = 0
        while time.time() < start_at:
            time.sleep(0.001)  # noqa: every client starts together
        while time.time() < until:
            dt, what = do(conns, k, n)
            n += 1
            with lock:
                lat.append(dt)
                outcomes.update(what)

    def opened(clients: list[int]) -> None:
        """Offered load: transfer i is due at start_at + i / rate, whatever came back before."""
        pool = ThreadPoolExecutor(max(8, int(rate // 10) + 8))
        local = threading.local()

        def one(k: int, n: int, due: float) -> None:
            if not hasattr(local, "conns"):
                local.conns = {}   # each pool thread keeps its own keep-alive connections
            conns = local.conns
            _, what = do(conns, k, n)
            with lock:
                lat.append(time.time() - due)
                outcomes.update(what)
        i = 0
        while True:
            due = start_at + i / rate
            if due >= until:
                break
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)  # noqa: the schedule of an open-loop load
            pool.submit(one, clients[i % len(clients)], i, due)
            i += 1
        pool.shutdown(wait=True)

    mine = sorted(plans_of)
    cpu0 = time.process_time()
    if rate:
        opened(mine)
    else:
        threads = [threading.Thread(target=closed, args=(k,)) for k in mine]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return {"latencies": lat, "outcomes": dict(outcomes), "cpu_s": time.process_time() - cpu0}


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, ()))
    return tree


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of ``values``: the value at that rank, none interpolated."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) the processes have used so far, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])   # utime, stime
    return total / ticks


def machine_cpu_seconds() -> tuple[float, float]:
    """CPU time the machine's cores have spent so far (``/proc/stat``), in seconds: busy here,
    and stolen by the hypervisor for other machines (noise this run cannot see otherwise)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def load(bench: Bench, clients: int, seconds: float, rate: float = 0, batch: int = 0) -> dict:
    procs = min(CLIENT_PROCESSES, clients)
    pids = bench.pids()
    plans = {k: [bench.plan(k, n) for n in range(len(bench.ids) * 2)] for k in range(clients)}
    start_at = time.time() + 1.0
    until = start_at + seconds
    shares = [{k: plans[k] for k in range(clients) if k % procs == i} for i in range(procs)]
    args = [(bench.people, share, bench.ports(), start_at, until, rate / procs if rate else 0, batch)
            for share in shares]
    before = bench.counters()
    with mp.get_context("fork").Pool(procs) as pool:
        cpu0, (busy0, stolen0) = cpu_seconds(pids), machine_cpu_seconds()
        parts = pool.map(_client_process, args)
        cpu, (busy, stolen) = cpu_seconds(pids) - cpu0, machine_cpu_seconds()
        busy, stolen = busy - busy0, stolen - stolen0
        elapsed = time.time() - start_at   # the load and the answers still on their way
    counted = bench.counters()
    counted.subtract(before)
    client_cpu = sum(p["cpu_s"] for p in parts)
    lat = sorted(x for p in parts for x in p["latencies"])
    outcomes: Counter = Counter()
    for p in parts:
        outcomes.update(p["outcomes"])
    done = sum(v for o, v in outcomes.items() if o in ("committed", "aborted"))
    pct = (lambda q: round(percentile(lat, q) * 1000, 1)) if lat else (lambda q: None)
    return {"clients": clients, "offered_per_s": rate or None, "seconds": seconds, "transfers": done,
            "transfers_per_s": round(done / seconds, 1),
            "latency_ms": {"p50": pct(50), "p95": pct(95), "p99": pct(99),
                           "max": round(lat[-1] * 1000, 1) if lat else None},
            "outcomes": dict(outcomes),
            # CPU the banks spent per transfer: the figure that noise on a shared machine moves least
            "bank_cpu_ms_per_transfer": round(1000 * cpu / done, 2) if done else None,
            # and the whole machine's (banks, clients, broker, the rest): what a rate must fit in
            "machine_cpu_ms_per_transfer": round(1000 * busy / done, 2) if done else None,
            # where the machine's CPU went meanwhile, in cores: a benchmark whose clients took a
            # large share would measure itself; "rest" is mostly the broker, "stolen" other machines
            "cores_busy": {"banks": round(cpu / elapsed, 2), "clients": round(client_cpu / elapsed, 2),
                           "rest": round(max(0.0, busy - cpu - client_cpu) / elapsed, 2),
                           "stolen": round(stolen / elapsed, 2), "of": os.cpu_count()},
            "batching": batching(counted)}


def batching(c: Counter) -> dict:
    """Items per envelope and units per commit, from the counters' growth during a point."""
    def ratio(a: float, b: float) -> float | None:
        return round(a / b, 1) if b else None
    envelopes = sum(v for k, v in c.items() if k.startswith("consorcio_envelopes_sent_total"))
    prepare_envelopes = c['consorcio_envelopes_sent_total{kind="prepare"}']
    return {"prepares_per_envelope": ratio(c["consorcio_prepares_sent_total"], prepare_envelopes),
            "envelopes": int(envelopes),
            "units_per_commit": ratio(c["consorcio_commit_batch_units_sum"], c["consorcio_commit_batch_units_count"]),
            "commits": int(c["consorcio_commit_batch_units_count"])}


# ------------------------------------------------------------------------------- raw broker RPC
def _echo(url: str, queue: str, ready) -> None:
    import pika
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.queue_declare(queue, exclusive=False, auto_delete=True)

    def on(ch_, method, props, body):
        ch_.basic_publish("", props.reply_to, body, pika.BasicProperties(correlation_id=props.correlation_id))
    ch.basic_consume(queue, on, auto_ack=True)
    ready.set()
    try:
        ch.start_consuming()
    except Exception:  # noqa: BLE001 - stopped by the parent
        pass


def raw_rpc_rate(url: str, seconds: float = 3.0) -> float:
    """Sequential request/reply round trips per second through the broker, with pika alone: the
    cheapest possible exchange of one message and its answer (the floor of any protocol)."""
    import pika
    queue = f"bench-echo-{uuid.uuid4().hex[:8]}"
    ready = mp.get_context("fork").Event()
    echo = mp.get_context("fork").Process(target=_echo, args=(url, queue, ready), daemon=True)
    echo.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("the echo process did not start")
        conn = pika.BlockingConnection(pika.URLParameters(url))
        ch = conn.channel()
        got: dict = {}
        ch.basic_consume("amq.rabbitmq.reply-to", lambda c, m, p, b: got.__setitem__(p.correlation_id, b),
                         auto_ack=True)
        n, end = 0, time.perf_counter() + seconds
        t0 = time.perf_counter()
        while time.perf_counter() < end:
            cid = str(n)
            ch.basic_publish("", queue, b"x" * 200, pika.BasicProperties(reply_to="amq.rabbitmq.reply-to",
                                                                          correlation_id=cid))
            while cid not in got:
                conn.process_data_events(time_limit=None)
            n += 1
        rate = n / (time.perf_counter() - t0)
        conn.close()
        return round(rate, 1)
    finally:
        echo.terminate()
        echo.join(5)


# ------------------------------------------------------------------------------- profiling
def profile(bench: Bench, out: Path, seconds: float, fmt: str = "flamegraph") -> tuple[list[subprocess.Popen], list[Path]]:
    """py-spy records every bank process for ``seconds`` (flame graphs, SVG, in ``out``): the
    recorders, to wait for, and the files they write. Only the thread holding the interpreter
    lock is sampled, so the graphs show where the CPU goes, not where threads wait; C code that
    lets go of the lock is missed: SQLite's statements and Ed25519 (at 64 clients 2.2% of the
    samples in signature checks without ``--gil``, 0.5% with it). Sampling without ``--gil`` is
    no better on greenlets: it counts a commit's fsync and the hub's waits as work. For the
    whole split, ``perf record -p <the banks' pids>``."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out.mkdir(parents=True, exist_ok=True)
    procs, files = [], []
    for b, p in bench.cluster.banks.items():
        f = out / f"{b}.{ {'flamegraph': 'svg', 'raw': 'txt', 'speedscope': 'json'}[fmt] }"
        files.append(f)
        procs.append(subprocess.Popen([spy, "record", "-p", str(p.pid), "-d", str(int(seconds) + 1), "-r", "100",
                                       "--gil", "--subprocesses", "-f", fmt, "-o", str(f), "--nonblocking"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
    return procs, files


# ------------------------------------------------------------------------------- the command
def measure(banks: int, storage: str, workers: int, args, workdir: Path, url: str) -> dict:
    counts = [int(c) for c in args.clients.split(",")]
    name = f"{banks}-banks-{storage}-{workers}w"
    bench = Bench(banks, args.legs, url, workdir / name, max(counts), not args.no_wait,
                  settings=args.set, storage=storage, workers=workers)
    result: dict = {"banks": banks, "storage": storage, "workers": workers, "legs": bench.legs, "points": []}
    try:
        bench.start(max(counts))
        load(bench, min(counts[-1], 8), 2.0)   # warm-up: connections, caches, the JIT-less interpreter
        for c in counts:
            spy = None
            if args.profile and c == max(counts):
                spy = profile(bench, Path(args.profile) / name, args.seconds, args.profile_format)
            point = load(bench, c, args.seconds)
            if spy:
                for p in spy[0]:
                    p.wait(60)
                point["flame_graphs"] = [str(f) for f in spy[1]]
            result["points"].append(point)
            bench.say(line(point))
        if args.rate:
            for r in [float(x) for x in str(args.rate).split(",")]:
                point = load(bench, max(counts), args.seconds, rate=r)
                result.setdefault("open_loop", []).append(point)
                bench.say("open loop " + line(point))
        if args.batches:
            point = load(bench, min(4, max(counts)), args.seconds, batch=args.batch_size)
            result["batches"] = point
            bench.say(f"batches of {args.batch_size}: " + line(point))
    finally:
        bench.stop()
    return result


def peaks(points: list[dict], raw_rpc: float, p99_ms: float) -> tuple[dict, dict | None]:
    """The closed-loop point with the most transfers per second, and the one with the most among
    those whose p99 is at most ``p99_ms`` (None if no point kept to it): a rate bought with
    seconds of waiting is not the rate a consortium can promise its customers."""
    def summary(p: dict) -> dict:
        return {"clients": p["clients"], "transfers_per_s": p["transfers_per_s"], "p99_ms": p["latency_ms"]["p99"],
                "ratio_to_raw_rpc": round(p["transfers_per_s"] / raw_rpc, 3)}
    best = max(points, key=lambda p: p["transfers_per_s"])
    kept = [p for p in points if p["latency_ms"]["p99"] is not None and p["latency_ms"]["p99"] <= p99_ms]
    return summary(best), (summary(max(kept, key=lambda p: p["transfers_per_s"])) if kept else None)


def budget(point: dict, target_per_s: float, cores: int) -> dict:
    """What a rate costs the machine at ``point``: its CPU per transfer (all of it: banks, clients,
    broker), the most transfers per second its ``cores`` allow at that cost, and the most CPU per
    transfer that ``target_per_s`` leaves. A target above the ceiling cannot be met by waiting for
    a quieter machine or more clients at that point: only by a cheaper transfer."""
    ms = point.get("machine_cpu_ms_per_transfer")
    return {"clients": point["clients"], "machine_cpu_ms_per_transfer": ms,
            "bank_cpu_ms_per_transfer": point["bank_cpu_ms_per_transfer"],
            "ceiling_per_s": round(cores * 1000 / ms, 1) if ms else None,
            "target_per_s": target_per_s, "target_allows_ms": round(cores * 1000 / target_per_s, 2)}


def line(p: dict) -> str:
    lat = p["latency_ms"]
    offered = f" offered {p['offered_per_s']:.0f}/s" if p.get("offered_per_s") else ""
    return (f"{p['clients']:>4} clients{offered}: {p['transfers_per_s']:>8.1f} transfers/s  p50 {lat['p50']} ms  "
            f"p99 {lat['p99']} ms  banks' CPU {p['bank_cpu_ms_per_transfer']} ms/transfer  {p['outcomes']}\n"
            f"{'':13}batching: {p['batching']}\n"
            f"{'':13}cores busy: {p['cores_busy']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", default="1,8,16,64,128", help="client counts, comma-separated")
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds of load per point")
    ap.add_argument("--banks", default="3", help="consortium sizes, comma-separated (e.g. 3,10,20)")
    ap.add_argument("--storage", default="sqlite",
                    help="the banks' ledgers, comma-separated: sqlite (a file per bank) and/or postgres (a database "
                         "per bank on PG_URL, default the local server)")
    ap.add_argument("--workers", default="1",
                    help="processes per bank, comma-separated (more than 1 counts throttles in Redis: REDIS_URL)")
    ap.add_argument("--legs", type=int, default=2, help="source legs per transfer, each at another bank")
    ap.add_argument("--rate", default=None, help="open loop: offered transfers per second (comma-separated)")
    ap.add_argument("--batches", action="store_true", help="also measure POST /api/transfer-batches")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--no-wait", action="store_true",
                    help="answer once the decision is durable, without waiting for the other banks to apply it")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="a consortium setting for this run, e.g. interbank.prepare_envelopes_in_flight=1")
    ap.add_argument("--profile", default=None, metavar="DIR", help="flame graphs of every bank (py-spy) into DIR")
    ap.add_argument("--profile-format", default="flamegraph", choices=["flamegraph", "raw", "speedscope"],
                    help="py-spy output: flame graph SVG, collapsed stacks (text) or speedscope JSON")
    ap.add_argument("--p99", type=float, default=100.0, metavar="MS",
                    help="also report the best rate whose p99 latency is at most this (default 100 ms)")
    ap.add_argument("--target", type=float, default=600.0, metavar="N",
                    help="the rate to compare with (default 600 transfers/s): the CPU per transfer it allows on "
                         "this machine's cores, against what the best point within --p99 spent")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    url = os.environ.get("AMQP_URL") or LOCAL_AMQP
    workdir = Path(tempfile.mkdtemp(prefix="consorcio-bench-"))
    report = {"raw_rpc_per_s": None, "runs": []}
    try:
        report["raw_rpc_per_s"] = raw_rpc_rate(url)
        print(f"raw pika request/reply on this broker: {report['raw_rpc_per_s']} round trips/s", flush=True)
        for banks in [int(b) for b in args.banks.split(",")]:
            for storage in args.storage.split(","):
                for workers in [int(w) for w in args.workers.split(",")]:
                    print(f"--- {banks} banks on {storage}, {workers} process(es) each, transfers of "
                          f"{min(args.legs, banks - 1)} source legs (every PREPARE, vote and decision durable; "
                          f"signed envelopes) ---", flush=True)
                    report["runs"].append(measure(banks, storage, workers, args, workdir, url))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(f"{'banks':>5} {'storage':>8} {'procs':>5} {'clients':>7} {'transfers/s':>12} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'CPU ms/tr':>9} {'x raw RPC':>10}")
    raw = report["raw_rpc_per_s"] or 1
    for run in report["runs"]:
        for p in run["points"]:
            print(f"{run['banks']:>5} {run['storage']:>8} {run['workers']:>5} {p['clients']:>7} "
                  f"{p['transfers_per_s']:>12.1f} {p['latency_ms']['p50']:>8} {p['latency_ms']['p99']:>8} "
                  f"{p['bank_cpu_ms_per_transfer']:>9} {p['transfers_per_s'] / raw:>10.2f}")
        best, within = run["peak"], run["within_p99"] = peaks(run["points"], raw, args.p99)
        where = f"{run['banks']} banks on {run['storage']}, {run['workers']} process(es) each"
        print(f"peak with {where}: {best['transfers_per_s']} transfers/s at {best['clients']} clients "
              f"(p99 {best['p99_ms']} ms) = {best['ratio_to_raw_rpc']:.2f} x the raw RPC rate")
        print(f"best with a p99 of at most {args.p99:g} ms, {where}: " + (
            f"{within['transfers_per_s']} transfers/s at {within['clients']} clients (p99 {within['p99_ms']} ms) = "
            f"{within['ratio_to_raw_rpc']:.2f} x the raw RPC rate" if within else "none of the client counts"))
        chosen = next(p for p in run["points"] if p["clients"] == (within or best)["clients"])
        cores = os.cpu_count() or 1
        cost = run["budget"] = budget(chosen, args.target, cores)
        if cost["machine_cpu_ms_per_transfer"]:
            print(f"at {cost['clients']} clients a transfer took {cost['machine_cpu_ms_per_transfer']} ms of the "
                  f"machine's CPU ({cost['bank_cpu_ms_per_transfer']} of it the banks'): its {cores} cores "
                  f"allow at most {cost['ceiling_per_s']} transfers/s at that cost; {args.target:g} transfers/s "
                  f"allows at most {cost['target_allows_ms']} ms")
        if run.get("batches"):
            b = run["batches"]
            print(f"through batches of {args.batch_size}: {b['transfers_per_s']} transfers/s, "
                  f"{b['machine_cpu_ms_per_transfer']} ms of the machine's CPU per transfer")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    bad = [p for run in report["runs"] for p in run["points"] if set(p["outcomes"]) - {"committed"}]
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
