"""Operator commands.

    python -m tools.ops audit [--config consorcio.yml]
        Asks every bank, through the broker, for its totals and prints whether the money of the
        whole consortium adds up, bank by bank, and whether every pair of banks agrees on what
        one owes the other. Exit code 1 when it does not (or a bank is silent).

    python -m tools.ops positions [--config consorcio.yml]
        Who owes whom between banks, pair by pair: the netting report of a settlement window.
        Exit code 1 when two banks disagree.

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
        cookie, one env file per bank with its password and signing key, development Ed25519
        keys in the signing keys folder and the public ones alone in secrets/public-keys; for
        compose's PostgreSQL, its superuser's password and each bank's database password (in
        the bank's env file, and in secrets/bank-databases for the service's init script).
        Never committed (secrets/ is git-ignored).

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
from bank_node.identity import AUDITOR, expected_user, keyring_for
from bank_node.messaging import client_for

from .http import http_json, unix_get

DEV_TOKEN_FILE = "data/operator-token"
"""Where the launcher keeps the development operator token (under its --data-dir)."""



def audit(config: ConsortiumConfig, timeout_s: float = 5.0) -> dict:
    """Scatter an Audit to every bank and gather the answers until the deadline. An answer
    counts only if the bank signed it (when the consortium signs)."""
    keyring = keyring_for(config, AUDITOR)
    client = client_for(config, AUDITOR, own_queue=False).start()
    try:
        if not client.wait_connected(timeout_s):
            raise BrokerError(f"no broker answers at {', '.join(address_of(u) for u in config.broker_urls)}")
        deadline = int(time.time() * 1000 + timeout_s * 1000)
        body = P.encode(AUDITOR, P.Audit(deadline_ms=deadline), ns=config.consortium)
        results: dict[str, P.AuditResult] = {}
        for bank, (raw, headers) in client.gather(config.bank_ids, body, deadline_s=deadline / 1000,
                                                  expect_user=lambda b: expected_user(config, b),
                                                  with_headers=True).items():
            try:
                env = P.decode(raw)
                res = next(i for i in env.items if isinstance(i, P.AuditResult))
            except (P.BadMessage, StopIteration):
                continue
            if env.sender != bank or res.bank != bank:
                continue
            if keyring is not None and not keyring.verify(bank, raw, headers.get("sig")):
                continue
            results[bank] = res
    finally:
        client.stop()
    return summarize(config, results)


def summarize(config: ConsortiumConfig, results: dict) -> dict:
    """Each bank's books, the consortium's money, and every pair of banks' positions.

    A bank's books balance when its customers' money equals deposits - withdrawals + what the
    other banks owe it (its positions): transfers between banks move claims, not cash. Two banks
    agree when what one says the other owes it is what the other says it owes (the positions of
    a pair add up to zero); a transfer still in doubt may hold them apart for a moment."""
    rows = []
    for bank in config.bank_ids:
        r = results.get(bank)
        if r is None:
            rows.append({"bank": bank, "answered": False})
            continue
        owed = sum(r.positions.values())
        rows.append({"bank": bank, "answered": True, "accounts": r.accounts, "balance": r.balance_total,
                     "deposits": r.deposits_total, "withdrawals": r.withdrawals_total,
                     "transfers_in": r.transfers_in_total, "transfers_out": r.transfers_out_total,
                     "holds": r.holds_total, "in_doubt": r.in_doubt, "unacknowledged": r.unacknowledged,
                     "positions": dict(r.positions), "owed_to_it": owed,
                     "adds_up": r.balance_total == r.deposits_total - r.withdrawals_total + owed})
    answered = [r for r in rows if r["answered"]]
    total = sum(r["balance"] for r in answered)
    dep = sum(r["deposits"] for r in answered)
    wd = sum(r["withdrawals"] for r in answered)
    t_in = sum(r["transfers_in"] for r in answered)
    t_out = sum(r["transfers_out"] for r in answered)
    in_doubt = sum(r["in_doubt"] for r in answered)
    all_answered = len(answered) == len(rows)
    pairs = []
    for i, a in enumerate(answered):
        for b in answered[i + 1:]:
            says_a, says_b = a["positions"].get(b["bank"], 0), b["positions"].get(a["bank"], 0)
            pairs.append({"banks": (a["bank"], b["bank"]), "a_says": says_a, "b_says": says_b,
                          "agree": says_a + says_b == 0})
    mismatches = [p for p in pairs if not p["agree"]]
    return {
        "banks": rows, "all_answered": all_answered, "balance_total": total, "deposits_total": dep,
        "withdrawals_total": wd, "transfers_in_total": t_in, "transfers_out_total": t_out,
        "in_doubt": in_doubt, "pairs": pairs, "mismatched_pairs": mismatches,
        "consortium_adds_up": all_answered and all(r["adds_up"] for r in answered)
        and total == dep - wd and ((t_in == t_out and not mismatches) or in_doubt > 0),
    }


def positions_report(s: dict) -> list[dict]:
    """Who owes whom, pair by pair, as the netting report of a settlement window: the net of
    every transfer between the two banks since the positions were last settled."""
    out = []
    for p in s["pairs"]:
        a, b = p["banks"]
        owed = p["a_says"]          # positive: b owes a
        if owed == 0 and p["b_says"] == 0:
            continue
        debtor, creditor = (b, a) if owed > 0 else (a, b)
        out.append({"debtor": debtor, "creditor": creditor, "amount": abs(owed), "agree": p["agree"],
                    "as_seen_by": {a: p["a_says"], b: p["b_says"]}})
    return sorted(out, key=lambda r: -r["amount"])


def print_positions(s: dict) -> None:
    f = format_cents
    rows = positions_report(s)
    if not rows:
        print("no bank owes another anything")
    for r in rows:
        seen = ", ".join(f"{bank} says {f(v)}" for bank, v in r["as_seen_by"].items())
        print(f"{r['debtor']:<10} owes {r['creditor']:<10} {f(r['amount']):>14}   "
              f"{'both agree' if r['agree'] else 'MISMATCH: ' + seen}")
    missing = [r["bank"] for r in s["banks"] if not r["answered"]]
    if missing:
        print("did not answer:", ", ".join(missing))


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
    for p in s["mismatched_pairs"]:
        a, b = p["banks"]
        print(f"positions of {a} and {b} disagree: {a} says {b} owes it {f(p['a_says'])}, "
              f"{b} says {a} owes it {f(p['b_says'])}")
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


def signing_keys(config: ConsortiumConfig, out: Path) -> tuple[Path, Path]:
    """Development Ed25519 keys of every bank in ``signing.keys_dir`` (else ``<out>/keys``), and a
    copy of the public ones alone in ``<out>/public-keys`` (what a container may see of the others)."""
    from bank_node.interbank.signing import write_key_pair
    keys = Path(config.signing.keys_dir) if config.signing.keys_dir else out / "keys"
    public = out / "public-keys"
    public.mkdir(parents=True, exist_ok=True)
    for bank in config.bank_ids:
        (public / f"{bank}.pub").write_text(write_key_pair(keys, bank) + "\n")
    return keys, public


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


def database_secrets(config: ConsortiumConfig, out: Path, written: dict[str, Path]) -> dict[str, str]:
    """Compose's PostgreSQL: its superuser's password, and every bank's role and password for
    docker/postgres-init.sh ("<bank> <password>" a line); kept, once made, in databases.yml."""
    from broker.provision import ensure_passwords
    passwords = ensure_passwords(out / "databases.yml", [*config.bank_ids, "postgres"])
    written["postgres_password"] = out / "postgres-password"
    written["postgres_password"].write_text(passwords["postgres"])
    written["bank_databases"] = out / "bank-databases"
    written["bank_databases"].write_text("".join(f"{b} {passwords[b]}\n" for b in config.bank_ids))
    for f in ("postgres_password", "bank_databases"):
        written[f].chmod(0o644)  # read by the postgres user inside its container; the folder is git-ignored
    return passwords


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
    keys, public = signing_keys(config, out)
    written["public_keys"] = public
    databases = database_secrets(config, out, written)
    for bank in config.bank_ids:
        env = out / f"{bank}.env"
        private = (keys / f"{bank}.key").read_text().strip()
        # PGPASSWORD is libpq's own: BANK_DATABASE_URL in docker-compose.yml names no secret
        env.write_text(f"CONSORCIO_BROKER_PASSWORD={passwords[bank]}\nCONSORCIO_SIGNING_KEY={private}\n"
                       f"PGPASSWORD={databases[bank]}\n")
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
    po = sub.add_parser("positions", help="who owes whom between banks (asks every bank through the broker)")
    po.add_argument("--config", default="consorcio.yml")
    po.add_argument("--timeout", type=float, default=5.0)
    b = sub.add_parser("broker-secrets", help="per-bank broker users and signing keys for docker compose "
                                              "(definitions, env files)")
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
        if args.cmd == "positions":
            s = audit(config, args.timeout)
            print_positions(s)
            return 0 if not s["mismatched_pairs"] else 1
        print_view(view(config, args.bank, token_file=args.token_file, socket_path=args.socket))
        return 0
    except (BrokerError, RuntimeError, OSError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
