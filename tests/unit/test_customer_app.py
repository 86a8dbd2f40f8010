"""The customer's app beyond single screens: browser sessions kept by the bank, statements read
page by page and exported, "my transfers", the receipt and its PDF, the protocol timeline, the
focus ring against every bank colour. Two banks joined by the in-process loopback broker, so
transfers really commit and both banks' pages can be compared."""
from __future__ import annotations

import io
import re
from datetime import datetime, timezone

import pytest
from pypdf import PdfReader

from bank_node.app import create_app
from bank_node.domain.calendar import CONSORTIUM_TZ
from bank_node.node import BankNode
from web_ui import formatting as F

from .conftest import PASSWORD, make_config
from .loopback import Loopback

COLOURS = {"alfa": "#1f6feb", "beta": "#2da44e", "gama": "#bf3989"}


def text_of(resp) -> str:
    return resp.get_data(as_text=True)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


class Browser:
    """A test client that fills forms the way a browser does (with the page's CSRF token)."""

    def __init__(self, app, lang="pt-BR,pt;q=0.9", **kw):
        self.c = app.test_client(**kw)
        self.c.environ_base["HTTP_ACCEPT_LANGUAGE"] = lang

    def get(self, path, **kw):
        return self.c.get(path, **kw)

    def post(self, path, data, page="/entrar"):
        return self.c.post(path, data={"csrf_token": csrf_of(text_of(self.c.get(page))), **data})

    def register(self, cpf, name):
        r = self.post("/cadastro", {"cpf": cpf, "name": name, "password": PASSWORD, "password2": PASSWORD},
                      page="/cadastro")
        assert r.status_code == 302, text_of(r)[:1000]

    def open_account(self) -> str:
        assert self.post("/contas/nova", {"kind": "individual"}, page="/contas/nova").status_code == 302
        return re.findall(r'data-number="(\d+)"', text_of(self.get("/painel")))[-1]


@pytest.fixture
def banks(tmp_path):
    cfg = make_config(banks=[{"id": b, "name": f"Banco {b.capitalize()}", "port": 18200 + i, "color": COLOURS[b]}
                             for i, b in enumerate(COLOURS)])
    net = Loopback()
    out = {}
    for b in ("alfa", "beta"):
        node = BankNode(cfg, b, tmp_path / b, connect_broker=False)
        net.attach(node)
        out[b] = (node, create_app(node, testing=True))
    yield out
    for node, _ in out.values():
        node.stop()


@pytest.fixture
def world(banks, new_cpf):
    """Ana at alfa (R$ 500,00) and Bruno at beta; Ana has paid Bruno R$ 30,00 from alfa."""
    (alfa, a_app), (beta, b_app) = banks["alfa"], banks["beta"]
    ana, bruno = new_cpf(), new_cpf()
    a = Browser(a_app)
    a.register(ana, "Ana Maria Souza")
    acc_a = a.open_account()
    alfa.banking.deposit(ana, acc_a, "500.00")
    b = Browser(b_app)
    b.register(bruno, "Bruno Carvalho Lima")
    acc_b = b.open_account()
    status, view = alfa.transfers.submit(ana, {"sources": [{"bank": "alfa", "account": acc_a, "amount": "30.00"}],
                                               "destination": {"bank": "beta", "account": acc_b}})
    assert view["status"] == "committed", view
    return {"ana": ana, "bruno": bruno, "acc_a": acc_a, "acc_b": acc_b, "a": a, "b": b, "tid": view["id"],
            "alfa": alfa, "beta": beta, "a_app": a_app, "b_app": b_app}


# ----------------------------------------------------------------------------- sessions
def test_the_cookie_holds_only_an_opaque_id_and_the_session_lives_in_the_bank(world):
    a = world["a"]
    cookie = a.c.get_cookie("consorcio_alfa")
    value = cookie.value
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", value)          # 256 random bits, nothing else
    for secret in (world["ana"], "Ana", "Souza", "."):
        assert secret not in value
    with world["alfa"].store.transaction(write=False) as tx:
        rows = tx.c.execute("SELECT id_hash, data FROM ui_sessions").fetchall()
    assert value not in str(rows)                             # only its hash is stored
    data = [d for _, d in rows if '"auth"' in d]
    assert data and all(world["ana"] not in d for d in data)  # the CPF is not needed: the token's hash is
    assert a.get("/painel").status_code == 200


def test_a_captured_ui_cookie_is_useless_at_the_api(world):
    a, app = world["a"], world["a_app"]
    value = a.c.get_cookie("consorcio_alfa").value
    thief = app.test_client()
    thief.set_cookie("consorcio_alfa", value)
    r = thief.get("/api/accounts")
    assert r.status_code == 401 and r.mimetype == "application/problem+json"
    r = thief.get("/api/accounts", headers={"Authorization": f"Bearer {value}"})
    assert r.status_code == 401
    assert thief.get(f"/api/accounts/{world['acc_a']}/statement").status_code == 401


def test_login_gives_a_new_session_id_and_logout_deletes_it(banks, new_cpf):
    node, app = banks["alfa"]
    b = Browser(app)
    b.get("/entrar")
    before = b.c.get_cookie("consorcio_alfa").value
    b.register(new_cpf(), "Ana Souza")
    after = b.c.get_cookie("consorcio_alfa").value
    assert after != before                                    # a planted id is worth nothing
    planted = app.test_client()
    planted.set_cookie("consorcio_alfa", before)
    assert planted.get("/painel").status_code == 302
    b.post("/sair", {}, page="/painel")
    stolen = app.test_client()
    stolen.set_cookie("consorcio_alfa", after)
    assert stolen.get("/painel").status_code == 302


def test_over_https_the_cookie_is_secure_and_host_only(banks, new_cpf):
    node, app = banks["alfa"]
    c = app.test_client()
    r = c.get("/entrar", base_url="https://alfa.example")
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("__Host-consorcio_alfa=")
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Domain" not in cookie


def test_every_authenticated_page_is_no_store(world):
    a = world["a"]
    for path in ("/painel", "/transferir", "/transferencias", f"/contas/{world['acc_a']}",
                 f"/transferencias/{world['tid']}", f"/transferencias/{world['tid']}/comprovante.pdf",
                 f"/contas/{world['acc_a']}/extrato.csv", "/movimentar", "/contas/nova"):
        r = a.get(path)
        assert r.status_code == 200, path
        assert r.headers["Cache-Control"] == "no-store", path


# ----------------------------------------------------------------------------- statements (API)
def api_token(app, cpf) -> dict:
    r = app.test_client().post("/api/sessions", json={"cpf": cpf, "password": PASSWORD})
    return {"Authorization": f"Bearer {r.get_json()['token']}"}


def test_every_entry_can_be_read_page_by_page_through_the_cursor(world):
    node, app, ana, acc = world["alfa"], world["a_app"], world["ana"], world["acc_a"]
    for i in range(1, 24):
        node.banking.deposit(ana, acc, f"{i}.00")
    auth, c = api_token(app, ana), app.test_client()
    seen, before, pages = [], None, 0
    while True:
        r = c.get(f"/api/accounts/{acc}/statement", query_string={"limit": 5, **({"before": before} if before else {})},
                  headers=auth)
        assert r.status_code == 200, r.get_json()
        body = r.get_json()
        seen += body["entries"]
        pages += 1
        before = body.get("next")
        if not before:
            break
    assert pages == 5 and len(seen) == 25                    # 23 deposits, the first one, the transfer out
    assert [e["balance_after"] for e in seen][0] == node.banking.account(ana, acc)["balance"]
    assert len({(e["at"], e["balance_after"]) for e in seen}) == 25
    ats = [e["at"] for e in seen]
    assert ats == sorted(ats, reverse=True)
    r = c.get(f"/api/accounts/{acc}/statement?before=bm90LWEtY3Vyc29y", headers=auth)
    assert r.status_code == 422 and r.get_json()["code"] == "invalid_cursor"
    assert r.get_data(as_text=True).endswith("}\n")          # error bodies end with a newline too


def test_from_and_to_are_days_of_the_consortium(world):
    app, ana, acc = world["a_app"], world["ana"], world["acc_a"]
    auth, c = api_token(app, ana), app.test_client()
    today = datetime.now(timezone.utc).astimezone(CONSORTIUM_TZ).date().isoformat()
    r = c.get(f"/api/accounts/{acc}/statement?from={today}&to={today}", headers=auth)
    assert len(r.get_json()["entries"]) == 2
    r = c.get(f"/api/accounts/{acc}/statement?from=2000-01-01&to=2000-01-31", headers=auth)
    assert r.get_json()["entries"] == [] and "next" not in r.get_json()
    for bad in ("from=2026-02-30", "to=yesterday", "from=2026-03-05&to=2026-03-01", "format=xls"):
        r = c.get(f"/api/accounts/{acc}/statement?{bad}", headers=auth)
        assert r.status_code == 422, bad


def test_a_transfer_entry_names_its_counterparty_masked(world):
    a_st = world["alfa"].banking.statement(world["ana"], world["acc_a"])
    out = next(e for e in a_st["entries"] if e["kind"] == "transfer_out")
    assert out["counterparty"] == {"bank": "beta", "account": world["acc_b"]}
    b_st = world["beta"].banking.statement(world["bruno"], world["acc_b"])
    received = next(e for e in b_st["entries"] if e["kind"] == "transfer_in")
    # Ana is no customer of beta: her masked CPF, and where the money came from (beta knows the
    # whole transfer, as its PREPARE carried it)
    assert received["counterparty"] == {"document": F.mask_document(world["ana"]), "bank": "alfa",
                                        "account": world["acc_a"]}
    assert world["ana"] not in str(received)


def test_statement_exports_csv_and_ofx(world):
    app, ana, acc = world["a_app"], world["ana"], world["acc_a"]
    auth, c = api_token(app, ana), app.test_client()
    for query, headers in (("format=csv", {}), ("", {"Accept": "text/csv"})):
        r = c.get(f"/api/accounts/{acc}/statement?{query}", headers={**auth, **headers})
        assert r.status_code == 200 and r.mimetype == "text/csv", query
        lines = text_of(r).splitlines()
        assert lines[0] == "date,time,kind,amount,balance_after,transfer_id,counterparty,counterparty_bank," \
                           "counterparty_account"
        assert lines[1].split(",")[2:6] == ["transfer_out", "-30.00", "470.00", world["tid"]]
        assert lines[2].split(",")[2:5] == ["deposit", "500.00", "500.00"]
    r = c.get(f"/api/accounts/{acc}/statement?format=ofx&limit=1", headers=auth)
    ofx = text_of(r)
    assert r.mimetype == "application/x-ofx" and ofx.startswith("OFXHEADER:100\nDATA:OFXSGML\nVERSION:102")
    assert "<TRNTYPE>DEBIT" in ofx and "<TRNAMT>-30.00" in ofx and "<CURDEF>BRL" in ofx
    assert f"<ACCTID>{acc}" in ofx and "<BALAMT>470.00" in ofx and ofx.count("<STMTTRN>") == 1
    assert 'rel="next"' in r.headers["Link"] and "before=" in r.headers["Link"]


# ----------------------------------------------------------------------------- the extrato page
def test_the_extrato_groups_by_day_shows_the_counterparty_and_pages(world):
    node, a, ana, acc = world["alfa"], world["a"], world["ana"], world["acc_a"]
    for i in range(60):
        node.banking.deposit(ana, acc, "1.00")
    html = text_of(a.get(f"/contas/{acc}"))
    today = datetime.now(timezone.utc).astimezone(CONSORTIUM_TZ).date()
    assert F.day_title(today, "pt-BR") in html and html.count('class="entry entry-') == 50
    older = re.search(r'id="older" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    html2 = text_of(a.get(older))
    assert html2.count('class="entry entry-') == 12 and 'id="older"' not in html2
    assert "para" in html2 and "Banco Beta" in html2 and F.account_number(world["acc_b"]) in html2
    assert f'href="/transferencias/{world["tid"]}"' in html2
    html3 = text_of(a.get(f"/contas/{acc}?de=2000-01-01&ate=2000-01-02"))
    assert "Nenhum lançamento neste período." in html3
    assert 'href="/contas/' + acc + '/extrato.csv?de=2000-01-01&amp;ate=2000-01-02"' in html3
    r = a.get(f"/contas/{acc}?de=ontem")
    assert r.status_code == 422 and "Informe uma data como 2026-03-05." in text_of(r)


def test_the_extrato_exports_every_entry_of_the_period(world):
    a, acc = world["a"], world["acc_a"]
    r = a.get(f"/contas/{acc}/extrato.csv")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert "attachment" in r.headers["Content-Disposition"] and len(text_of(r).splitlines()) == 3
    r = a.get(f"/contas/{acc}/extrato.ofx")
    assert r.mimetype == "application/x-ofx" and text_of(r).count("<STMTTRN>") == 2
    assert world["b"].get(f"/contas/{acc}/extrato.csv").status_code == 404   # not Bruno's


# ----------------------------------------------------------------------------- my transfers
def test_my_transfers_lists_sent_received_and_refused_with_filters_and_pages(world):
    alfa, beta, ana, bruno = world["alfa"], world["beta"], world["ana"], world["bruno"]
    refused = alfa.transfers.submit(ana, {"sources": [{"bank": "alfa", "account": world["acc_a"], "amount": "9999.00"}],
                                          "destination": {"bank": "beta", "account": world["acc_b"]}})[1]
    assert refused["status"] == "aborted"
    for _ in range(22):
        alfa.transfers.submit(ana, {"sources": [{"bank": "alfa", "account": world["acc_a"], "amount": "1.00"}],
                                    "destination": {"bank": "beta", "account": world["acc_b"]}})
    a = world["a"]
    html = text_of(a.get("/transferencias"))
    assert html.count('class="transfer-item') == 20 and 'id="older"' in html
    older = re.search(r'id="older" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    html2 = text_of(a.get(older))
    assert html2.count('class="transfer-item') == 4
    assert f'data-id="{refused["id"]}" data-status="aborted"' in html2 and f'data-id="{world["tid"]}"' in html2
    only_refused = text_of(a.get("/transferencias?situacao=aborted"))
    assert only_refused.count('class="transfer-item') == 1 and refused["id"] in only_refused
    assert "Nenhuma transferência" in text_of(a.get("/transferencias?de=2000-01-01&ate=2000-01-01"))
    backwards = a.get("/transferencias?de=2000-01-02&ate=2000-01-01")   # the same check as the extrato's
    assert backwards.status_code == 422 and "O fim do período não pode ser antes do início." in text_of(backwards)
    # Bruno, at the receiving bank, sees what reached him: not the refused one, which alfa refused
    # on its own leg before asking beta anything
    got = beta.banking.transfer_history(bruno, 100)["transfers"]
    assert {t["status"] for t in got} == {"committed"} and all(t["direction"] == "in" for t in got)
    assert refused["id"] not in {t["id"] for t in got}
    # and nobody else sees any of it
    assert beta.banking.transfer_history(world["ana"], 100)["transfers"] == []


# ----------------------------------------------------------------------------- receipt and timeline
@pytest.mark.parametrize("lang,title,done", [("pt-BR", "Comprovante de transferência", "Transferência realizada."),
                                             ("en", "Transfer receipt", "Transfer done.")])
def test_the_receipt_page_and_its_pdf(world, lang, title, done):
    a = Browser(world["a_app"], lang=lang)
    a.post("/entrar", {"cpf": world["ana"], "password": PASSWORD})
    html = text_of(a.get(f"/transferencias/{world['tid']}"))
    assert title in html and done in html and 'id="transfer-amount">R$ 30' in html
    assert 'id="payer">Ana M*** S***<' in html
    pdf = a.get(f"/transferencias/{world['tid']}/comprovante.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.data)).pages)
    for expected in (title, "Banco Alfa", "Banco Beta", world["tid"], "Ana M*** S***", F.money("30.00", lang),
                     F.account_number(world["acc_b"]), F.local_datetime(
                         world["alfa"].transfers.status(world["ana"], world["tid"])["created_at"], lang)):
        assert expected in text, (expected, text)
    assert world["ana"] not in text and "Souza" not in text


def test_the_receipt_at_the_receiving_bank_says_the_amount(world):
    """At a bank that only holds a leg, the page still names the amount and the payee."""
    html = text_of(world["b"].get(f"/transferencias/{world['tid']}"))
    assert 'id="transfer-amount">R$ 30,00<' in html and "Transferência realizada." in html
    assert 'id="payee"><strong>Bruno C*** L***</strong>' in html
    assert world["b"].get(f"/transferencias/{world['tid']}/comprovante.pdf").status_code == 200


TIMELINE_VIEW = {
    "id": "6b1c8a4e-2f6e-4a55-9d0f-3b4b0d1b9a20", "status": "aborted", "amount": "30.00", "coordinator": "alfa",
    "created_at": "2026-03-05T17:04:09.123Z", "decided_at": "2026-03-05T17:04:09.301Z", "reason": "no_mandate",
    "legs": [{"bank": "beta", "account": "111111116", "amount": "30.00", "role": "source", "holder": "Ana M*** S***",
              "reason": "no_mandate"},
             {"bank": "alfa", "account": "987654321", "amount": "30.00", "role": "destination",
              "holder": "Bruno C*** L***"}],
    "timeline": [
        {"at": "2026-03-05T17:04:09.123Z", "bank": "alfa", "event": "prepare_sent"},
        {"at": "2026-03-05T17:04:09.201Z", "bank": "beta", "event": "vote_no", "ms": 78, "detail": "no_mandate"},
        {"at": "2026-03-05T17:04:09.230Z", "bank": "alfa", "event": "decision_abort", "ms": 29},
        {"at": "2026-03-05T17:04:09.240Z", "bank": "beta", "event": "decision_sent", "ms": 10},
        {"at": "2026-03-05T17:04:09.290Z", "bank": "beta", "event": "decision_applied", "ms": 50},
        {"at": "2026-03-05T17:04:09.301Z", "bank": "beta", "event": "ack", "ms": 11},
    ]}


@pytest.mark.parametrize("lang,words", [
    ("pt-BR", ["PREPARE enviado ao Banco Alfa", "Banco Beta votou NÃO", "+78 ms", "ABORT decidido e gravado em disco",
               "Banco Beta confirmou o recebimento da decisão", "14:04:09", "Dar autorização no Banco Beta"]),
    ("en", ["PREPARE sent to Banco Alfa", "Banco Beta voted NO", "+78 ms", "ABORT decided and written to disk",
            "Banco Beta acknowledged the decision", "2:04:09 PM", "Give consent at Banco Beta"])])
def test_the_protocol_timeline_and_a_missing_mandate_in_the_customers_words(world, monkeypatch, lang, words):
    monkeypatch.setattr(world["alfa"].transfers, "status", lambda caller, tid: dict(TIMELINE_VIEW))
    a = Browser(world["a_app"], lang=lang)
    a.post("/entrar", {"cpf": world["ana"], "password": PASSWORD})
    html = text_of(a.get(f"/transferencias/{TIMELINE_VIEW['id']}"))
    flat = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    for w in words:
        assert w in flat, (w, flat[:3000])
    assert [m for m in re.findall(r'data-event="(\w+)"', html)] == [e["event"] for e in TIMELINE_VIEW["timeline"]]
    assert 'href="http://127.0.0.1:18201/mandates/new?bank=alfa&amp;account=111111116"' in html
    assert 'id="payer">Ana M*** S***<' in html and "Bruno C*** L***" in html


def test_the_operator_view_shows_a_transfers_timeline(world, monkeypatch):
    token = "operator-token-for-the-timeline"
    monkeypatch.setenv("CONSORCIO_OPERATOR_TOKEN", token)
    c = world["a_app"].test_client()
    assert c.get(f"/operator?transfer={world['tid']}").status_code == 403     # still the operator's alone
    real = text_of(c.get(f"/operator?transfer={world['tid']}", headers={"X-Operator-Token": token}))
    assert world["tid"] in real and "committed" in real and world["acc_a"] in real
    monkeypatch.setattr(world["alfa"].transfers, "inspect", lambda tid: dict(TIMELINE_VIEW))
    html = text_of(c.get(f"/operator?transfer={TIMELINE_VIEW['id']}", headers={"X-Operator-Token": token}))
    assert "prepare_sent" in html and "vote_no" in html and "+78 ms" in html and "no_mandate" in html


# ----------------------------------------------------------------------------- accessibility
@pytest.mark.parametrize("bank", sorted(COLOURS))
def test_the_focus_ring_stands_out_against_every_bank_colour_and_the_page(bank):
    assert F.contrast(COLOURS[bank], F.focus_on(COLOURS[bank])) >= 3
    for surface in ("#ffffff", "#f6f8fa", "#fafbfc"):
        assert F.contrast(surface, F.FOCUS_ON_LIGHT) >= 3
    css = (F.__file__.rsplit("/", 1)[0] + "/static/app.css")
    text = open(css).read()
    assert f"outline: 3px solid {F.FOCUS_ON_LIGHT}" in text and "var(--focus-on-bank" in text


def test_the_hide_balance_switch_is_remembered_across_logins(world):
    a = world["a"]
    assert "R$ 470,00" in text_of(a.get("/painel"))
    a.post("/preferencias/saldos", {"hide": "1", "next": "/painel"}, page="/painel")
    html = text_of(a.get("/painel"))
    assert "R$ 470,00" not in html and "R$ ••••" in html and 'aria-pressed="true"' in html
    a.post("/sair", {}, page="/painel")
    a.post("/entrar", {"cpf": world["ana"], "password": PASSWORD})
    assert "R$ ••••" in text_of(a.get("/painel")) and "R$ 470,00" not in text_of(a.get(f"/contas/{world['acc_a']}"))
    a.post("/preferencias/saldos", {"hide": "0", "next": "/painel"}, page="/painel")
    assert "R$ 470,00" in text_of(a.get("/painel"))


def test_the_dashboard_masks_the_customers_cpf(world):
    html = text_of(world["a"].get("/painel"))
    assert F.mask_document(world["ana"]) in html and F.cpf(world["ana"]) not in html


def test_registration_reports_every_field_error_at_once(banks):
    _node, app = banks["alfa"]
    b = Browser(app)
    r = b.post("/cadastro", {"cpf": "123", "name": "A", "password": "curta", "password2": "outra"}, page="/cadastro")
    html = text_of(r)
    assert r.status_code == 422
    for field in ("cpf", "name", "password", "password2"):
        assert f'id="err-{field}"' in html, field
    assert 'id="register-errors"' in html


@pytest.mark.parametrize("lang,accept,opened", [("pt-BR,pt;q=0.9", "Aceitar", "ela está aberta"),
                                                ("en", "Accept", "it is open")])
def test_a_co_holder_accepts_a_joint_account_from_the_dashboard(banks, new_cpf, lang, accept, opened):
    _node, app = banks["alfa"]
    ana, bruno = Browser(app, lang=lang), Browser(app, lang=lang)
    bruno_cpf = new_cpf()
    bruno.register(bruno_cpf, "Bruno Carvalho Lima")
    ana.register(new_cpf(), "Ana Maria Souza")
    r = ana.post("/contas/nova", {"kind": "joint", "coholders": F.cpf(bruno_cpf)}, page="/contas/nova")
    assert r.status_code == 302
    html = text_of(ana.get("/painel"))
    number = re.search(r'class="account-card pending" data-number="(\d+)"', html).group(1)
    assert "Bruno C*** L***" in html                      # not accepted yet: his name stays masked
    html = text_of(bruno.get("/painel"))
    assert f'action="/contas/{number}/aceitar"' in html and f">{accept}</button>" in html
    r = bruno.post(f"/contas/{number}/aceitar", {}, page="/painel")
    assert r.status_code == 302
    html = text_of(bruno.get("/painel"))
    assert opened in html and 'id="pending-accounts"' not in html
    assert f'data-bank="alfa" data-number="{number}"' in html
    # someone who is not a holder accepts nothing
    carla = Browser(app, lang=lang)
    carla.register(new_cpf(), "Carla Dias")
    r = carla.post(f"/contas/{number}/aceitar", {}, page="/painel")
    assert r.status_code == 302 and 'id="pending-accounts"' not in text_of(carla.get("/painel"))
