"""Structured logs: one JSON object per line, each with the bank id and, where there is one,
the transfer id, so one transfer can be followed across every bank's log with grep."""
from __future__ import annotations

import json
import logging

from .domain.calendar import iso

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record. It runs on the threads that do the bank's work (one line per
    transfer at each bank), so it keeps to what a record needs (``iso`` formats a second's text
    once)."""

    def __init__(self, bank_id: str):
        super().__init__()
        self.bank_id = bank_id

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": iso(record.created), "level": record.levelname.lower(),
               "bank": self.bank_id, "logger": record.name, "msg": record.getMessage()}
        for k, v in vars(record).items():
            if k not in _STANDARD and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def setup_logging(bank_id: str, level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter(bank_id))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {bank_id} %(name)s %(levelname)s %(message)s"))
    # Neither format shows where in the code a line was logged, nor the thread or process: the
    # logging module then need not walk the stack for each record (the documented
    # ``logging._srcfile = None``), nor look those up.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # pika logs every failed reconnect attempt as an ERROR with a traceback; the broker client
    # reports the connection state itself, once per attempt.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
