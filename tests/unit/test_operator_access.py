"""Operator routes (/operator, /api/operator/*, /metrics) always need the operator token, or
a request through the operator's own Unix socket: never "any process of this machine", which
would include a customer's browser on it, another bank on the same host, or anything that can
make the bank's machine send a request. Their answers are never cached."""
from __future__ import annotations

import pytest

from bank_node.app import create_app
from bank_node.api.operator import OPERATOR_SOCKET

from .conftest import assert_problem

ROUTES = ("/metrics", "/operator", "/api/operator/overview")
TOKEN = "a-long-operator-token-for-unit-tests"
LOCAL = {"REMOTE_ADDR": "127.0.0.1"}


@pytest.fixture
def app(node):
    return create_app(node, testing=True)


def test_every_operator_route_is_in_the_table(app):
    found = {r.rule for r in app.url_map.iter_rules()
             if r.endpoint.startswith(("operator.", "operator_pages."))}
    assert found == set(ROUTES)


@pytest.mark.parametrize("route", ROUTES)
def test_without_a_token_no_local_process_gets_in(app, monkeypatch, route):
    monkeypatch.delenv("CONSORCIO_OPERATOR_TOKEN", raising=False)
    c = app.test_client()
    for addr in ("127.0.0.1", "::1"):
        r = c.get(route, environ_base={"REMOTE_ADDR": addr})
        body = assert_problem(r, 403, "forbidden")
        assert "CONSORCIO_OPERATOR_TOKEN" in body["detail"]
        assert r.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("route", ROUTES)
def test_with_a_token_only_the_token_gets_in(app, monkeypatch, route):
    monkeypatch.setenv("CONSORCIO_OPERATOR_TOKEN", TOKEN)
    c = app.test_client()
    for headers in ({}, {"X-Operator-Token": ""}, {"X-Operator-Token": TOKEN[:-1]},
                    {"X-Operator-Token": TOKEN + "x"}, {"Authorization": f"Bearer {TOKEN}"}):
        r = c.get(route, headers=headers, environ_base=LOCAL)
        assert_problem(r, 403, "forbidden")
    r = c.get(route, headers={"X-Operator-Token": TOKEN}, environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert r.status_code == 200
    assert r.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("route", ROUTES)
def test_the_operator_socket_needs_no_token_and_no_header_can_pretend_to_be_it(app, monkeypatch, route):
    monkeypatch.delenv("CONSORCIO_OPERATOR_TOKEN", raising=False)
    c = app.test_client()
    r = c.get(route, environ_base={**LOCAL, OPERATOR_SOCKET: True})
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    # A header arrives in the environ as HTTP_..., never as the socket's mark.
    for name in ("consorcio.operator_socket", "Consorcio-Operator-Socket", "X-Forwarded-For"):
        r = c.get(route, headers={name: "True" if name != "X-Forwarded-For" else "127.0.0.1"}, environ_base=LOCAL)
        assert_problem(r, 403, "forbidden")
    r = c.get(route, environ_base={**LOCAL, OPERATOR_SOCKET: "True"})      # only the socket sets it, as True
    assert_problem(r, 403, "forbidden")


def test_a_short_operator_token_stops_the_bank_at_start(tmp_path, monkeypatch, capsys):
    from bank_node.__main__ import main
    cfg = tmp_path / "c.yml"
    cfg.write_text("banks: [{id: alfa, name: Banco Alfa, port: 1}]\n")
    monkeypatch.setenv("CONSORCIO_OPERATOR_TOKEN", "short")
    assert main(["--config", str(cfg), "--bank", "alfa", "--data-dir", str(tmp_path / "d"),
                 "--log-format", "text"]) == 2
    assert "at least 16 characters" in capsys.readouterr().err
