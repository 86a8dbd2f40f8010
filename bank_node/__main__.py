"""python -m bank_node --config consorcio.yml --bank ID [--data-dir DIR] [--host ADDR] [--operator-socket PATH] [--workers N]

Runs one bank on its configured port with waitress (a production WSGI server), in one process
or, with ``--workers N``, in N processes sharing its socket and ledger (``workers.py``). The
process runs on gevent's greenlets unless ``--concurrency threads`` (``concurrency.py``).
SIGTERM or SIGINT stops it gracefully: requests in flight finish, the broker connection closes.
"""
from __future__ import annotations

if __name__ == "__main__":   # before anything else is imported: greenlets, or OS threads
    from bank_node import concurrency as _concurrency
    _concurrency.patch(_concurrency.requested())

import argparse
import gc
import logging
import os
import signal
import socket
import sys
import threading

from . import concurrency
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
    ap.add_argument("--workers", type=int, default=int(os.environ.get("BANK_WORKERS") or 1), metavar="N",
                    help="serve the bank with N processes sharing its port, its ledger and its broker queue, "
                         "one of them its resolver at a time (default: env BANK_WORKERS, else 1); N > 1 needs "
                         "security.rate_limit_storage on redis://, so that the processes share the throttles")
    ap.add_argument("--concurrency", choices=concurrency.MODES,
                    default=concurrency.requested(argv),
                    help="gevent (every task of the bank a greenlet of one OS thread, the cheapest hand-offs) "
                         "or threads (OS threads); default: env BANK_CONCURRENCY, else threads for a ledger "
                         "on PostgreSQL and gevent otherwise")
    ap.add_argument("--listen-fd", type=int, action="append", default=[], help=argparse.SUPPRESS)
    ap.add_argument("--log-level", default="INFO")
    ap.add_argument("--log-format", choices=("json", "text"), default=os.environ.get("LOG_FORMAT", "json"),
                    help="json (default; one event per line, with bank and transfer ids) or text")
    args = ap.parse_args(argv)
    if args.concurrency not in concurrency.MODES:   # from BANK_CONCURRENCY, which argparse does not check
        print(f"error: BANK_CONCURRENCY must be one of {', '.join(concurrency.MODES)}, not {args.concurrency!r}",
              file=sys.stderr)
        return 2
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
    data_dir = args.data_dir or f"data/{bank.id}"
    if args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.workers > 1 and not args.listen_fd:
        return _supervise(args, config, bank, host, data_dir)
    inherited = [socket.socket(fileno=fd) for fd in args.listen_fd]   # a worker's, from its parent
    from .storage import StorageError, check_location, storage_setting
    storage, setting = storage_setting(bank, args.config)
    try:
        if storage is not None:
            check_location(storage)
        node = BankNode(config, bank.id, data_dir, storage=storage, siblings=bool(args.listen_fd))
    except (ValueError, StorageError) as e:
        print(f"error: bank {bank.id} cannot open its ledger ({setting}): {e}", file=sys.stderr)
        return 2
    app = create_app(node)
    tcp = [s for s in inherited if s.family != socket.AF_UNIX]
    try:
        where = {"sockets": tcp} if tcp else {"host": host, "port": bank.port}
        server = waitress.create_server(app, threads=config.http_threads, connection_limit=config.http_connections,
                                        ident=f"consorcio-{bank.id}", channel_timeout=60, **where)
    except OSError as e:
        print(f"error: cannot listen on {host}:{bank.port}: {e.strerror}", file=sys.stderr)
        node.store.close()
        return 2
    operator_server = None
    if args.operator_socket:
        unix = [s for s in inherited if s.family == socket.AF_UNIX]
        try:
            where = {"sockets": unix} if unix else {"unix_socket": args.operator_socket, "unix_socket_perms": "600"}
            operator_server = waitress.create_server(through_operator_socket(app), threads=2,
                                                     ident=f"consorcio-{bank.id}-operator", **where)
        except OSError as e:
            print(f"error: cannot listen on the operator socket {args.operator_socket}: {e.strerror}",
                  file=sys.stderr)
            server.close()
            node.store.close()
            return 2
        threading.Thread(target=operator_server.run, name="operator-socket", daemon=True).start()

    # kill -USR1 <pid>: the stacks in the log. Every OS thread's at once (faulthandler: even while
    # a C call holds the bank), then, on greenlets, every greenlet's with what it waits on.
    import faulthandler
    if concurrency.active():
        concurrency.on_signal(signal.SIGUSR1, concurrency.print_tasks)
    faulthandler.register(signal.SIGUSR1, all_threads=True, chain=True)

    # What start-up made (modules, the app, schemas: about 100,000 objects) lives as long as the
    # bank: the garbage collector's full passes need not walk it again (a full pass under load
    # took 6-7 ms instead of about 56 ms, a pause every request in flight felt). Before the
    # bank's tasks start: frozen objects are hidden from gc.get_objects(), where the stacks
    # of kill -USR1 find the greenlets.
    gc.freeze()
    concurrency.exit_on(signal.SIGTERM, signal.SIGINT)   # SystemExit in server.run below, once
    node.start()
    logging.getLogger("bank_node").info("bank %s (%s) listening on http://%s:%s, public URL %s%s; on %s", bank.id,
                                        bank.name, host, bank.port, bank.url,
                                        f", operator socket {args.operator_socket}" if operator_server else "",
                                        "greenlets (gevent)" if concurrency.active() else "OS threads")
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


def _supervise(args, config, bank, host: str, data_dir: str) -> int:
    """``--workers N``: open the sockets once, then start and watch N processes serving them."""
    from .workers import Workers, listen_tcp, listen_unix
    if config.security.rate_limit_storage == "memory://":
        print(f"error: --workers {args.workers} needs security.rate_limit_storage on redis:// (e.g. "
              "redis://127.0.0.1:6379/0): with memory:// each process would count failed logins and guessed "
              f"account numbers on its own, multiplying every limit by {args.workers}", file=sys.stderr)
        return 2
    try:
        sockets = [listen_tcp(host, bank.port)]
    except OSError as e:
        print(f"error: cannot listen on {host}:{bank.port}: {e.strerror}", file=sys.stderr)
        return 2
    if args.operator_socket:
        try:
            sockets.append(listen_unix(args.operator_socket))
        except OSError as e:
            print(f"error: cannot listen on the operator socket {args.operator_socket}: {e.strerror}",
                  file=sys.stderr)
            sockets[0].close()
            return 2
    child = [sys.executable, "-m", "bank_node", "--config", args.config, "--bank", bank.id, "--data-dir", data_dir,
             "--host", host, "--log-level", args.log_level, "--log-format", args.log_format, "--workers", "1",
             "--concurrency", args.concurrency]
    if args.operator_socket:
        child += ["--operator-socket", args.operator_socket]
    for s in sockets:
        child += ["--listen-fd", str(s.fileno())]
    logging.getLogger("bank_node").info("bank %s (%s): %d worker processes on http://%s:%s", bank.id, bank.name,
                                        args.workers, host, bank.port)
    return Workers(bank.id, args.workers, child, sockets).run()


if __name__ == "__main__":
    sys.exit(main())
