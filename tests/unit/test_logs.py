"""The bank's JSON log lines: one object each, with the time of the record itself."""
from __future__ import annotations

import json
import logging

from bank_node.logs import JsonFormatter


def record(created: float, msg: str = "transfer %s: COMMITTED", **extra) -> logging.LogRecord:
    r = logging.LogRecord("interbank", logging.INFO, __file__, 1, msg, ("t1",), None)
    r.created, r.msecs = created, (created - int(created)) * 1000
    r.__dict__.update(extra)
    return r


def test_each_line_carries_its_own_records_time_even_when_seconds_interleave():
    f = JsonFormatter("alfa")
    times = [1_700_000_000.25, 1_700_000_001.5, 1_700_000_000.75, 1_700_000_059.0]
    lines = [json.loads(f.format(record(t, transfer_id="t1", event="decision"))) for t in times]
    assert [line["ts"] for line in lines] == ["2023-11-14T22:13:20.250Z", "2023-11-14T22:13:21.500Z",
                                              "2023-11-14T22:13:20.750Z", "2023-11-14T22:14:19.000Z"]
    assert lines[0] | {"ts": None} == {"ts": None, "level": "info", "bank": "alfa", "logger": "interbank",
                                       "msg": "transfer t1: COMMITTED", "transfer_id": "t1", "event": "decision"}


def test_a_banks_log_line_costs_no_walk_of_the_stack(monkeypatch, capsys):
    """Neither format shows where a line was logged: after set-up, the logging module no longer
    looks for the caller of each record (a walk of the stack per line, at every transfer)."""
    from bank_node.logs import setup_logging
    for name in ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, name, getattr(logging, name))
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    setup_logging("alfa", "INFO", "json")
    seen = []
    monkeypatch.setattr(logging.Logger, "findCaller", lambda self, *a, **k: seen.append(1) or ("?", 0, "?", None))
    logging.getLogger("interbank").info("transfer %s: COMMITTED", "t1", extra={"transfer_id": "t1"})
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["msg"] == "transfer t1: COMMITTED" and line["transfer_id"] == "t1" and line["bank"] == "alfa"
    assert seen == []
