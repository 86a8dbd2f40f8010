"""What an operator needs to see: /metrics for Prometheus, and the operator view of this
bank's transfers by state, those in doubt with their age, and the holds in place
(GET /api/operator/overview as JSON, GET /operator as a page).

The operator routes answer only with the operator token (``CONSORCIO_OPERATOR_TOKEN`` in the
bank's environment, sent as ``X-Operator-Token``), or to requests that came through the Unix
socket the operator chose (``--operator-socket``, mode 600: the file system says who may use
it). Never to "any process of this machine": a customer's browser, another bank run by the same
host, or anything that can make the bank's machine send a request would all be that. Their
answers are never cached.
"""
from __future__ import annotations

import hmac
import os

from flask import Blueprint, Response, render_template_string, request

from ..domain import errors as E
from ..context import node

bp = Blueprint("operator", __name__)
pages = Blueprint("operator_pages", __name__)


OPERATOR_SOCKET = "consorcio.operator_socket"
"""WSGI environ key set only by ``through_operator_socket``: no HTTP request can set it (headers
arrive as HTTP_* keys), so it says the request came through the operator's socket."""

MIN_TOKEN_LENGTH = 16


def through_operator_socket(app):
    """The WSGI app served on the operator's Unix socket: the same app, with its requests marked."""
    def wsgi(environ, start_response):
        environ[OPERATOR_SOCKET] = True
        return app(environ, start_response)
    return wsgi


def _operator_only() -> None:
    if request.environ.get(OPERATOR_SOCKET) is True:
        return
    token = os.environ.get("CONSORCIO_OPERATOR_TOKEN", "")
    if not token:
        raise E.Forbidden("operator routes need the operator token: run the bank with CONSORCIO_OPERATOR_TOKEN "
                          "and send it as X-Operator-Token, or ask through the bank's operator socket")
    given = request.headers.get("X-Operator-Token", "")
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise E.Forbidden("operator token required (X-Operator-Token)")


@bp.after_request
@pages.after_request
def _never_cached(resp):
    resp.headers["Cache-Control"] = "no-store"
    return resp


@pages.get("/metrics")
def metrics():
    _operator_only()
    n = node()
    n.refresh_gauges()
    return Response(n.metrics.render(), mimetype="text/plain; version=0.0.4")


@bp.get("/operator/overview")
def overview():
    _operator_only()
    from flask import jsonify
    return jsonify(node().operator_overview())


_PAGE = """<!doctype html><html lang="en"><meta charset="utf-8">
<title>{{ o.name }} · operator</title>
<h1>{{ o.name }} <small>({{ o.bank }})</small> · operator view</h1>
<p>Broker: {{ o.broker }} · transfers in doubt: {{ o.in_doubt|length }} · holds: {{ o.holds|length }}</p>
<h2>Coordinated transfers by state</h2>
<table><tr><th>state</th><th>count</th></tr>
{% for k, v in o.coordinated_by_state.items() %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}</table>
<h2>Legs by state (as participant)</h2>
<table><tr><th>state</th><th>count</th></tr>
{% for k, v in o.participations_by_state.items() %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}</table>
<h2>In doubt</h2>
<table><tr><th>transfer</th><th>role</th><th>state</th><th>age (s)</th><th>coordinator</th></tr>
{% for t in o.in_doubt %}<tr><td>{{ t.transfer_id }}</td><td>{{ t.role }}</td><td>{{ t.state }}</td>
<td>{{ '%.1f'|format(t.age_s) }}</td><td>{{ t.coordinator }}</td></tr>{% else %}<tr><td colspan="5">none</td></tr>{% endfor %}</table>
{% if t %}<h2 id="transfer">Transfer {{ t.id }}</h2>
<p>{{ t.status }}{% if t.reason %} ({{ t.reason }}){% endif %} · coordinator {{ t.coordinator }} · created {{ t.created_at }}
{% if t.decided_at %} · decided {{ t.decided_at }}{% endif %}</p>
<table><tr><th>bank</th><th>account</th><th>role</th><th>amount</th><th>reason</th></tr>
{% for l in t.legs %}<tr><td>{{ l.bank }}</td><td>{{ l.account }}</td><td>{{ l.role }}</td><td>{{ l.amount }}</td>
<td>{{ l.reason or '' }}</td></tr>{% endfor %}</table>
<h3>Timeline (two-phase commit)</h3>
<ol class="timeline">{% for e in t.timeline or [] %}<li>{{ e.at }} · {{ e.bank }} · {{ e.event }}
{% if e.ms is not none %} +{{ e.ms }} ms{% endif %}{% if e.detail %} ({{ e.detail }}){% endif %}</li>
{% else %}<li>this bank's answer has no timeline</li>{% endfor %}</ol>
{% elif asked %}<p>No transfer {{ asked }} at this bank.</p>{% endif %}
<form method="get" action=""><label>Transfer id <input name="transfer" value="{{ asked or '' }}"></label>
<button type="submit">Show</button></form>
<h2>Holds</h2>
<table><tr><th>transfer</th><th>account</th><th>amount</th><th>age (s)</th></tr>
{% for h in o.holds %}<tr><td>{{ h.transfer_id }}</td><td>{{ h.account }}</td><td>{{ h.amount }}</td>
<td>{{ '%.1f'|format(h.age_s) }}</td></tr>{% else %}<tr><td colspan="4">none</td></tr>{% endfor %}</table>
</html>"""


@pages.get("/operator")
def page():
    """The overview; with ``?transfer=<id>``, that transfer's legs and its two-phase commit as a
    timeline (PREPAREs, votes, the decision, its delivery and acknowledgements)."""
    _operator_only()
    asked = request.args.get("transfer", "")[:64] or None
    t = node().transfers.inspect(asked) if asked else None
    return render_template_string(_PAGE, o=node().operator_overview(), t=t, asked=asked)
