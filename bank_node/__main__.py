"""python -m bank_node --config consorcio.yml --bank ID [--data-dir DIR] [--host ADDR] [--operator-socket PATH]

Runs one bank on its configured port with waitress (a threaded production WSGI server).
SIGTERM or SIGINT stops it gracefully: requests in flight finish, the broker connection closes.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from .config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bank_node", description="Run one bank of the consortium.")
    ap.add_argument("--config", default="consorcio.yml", help="consortium file (default: consorcio.yml)")
    ap.add_argument("--bank", required=True, help="id of this bank in the consortium file")
    ap.add_argument("--data-dir", default=None, help="where the ledger lives (default: data/<bank>)")
    ap.add_argument("--host", default=os.environ.get("BANK_HOST") or None,
                    help="address to listen on, e.g. 0.0.0.0 in a container (default: env BANK_HOST, "
                         "else the bank's listen address in the consortium file)")
    ap.add_argument("--operator-socket", default=os.environ.get("CONSORCIO_OPERATOR_SOCKET") or None,
                    metavar="PATH", help="also serve on this Unix socket (mode 600), where the operator routes "
                                         "need no token (default: env CONSORCIO_OPERATOR_SOCKET; none)")
    ap.add_argument("--log-level", default="INFO")
    ap.add_argument("--log-format", choices=("json", "text"), default=os.environ.get("LOG_FORMAT", "json"),
                    help="json (default; one event per line, with bank and transfer ids) or text")
    args = ap.parse_args(argv)
    from .logs import setup_logging
    setup_logging(args.bank, args.log_level, args.log_format)
    try:
        config = load_config(args.config)
        bank = config.bank(args.bank)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    import waitress
    from .api.operator import MIN_TOKEN_LENGTH, through_operator_socket
    from .app import create_app
    from .node import BankNode

    token = os.environ.get("CONSORCIO_OPERATOR_TOKEN", "")
    if token and len(token) < MIN_TOKEN_LENGTH:
        print(f"error: CONSORCIO_OPERATOR_TOKEN must have at least {MIN_TOKEN_LENGTH} characters", file=sys.stderr)
        return 2
    host = args.host or bank.listen_address
    from .storage import StorageError, check_location, storage_setting
    storage, setting = storage_setting(bank, args.config)
    try:
        if storage is not None:
            check_location(storage)
        node = BankNode(config, bank.id, args.data_dir or f"data/{bank.id}", storage=storage)
    except (ValueError, StorageError) as e:
        print(f"error: bank {bank.id} cannot open its ledger ({setting}): {e}", file=sys.stderr)
        return 2
    app = create_app(node)
    try:
        server = waitress.create_server(app, host=host, port=bank.port, threads=config.http_threads,
                                        connection_limit=config.http_connections,
                                        ident=f"consorcio-{bank.id}", channel_timeout=60)
    except OSError as e:
        print(f"error: cannot listen on {host}:{bank.port}: {e.strerror}", file=sys.stderr)
        node.store.close()
        return 2
    operator_server = None
    if args.operator_socket:
        try:
            operator_server = waitress.create_server(through_operator_socket(app), unix_socket=args.operator_socket,
                                                     unix_socket_perms="600", threads=2,
                                                     ident=f"consorcio-{bank.id}-operator")
        except OSError as e:
            print(f"error: cannot listen on the operator socket {args.operator_socket}: {e.strerror}",
                  file=sys.stderr)
            server.close()
            node.store.close()
            return 2
        threading.Thread(target=operator_server.run, name="operator-socket", daemon=True).start()

    import faulthandler
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # kill -USR1 <pid>: every thread's stack in the log

    def stop(signum, frame):
        # Once: a second SIGTERM while we shut down must not cut the shutdown short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    node.start()
    logging.getLogger("bank_node").info("bank %s (%s) listening on http://%s:%s, public URL %s%s", bank.id,
                                        bank.name, host, bank.port, bank.url,
                                        f", operator socket {args.operator_socket}" if operator_server else "")
    try:
        server.run()
    except SystemExit:
        pass
    finally:
        for s in (server, operator_server):
            try:
                if s is not None:
                    s.close()
            except Exception:  # noqa: BLE001
                pass
        node.stop()
        logging.getLogger("bank_node").info("bank %s stopped", bank.id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
