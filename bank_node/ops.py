"""Operator commands that work on one bank's own ledger (the bank itself may be stopped).

    python -m bank_node.ops seed --bank ID --accounts N [--config consorcio.yml] [--data-dir DIR]
                                 [--balance 1000.00] [--password P]
        Fills the bank's empty ledger with N customers (valid CPFs from 900.000.000-xx up) and
        an individual account each, holding an opening deposit of --balance ("0" for none), in
        bulk transactions, with a progress line. Every seeded customer shares one password
        (--password, else a random one, printed), hashed once: for load tests only, never a
        bank with real customers. Refuses a ledger that already holds customers or accounts.

Commands about the whole consortium (audits, the broker's provisioning) are in ``tools/ops.py``;
this one ships in the bank's image so that it can seed the bank's own database where it runs.
"""
from __future__ import annotations

import argparse
import secrets
import sys
import time

from .config import ConfigError, load_config
from .domain.errors import DomainError
from .services.seed import MAX_ACCOUNTS


def _progress(stream):
    """A progress line: rewritten in place on a terminal, one line per tenth elsewhere (logs)."""
    t0 = time.monotonic()
    shown = [-1]

    def show(done: int, total: int) -> None:
        rate = done / max(time.monotonic() - t0, 1e-9)
        text = f"seeded {done:,} of {total:,} accounts ({100 * done // total}%), {rate:,.0f}/s"
        if stream.isatty():
            stream.write("\r" + text + ("\n" if done == total else ""))
        elif 10 * done // total > shown[0]:
            shown[0] = 10 * done // total
            stream.write(text + "\n")
        stream.flush()
    return show


def _accounts(text: str) -> int:
    try:
        n = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= n <= MAX_ACCOUNTS:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_ACCOUNTS:,}, not {n:,}")
    return n


def seed_command(args) -> int:
    from .services.banking import Banking
    from .services.seed import seed
    from .storage import StorageError, check_location, ledger_location, open_store, redacted, storage_setting
    data_dir = args.data_dir or f"data/{args.bank}"
    storage, setting = None, "its SQLite ledger"
    try:   # the ledger the bank itself opens
        config = load_config(args.config)
        storage, setting = storage_setting(config.bank(args.bank), args.config)
        store = open_store(ledger_location(args.bank, data_dir, storage and check_location(storage)))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (ValueError, StorageError) as e:
        print(f"error: cannot open the ledger of bank {args.bank} ({setting}): {e}", file=sys.stderr)
        return 1
    password = args.password or secrets.token_urlsafe(12)
    try:
        done = seed(Banking(config, args.bank, store), args.accounts, password,
                    None if args.balance in ("0", "0.00") else args.balance, _progress(sys.stderr))
    except DomainError as e:
        print(f"error: {e.detail}", file=sys.stderr)
        return 1
    except StorageError as e:
        print(f"error: the ledger failed: {e}", file=sys.stderr)
        return 1
    finally:
        store.close()
    where = redacted(storage) if storage is not None else data_dir
    print(f"seeded {done.accounts:,} accounts at {args.bank} ({where}) in {done.seconds:.1f} s, "
          f"{done.accounts / max(done.seconds, 1e-9):,.0f} accounts/s, each holding {done.opening_balance}")
    if not args.password:
        print(f"every seeded customer's password: {password}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bank_node.ops", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("seed", help="fill an empty ledger with many customers and accounts (load tests only)")
    s.add_argument("--config", default="consorcio.yml", help="consortium file (default: consorcio.yml)")
    s.add_argument("--bank", required=True, help="id of the bank in the consortium file")
    s.add_argument("--data-dir", default=None, help="the bank's data folder (default: data/<bank>)")
    s.add_argument("--accounts", type=_accounts, required=True, help=f"how many (1 to {MAX_ACCOUNTS:,})")
    s.add_argument("--balance", default="1000.00", help='opening deposit of each account (default 1000.00; "0": none)')
    s.add_argument("--password", default=None,
                   help="every seeded customer's password (default: a random one, printed at the end)")
    args = ap.parse_args(argv)
    return seed_command(args)


if __name__ == "__main__":
    sys.exit(main())
