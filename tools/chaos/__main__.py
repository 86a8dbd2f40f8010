"""python -m tools.chaos --seed 7 --duration 60 [--json summary.json]: the chaos run's command line."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ..consortia import LOCAL_AMQP
from ..rabbit import BrokerCluster, BrokerControl, PrivateBroker
from . import CLUSTER_FAULTS, FAULTS, Chaos
from . import __doc__ as DOC


def print_summary(s: dict) -> None:
    print()
    print(f"Chaos run: seed {s['seed']}, {s['duration_s']:.0f}s, {s['operations']} operations, "
          f"{len(s['faults'])} faults")
    print(f"{'operation: outcome':<48} {'count':>6}")
    for k, v in s["by_outcome"].items():
        print(f"  {k:<46} {v:>6}")
    print("faults injected:")
    for f in s["faults"]:
        print(f"  {f}")
    if s.get("liar"):
        print(f"lies told by {s['liar']['bank']} ({s['liar']['mints']} of its made-up credits):")
        for k, v in s["liar"]["sent"].items():
            print(f"  {k:<46} {v:>6}")
    print(f"{'invariant':<40} verdict  detail")
    for k, v in s["verdicts"].items():
        print(f"  {k:<38} {'PASS' if v['ok'] else 'FAIL':<7}  {v['detail']}")
    print("RESULT:", "all invariants hold" if s["ok"] else "VIOLATION")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.chaos", description=DOC.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--duration", type=float, default=60, help="seconds of faults and load (default 60)")
    ap.add_argument("--banks", type=int, default=3, choices=range(2, 6))
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--people", type=int, default=4)
    ap.add_argument("--faults", default=None,
                    help=f"comma-separated: {', '.join(FAULTS)} (default: all; the broker-node ones need "
                         "--broker-nodes, and replace the single broker's restart)")
    ap.add_argument("--broker-nodes", type=int, default=None, metavar="N",
                    help="run on a RabbitMQ cluster of N nodes that this command starts on this machine (own node "
                         "names, ports and data); the nemesis kills and pauses its nodes")
    ap.add_argument("--ttl-ms", type=int, default=1500, help="PREPARE TTL of the run's consortium")
    ap.add_argument("--broker-node", help="rabbitmqctl node name of the broker at AMQP_URL, whose restart "
                    "is a fault. Without it, a run with the broker fault starts a private RabbitMQ node of "
                    "its own, so that no other user of this machine's broker is disturbed")
    ap.add_argument("--liar", metavar="BANK", help="this bank also lies: forged, inconsistent and replayed "
                    "messages with its own broker identity and key (tools/chaos/liar.py)")
    ap.add_argument("--json", help="write the summary as JSON to this file")
    ap.add_argument("--workdir", help="keep the run's config, data and logs here (default: a temp dir, deleted)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    cluster_run = args.broker_nodes is not None
    if cluster_run and args.broker_nodes < 3:
        ap.error("--broker-nodes needs at least 3 nodes: a majority must survive the loss of one")
    default = [f for f in FAULTS if f != "broker"] if cluster_run else [f for f in FAULTS if f not in CLUSTER_FAULTS]
    faults = [f for f in args.faults.split(",") if f] if args.faults else default
    bad = set(faults) - set(FAULTS)
    if bad:
        ap.error(f"unknown faults: {', '.join(sorted(bad))}")
    if set(faults) & set(CLUSTER_FAULTS) and not cluster_run:
        ap.error("the broker-node faults need a cluster of the run's own: add --broker-nodes 3")
    if any(f in faults for f in ("connections", "broker")) and shutil.which("rabbitmqctl") is None:
        ap.error("the connections and broker faults need rabbitmqctl on this machine (or use --faults kill,pause)")
    url = os.environ.get("AMQP_URL") or LOCAL_AMQP
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="consorcio-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    private = None
    brokers = None
    control = BrokerControl(args.broker_node)
    if cluster_run:
        brokers = BrokerCluster(args.broker_nodes, prefix="chaos")
        if not args.quiet:
            print(f"starting a {args.broker_nodes}-node RabbitMQ cluster for the run (about 20 s)", flush=True)
        brokers.start()
    elif not args.broker_node and "broker" in faults:
        private = PrivateBroker()
        if not args.quiet:
            print(f"starting a private RabbitMQ node {private.node} on port {private.port} for the broker faults",
                  flush=True)
        private.start()
        url, control = private.url, private.control
    try:
        chaos = Chaos(args.seed, args.duration, args.banks, args.clients, args.people, faults, url, workdir,
                      args.ttl_ms, args.quiet, control, brokers, liar=args.liar)
        try:
            summary = chaos.run()
        finally:
            chaos.close()
    finally:
        if private is not None:
            private.stop()
        if brokers is not None:
            brokers.stop()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print_summary(summary)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
