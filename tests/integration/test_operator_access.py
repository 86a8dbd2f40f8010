"""Operator routes of a real bank process: from this very machine, without the token, /metrics,
/operator and /api/operator/overview are refused (no "any local process" bypass); with the
token, or through the Unix socket the operator chose, they answer, and never to a cache."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tools.http import unix_get
from tools.supervisor import ROOT
from tests.conftest import OPERATOR_TOKEN

pytestmark = pytest.mark.integration

ROUTES = ("/metrics", "/operator", "/api/operator/overview")


def get(url: str, headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers)


def test_a_bank_answers_operators_only_with_the_token_or_through_its_socket(make_cluster, tmp_path):
    sock = tmp_path / "alfa-operator.sock"
    cluster = make_cluster(banks=("alfa",), env={"CONSORCIO_OPERATOR_SOCKET": str(sock)})
    url = cluster["alfa"].url
    assert url.startswith("http://127.0.0.1:")        # this machine, where the old bypass let anyone in
    for route in ROUTES:
        status, headers = get(url + route)
        assert status == 403 and headers["Cache-Control"] == "no-store", (route, status)
        status, _ = get(url + route, {"X-Operator-Token": "not-" + OPERATOR_TOKEN})
        assert status == 403, route
        status, headers = get(url + route, {"X-Operator-Token": OPERATOR_TOKEN})
        assert status == 200 and headers["Cache-Control"] == "no-store", (route, status)
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    for route in ROUTES:
        status, headers, body = unix_get(str(sock), route)
        assert status == 200 and headers["Cache-Control"] == "no-store", (route, status, body[:200])
    # the operator's command-line view, through the socket, with no token at all
    env = {k: v for k, v in os.environ.items() if k != "CONSORCIO_OPERATOR_TOKEN"}
    out = subprocess.run([sys.executable, "-m", "tools.ops", "view", "--config", str(cluster.config_path),
                          "--bank", "alfa", "--socket", str(sock), "--token-file", str(tmp_path / "none")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "Banco Alfa (alfa)" in out.stdout, out.stderr
    out = subprocess.run([sys.executable, "-m", "tools.ops", "view", "--config", str(cluster.config_path),
                          "--bank", "alfa", "--token-file", str(tmp_path / "none")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "no operator token" in out.stderr, out.stderr
