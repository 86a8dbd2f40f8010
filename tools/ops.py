"""Operator commands.

    python -m tools.ops audit [--config consorcio.yml]
        Asks every bank, through the broker, for its totals and prints whether the money of the
        whole consortium adds up, bank by bank. Exit code 1 when it does not (or a bank is silent).

    python -m tools.ops view --bank ID [--config consorcio.yml] [--token-file F] [--socket PATH]
        A bank's transfers by state, those in doubt with their age, and the holds in place
        (the same figures as the page /operator of that bank). Sends the operator token:
        CONSORCIO_OPERATOR_TOKEN, else the development token the launcher keeps in
        data/operator-token; or asks through the bank's operator socket (--socket).

    python -m tools.ops broker-secrets [--config consorcio.yml] [--out secrets]
        For docker compose with broker_auth per_bank: development passwords for every bank, the
        auditor and the management UI's admin (kept, if already there), a RabbitMQ definitions
        file with their users, their least-privilege permissions and the consortium's exchanges,
        quorum queues and bindings (the compose cluster imports it once its three nodes run),
        the nodes' rabbitmq.conf (cluster formation, message size limit), the cluster's Erlang
        cookie, and one env file per bank with its password. Never committed (secrets/ is
        git-ignored).

    python -m tools.ops provision [--config consorcio.yml]
        Declares the consortium's exchanges, queues (quorum, bounded) and bindings on the broker
        with the credentials of broker_url (the operator's), and restores any that was deleted or
        changed. Banks declare nothing: their broker users may not.

    python -m tools.ops migrate-queues [--config consorcio.yml] [--dry-run]
        Re-creates, as the quorum queues they should be, the consortium's queues that exist with
        other arguments (classic queues declared by an older version). Only queues nobody
        consumes: stop their banks first.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from broker import BrokerError
from broker.provision import address_of
from bank_node import protocol as P
from bank_node.config import ConfigError, ConsortiumConfig, load_config
from bank_node.domain.money import format_cents
from bank_node.identity import AUDITOR, expected_user
from bank_node.messaging import client_for

from .http import http_json, unix_get

DEV_TOKEN_FILE = "data/operator-token"
"""Where the launcher keeps the development operator token (under its --data-dir)."""



def audit(config: ConsortiumConfig, timeout_s: float = 5.0) -> dict:
    """Scatter an Audit to every bank and gather the answers until the deadline."""
    client = client_for(config, AUDITOR, own_queue=False).start()
    try:
        if not client.wait_connected(timeout_s):
            raise BrokerError(f"no broker answers at {', '.join(address_of(u) for u in config.broker_urls)}")
        deadline = int(time.time() * 1000 + timeout_s * 1000)
        body = P.encode(AUDITOR, P.Audit(deadline_ms=deadline))
        results: dict[str, P.AuditResult] = {}
        for bank, raw in client.gather(config.bank_ids, body, deadline_s=deadline / 1000,
                                       expect_user=lambda b: expected_user(config, b)).items():
            try:
                res = next(i for i in P.decode(raw).items if isinstance(i, P.AuditResult))
            except (P.BadMessage, StopIteration):
                continue
            if res.bank == bank:
                results[bank] = res
    finally:
        client.stop()
    return summarize(config, results)


def summarize(config: ConsortiumConfig, results: dict) -> dict:
    rows = []
    for bank in config.bank_ids:
        r = results.get(bank)
        if r is None:
            rows.append({"bank": bank, "answered": False})
            continue
        expected = r.deposits_total - r.withdrawals_total + r.transfers_in_total - r.transfers_out_total
        rows.append({"bank": bank, "answered": True, "accounts": r.accounts, "balance": r.balance_total,
                     "deposits": r.deposits_total, "withdrawals": r.withdrawals_total,
                     "transfers_in": r.transfers_in_total, "transfers_out": r.transfers_out_total,
                     "holds": r.holds_total, "in_doubt": r.in_doubt, "unacknowledged": r.unacknowledged,
                     "adds_up": r.balance_total == expected})
    answered = [r for r in rows if r["answered"]]
    total = sum(r["balance"] for r in answered)
    dep = sum(r["deposits"] for r in answered)
    wd = sum(r["withdrawals"] for r in answered)
    t_in = sum(r["transfers_in"] for r in answered)
    t_out = sum(r["transfers_out"] for r in answered)
    in_doubt = sum(r["in_doubt"] for r in answered)
    all_answered = len(answered) == len(rows)
    return {
        "banks": rows, "all_answered": all_answered, "balance_total": total, "deposits_total": dep,
        "withdrawals_total": wd, "transfers_in_total": t_in, "transfers_out_total": t_out,
        "in_doubt": in_doubt,
        "consortium_adds_up": all_answered and all(r["adds_up"] for r in answered)
        and total == dep - wd and (t_in == t_out or in_doubt > 0),
    }


def print_audit(s: dict) -> None:
    f = format_cents
    print(f"{'bank':<10} {'accounts':>8} {'balance':>14} {'deposits':>14} {'withdrawals':>14} "
          f"{'transfers in':>14} {'transfers out':>14} {'holds':>10} {'in doubt':>8}  verdict")
    for r in s["banks"]:
        if not r["answered"]:
            print(f"{r['bank']:<10} {'(no answer)':>8}")
            continue
        print(f"{r['bank']:<10} {r['accounts']:>8} {f(r['balance']):>14} {f(r['deposits']):>14} "
              f"{f(r['withdrawals']):>14} {f(r['transfers_in']):>14} {f(r['transfers_out']):>14} "
              f"{f(r['holds']):>10} {r['in_doubt']:>8}  {'adds up' if r['adds_up'] else 'DOES NOT ADD UP'}")
    print(f"consortium: balance {f(s['balance_total'])} = deposits {f(s['deposits_total'])} - withdrawals "
          f"{f(s['withdrawals_total'])}; transfers in {f(s['transfers_in_total'])} / out "
          f"{f(s['transfers_out_total'])}; in doubt {s['in_doubt']}")
    print("RESULT:", "the consortium's money adds up" if s["consortium_adds_up"] else
          ("NOT EVERY BANK ANSWERED" if not s["all_answered"] else "THE MONEY DOES NOT ADD UP"))


def operator_token(token_file: str | os.PathLike | None = DEV_TOKEN_FILE) -> str | None:
    """The operator token: CONSORCIO_OPERATOR_TOKEN, else the development token the launcher
    keeps in ``token_file`` (data/operator-token)."""
    if os.environ.get("CONSORCIO_OPERATOR_TOKEN"):
        return os.environ["CONSORCIO_OPERATOR_TOKEN"]
    if token_file is not None:
        try:
            return Path(token_file).read_text().strip() or None
        except OSError:
            return None
    return None


def view(config: ConsortiumConfig, bank_id: str, *, token_file: str | os.PathLike | None = DEV_TOKEN_FILE,
         socket_path: str | None = None) -> dict:
    """The operator overview of one bank, with the operator token, or through its operator socket."""
    bank = config.bank(bank_id)
    if socket_path:
        status, _, raw = unix_get(socket_path, "/api/operator/overview", timeout=10)
        body = json.loads(raw) if raw else {}
        where = socket_path
    else:
        token = operator_token(token_file)
        if token is None:
            raise RuntimeError("no operator token: set CONSORCIO_OPERATOR_TOKEN (the launcher prints it), or "
                               "use --socket with the bank's operator socket")
        status, body = http_json("GET", f"{bank.local_url}/api/operator/overview",
                                 headers={"X-Operator-Token": token}, timeout=10)
        where = bank.local_url
    if status != 200:
        raise RuntimeError(f"{where}: {status} {body.get('detail', body)}")
    return body


def print_view(o: dict) -> None:
    print(f"{o['name']} ({o['bank']}) · broker {o['broker']}")
    print("coordinated transfers by state:", ", ".join(f"{k} {v}" for k, v in o["coordinated_by_state"].items())
          or "none")
    print("legs by state (participant):", ", ".join(f"{k} {v}" for k, v in o["participations_by_state"].items())
          or "none")
    print(f"in doubt: {len(o['in_doubt'])}")
    for t in o["in_doubt"]:
        print(f"  {t['transfer_id']}  {t['role']:<11} {t['state']:<9} {t['age_s']:8.1f}s  coordinator {t['coordinator']}")
    print(f"decisions not yet acknowledged: {len(o['unacknowledged'])}")
    for t in o["unacknowledged"][:20]:
        print(f"  {t['transfer_id']}  {t['state']:<9} waiting for {t['pending_acks']} bank(s), {t['age_s']:.1f}s")
    print(f"holds: {len(o['holds'])}")
    for h in o["holds"]:
        print(f"  {h['transfer_id']}  account {h['account']}  {h['amount']:>12}  {h['age_s']:8.1f}s")


ADMIN = "admin"


#: The RabbitMQ nodes of docker-compose.yml (their host names are their service names).
COMPOSE_BROKER_NODES = ("rabbitmq1", "rabbitmq2", "rabbitmq3")


def rabbitmq_conf(config: ConsortiumConfig, nodes: tuple[str, ...] = COMPOSE_BROKER_NODES) -> str:
    """The compose nodes' rabbitmq.conf: they find each other from this list (peer discovery
    from configuration), refuse messages over the consortium's size limit, and a node cut off
    from the majority stops serving rather than diverging."""
    lines = ["cluster_formation.peer_discovery_backend = classic_config"]
    lines += [f"cluster_formation.classic_config.nodes.{i} = rabbit@{n}" for i, n in enumerate(nodes, 1)]
    lines += [f"max_message_size = {config.broker.max_message_bytes}",
              "cluster_partition_handling = pause_minority", ""]
    return "\n".join(lines)


def broker_secrets(config: ConsortiumConfig, out: Path) -> dict[str, Path]:
    """Write what docker compose needs: every bank its own broker identity, and a cluster."""
    import secrets as random_secrets
    from bank_node.messaging import topology_of
    from broker.provision import definitions, ensure_passwords, user_of, vhost_of
    out.mkdir(parents=True, exist_ok=True)
    secrets_file = Path(config.broker_auth.secrets_file) if config.broker_auth.secrets_file else out / "broker.yml"
    passwords = ensure_passwords(secrets_file, [*config.bank_ids, AUDITOR, ADMIN])
    vhost = vhost_of(config.broker_url)
    doc = definitions(config.consortium, {p: passwords[p] for p in [*config.bank_ids, AUDITOR]}, vhost,
                      topology_of(config))
    admin = definitions(config.consortium, {ADMIN: passwords[ADMIN]}, vhost)
    admin["users"][0]["tags"] = ["administrator"]
    admin["permissions"][0].update(configure=".*", write=".*", read=".*")
    doc["users"] += admin["users"]
    doc["permissions"] += admin["permissions"]
    written = {"secrets": secrets_file, "definitions": out / "definitions.json",
               "rabbitmq_conf": out / "rabbitmq.conf", "erlang_cookie": out / "erlang.cookie"}
    written["definitions"].write_text(json.dumps(doc, indent=2))
    written["rabbitmq_conf"].write_text(rabbitmq_conf(config))
    written["rabbitmq_conf"].chmod(0o644)
    if not written["erlang_cookie"].exists():  # the nodes of one cluster share it: kept once made
        written["erlang_cookie"].write_text(random_secrets.token_hex(24))
    written["erlang_cookie"].chmod(0o644)  # copied with mode 400 for the rabbitmq user inside each container
    for bank in config.bank_ids:
        env = out / f"{bank}.env"
        env.write_text(f"CONSORCIO_BROKER_PASSWORD={passwords[bank]}\n")
        env.chmod(0o644)  # read by the container's own user; the folder itself is git-ignored
        written[bank] = env
    written["definitions"].chmod(0o644)
    print(f"broker users for consortium {config.consortium!r}: "
          + ", ".join(user_of(config.consortium, p) for p in [*config.bank_ids, AUDITOR, ADMIN]))
    print(f"management UI: user {user_of(config.consortium, ADMIN)}, password in {secrets_file}")
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.ops", description="Operator commands.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("audit", help="does the consortium's money add up? (asks every bank through the broker)")
    a.add_argument("--config", default="consorcio.yml")
    a.add_argument("--timeout", type=float, default=5.0)
    v = sub.add_parser("view", help="a bank's transfers by state, those in doubt, its holds")
    v.add_argument("--config", default="consorcio.yml")
    v.add_argument("--bank", required=True)
    v.add_argument("--token-file", default=DEV_TOKEN_FILE,
                   help=f"where the launcher keeps the development operator token (default: {DEV_TOKEN_FILE}); "
                        "CONSORCIO_OPERATOR_TOKEN wins")
    v.add_argument("--socket", default=None, metavar="PATH", help="ask through the bank's operator socket")
    b = sub.add_parser("broker-secrets", help="per-bank broker users for docker compose (definitions, env files)")
    b.add_argument("--config", default="consorcio.yml")
    b.add_argument("--out", default="secrets")
    p = sub.add_parser("provision", help="declare (or restore) the consortium's exchanges, queues and bindings")
    p.add_argument("--config", default="consorcio.yml")
    m = sub.add_parser("migrate-queues", help="re-create as quorum queues the consortium's queues of an older "
                                              "version (stop their banks first)")
    m.add_argument("--config", default="consorcio.yml")
    m.add_argument("--dry-run", action="store_true", help="only say what would be done")
    args = ap.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        if args.cmd == "broker-secrets":
            for what, path in broker_secrets(config, Path(args.out)).items():
                print(f"  {what:<14} {path}")
            return 0
        if args.cmd in ("provision", "migrate-queues"):
            from bank_node.messaging import topology_of
            from broker.provision import migrate_queues, provision_topology
            if args.cmd == "provision":
                provision_topology(config.broker_urls, topology_of(config), say=print)
                print(f"provisioned {config.consortium!r}: exchanges, dead-letter queue, a quorum queue and a "
                      f"binding per bank ({', '.join(config.bank_ids)})")
            else:
                done = migrate_queues(config.broker_urls, topology_of(config), dry_run=args.dry_run)
                print(f"{len(done)} queue(s) {'to migrate' if args.dry_run else 'migrated'}")
            return 0
        if args.cmd == "audit":
            s = audit(config, args.timeout)
            print_audit(s)
            return 0 if s["consortium_adds_up"] else 1
        print_view(view(config, args.bank, token_file=args.token_file, socket_path=args.socket))
        return 0
    except (BrokerError, RuntimeError, OSError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
