"""What an operator sees: /metrics moving, JSON logs that follow one transfer across banks,
the operator view, and the consortium audit through the broker."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from tools import ops
from tools.supervisor import ROOT
from bank_node.config import load_config
from tests.conftest import OPERATOR_TOKEN
from tests.support import customer_everywhere, metric, wait_until

pytestmark = pytest.mark.integration


def test_metrics_move_after_a_transfer(trio):
    cluster, ana, acc = trio
    alfa, beta = cluster["alfa"].url, cluster["beta"].url
    before = metric(alfa, "consorcio_transfers_decided_total", outcome="committed")
    _, body = ana.transfer("alfa", [("beta", acc["beta"], "5.00")], ("gama", acc["gama"]))
    assert body["status"] == "committed"
    _, body = ana.transfer("alfa", [("beta", acc["beta"], "500.00")], ("gama", acc["gama"]))
    assert body["status"] == "aborted"
    assert metric(alfa, "consorcio_transfers_decided_total", outcome="committed") == before + 1
    assert metric(alfa, "consorcio_transfers_decided_total", outcome="aborted") == 1
    assert metric(alfa, "consorcio_prepares_sent_total") == 4
    assert metric(alfa, "consorcio_votes_received_total", vote="no") == 1
    assert metric(beta, "consorcio_votes_sent_total", vote="yes") == 1
    assert metric(beta, "consorcio_holds_placed_total") == 1
    assert metric(beta, "consorcio_decisions_applied_total", outcome="commit") == 1
    assert metric(alfa, "consorcio_transfer_seconds_count") == 2
    assert metric(alfa, "consorcio_broker_connected") == 1
    assert metric(alfa, "consorcio_http_requests_total", method="POST", route="/api/transfers", status="201") == 2


def test_one_transfer_can_be_followed_across_every_bank_log(trio):
    cluster, ana, acc = trio
    _, body = ana.transfer("alfa", [("beta", acc["beta"], "5.00")], ("gama", acc["gama"]))
    tid = body["id"]

    def events():
        found = {}
        for b in cluster.banks.values():
            for line in b.log_path.read_text().splitlines():
                if tid in line:
                    rec = json.loads(line)  # every line is one JSON object
                    assert rec["bank"] == b.bank_id
                    found.setdefault(b.bank_id, set()).add(rec.get("event"))
        return found if {"alfa", "beta", "gama"} <= set(found) and "applied" in found.get("gama", ()) else None
    found = wait_until(events, 10, "the transfer in every log")
    # one line per transfer and bank at info level: its decision, and where it was applied
    assert "decision" in found["alfa"] and "applied" in found["beta"] and "applied" in found["gama"]


def test_operator_view_shows_holds_and_doubt(trio, monkeypatch):
    cluster, ana, acc = trio
    monkeypatch.setenv("CONSORCIO_OPERATOR_TOKEN", OPERATOR_TOKEN)   # what tools.ops view sends
    cluster["gama"].pause()  # beta votes YES and holds; nobody decides until the deadline
    try:
        import threading
        t = threading.Thread(target=ana.transfer, args=("alfa", [("beta", acc["beta"], "7.00")], ("gama", acc["gama"])))
        t.start()
        view = wait_until(lambda: (lambda o: o if o["holds"] else None)(ops.view(load_config(cluster.config_path), "beta")),
                          10, "a hold at beta")
        assert view["holds"][0]["amount"] == "7.00" and view["holds"][0]["account"] == acc["beta"]
        assert view["in_doubt"][0]["role"] == "participant"
        t.join(30)
    finally:
        cluster["gama"].resume()
    out = subprocess.run([sys.executable, "-m", "tools.ops", "view", "--config", str(cluster.config_path),
                          "--bank", "beta"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "holds:" in out.stdout and "in doubt:" in out.stdout


def test_audit_agrees_after_transfers_and_catches_a_tampered_ledger(trio):
    cluster, ana, acc = trio
    for amount in ("10.00", "20.00", "30.00"):
        ana.transfer("alfa", [("alfa", acc["alfa"], amount), ("beta", acc["beta"], "1.00")], ("gama", acc["gama"]))
    ana.withdraw("gama", acc["gama"], "15.00")
    out = subprocess.run([sys.executable, "-m", "tools.ops", "audit", "--config", str(cluster.config_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "the consortium's money adds up" in out.stdout
    s = ops.audit(load_config(cluster.config_path))
    assert s["balance_total"] == 300_00 - 15_00 and s["transfers_in_total"] == s["transfers_out_total"] == 63_00
    # Money appearing from nowhere at beta is caught, bank by bank.
    db = sqlite3.connect(cluster["beta"].data_dir / "beta.sqlite3")
    db.execute("UPDATE accounts SET balance = balance + 100 WHERE number = ?", (acc["beta"],))
    db.commit()
    db.close()
    s = ops.audit(load_config(cluster.config_path))
    assert not s["consortium_adds_up"]
    assert [r["bank"] for r in s["banks"] if not r["adds_up"]] == ["beta"]
