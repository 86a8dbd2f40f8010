"""The web UI blueprint with Flask's test client: no broker, one bank node on a temporary folder.

What a customer (or an attacker) would check: pages need a login, every form carries a CSRF
token and a POST without it changes nothing, user content is shown as text, the language
follows the browser or the switch, money and dates read the Brazilian way, and the pages keep
the Content-Security-Policy (no inline script or style).
"""
from __future__ import annotations

import ast
import io
import re
from datetime import datetime, timedelta, timezone
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

from decimal import Decimal

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po
from hypothesis import given
from hypothesis import strategies as st
from markupsafe import escape

from bank_node.app import create_app
from bank_node.config import ConsortiumConfig
from bank_node.domain.documents import make_cnpj
from bank_node.domain.errors import DomainError, InvalidAmount, TooManyAttempts
from bank_node.node import BankNode
from web_ui import formatting as F
from web_ui import common, i18n

PASSWORD = "senha-muito-boa"
XSS = "<script>alert(1)</script>"
WEB_UI = Path(__file__).resolve().parents[2] / "web_ui"
PT_PO = WEB_UI / "translations" / "pt_BR" / "LC_MESSAGES" / "messages.po"


def ui_config() -> ConsortiumConfig:
    return ConsortiumConfig.model_validate({
        "consortium": "unit-ui",
        "broker_url": "amqp://guest:guest@127.0.0.1:1/%2F",
        "security": {"argon2_time_cost": 1, "argon2_memory_kib": 1024},
        "banks": [{"id": "alfa", "name": "Banco Alfa", "port": 18101, "color": "#1f6feb"},
                  {"id": "beta", "name": "Banco Beta", "port": 18102, "color": "#2da44e"},
                  {"id": "gama", "name": "Banco Gama", "port": 18103, "color": "#bf3989"}],
    })


@pytest.fixture
def ui_node(tmp_path):
    n = BankNode(ui_config(), "alfa", tmp_path / "alfa", connect_broker=False)
    yield n
    n.stop()


@pytest.fixture
def app(ui_node):
    return create_app(ui_node, testing=True)


@pytest.fixture
def browser(app):
    """A test client that speaks pt-BR, like the default browser of the product."""
    c = app.test_client()
    c.environ_base["HTTP_ACCEPT_LANGUAGE"] = "pt-BR,pt;q=0.9"
    return c


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


def text_of(resp) -> str:
    return resp.get_data(as_text=True)


def post(client, path: str, data: dict, page: str | None = None):
    """POST a form the way a browser would: with the CSRF token of a page of this session."""
    token = csrf_of(text_of(client.get(page or "/entrar")))
    return client.post(path, data={"csrf_token": token, **data})


def register(client, cpf: str, name: str = "Ana Souza"):
    r = post(client, "/cadastro", {"cpf": cpf, "name": name, "password": PASSWORD, "password2": PASSWORD},
             page="/cadastro")
    assert r.status_code == 302, text_of(r)[:2000]
    return r


def open_individual(client) -> str:
    r = post(client, "/contas/nova", {"kind": "individual"}, page="/contas/nova")
    assert r.status_code == 302 and r.headers["Location"].endswith("/painel"), text_of(r)[:2000]
    m = re.findall(r'data-number="(\d+)"', text_of(client.get("/painel")))
    assert m
    return m[-1]


def someone_with_an_account(app, new_cpf, name: str = "Bruno Carvalho Lima") -> tuple[str, str]:
    """Another customer of this bank with an individual account: (cpf, account number)."""
    other = app.test_client()
    cpf = new_cpf()
    register(other, cpf, name)
    return cpf, open_individual(other)


def prepare_transfer(browser, key: str, choice: str, amounts: dict) -> str:
    """The transfer flow up to the review page: recipient key, one of their accounts, the
    amounts. Returns the review page."""
    r = post(browser, "/transferir/chave", {"chave": key}, page="/transferir")
    assert (r.status_code, r.headers.get("Location")) == (302, "/transferir/destino"), text_of(r)[:2000]
    page = browser.get("/transferir/destino")
    r = browser.post("/transferir/destino", data={"csrf_token": csrf_of(text_of(page)), "destination": choice})
    assert (r.status_code, r.headers.get("Location")) == (302, "/transferir/valores"), text_of(r)[:2000]
    page = text_of(browser.get("/transferir/valores"))
    r = browser.post("/transferir/valores", data={"csrf_token": csrf_of(page),
                                                  **{f"amount.{k}": v for k, v in amounts.items()}})
    assert (r.status_code, r.headers.get("Location")) == (302, "/transferir/revisar"), text_of(r)[:3000]
    return text_of(browser.get("/transferir/revisar"))


def leg_text(html: str, bank: str) -> str:
    """The words of one bank's leg on a transfer's page, tags stripped, blanks collapsed."""
    m = re.search(rf'<li class="leg [^"]*" data-bank="{bank}".*?</li>', html, re.S)
    assert m, f"no leg of {bank}"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", m.group(0))).strip()


@pytest.fixture
def ana(browser, new_cpf):
    cpf = new_cpf()
    register(browser, cpf)
    return cpf


# ----------------------------------------------------------------------------- login required
@pytest.mark.parametrize("path", ["/painel", "/transferir", "/movimentar", "/contas/nova", "/contas/123456785",
                                  "/transferencias/6b1c8a4e-2f6e-4a55-9d0f-3b4b0d1b9a11"])
def test_pages_need_a_login_and_come_back_after_it(browser, new_cpf, path):
    r = browser.get(path)
    assert r.status_code == 302
    assert r.headers["Location"].startswith("/entrar?next=")
    assert path in r.headers["Location"].replace("%2F", "/")


def test_login_sends_the_customer_back_where_they_were_going(app, new_cpf):
    c = app.test_client()
    cpf = new_cpf()
    register(c, cpf)
    post(c, "/sair", {}, page="/painel")
    r = post(c, "/entrar", {"cpf": F.cpf(cpf), "password": PASSWORD, "next": "/movimentar"})
    assert (r.status_code, r.headers["Location"]) == (302, "/movimentar")


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:x"])
def test_login_never_redirects_to_another_site(app, new_cpf, target):
    c = app.test_client()
    cpf = new_cpf()
    register(c, cpf)
    post(c, "/sair", {}, page="/painel")
    r = post(c, "/entrar", {"cpf": cpf, "password": PASSWORD, "next": target})
    assert (r.status_code, r.headers["Location"]) == (302, "/painel")


def test_the_polling_endpoint_answers_401_json_without_a_login(browser):
    r = browser.get("/transferencias/6b1c8a4e-2f6e-4a55-9d0f-3b4b0d1b9a11/estado")
    assert r.status_code == 401 and r.is_json


def test_wrong_password_is_refused_without_saying_which_part_is_wrong(browser, ana):
    post(browser, "/sair", {}, page="/painel")
    r = post(browser, "/entrar", {"cpf": ana, "password": "not-the-password"})
    assert r.status_code == 401
    assert "CPF ou senha incorretos." in text_of(r)
    assert browser.get("/painel").status_code == 302


def test_logout_revokes_the_token_even_for_a_copied_cookie(app, browser, ana):
    cookie_name = "consorcio_alfa"
    stolen = browser.get_cookie(cookie_name).value
    assert browser.get("/painel").status_code == 200
    r = post(browser, "/sair", {}, page="/painel")
    assert (r.status_code, r.headers["Location"]) == (302, "/entrar")
    assert browser.get("/painel").status_code == 302
    thief = app.test_client()
    thief.set_cookie(cookie_name, stolen)
    assert thief.get("/painel").status_code == 302


def test_session_cookie_is_httponly_and_samesite(app, new_cpf):
    c = app.test_client()
    token = csrf_of(text_of(c.get("/cadastro")))
    cpf = new_cpf()
    r = c.post("/cadastro", data={"csrf_token": token, "cpf": cpf, "name": "Ana", "password": PASSWORD,
                                  "password2": PASSWORD})
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie and cookie.startswith("consorcio_alfa=")   # plain HTTP: no __Host-


# ----------------------------------------------------------------------------- CSRF
def test_post_without_csrf_token_is_refused_and_changes_nothing(browser, ana, ui_node):
    number = open_individual(browser)
    r = browser.post("/movimentar", data={"account": number, "op": "deposit", "amount": "50,00"})
    assert r.status_code == 400
    assert "O formulário expirou" in text_of(r)
    r = browser.post("/movimentar", data={"csrf_token": "forged", "account": number, "op": "deposit",
                                          "amount": "50,00"})
    assert r.status_code == 400
    assert ui_node.banking.account(ana, number)["balance"] == "0.00"


def test_post_from_another_origin_is_refused_even_with_the_token(browser, ana, ui_node):
    number = open_individual(browser)
    token = csrf_of(text_of(browser.get("/movimentar")))
    r = browser.post("/movimentar", headers={"Origin": "http://evil.example"},
                     data={"csrf_token": token, "account": number, "op": "deposit", "amount": "5"})
    assert r.status_code == 400
    assert ui_node.banking.account(ana, number)["balance"] == "0.00"


def test_logout_and_login_need_the_token_too(browser, ana):
    assert browser.post("/sair").status_code == 400
    assert browser.get("/painel").status_code == 200      # still logged in
    assert browser.post("/entrar", data={"cpf": ana, "password": PASSWORD}).status_code == 400


def test_login_rotates_the_csrf_token(app, new_cpf):
    c = app.test_client()
    before = csrf_of(text_of(c.get("/entrar")))
    register(c, new_cpf())
    assert csrf_of(text_of(c.get("/painel"))) != before


class _Forms(HTMLParser):
    """Collects every POST form with its hidden CSRF field, and anything the CSP would block."""

    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []
        self.inline_scripts = 0
        self.inline_styles: list[str] = []
        self.handlers: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"method": (a.get("method") or "get").lower(), "action": a.get("action"),
                               "csrf": False})
        if tag == "input" and a.get("name") == "csrf_token" and self.forms:
            self.forms[-1]["csrf"] = bool(a.get("value"))
        if tag == "script" and not a.get("src"):
            self.inline_scripts += 1
        if tag == "style" or "style" in a:
            self.inline_styles.append(tag)
        self.handlers += [k for k in a if k.startswith("on")]
        for k in ("src", "href"):
            v = a.get(k) or ""
            if tag in ("script", "link", "img") and v.startswith(("http:", "https:", "//")):
                self.external.append(v)


def _forms_in(html: str) -> _Forms:
    p = _Forms()
    p.feed(html)
    return p


def _every_screen(browser, ui_node, cpf, app, new_cpf) -> dict[str, str]:
    number = open_individual(browser)
    post(browser, "/movimentar", {"account": number, "op": "deposit", "amount": "100"}, page="/movimentar")
    bruno, bruno_acc = someone_with_an_account(app, new_cpf)
    pages = {p: text_of(browser.get(p)) for p in
             ("/painel", "/transferir", "/movimentar", "/contas/nova",
              f"/contas/{number}", "/transferencias")}
    post(browser, "/transferir/chave", {"chave": bruno}, page="/transferir")
    pages["/transferir/destino"] = text_of(browser.get("/transferir/destino"))
    pages["review"] = prepare_transfer(browser, bruno, f"alfa.{bruno_acc}", {f"alfa.{number}": "1"})
    pages["/transferir/valores"] = text_of(browser.get("/transferir/valores"))
    draft = re.search(r'name="draft" value="([^"]+)"', pages["review"]).group(1)
    status = browser.post("/transferir/confirmar", data={"csrf_token": csrf_of(pages["review"]), "draft": draft})
    pages["status"] = text_of(browser.get(status.headers["Location"]))
    pages["large deposit review"] = text_of(post(browser, "/movimentar", {"account": number, "op": "deposit",
                                                                          "amount": "5.000,00"}, page="/movimentar"))
    post(browser, "/sair", {}, page="/painel")
    pages["/entrar"] = text_of(browser.get("/entrar"))
    pages["/cadastro"] = text_of(browser.get("/cadastro"))
    return pages


def test_every_post_form_of_every_screen_carries_the_csrf_token_and_no_inline_code(browser, ana, ui_node, app,
                                                                                       new_cpf):
    pages = _every_screen(browser, ui_node, ana, app, new_cpf)
    assert len(pages) >= 12
    for name, html in pages.items():
        p = _forms_in(html)
        posts = [f for f in p.forms if f["method"] == "post"]
        assert posts, name                       # at least the language switch
        assert all(f["csrf"] for f in posts), (name, posts)
        assert p.inline_scripts == 0 and not p.inline_styles and not p.handlers, name
        assert not p.external, (name, p.external)   # offline: every asset from the node


def test_ui_pages_keep_the_content_security_policy(browser, ana):
    r = browser.get("/painel")
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    assert r.headers["Cache-Control"] == "no-store"


def test_assets_and_bank_colours_are_served_by_the_node(browser):
    for path in ("/ui/static/app.css", "/ui/static/app.js"):
        r = browser.get(path)
        assert r.status_code == 200 and len(r.data) > 500, path
    css = text_of(browser.get("/ui/banco.css"))
    assert ":root{--bank:#1f6feb" in css
    assert ".bank-beta{--bank:#2da44e" in css and ".bank-gama{--bank:#bf3989" in css


def test_header_names_the_bank(browser):
    html = text_of(browser.get("/entrar"))
    assert re.search(r'<span class="brand-name">Banco Alfa</span>', html)
    assert "<title>Entrar · Banco Alfa</title>" in html


# ----------------------------------------------------------------------------- escaping
def test_a_name_with_markup_is_shown_as_text_everywhere(browser, new_cpf):
    cpf = new_cpf()
    register(browser, cpf, name=XSS)
    number = open_individual(browser)
    post(browser, "/transferir/chave", {"chave": cpf}, page="/transferir")
    for path in ("/painel", f"/contas/{number}", "/transferir/destino"):
        html = text_of(browser.get(path))
        assert XSS not in html, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path


def test_a_company_name_with_markup_is_shown_as_text(browser, ana):
    cnpj = make_cnpj("112223330001")
    r = post(browser, "/contas/nova", {"kind": "business", "cnpj": cnpj, "company_name": '"><img src=x onerror=alert(1)>'},
             page="/contas/nova")
    assert r.status_code == 302
    html = text_of(browser.get("/painel"))
    assert "<img src=x" not in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html


def test_a_searched_cpf_is_escaped_in_the_error(browser, ana):
    html = text_of(post(browser, "/transferir/chave", {"chave": "<b>x</b>"}, page="/transferir"))
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert "Este não é um CPF ou CNPJ válido" in html


# ----------------------------------------------------------------------------- language
def test_portuguese_by_default(app, ana):
    c = app.test_client()
    html = text_of(c.get("/entrar"))
    assert '<html lang="pt-BR">' in html and "Entrar" in html


def test_english_when_the_browser_asks_for_it(app):
    c = app.test_client()
    html = text_of(c.get("/entrar", headers={"Accept-Language": "en-US,en;q=0.9"}))
    assert '<html lang="en">' in html and "Log in to Banco Alfa" in html
    assert "Entrar" not in html


def test_the_language_switch_is_kept_in_the_session_over_the_browser_language(browser, ana):
    assert "Painel" in text_of(browser.get("/painel"))
    r = post(browser, "/idioma", {"lang": "en", "next": "/painel"}, page="/painel")
    assert (r.status_code, r.headers["Location"]) == (302, "/painel")
    html = text_of(browser.get("/painel"))      # the client still sends Accept-Language: pt-BR
    assert "Dashboard" in html and "Painel" not in html
    # kept across logout and login, as a preference of this browser
    post(browser, "/sair", {}, page="/painel")
    assert "Log in to Banco Alfa" in text_of(browser.get("/entrar"))
    post(browser, "/idioma", {"lang": "pt-BR"}, page="/entrar")
    assert "Entrar — Banco Alfa" in text_of(browser.get("/entrar"))


def test_an_unknown_language_is_ignored(browser):
    post(browser, "/idioma", {"lang": "xx"})
    assert '<html lang="pt-BR">' in text_of(browser.get("/entrar"))


def words_of(html: str) -> str:
    """A page as a person reads it: no tags, entities decoded, blanks collapsed."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html))).strip()


# Words of a few key pages, as the catalog gives them (Portuguese) and as the code says them.
KEY_PAGES = {
    "/painel": (["Painel", "Olá, Ana Souza", "Total em todos os bancos do consórcio:", "Minhas transferências",
                 "Depositar ou sacar", "Sair", "Banco Alfa, um banco do consórcio."],
                ["Dashboard", "Hello, Ana Souza", "Total in every bank of the consortium:", "My transfers",
                 "Deposit or withdraw", "Log out", "Banco Alfa, a bank of the consortium."]),
    "/movimentar": (["Depositar ou sacar — Banco Alfa", "Até R$ 100.000,00 por operação.",
                     "Por exemplo 1.234,56.", "Individual · disponível R$ 0,00"],
                    ["Deposit or withdraw at Banco Alfa", "Up to R$ 100,000.00 per operation.",
                     "For example 1,234.56.", "Individual · available R$ 0.00"]),
    "/transferir": (["Quem recebe?", "CPF ou CNPJ de quem recebe", "Ou informe o banco e o número da conta"],
                    ["Who receives it?", "Recipient's CPF or CNPJ", "Or type the bank and account number"]),
    "/transferencias": (["Minhas transferências", "Nenhuma transferência para mostrar.", "Situação", "Todas"],
                        ["My transfers", "No transfer to show.", "Outcome", "All"]),
    "/mandates": (["Autorizações para outros bancos", "Banco que pode iniciar débitos", "Válida até (opcional)"],
                  ["Consents for other banks", "Bank that may start debits", "Valid until (optional)"]),
    "/nada": (["Página não encontrada", "Voltar ao início"], ["Page not found", "Back to the start"]),
}


@pytest.mark.parametrize("path", list(KEY_PAGES))
def test_key_pages_read_in_portuguese_and_in_english(browser, ana, path):
    open_individual(browser)
    portuguese, english = KEY_PAGES[path]
    pt = words_of(text_of(browser.get(path)))
    post(browser, "/idioma", {"lang": "en"}, page="/painel")
    en = words_of(text_of(browser.get(path)))
    for words, page, other in ((portuguese, pt, english), (english, en, portuguese)):
        for w in words:
            assert w in page, (w, page[:3000])
        # nothing of the other language leaks in (words the two languages share left aside)
        assert not [w for w in other if w in page and w not in words], page[:3000]


@pytest.mark.parametrize("legs,lang,hint,refusal", [
    (1, "pt-BR", "(no máximo 1 conta)", "Uma transferência tem no máximo 1 conta de origem."),
    (2, "pt-BR", "(no máximo 2 contas)", None),
    (1, "en", "(at most 1 account)", "A transfer has at most 1 source account."),
    (2, "en", "(at most 2 accounts)", None),
])
def test_the_most_accounts_a_transfer_may_take_from_is_counted_in_words(app, browser, ana, ui_node, new_cpf,
                                                                          monkeypatch, legs, lang, hint, refusal):
    """ngettext: one account, two accounts, in each language's own plural."""
    cfg = ui_node.config
    monkeypatch.setattr(ui_node, "config", cfg.model_copy(
        update={"limits": cfg.limits.model_copy(update={"max_transfer_legs": legs})}))
    for _ in range(2):
        open_individual(browser)
    mine = [a["number"] for a in ui_node.banking.accounts_of(ana)]
    assert len(mine) == 2
    for number in mine:
        ui_node.banking.deposit(ana, number, "10.00")
    _bruno, bruno_acc = someone_with_an_account(app, new_cpf)
    post(browser, "/idioma", {"lang": lang}, page="/painel")
    r = post(browser, "/transferir/conta", {"bank": "alfa", "account": bruno_acc}, page="/transferir")
    assert r.headers["Location"] == "/transferir/valores"
    page = text_of(browser.get("/transferir/valores"))
    assert hint in words_of(page)
    if refusal:
        r = browser.post("/transferir/valores", data={"csrf_token": csrf_of(page),
                                                      **{f"amount.alfa.{n}": "1" for n in mine}})
        assert r.status_code == 422 and refusal in words_of(text_of(r))


def test_translate_can_speak_another_language_than_the_request(app):
    """What is written for another reader (a PDF, say) is translated in that reader's language,
    and the request keeps its own."""
    from flask import g
    with app.test_request_context("/", headers={"Accept-Language": "pt-BR"}):
        g.lang = i18n.pick_language()
        assert i18n.translate("Transfer receipt") == "Comprovante de transferência"
        assert i18n.translate("Transfer receipt", lang="en") == "Transfer receipt"
        assert i18n.translate("Transfer %(id)s", lang="en", id="x") == "Transfer x"
        assert i18n.translate("Transfer receipt") == "Comprovante de transferência"
    with app.test_request_context("/", headers={"Accept-Language": "en"}):
        g.lang = i18n.pick_language()
        assert i18n.translate("Transfer %(id)s", lang="pt-BR", id="<b>") == "Transferência <b>"
        assert i18n.translate("Transfer receipt") == "Transfer receipt"


def extracted_phrases() -> dict:
    """Every phrase of the UI's code and templates as Babel's extractor finds it with the UI's
    own babel.cfg (what ``pybabel extract`` puts in the catalog): msgid (a (singular, plural)
    pair for ngettext) -> where it was found first."""
    with open(WEB_UI / "babel.cfg") as f:
        method_map, options_map = parse_mapping_cfg(f)
    found: dict = {}
    for filename, lineno, msgid, _comments, _context in extract_from_dir(WEB_UI, method_map, options_map):
        found.setdefault(msgid, f"{filename}:{lineno}")
    return found


def pt_catalog() -> Catalog:
    with open(PT_PO, "rb") as f:
        return read_po(f)


def catalog_problems(found: dict, catalog: Catalog) -> list[str]:
    """What stops ``catalog`` from giving every phrase of ``found`` its Portuguese: a phrase
    missing, untranslated (any plural form empty) or fuzzy, a plural whose other form changed,
    a translation whose placeholders differ from the English (Babel's checkers), or a phrase no
    longer used that still sits in the catalog."""
    problems = []
    for msgid, where in found.items():
        message = catalog.get(msgid[0] if isinstance(msgid, tuple) else msgid)
        if message is None or message.id != msgid:
            problems.append(f"missing: {msgid!r} ({where})")
        elif message.fuzzy:
            problems.append(f"fuzzy: {msgid!r}")
        elif not (all(message.string) if message.pluralizable else message.string):
            problems.append(f"no Portuguese: {msgid!r}")
    for message, errors in catalog.check():
        problems += [f"{e}: {message.id!r}" for e in errors]
    problems += [f"not used any more: {m.id!r}" for m in catalog if m.id and m.id not in found]
    problems += [f"obsolete: {msgid!r}" for msgid in catalog.obsolete]
    return problems


def test_every_phrase_has_its_portuguese():
    found = extracted_phrases()
    assert len(found) > 300
    assert any(isinstance(msgid, tuple) for msgid in found)  # the plurals are found too
    problems = catalog_problems(found, pt_catalog())
    assert not problems, "\n".join(problems + ["(README, \"The UI's languages\": extract, update, translate, compile)"])


def test_the_phrase_check_finds_what_a_forgetful_developer_leaves_behind():
    found = {"Log in": "a", "Hello, %(name)s": "b", ("%(num)d minute", "%(num)d minutes"): "c",
             "Typed only yesterday": "d", "Guessed": "e"}
    catalog = Catalog(locale="pt_BR")
    catalog.add("Log in", "Entrar")
    catalog.add("Hello, %(name)s", "Olá, %(nome)s")                                # a placeholder renamed
    catalog.add(("%(num)d minute", "%(num)d minutes"), ("%(num)d minuto", "", "%(num)d minutos"))
    catalog.add("Guessed", "Adivinhado", flags=["fuzzy"])
    catalog.add("Gone", "Sumiu")
    problems = "\n".join(catalog_problems(found, catalog))
    assert "Log in" not in problems
    for expected in ("missing: 'Typed only yesterday'", "no Portuguese: ('%(num)d minute'", "fuzzy: 'Guessed'",
                     "'Hello, %(name)s'", "not used any more: 'Gone'"):
        assert expected in problems, problems
    # a plural whose English plural changed is not the same phrase any more
    assert "missing: ('Log in', 'Log ins')" in "\n".join(catalog_problems({("Log in", "Log ins"): "f"}, catalog))


def test_the_compiled_catalog_is_the_po_as_it_stands():
    """The bank loads messages.mo, committed beside the .po so that a fresh clone and the image
    run without a build step: it must hold exactly what the .po says (by content, not by file
    dates, which a clone does not keep)."""
    compiled = io.BytesIO()
    write_mo(compiled, pt_catalog())
    compiled.seek(0)
    with open(PT_PO.with_suffix(".mo"), "rb") as f:
        committed = read_mo(f)
    def messages(catalog: Catalog) -> dict:
        flat = lambda v: tuple(v) if isinstance(v, (list, tuple)) else v  # noqa: E731 - plurals read as lists
        return {(flat(m.id), m.context): flat(m.string) for m in catalog}
    assert len(messages(committed)) > 300
    assert messages(committed) == messages(read_mo(compiled)), "run: pybabel compile -d web_ui/translations"


# ----------------------------------------------------------------------------- formatting
@pytest.mark.parametrize("value,lang,text", [
    ("1234.56", "pt-BR", "R$ 1.234,56"), ("0.5", "pt-BR", "R$ 0,50"), ("-20.50", "pt-BR", "-R$ 20,50"),
    ("1234567.00", "pt-BR", "R$ 1.234.567,00"), ("100000.00", "en", "R$ 100,000.00"), ("999", "en", "R$ 999.00"),
])
def test_money_reads_the_local_way(value, lang, text):
    assert F.money(value, lang) == text


@pytest.mark.parametrize("typed,lang,amount", [
    ("10", "pt-BR", "10"), ("12,5", "pt-BR", "12.5"), ("1.234,56", "pt-BR", "1234.56"), ("R$ 1.234,56", "pt-BR", "1234.56"),
    ("1.234", "pt-BR", "1234"), ("1.234.567", "pt-BR", "1234567"), (" 7 ", "pt-BR", "7"), ("", "pt-BR", None),
    ("0,01", "pt-BR", "0.01"), ("1234,56", "pt-BR", "1234.56"),
    ("10.50", "en", "10.50"), ("1,234.56", "en", "1234.56"), ("R$ 1,234.56", "en", "1234.56"), ("12,345", "en", "12345"),
])
def test_amounts_are_read_with_the_separators_of_the_customers_language(typed, lang, amount):
    value = F.read_amount(typed, lang)
    assert (None if value is None else value) == (None if amount is None else Decimal(amount))


@pytest.mark.parametrize("typed,lang,example", [
    ("12,345", "pt-BR", "12.345,00"),      # three decimals: twelve thousand, not twelve reais
    ("10.50", "pt-BR", "10,50"), ("1,234.56", "pt-BR", "1.234,56"),
    ("12,5", "en", "12.50"), ("1.234,56", "en", "1,234.56"), ("12.345", "en", "12,345.00"),
    ("abc", "pt-BR", None), ("1,2,3", "pt-BR", None), (",5", "pt-BR", None), ("5,", "pt-BR", None),
    ("1e3", "en", None), ("-5", "pt-BR", None), ("12.345,678", "pt-BR", "12.345.678,00"),
])
def test_ambiguous_or_foreign_amounts_are_refused_with_how_to_type_them(typed, lang, example):
    with pytest.raises(F.AmountRefused) as exc:
        F.read_amount(typed, lang)
    assert exc.value.example == example


def test_the_domain_limits_apply_to_typed_amounts():
    assert F.parse_user_amount("1.234,5", 10_000_000) == "1234.50"
    assert F.parse_user_amount("1,234.5", 10_000_000, "en") == "1234.50"
    with pytest.raises(InvalidAmount):
        F.parse_user_amount("0,00", 10_000_000)
    with pytest.raises(InvalidAmount):
        F.parse_user_amount("100.000,01", 10_000_000)


CENTS = st.integers(min_value=1, max_value=10**13)


@given(cents=CENTS, lang=st.sampled_from(i18n.LANGS))
def test_an_amount_as_the_ui_writes_it_is_read_back_the_same_in_both_languages(cents, lang):
    amount = Decimal(cents) / 100
    assert F.read_amount(F.amount_text(amount, lang), lang) == amount
    assert F.read_amount(F.money(amount, lang), lang) == amount


@given(units=st.integers(min_value=0, max_value=10**9), decimals=st.text("0123456789", min_size=3, max_size=6),
       lang=st.sampled_from(i18n.LANGS))
def test_more_than_two_decimals_is_never_guessed(units, decimals, lang):
    typed = f"{units}{F.decimal_separator(lang)}{decimals}"
    with pytest.raises(F.AmountRefused) as exc:
        F.read_amount(typed, lang)
    assert exc.value.example is not None   # the refusal shows how to type it


@given(cents=CENTS)
def test_an_amount_in_one_language_is_never_silently_another_amount_in_the_other(cents):
    """A customer who types the English way on a Portuguese page (or the reverse) gets either
    the same amount or a refusal, never a different amount."""
    amount = Decimal(cents) / 100
    for typed_in, read_in in (("en", "pt-BR"), ("pt-BR", "en")):
        try:
            value = F.read_amount(F.amount_text(amount, typed_in), read_in)
        except F.AmountRefused:
            continue
        assert value == amount, (amount, value)


def test_documents_account_numbers_and_dates():
    assert F.cpf("12345678909") == "123.456.789-09"
    assert F.cnpj("11222333000181") == "11.222.333/0001-81"
    assert F.account_number("123456785") == "12345678-5"
    assert F.account_digits("12345678-5") == "123456785"
    brt = timezone(timedelta(hours=-3))
    assert F.local_datetime("2026-03-05T17:04:09.123Z", "pt-BR", brt) == "05/03/2026 14:04"
    assert F.local_datetime("2026-03-05T17:04:09.123Z", "en", brt) == "Mar 5, 2026, 2:04 PM"
    assert F.local_datetime(datetime(2026, 1, 1, 0, 5, tzinfo=timezone.utc), "en", timezone.utc) == \
        "Jan 1, 2026, 12:05 AM"


def test_text_on_the_bank_colour_stays_readable():
    assert F.text_on("#000000") == "#ffffff"
    assert F.text_on("#ffffff") == "#000000"
    assert F.text_on("#1f6feb") == "#ffffff"


# ----------------------------------------------------------------------------- screens
def test_register_errors_are_explained_and_keep_what_was_typed(browser, new_cpf):
    html = text_of(post(browser, "/cadastro", {"cpf": "123.456.789-00", "name": "Ana", "password": PASSWORD,
                                               "password2": PASSWORD}, page="/cadastro"))
    assert "Este CPF não é válido: confira o número." in html and 'value="123.456.789-00"' in html
    cpf = new_cpf()
    html = text_of(post(browser, "/cadastro", {"cpf": cpf, "name": "Ana", "password": "curta", "password2": "curta"},
                        page="/cadastro"))
    assert "A senha precisa ter de 8 a 256 caracteres." in html
    html = text_of(post(browser, "/cadastro", {"cpf": cpf, "name": "Ana", "password": PASSWORD, "password2": "x"},
                        page="/cadastro"))
    assert "As duas senhas não são iguais." in html


def test_deposit_then_withdraw_with_brazilian_amounts(browser, ana, ui_node):
    number = open_individual(browser)
    r = post(browser, "/movimentar", {"account": number, "op": "deposit", "amount": "234,56", "idem": "a1"},
             page="/movimentar")
    assert (r.status_code, r.headers["Location"]) == (302, f"/contas/{number}")
    html = text_of(browser.get(r.headers["Location"]))
    assert "Depósito de R$ 234,56 realizado. Saldo: R$ 234,56." in html
    r = post(browser, "/movimentar", {"account": number, "op": "withdraw", "amount": "34,56", "idem": "a2"},
             page="/movimentar")
    html = text_of(browser.get(r.headers["Location"]))
    assert "-R$ 34,56" in html and 'id="balance">R$ 200,00<' in html
    assert ui_node.banking.account(ana, number)["balance"] == "200.00"


def test_a_large_deposit_is_shown_back_before_it_is_made(browser, ana, ui_node):
    number = open_individual(browser)
    r = post(browser, "/movimentar", {"account": number, "op": "deposit", "amount": "12.345,00", "idem": "big"},
             page="/movimentar")
    html = text_of(r)
    assert r.status_code == 200 and 'id="review-amount">R$ 12.345,00<' in html
    assert "Confirmar depósito" in html and ui_node.banking.account(ana, number)["balance"] == "0.00"
    data = {k: re.search(rf'name="{k}" value="([^"]*)"', html).group(1) for k in ("idem", "account", "op", "reviewed")}
    assert data["reviewed"] == "12345.00" and data["idem"] == "big"
    r = browser.post("/movimentar", data={"csrf_token": csrf_of(html), **data})
    assert r.status_code == 302
    assert "Depósito de R$ 12.345,00 realizado." in text_of(browser.get(r.headers["Location"]))
    r = browser.post("/movimentar", data={"csrf_token": csrf_of(html), **data})   # sent twice: once
    assert ui_node.banking.account(ana, number)["balance"] == "12345.00"
    # a withdrawal is reviewed too, in English the English way
    post(browser, "/idioma", {"lang": "en"}, page="/painel")
    html = text_of(post(browser, "/movimentar", {"account": number, "op": "withdraw", "amount": "2,000.50"},
                        page="/movimentar"))
    assert 'id="review-amount">R$ 2,000.50<' in html and "Confirm withdrawal" in html


def test_the_same_form_sent_twice_deposits_once(browser, ana, ui_node):
    number = open_individual(browser)
    html = text_of(browser.get("/movimentar"))
    data = {"csrf_token": csrf_of(html), "idem": re.search(r'name="idem" value="([^"]+)"', html).group(1),
            "account": number, "op": "deposit", "amount": "10"}
    assert browser.post("/movimentar", data=data).status_code == 302
    assert browser.post("/movimentar", data=data).status_code == 302
    assert ui_node.banking.account(ana, number)["balance"] == "10.00"


def test_withdrawal_over_the_available_amount_is_explained(browser, ana, ui_node):
    number = open_individual(browser)
    post(browser, "/movimentar", {"account": number, "op": "deposit", "amount": "10"}, page="/movimentar")
    r = post(browser, "/movimentar", {"account": number, "op": "withdraw", "amount": "10,01"}, page="/movimentar")
    assert r.status_code == 422
    assert "Saldo insuficiente: o disponível desta conta é R$ 10,00." in text_of(r)
    assert ui_node.banking.account(ana, number)["balance"] == "10.00"


@pytest.mark.parametrize("amount,message", [
    ("abc", "Informe o valor só com algarismos, como 1.234,56."), ("0", "O valor precisa ser maior que zero."),
    ("150.000,00", "Este valor passa do limite de R$ 100.000,00 por operação."), ("", "Informe o valor."),
    ("12,345", "“12,345” é ambíguo: um valor tem no máximo duas casas decimais. Para R$ 12.345,00, digite 12.345,00."),
    ("10.50", "“10.50” não é a forma de escrever um valor aqui: escreva 10,50.")])
def test_bad_amounts_are_explained(browser, ana, amount, message):
    number = open_individual(browser)
    r = post(browser, "/movimentar", {"account": number, "op": "deposit", "amount": amount}, page="/movimentar")
    assert r.status_code == 422 and message in text_of(r)


def test_someone_elses_account_is_not_found(app, browser, ana, new_cpf):
    number = open_individual(browser)
    other = app.test_client()
    register(other, new_cpf(), "Bruno Lima")
    assert other.get(f"/contas/{number}").status_code == 404
    r = post(other, "/movimentar", {"account": number, "op": "withdraw", "amount": "1"}, page="/movimentar")
    assert r.status_code == 422


def test_joint_account_needs_registered_co_holders(app, browser, ana, new_cpf, ui_node):
    stranger = new_cpf()
    r = post(browser, "/contas/nova", {"kind": "joint", "coholders": F.cpf(stranger)}, page="/contas/nova")
    assert r.status_code == 422 and F.cpf(stranger) in text_of(r)
    assert "Ainda não é cliente deste banco" in text_of(r)
    r = post(browser, "/contas/nova", {"kind": "joint", "coholders": "111.111.111-11"}, page="/contas/nova")
    assert "O CPF 111.111.111-11 não é válido." in text_of(r)
    bruno = new_cpf()
    register(app.test_client(), bruno, "Bruno Lima")
    r = post(browser, "/contas/nova", {"kind": "joint", "coholders": F.cpf(bruno)}, page="/contas/nova")
    assert r.status_code == 302
    ui_node.banking.accept_account(bruno, ui_node.banking.accounts_of(bruno)[0]["number"])
    html = text_of(browser.get("/painel"))
    assert "Conjunta" in html and "Ana Souza &amp; Bruno Lima" in html


def test_business_account_with_cnpj_and_company_name(browser, ana):
    r = post(browser, "/contas/nova", {"kind": "business", "cnpj": "11.222.333/0001-00", "company_name": "X"},
             page="/contas/nova")
    html = text_of(r)
    assert "Este CNPJ não é válido" in html and "Informe a razão social." in html
    cnpj = make_cnpj("112223330001")
    r = post(browser, "/contas/nova", {"kind": "business", "cnpj": F.cnpj(cnpj), "company_name": "Padaria Pão Bom"},
             page="/contas/nova")
    assert r.status_code == 302
    number = re.findall(r'data-number="(\d+)"', text_of(browser.get("/painel")))[-1]
    html = text_of(browser.get(f"/contas/{number}"))
    assert "Padaria Pão Bom" in html and F.cnpj(cnpj) in html and "Empresarial" in html


def alter_lookups(ui_node, monkeypatch, change) -> None:
    """From now on ``change(found)`` alters every consortium lookup's answer."""
    real = ui_node.transfers.lookup

    def lookup(requester, cpf, ttl_ms=None):
        found = real(requester, cpf, ttl_ms)
        change(found)
        return found
    monkeypatch.setattr(ui_node.transfers, "lookup", lookup)


def dashboard_after(browser, ui_node, monkeypatch, change) -> tuple[list, str]:
    """The dashboard when ``change(found)`` has altered the consortium lookup's answer: each
    bank's section with its state, and the page's text."""
    alter_lookups(ui_node, monkeypatch, change)
    html = text_of(browser.get("/painel"))
    return re.findall(r'<section class="bank-group bank-(\w+)".*?data-state="(\w+)"', html, re.S), html


def test_dashboard_groups_by_bank_and_says_which_banks_did_not_answer(browser, ana, ui_node, monkeypatch):
    number = open_individual(browser)

    def change(found):
        found["accounts"].append({"bank": "beta", "bank_name": "Banco Beta", "number": "987654321",
                                  "kind": "individual", "holder": "Ana Souza", "balance": "5.00",
                                  "available": "4.00"})
        found["unreachable_banks"] = ["gama"]
    sections, html = dashboard_after(browser, ui_node, monkeypatch, change)
    assert sections == [("alfa", "ok"), ("beta", "ok"), ("gama", "unreachable")]
    assert "Banco Gama não respondeu" in html
    assert f'href="/contas/{number}"' in html                     # statement here
    assert 'href="http://127.0.0.1:18102/contas/987654321"' in html  # statement at the other bank
    assert "R$ 5,00" in html and "R$ 4,00" in html
    assert "(sem os bancos que não responderam)" in html


def test_dashboard_says_which_banks_limit_how_often_her_accounts_are_looked_up(browser, ana, ui_node, monkeypatch):
    open_individual(browser)
    sections, html = dashboard_after(browser, ui_node, monkeypatch, lambda found: found.update(
        unreachable_banks=["beta", "gama"], limited_banks=["beta"]))
    assert sections == [("alfa", "ok"), ("beta", "limited"), ("gama", "unreachable")]
    assert "Banco Beta limita a frequência das consultas às suas contas de lá" in html
    assert "Banco Beta não respondeu" not in html and "Banco Gama não respondeu" in html


def test_the_amounts_page_says_which_banks_limit_how_often_her_accounts_are_looked_up(app, browser, ana, ui_node,
                                                                                        monkeypatch, new_cpf):
    open_individual(browser)
    _bruno, bruno_acc = someone_with_an_account(app, new_cpf)
    alter_lookups(ui_node, monkeypatch, lambda found: found.update(
        unreachable_banks=["beta", "gama"], limited_banks=["beta"]))
    r = post(browser, "/transferir/conta", {"bank": "alfa", "account": bruno_acc}, page="/transferir")
    assert r.headers["Location"] == "/transferir/valores"
    page = text_of(browser.get("/transferir/valores"))
    assert "Banco Beta limita a frequência das consultas às suas contas de lá" in page
    assert "Banco Beta não respondeu" not in page and "Banco Gama não respondeu" in page


def test_transfer_flow_recipient_account_amounts_review_and_refused_result(app, browser, ana, ui_node, new_cpf):
    number = open_individual(browser)
    post(browser, "/movimentar", {"account": number, "op": "deposit", "amount": "100"}, page="/movimentar")
    bruno, bruno_acc = someone_with_an_account(app, new_cpf)
    # 1. the key: a CPF, masked on the page
    r = post(browser, "/transferir/chave", {"chave": F.cpf(bruno)}, page="/transferir")
    assert r.headers["Location"] == "/transferir/destino"   # the CPF never goes into an address
    page = text_of(browser.get("/transferir/destino"))
    assert F.mask_document(bruno) in page and F.cpf(bruno) not in page and bruno not in page
    # 2. the recipient's accounts: none pre-selected, and choosing none is refused
    assert 'name="destination"' in page and "checked" not in page.split('id="dest-candidates"')[1]
    r = browser.post("/transferir/destino", data={"csrf_token": csrf_of(page)})
    assert r.status_code == 422 and "Escolha qual destas contas recebe o dinheiro." in text_of(r)
    r = browser.post("/transferir/destino", data={"csrf_token": csrf_of(page), "destination": "alfa.000000000"})
    assert r.status_code == 422   # an account that was not offered
    browser.post("/transferir/destino", data={"csrf_token": csrf_of(page), "destination": f"alfa.{bruno_acc}"})
    # 3. the amounts, with the available balance of each source, checked before the review
    page = text_of(browser.get("/transferir/valores"))
    assert "Bruno C*** L***" in page and "Carvalho" not in page
    assert f'name="amount.alfa.{number}"' in page and 'data-available="100.00"' in page
    assert f'name="amount.alfa.{bruno_acc}"' not in page
    r = browser.post("/transferir/valores", data={"csrf_token": csrf_of(page), f"amount.alfa.{number}": "100,01"})
    assert r.status_code == 422 and "Mais do que esta conta tem disponível (R$ 100,00)." in text_of(r)
    assert 'value="100,01"' in text_of(r)
    r = browser.post("/transferir/valores", data={"csrf_token": csrf_of(page), f"amount.alfa.{number}": "12,345"})
    assert "“12,345” é ambíguo" in text_of(r)
    r = browser.post("/transferir/valores", data={"csrf_token": csrf_of(page), f"amount.alfa.{number}": ""})
    assert "Informe o valor a tirar de pelo menos uma das suas contas." in text_of(r)
    r = browser.post("/transferir/valores", data={"csrf_token": csrf_of(page), "amount.beta.123456785": "1"})
    assert r.status_code == 422   # not one of the accounts offered
    r = browser.post("/transferir/valores", data={"csrf_token": csrf_of(page), f"amount.alfa.{number}": "12,50"})
    assert r.headers["Location"] == "/transferir/revisar"
    # 4. the review: masked name, masked CPF, bank, the total; the button says it is processing
    review = text_of(browser.get("/transferir/revisar"))
    assert 'id="review-total">R$ 12,50<' in review and "Bruno C*** L***" in review
    assert f'id="recipient-document" class="nowrap">{F.mask_document(bruno)}<' in review
    assert "Banco Alfa" in review and 'class="confirm-actions js-busy"' in review
    assert 'data-processing="Processando…"' in review
    draft = re.search(r'name="draft" value="([^"]+)"', review).group(1)
    r = browser.post("/transferir/confirmar", data={"csrf_token": csrf_of(review), "draft": draft})
    assert r.status_code == 302 and r.headers["Location"] == f"/transferencias/{draft}"
    html = text_of(browser.get(r.headers["Location"]))
    # Both accounts are at this bank: it needs no broker, and the money moves.
    assert "Transferência realizada." in html and 'id="payee"><strong>Bruno C*** L***</strong>' in html
    assert ui_node.banking.account(ana, number)["balance"] == "87.50"
    # sending the confirmation again shows the same transfer, it does not make another
    r = browser.post("/transferir/confirmar", data={"csrf_token": csrf_of(review), "draft": draft})
    assert r.headers["Location"] == f"/transferencias/{draft}"
    # and it can be found again in "Minhas transferências"
    html = text_of(browser.get("/transferencias"))
    assert f'data-id="{draft}" data-status="committed"' in html


def test_a_typed_account_is_verified_before_the_review(app, browser, ana, ui_node, new_cpf, monkeypatch):
    number = open_individual(browser)
    post(browser, "/movimentar", {"account": number, "op": "deposit", "amount": "50"}, page="/movimentar")
    _bruno, bruno_acc = someone_with_an_account(app, new_cpf)
    page = text_of(browser.get("/transferir"))
    r = browser.post("/transferir/conta", data={"csrf_token": csrf_of(page), "bank": "alfa", "account": "99999999-9"})
    assert r.status_code == 422 and "Não há conta aberta 99999999-9 no Banco Alfa: confira o número." in text_of(r)
    r = browser.post("/transferir/conta", data={"csrf_token": csrf_of(page), "bank": "", "account": ""})
    assert "Escolha o banco de destino." in text_of(r) and "Informe o número da conta de destino." in text_of(r)
    # another bank out of reach: said so, nothing else happens
    r = browser.post("/transferir/conta", data={"csrf_token": csrf_of(page), "bank": "beta", "account": "12345678-5"})
    assert r.status_code == 422 and "Banco Beta não respondeu" in text_of(r)
    r = browser.post("/transferir/conta", data={"csrf_token": csrf_of(page), "bank": "alfa",
                                                "account": F.account_number(bruno_acc)})
    assert r.headers["Location"] == "/transferir/valores"
    page = text_of(browser.get("/transferir/valores"))
    assert 'id="recipient-name"><strong>Bruno C*** L***</strong>' in page
    assert "recipient-document" not in page   # no key was typed: no document to show


def test_a_transfer_step_out_of_order_starts_again(browser, ana):
    assert browser.get("/transferir/valores").headers["Location"] == "/transferir"
    assert browser.get("/transferir/revisar").headers["Location"] == "/transferir"
    r = post(browser, "/transferir/confirmar", {"draft": "x"}, page="/transferir")
    assert r.headers["Location"] == "/transferir"


def test_a_company_is_found_by_its_cnpj(app, browser, ana, new_cpf):
    other = app.test_client()
    register(other, new_cpf(), "Carla Dias")
    cnpj = make_cnpj("112223330001")
    assert post(other, "/contas/nova", {"kind": "business", "cnpj": cnpj, "company_name": "Padaria Pão Bom"},
                page="/contas/nova").status_code == 302
    post(browser, "/transferir/chave", {"chave": F.cnpj(cnpj)}, page="/transferir")
    html = text_of(browser.get("/transferir/destino"))
    assert "Padaria P*** B***" in html and "Carla" not in html and F.cnpj(cnpj) in html


def test_a_pending_transfer_page_updates_itself(browser, ana, ui_node, monkeypatch):
    tid = "6b1c8a4e-2f6e-4a55-9d0f-3b4b0d1b9a11"
    state = {"status": "pending"}

    def status(caller, transfer_id):
        assert (caller, transfer_id) == (ana, tid)
        return {"id": tid, "status": state["status"], "coordinator": "alfa", "created_at": "2026-03-05T17:04:09.123Z",
                "amount": "10.00", "legs": [
                    {"bank": "alfa", "account": "123456785", "amount": "10.00", "role": "source"},
                    {"bank": "beta", "account": "987654321", "amount": "10.00", "role": "destination"}]}
    monkeypatch.setattr(ui_node.transfers, "status", status)
    html = text_of(browser.get(f"/transferencias/{tid}"))
    assert f'data-poll-url="/transferencias/{tid}/estado"' in html
    assert '<noscript><meta http-equiv="refresh" content="3"></noscript>' in html
    assert "Aguardando a confirmação dos bancos" in html
    assert browser.get(f"/transferencias/{tid}/estado").get_json() == {"id": tid, "status": "pending"}
    state["status"] = "committed"
    assert browser.get(f"/transferencias/{tid}/estado").get_json()["status"] == "committed"
    html = text_of(browser.get(f"/transferencias/{tid}"))
    assert "data-poll-url" not in html and "http-equiv" not in html
    assert "Transferência realizada." in html and "R$ 10,00 debitados" in html and "R$ 10,00 creditados" in html


def test_refusal_reasons_read_in_customer_words(browser, ana, ui_node, monkeypatch):
    tid = "6b1c8a4e-2f6e-4a55-9d0f-3b4b0d1b9a12"
    monkeypatch.setattr(ui_node.transfers, "status", lambda caller, t: {
        "id": tid, "status": "aborted", "reason": "insufficient_funds", "created_at": "2026-03-05T17:04:09.123Z",
        "amount": "30.00", "legs": [
            {"bank": "alfa", "account": "123456785", "amount": "10.00", "role": "source"},
            {"bank": "beta", "account": "111111116", "amount": "20.00", "role": "source",
             "reason": "insufficient_funds"},
            {"bank": "gama", "account": "987654321", "amount": "30.00", "role": "destination"}]})
    html = text_of(browser.get(f"/transferencias/{tid}"))
    assert leg_text(html, "beta").endswith("saldo insuficiente")
    assert leg_text(html, "alfa").endswith("nada foi debitado")
    assert 'id="general-reason"' not in html


def test_a_transfer_started_at_another_bank_points_there(browser, ana):
    tid = "6b1c8a4e-2f6e-4a55-9d0f-3b4b0d1b9a13"
    r = browser.get(f"/transferencias/{tid}")
    html = text_of(r)
    assert r.status_code == 404
    assert f'href="http://127.0.0.1:18102/transferencias/{tid}"' in html
    assert f'href="http://127.0.0.1:18103/transferencias/{tid}"' in html
    r = browser.get("/transferencias/not-a-uuid")
    assert r.status_code == 404 and "http://127.0.0.1:18102/transferencias" not in text_of(r)


def test_statement_links_transfer_ids_to_their_status(browser, ana, ui_node, monkeypatch):
    number = open_individual(browser)
    tid = "6b1c8a4e-2f6e-4a55-9d0f-3b4b0d1b9a14"
    real = ui_node.banking.statement

    def statement(caller, n, limit=100, **kw):
        st = real(caller, n, limit, **kw)
        st["entries"].insert(0, {"at": "2026-03-05T17:04:09.123Z", "kind": "transfer_out", "amount": "-5.00",
                                 "balance_after": "0.00", "transfer_id": tid})
        return st
    monkeypatch.setattr(ui_node.banking, "statement", statement)
    html = text_of(browser.get(f"/contas/{number}"))
    assert f'href="/transferencias/{tid}"' in html
    assert "Transferência enviada" in html and "-R$ 5,00" in html


# ----------------------------------------------------------------------------- refusals of the security work
def test_a_throttled_login_is_429_and_says_how_long_to_wait(browser, ana, ui_node):
    post(browser, "/sair", {}, page="/painel")
    for _ in range(ui_node.config.security.login_max_failures):
        assert post(browser, "/entrar", {"cpf": ana, "password": "not-the-password"}).status_code == 401
    r = post(browser, "/entrar", {"cpf": ana, "password": PASSWORD})
    assert r.status_code == 429
    assert 1 <= int(r.headers["Retry-After"]) <= ui_node.config.security.login_window_s
    assert "Muitas tentativas: aguarde 5 minutos e tente de novo." in text_of(r)
    assert "CPF ou senha incorretos." not in text_of(r)
    assert browser.get("/painel").status_code == 302


@pytest.mark.parametrize("lang,seconds,text", [
    ("pt-BR,pt;q=0.9", 42, "Muitas tentativas: aguarde 42 segundos e tente de novo."),
    ("pt-BR,pt;q=0.9", 1, "Muitas tentativas: aguarde 1 segundo e tente de novo."),
    ("pt-BR,pt;q=0.9", 3600, "Muitas tentativas: aguarde 60 minutos e tente de novo."),
    ("en", 42, "Too many attempts: please wait 42 seconds and try again."),
    ("en", 1, "Too many attempts: please wait 1 second and try again."),
    ("en", 3600, "Too many attempts: please wait 60 minutes and try again."),
])
def test_the_wait_of_a_throttled_login_reads_in_the_customers_language(app, ui_node, monkeypatch, lang, seconds,
                                                                         text):
    def throttled(cpf, password, client=None):
        raise TooManyAttempts("too many failed logins for this CPF", retry_after=seconds)
    monkeypatch.setattr(ui_node.banking, "login", throttled)
    c = app.test_client()
    c.environ_base["HTTP_ACCEPT_LANGUAGE"] = lang
    r = post(c, "/entrar", {"cpf": "123.456.789-09", "password": PASSWORD})
    assert (r.status_code, r.headers["Retry-After"]) == (429, str(seconds))
    assert text in text_of(r)


def test_a_throttle_without_a_wait_still_reads_as_one(app, ui_node, monkeypatch):
    def throttled(cpf, password, client=None):
        raise DomainError("slow down", code="too_many_attempts", status=429)
    monkeypatch.setattr(ui_node.banking, "login", throttled)
    c = app.test_client()
    r = post(c, "/entrar", {"cpf": "123.456.789-09", "password": PASSWORD})
    assert r.status_code == 429 and "Retry-After" not in r.headers
    assert "Muitas tentativas: aguarde um pouco e tente de novo." in text_of(r)


@pytest.mark.parametrize("password,lang,text", [
    ("password123", "pt-BR", "Esta senha é uma das mais comuns e seria a primeira a ser tentada: escolha outra."),
    ("password123", "en", "This password is one of the most common ones and would be guessed first: choose another."),
    ("cpf", "pt-BR", "A senha não pode conter o seu CPF."),
    ("cpf", "en", "The password must not contain your CPF."),
    ("curta", "en", "The password must have 8 to 256 characters."),
])
def test_password_rules_are_explained_under_the_password_field(app, new_cpf, password, lang, text):
    c = app.test_client()
    c.environ_base["HTTP_ACCEPT_LANGUAGE"] = lang
    cpf = new_cpf()
    if password == "cpf":
        password = f"x{F.cpf(cpf)}!"
    r = post(c, "/cadastro", {"cpf": cpf, "name": "Ana", "password": password, "password2": password},
             page="/cadastro")
    html = text_of(r)
    assert r.status_code == 422
    assert f'<p class="field-error" id="err-password">{escape(text)}</p>' in html
    assert 'id="password" name="password" type="password" required minlength="8" autocomplete="new-password" ' \
           'aria-invalid="true" aria-describedby="err-password"' in html
    assert html.count(str(escape(text))) == 1  # not (also) at form level


def test_throttled_registrations_are_429_at_form_level(browser, new_cpf, ui_node, monkeypatch):
    def throttled(*a, **kw):
        raise TooManyAttempts("too many registrations from your address; try again in 90 s", retry_after=90)
    monkeypatch.setattr(ui_node.banking, "register", throttled)
    r = post(browser, "/cadastro", {"cpf": new_cpf(), "name": "Ana", "password": PASSWORD, "password2": PASSWORD},
             page="/cadastro")
    assert (r.status_code, r.headers["Retry-After"]) == (429, "90")
    assert '<p class="flash flash-error" role="alert">Muitas tentativas: aguarde 90 segundos e tente de novo.</p>' \
        in text_of(r)


def test_a_deposit_over_the_daily_limit_says_the_limit_and_what_is_left(browser, ana, ui_node):
    number = open_individual(browser)
    for amount in ("100000.00", "99000.00"):   # as the large-amount review sends them back
        r = post(browser, "/movimentar", {"account": number, "op": "deposit", "reviewed": amount}, page="/movimentar")
        assert r.status_code == 302
    r = post(browser, "/movimentar", {"account": number, "op": "deposit", "reviewed": "1000.01"}, page="/movimentar")
    assert r.status_code == 422
    assert ('<p class="field-error" id="err-amount">Este valor passa do limite diário desta conta: o limite é de '
            'R$ 200.000,00 por dia e restam R$ 1.000,00 para hoje.</p>') in text_of(r)
    assert ui_node.banking.account(ana, number)["balance"] == "199000.00"
    post(browser, "/idioma", {"lang": "en"}, page="/painel")
    r = post(browser, "/movimentar", {"account": number, "op": "deposit", "reviewed": "1000.01"}, page="/movimentar")
    assert ("This amount is over the daily limit of this account: the limit is R$ 200,000.00 a day and "
            "R$ 1,000.00 is left for today.") in text_of(r)


@pytest.mark.parametrize("code", ["too_many_attempts", "common_password", "password_contains_cpf", "weak_password",
                                  "daily_limit_exceeded", "amount_over_limit", "duplicate_leg",
                                  "unknown_parameter"])
@pytest.mark.parametrize("lang", i18n.LANGS)
def test_every_refusal_of_the_security_work_has_customer_words(app, code, lang):
    with app.test_request_context("/"):
        from flask import g
        g.lang = lang
        text = common.domain_message(DomainError("some english detail", code=code))
    assert "some english detail" not in text and text.strip()
    assert (text in {m.string for m in pt_catalog() if m.id}) == (lang == "pt-BR")


@pytest.mark.parametrize("reason,pt,en", [
    ("amount_over_limit", "acima do limite por operação do banco", "over this bank's limit per operation"),
    ("daily_limit_exceeded", "acima do limite diário da conta", "over the daily limit of this account"),
    ("duplicate_leg", "a mesma conta apareceu duas vezes na transferência",
     "the same account was named twice in the transfer"),
])
def test_new_leg_reasons_read_in_customer_words(browser, ana, ui_node, monkeypatch, reason, pt, en):
    tid = "6b1c8a4e-2f6e-4a55-9d0f-3b4b0d1b9a15"
    monkeypatch.setattr(ui_node.transfers, "status", lambda caller, t: {
        "id": tid, "status": "aborted", "reason": reason, "created_at": "2026-03-05T17:04:09.123Z",
        "amount": "30.00", "legs": [
            {"bank": "beta", "account": "111111116", "amount": "30.00", "role": "source", "reason": reason},
            {"bank": "gama", "account": "987654321", "amount": "30.00", "role": "destination"}]})
    assert leg_text(text_of(browser.get(f"/transferencias/{tid}")), "beta").endswith(str(escape(pt)))
    post(browser, "/idioma", {"lang": "en"}, page="/painel")
    assert leg_text(text_of(browser.get(f"/transferencias/{tid}")), "beta").endswith(str(escape(en)))


def test_a_refused_transfer_submission_is_flashed_in_customer_words(app, browser, ana, ui_node, monkeypatch,
                                                                      new_cpf):
    number = open_individual(browser)
    post(browser, "/movimentar", {"account": number, "op": "deposit", "amount": "10"}, page="/movimentar")
    bruno, bruno_acc = someone_with_an_account(app, new_cpf)
    review = prepare_transfer(browser, bruno, f"alfa.{bruno_acc}", {f"alfa.{number}": "1"})
    token = csrf_of(review)
    draft = re.search(r'name="draft" value="([^"]+)"', review).group(1)

    def refused(caller, body):
        raise DomainError("sources[1]: each source account may appear only once", code="duplicate_leg")
    monkeypatch.setattr(ui_node.transfers, "submit", refused)
    r = browser.post("/transferir/confirmar", data={"csrf_token": token, "draft": draft})
    assert r.status_code == 302
    assert "A mesma conta aparece mais de uma vez nesta transferência." in text_of(browser.get(r.headers["Location"]))


# ----------------------------------------------------------------------------- addresses the UI does not have
@pytest.mark.parametrize("lang,title", [("pt-BR,pt;q=0.9", "Página não encontrada"), ("en", "Page not found")])
def test_a_mistyped_address_gets_a_page_of_the_bank(app, lang, title):
    c = app.test_client()
    r = c.get("/nada", headers={"Accept-Language": lang})
    html = text_of(r)
    assert r.status_code == 404 and r.mimetype == "text/html"
    assert f"<h1>{title}</h1>" in html and 'href="/ui/banco.css"' in html and 'class="bank-alfa"' in html
    p = _forms_in(html)
    assert p.inline_scripts == 0 and not p.inline_styles and not p.handlers
    assert all(f["csrf"] for f in p.forms if f["method"] == "post")
    assert "style-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.headers["Cache-Control"] == "no-store"


def test_a_mistyped_address_is_shown_as_text_only(browser):
    r = browser.get("/" + XSS)
    assert r.status_code == 404 and XSS not in text_of(r) and "<script>" not in text_of(r)


def test_a_wrong_method_on_a_ui_address_gets_a_page_with_allow(browser):
    r = browser.put("/entrar")
    assert r.status_code == 405 and r.mimetype == "text/html"
    assert "Não permitido aqui" in text_of(r)
    assert "POST" in r.headers["Allow"]


def test_a_logged_in_customer_keeps_the_menu_on_the_not_found_page(browser, ana):
    html = text_of(browser.get("/nada"))
    assert "Página não encontrada" in html and 'action="/sair"' in html


@pytest.mark.parametrize("path", ["/api/nada", "/api", "/api/health/x"])
def test_api_addresses_keep_problem_json(browser, path):
    r = browser.get(path)
    assert r.status_code == 404 and r.mimetype == "application/problem+json"
    assert r.get_json()["code"] == "not_found"
    r = browser.put("/api/health")
    assert r.status_code == 405 and r.mimetype == "application/problem+json"
    assert r.get_json()["code"] == "method_not_allowed"


# ----------------------------------------------------------------------------- the shape of the code
def _imports(folder: Path) -> set[str]:
    found = set()
    for p in folder.rglob("*.py"):
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, ast.ImportFrom) and n.module:
                found.add(("." * n.level) + n.module)
            elif isinstance(n, ast.Import):
                found |= {a.name for a in n.names}
    return found


def test_the_ui_and_the_api_never_import_each_other():
    """They are composed in one place, bank_node.app; each reaches the node through the one
    typed accessor bank_node.context.node()."""
    api = WEB_UI.parent / "bank_node" / "api"
    assert not [m for m in _imports(WEB_UI) if m.startswith("bank_node.api") or m == "bank_node.app"]
    assert not [m for m in _imports(api) if m.startswith("web_ui") or m.endswith(".app")]
    for folder in (WEB_UI, api):
        for p in folder.rglob("*.py"):
            assert 'extensions["bank_node"]' not in p.read_text(), p


def test_the_ui_is_one_blueprint_per_feature(app):
    features = {name.split(".")[1] for name in app.blueprints if name.startswith("web_ui.")}
    assert features == {"site", "auth", "accounts", "statement", "transfers", "history", "mandates"}
    endpoints = {r.endpoint for r in app.url_map.iter_rules() if r.endpoint.startswith("web_ui.")}
    assert {"web_ui.auth.login", "web_ui.statement.export", "web_ui.transfers.receipt_pdf",
            "web_ui.history.history", "web_ui.accounts.dashboard"} <= endpoints


def test_a_holder_gives_and_revokes_consent_for_another_bank(browser, ana, ui_node):
    """The page a refused transfer links to: filled in from the link, given, listed, revoked."""
    number = open_individual(browser)
    page = text_of(browser.get(f"/mandates/new?bank=beta&account={number}"))
    assert 'option value="beta" selected' in page and f'option value="{number}" selected' in page
    assert 'option value="alfa"' not in page          # this bank needs no consent for its own accounts
    r = post(browser, "/mandates/new", {"bank": "beta", "account": number, "max_per_transfer": "12,345"},
             page=f"/mandates/new?bank=beta&account={number}")
    assert r.status_code == 422 and "é ambíguo" in text_of(r)
    r = post(browser, "/mandates/new", {"bank": "beta", "account": number, "max_per_transfer": "100,00",
                                        "max_per_day": "250,00"}, page=f"/mandates/new?bank=beta&account={number}")
    assert r.status_code == 302
    html = text_of(browser.get(r.headers["Location"]))
    assert "O Banco Beta agora pode iniciar débitos na conta" in html and 'data-status="active"' in html
    assert "até R$ 100,00 por transferência" in html and "até R$ 250,00 por dia" in html
    (m,) = ui_node.mandates.list(ana)["mandates"]
    assert (m["bank"], m["account"], m["max_per_transfer"], m["max_per_day"]) == ("beta", number, "100.00", "250.00")
    r = post(browser, f"/mandates/{m['id']}/revoke", {}, page="/mandates")
    assert 'data-status="revoked"' in text_of(browser.get(r.headers["Location"]))
    assert ui_node.mandates.list(ana)["mandates"][0]["status"] == "revoked"
