"""The web UI in a real browser (Debian's Chromium, driven by Playwright) against real bank
processes and a real RabbitMQ: what a customer does and sees, across three banks, in both
languages, on a laptop (1280x800) and on a phone (390x844).

Every page the flows reach is checked with axe-core (injected from tests/e2e/node_modules,
installed from the npm registry by .ci/run: no network at test time): no serious or critical
violation is allowed. On the phone, no page may scroll sideways.

Screenshots go to a temporary folder; SCREENSHOTS_DIR=docs/screenshots regenerates the ones
the README shows. Every wait is on a condition (Playwright's auto-waiting ``expect``), never a
fixed sleep. Banks are reached by host name (alfa.localhost, beta.localhost...: Chromium sends
*.localhost to the loopback), as distinct sites whose cookies the browser keeps apart.
"""
from __future__ import annotations

import io
import os
import re
import time
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from pypdf import PdfReader

from bank_node.domain.documents import format_cpf, mask_document
from broker.provision import delete_namespace
from tools.api_client import Customer
from tools.consortia import TEST_SECURITY, free_ports, write_config
from tools.supervisor import Cluster

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
PASSWORD = "senha-muito-boa"
XSS = "<script>alert(1)</script>"
COLOURS = {"alfa": "#1f6feb", "beta": "#2da44e", "gama": "#bf3989"}
SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
WAIT_MS = 15_000

if not os.access(CHROMIUM, os.X_OK):
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium): the browser tests need it",
                allow_module_level=True)

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

# What the pages say, per language (the selectors that are words).
T = {
    "pt-BR": {"locale": "pt-BR", "register": "Cadastre-se", "name": "Nome completo", "password": "Senha (pelo menos 8 caracteres)",
              "password2": "Repita a senha", "dashboard": "Painel", "open": "Abrir a conta", "opened": "aberta",
              "deposit": "Depósito", "amount": "Valor (R$)", "continue": "Continuar", "confirm_deposit": "Confirmar depósito",
              "key": "CPF ou CNPJ de quem recebe", "find": "Buscar as contas", "review": "Revisar a transferência",
              "confirm": "Confirmar transferência", "done": "Transferência realizada.", "receipt": "Comprovante de transferência",
              "allow": "Autorizar",
              "pdf": "Baixar comprovante (PDF)", "statement": "Extrato", "csv": "Exportar CSV",
              "history": "Minhas transferências", "hide": "Ocultar saldos", "logout": "Sair", "login": "Entrar",
              "bank": "Banco", "account": "Número da conta", "check": "Verificar a conta", "ambiguous": "é ambíguo",
              "over_available": "Mais do que esta conta tem disponível", "sent": "Transferência enviada",
              "not_answered": "Banco Gama não respondeu", "done_badge": "Realizada", "outcome": "Situação",
              "filter": "Filtrar", "typed_missing": "Não há conta aberta", "processing": "Processando…"},
    "en": {"locale": "en-US", "register": "Register", "name": "Full name", "password": "Password (at least 8 characters)",
           "password2": "Password again", "dashboard": "Dashboard", "open": "Open the account", "opened": "is open",
           "deposit": "Deposit", "amount": "Amount (R$)", "continue": "Continue", "confirm_deposit": "Confirm deposit",
           "key": "Recipient's CPF or CNPJ", "find": "Find their accounts", "review": "Review the transfer",
           "confirm": "Confirm transfer", "done": "Transfer done.", "receipt": "Transfer receipt",
           "allow": "Allow",
           "pdf": "Download receipt (PDF)", "statement": "Statement", "csv": "Export CSV",
           "history": "My transfers", "hide": "Hide balances", "logout": "Log out", "login": "Log in",
           "bank": "Bank", "account": "Account number", "check": "Check the account", "ambiguous": "is ambiguous",
           "over_available": "More than this account has available", "sent": "Transfer sent",
           "not_answered": "Banco Gama did not answer", "done_badge": "Done", "outcome": "Outcome",
           "filter": "Filter", "typed_missing": "There is no open account", "processing": "Processing…"},
}


def amount(value: str, lang: str) -> str:
    """``"1234.50"`` as a customer types it in ``lang``."""
    units, cents = value.split(".")
    grouped = f"{int(units):,}"
    return f"{grouped.replace(',', '.')},{cents}" if lang == "pt-BR" else f"{grouped}.{cents}"


def money(value: str, lang: str) -> str:
    return "R$ " + amount(value, lang)


# ----------------------------------------------------------------------------- the consortium
@pytest.fixture(scope="module")
def consortium(tmp_path_factory, amqp_url):
    """Three banks (each with its colour) for the whole module, reached at <bank>.localhost."""
    import uuid
    root = tmp_path_factory.mktemp("e2e")
    namespace = f"t-{uuid.uuid4().hex[:12]}"
    ports = free_ports(3)
    banks = [{"id": b, "name": f"Banco {b.capitalize()}", "port": p, "color": COLOURS[b]}
             for b, p in zip(COLOURS, ports)]
    cfg = write_config(root / "consorcio.yml", consortium=namespace, broker_url=amqp_url, banks=banks,
                       timeouts={"prepare_ttl_ms": 3000, "decision_resend_ms": 300, "status_query_ms": 300,
                                 "retry_cap_ms": 1000},
                       security=dict(TEST_SECURITY))
    cluster = Cluster(cfg, root / "data")
    try:
        cluster.start()
        yield {"cluster": cluster, "url": {b["id"]: f"http://{b['id']}.localhost:{b['port']}" for b in banks},
               "api": {b["id"]: f"http://127.0.0.1:{b['port']}" for b in banks},
               "doc": yaml.safe_load(cfg.read_text())}
    finally:
        cluster.stop()
        delete_namespace(amqp_url, namespace, [b["id"] for b in banks])


@pytest.fixture(scope="module")
def chromium():
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Where screenshots go: a temporary folder, unless SCREENSHOTS_DIR names one (the README's
    are regenerated with SCREENSHOTS_DIR=docs/screenshots)."""
    wanted = os.environ.get("SCREENSHOTS_DIR")
    folder = Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.exists():
        pytest.fail(f"axe-core is not installed: run `npm ci --prefix tests/e2e` (.ci/run does it); "
                    f"missing {AXE}")
    return AXE.read_text()


def new_page(chromium, lang: str, size: str, axe: str | None = None) -> Page:
    context = chromium.new_context(locale=T[lang]["locale"], viewport=SIZES[size], accept_downloads=True)
    if axe:
        # Evaluated by the browser itself in every page before the page's own scripts, so the
        # pages keep their Content-Security-Policy (no inline script) while being checked.
        context.add_init_script(script=axe)
    context.set_default_timeout(WAIT_MS)
    expect.set_options(timeout=WAIT_MS)
    pg = context.new_page()
    pg.dialogs, pg.js_errors = [], []
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
    pg.on("pageerror", lambda e: pg.js_errors.append(str(e)))
    # A form refused with 422 or a page that is not there (404) is logged by Chromium as a failed
    # resource: that is the page doing its job, not a script error.
    pg.on("console", lambda m: m.type == "error" and not m.text.startswith(
        "Failed to load resource: the server responded with a status of 4") and pg.js_errors.append(m.text))
    return pg


def close(pg: Page) -> None:
    context = pg.context
    dialogs, errors = pg.dialogs, pg.js_errors
    context.close()
    assert not dialogs, f"a page opened a dialog: {dialogs}"
    assert not errors, f"JavaScript or CSP errors in the pages: {errors}"


class Checker:
    """Runs axe-core on a page (serious and critical violations fail the test), checks that a
    phone never scrolls sideways, and takes the screenshot."""

    def __init__(self, axe: str, shots: Path, lang: str, size: str):
        self.axe, self.shots, self.lang, self.size = axe, shots, lang, size
        self.pages: list[str] = []

    def __call__(self, page: Page, name: str) -> None:
        page.wait_for_load_state("load")
        assert page.evaluate("() => typeof window.axe !== 'undefined'"), "axe-core was not injected"
        result = page.evaluate("""async () => {
            const r = await axe.run(document, {resultTypes: ['violations']});
            return r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                     .map(v => ({id: v.id, impact: v.impact, help: v.help,
                                 nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
        }""")
        assert result == [], f"axe on {name} ({self.lang}, {self.size}): {result}"
        if self.size == "phone":
            wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert wide <= 0, f"{name} scrolls sideways by {wide}px at 390 px"
        self.pages.append(name)
        if self.lang == "pt-BR" or os.environ.get("SCREENSHOTS_DIR") is None:
            suffix = "" if (self.lang, self.size) == ("pt-BR", "desktop") else f"-{self.size}" \
                if self.lang == "pt-BR" else f"-{self.lang}-{self.size}"
            page.screenshot(path=str(self.shots / f"{name}{suffix}.png"), full_page=True, animations="disabled",
                            caret="hide")


def register(page: Page, url: str, cpf: str, name: str, lang: str) -> None:
    t = T[lang]
    page.goto(f"{url}/cadastro")
    page.get_by_label("CPF", exact=True).fill(cpf)
    page.get_by_label(t["name"]).fill(name)
    page.get_by_label(t["password"]).fill(PASSWORD)
    page.get_by_label(t["password2"]).fill(PASSWORD)
    page.get_by_role("button", name=t["register"]).click()
    expect(page.get_by_role("heading", name=t["dashboard"], exact=True)).to_be_visible()


def open_individual_account(page: Page, url: str, bank_id: str, lang: str) -> str:
    page.goto(f"{url}/contas/nova")
    page.get_by_role("button", name=T[lang]["open"]).click()
    expect(page.locator(".flash-success")).to_contain_text(T[lang]["opened"])
    card = page.locator(f'li.account-card[data-bank="{bank_id}"]')
    expect(card).to_have_count(1)
    return card.get_attribute("data-number")


def deposit(page: Page, url: str, value: str, lang: str) -> None:
    t = T[lang]
    page.goto(f"{url}/movimentar")
    page.get_by_label(t["deposit"], exact=True).check()
    page.get_by_label(t["amount"]).fill(amount(value, lang))
    page.get_by_role("button", name=t["continue"]).click()
    if Decimal(value) >= 1000:
        expect(page.locator("#review-amount")).to_have_text(money(value, lang))
        page.get_by_role("button", name=t["confirm_deposit"]).click()
    expect(page.locator(".flash-success")).to_contain_text(money(value, lang))


def card(page: Page, bank_id: str, number: str):
    return page.locator(f'li.account-card[data-bank="{bank_id}"][data-number="{number}"]')


# ----------------------------------------------------------------------------- the flows
@pytest.mark.parametrize("size", sorted(SIZES))
@pytest.mark.parametrize("lang", sorted(T))
def test_a_customer_sends_money_the_way_brazilian_apps_do(consortium, chromium, shots, axe_source, new_cpf,
                                                          lang, size):
    t, url = T[lang], consortium["url"]
    check = Checker(axe_source, shots, lang, size)
    ana_cpf, bruno_cpf = new_cpf(), new_cpf()
    bruno = Customer(bruno_cpf, "Bruno Carvalho Lima", consortium["api"]).join("gama")
    bruno_acc = bruno.open_account("gama")
    page = new_page(chromium, lang, size, axe_source)
    try:
        # The login and registration screens, in the bank's colours.
        page.goto(f"{url['alfa']}/")
        expect(page).to_have_url(re.compile(r"/entrar$"))
        expect(page.locator(".brand-name")).to_have_text("Banco Alfa")
        check(page, "login")
        page.goto(f"{url['alfa']}/cadastro")
        page.get_by_role("button", name=t["register"]).click()        # every field's error at once
        expect(page.locator(".field-error")).to_have_count(3)   # CPF, name, password
        check(page, "register-errors")

        # Registered at two banks, an account and money at each (a large deposit is reviewed;
        # an ambiguous amount is refused with the way to type it).
        register(page, url["alfa"], format_cpf(ana_cpf), "Ana Souza", lang)
        register(page, url["beta"], ana_cpf, "Ana Souza", lang)
        acc_beta = open_individual_account(page, url["beta"], "beta", lang)
        deposit(page, url["beta"], "50.00", lang)
        # Consent, given at beta (the account's own bank), for alfa to start debits from it.
        page.goto(f"{url['beta']}/mandates/new?bank=alfa&account={acc_beta}")
        check(page, "consent")
        page.get_by_role("button", name=t["allow"]).click()
        expect(page.locator("#mandates tr[data-status=active]")).to_have_count(1)
        acc_alfa = open_individual_account(page, url["alfa"], "alfa", lang)
        page.goto(f"{url['alfa']}/movimentar")
        check(page, "deposit")
        page.get_by_label(t["amount"]).fill("12,345" if lang == "pt-BR" else "12.345")
        page.get_by_role("button", name=t["continue"]).click()
        expect(page.locator("#err-amount")).to_contain_text(t["ambiguous"])
        expect(page.locator("#err-amount")).to_contain_text(amount("12345.00", lang))
        page.get_by_label(t["amount"]).fill(amount("1500.00", lang))
        page.get_by_role("button", name=t["continue"]).click()
        expect(page.locator("#review-amount")).to_have_text(money("1500.00", lang))
        check(page, "deposit-review")
        page.get_by_role("button", name=t["confirm_deposit"]).click()
        expect(page.locator(".flash-success")).to_contain_text(money("1500.00", lang))

        # The dashboard: every bank's accounts, the CPF masked, balances that can be hidden.
        page.goto(f"{url['alfa']}/painel")
        expect(card(page, "alfa", acc_alfa).locator(".balance")).to_have_text(money("1500.00", lang))
        expect(card(page, "beta", acc_beta).locator(".balance")).to_have_text(money("50.00", lang))
        expect(page.locator("#user-cpf")).to_have_text(mask_document(ana_cpf))
        check(page, "dashboard")
        page.get_by_role("button", name=t["hide"]).click()
        expect(card(page, "alfa", acc_alfa).locator(".balance")).to_have_text("R$ ••••")
        page.goto(f"{url['alfa']}/contas/nova")
        check(page, "open-account")
        page.goto(f"{url['alfa']}/painel")                              # remembered
        expect(card(page, "alfa", acc_alfa).locator(".balance")).to_have_text("R$ ••••")
        page.get_by_role("button", name=t["hide"]).click()
        expect(card(page, "alfa", acc_alfa).locator(".balance")).to_have_text(money("1500.00", lang))

        # The transfer: recipient's CPF -> one of their accounts (none pre-selected) -> amounts
        # (more than available refused before the review) -> review -> confirm -> receipt.
        page.locator(".main-nav").get_by_role("link", name=re.compile("^Transfer")).click()
        check(page, "transfer")
        page.get_by_label(t["key"]).fill(bruno_cpf)
        page.get_by_role("button", name=t["find"]).click()
        candidates = page.locator("#dest-candidates input[type=radio]")
        expect(candidates).to_have_count(1)
        expect(candidates.first).not_to_be_checked()
        expect(page.locator("#dest-candidates")).to_contain_text("Bruno C*** L***")
        expect(page.locator("#dest-candidates")).not_to_contain_text("Carvalho")
        check(page, "transfer-recipient")
        page.get_by_label(re.compile(r"Bruno C\*\*\* L\*\*\*")).check()
        page.get_by_role("button", name=t["continue"]).click()
        page.locator(f'input[name="amount.alfa.{acc_alfa}"]').fill(amount("2000.00", lang))
        page.locator(f'input[name="amount.beta.{acc_beta}"]').fill(amount("20.50", lang))
        expect(page.locator("#transfer-total")).to_have_text(money("2020.50", lang))   # the running total (JS)
        page.get_by_role("button", name=t["review"]).click()
        expect(page.locator(f"#err-amount-alfa-{acc_alfa}")).to_contain_text(t["over_available"])
        page.locator(f'input[name="amount.alfa.{acc_alfa}"]').fill(amount("30.00", lang))
        check(page, "transfer-amounts")
        page.get_by_role("button", name=t["review"]).click()
        expect(page.locator("#review-total")).to_have_text(money("50.50", lang))
        expect(page.locator("#recipient-name")).to_have_text("Bruno C*** L***")
        expect(page.locator("#recipient-document")).to_have_text(mask_document(bruno_cpf))
        expect(page.locator("#review-destination")).to_contain_text("Banco Gama")
        check(page, "transfer-review")
        confirm = page.get_by_role("button", name=t["confirm"])
        confirm.click()
        expect(page.locator("#status-banner")).to_have_text(t["done"])
        expect(page.locator(".receipt-title")).to_have_text(t["receipt"])
        expect(page.locator("#transfer-amount")).to_have_text(money("50.50", lang))
        expect(page.locator("#payee")).to_contain_text("Bruno C*** L***")
        expect(page.locator(".leg-source")).to_have_count(2)
        transfer_id = page.locator("#transfer-id").inner_text()
        check(page, "transfer-done")
        with page.expect_download() as dl:
            page.get_by_role("link", name=t["pdf"]).click()
        pdf_text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(Path(dl.value.path()).read_bytes())).pages)
        assert t["receipt"] in pdf_text and transfer_id in pdf_text and money("50.50", lang) in pdf_text
        assert "Banco Gama" in pdf_text and "Bruno C*** L***" in pdf_text
        assert Decimal(bruno.balance("gama", bruno_acc)) == Decimal("50.50")

        # The same transfer at the receiving bank: its amount and who paid, in Bruno's browser.
        # The statement: grouped by day, the counterparty, the receipt, the export.
        page.goto(f"{url['alfa']}/contas/{acc_alfa}")
        first = page.locator("li.entry").first
        expect(first).to_contain_text(t["sent"])
        expect(first).to_contain_text("Banco Gama")
        expect(first.locator(".amount")).to_have_text("-" + money("30.00", lang))
        expect(page.locator("#balance")).to_have_text(money("1470.00", lang))
        expect(page.locator(".day-title")).to_have_count(1)
        check(page, "statement")
        with page.expect_download() as dl:
            page.get_by_role("link", name=t["csv"]).click()
        lines = Path(dl.value.path()).read_text().splitlines()
        assert lines[1].split(",")[2:6] == ["transfer_out", "-30.00", "1470.00", transfer_id]
        first.locator("a.transfer-link").click()
        expect(page.locator("#transfer-id")).to_have_text(transfer_id)

        # My transfers, filtered by outcome.
        page.goto(f"{url['alfa']}/transferencias")
        expect(page.locator(f'li.transfer-item[data-id="{transfer_id}"]')).to_contain_text(t["done_badge"])
        page.get_by_label(t["outcome"]).select_option("aborted")
        page.get_by_role("button", name=t["filter"]).click()
        expect(page.locator("li.transfer-item")).to_have_count(0)
        check(page, "history")

        # A typed account is verified before anything else: a wrong number is said at once.
        page.goto(f"{url['alfa']}/transferir")
        page.get_by_label(t["bank"], exact=True).select_option("gama")
        page.get_by_label(t["account"], exact=True).fill("99999999-9")
        page.get_by_role("button", name=t["check"]).click()
        expect(page.locator("#err-account")).to_contain_text(t["typed_missing"])
        page.get_by_label(t["account"], exact=True).fill(bruno_acc)
        page.get_by_role("button", name=t["check"]).click()
        expect(page.locator("#recipient-name")).to_have_text("Bruno C*** L***")
        check(page, "transfer-typed-account")

        # A page the bank does not have, and a transfer it does not know.
        page.goto(f"{url['alfa']}/nada")
        check(page, "not-found")
        page.goto(f"{url['alfa']}/transferencias/6b1c8a4e-2f6e-4a55-9d0f-3b4b0d1b9a99")
        check(page, "transfer-elsewhere")

        # Log out: the pages need a login again.
        page.get_by_role("button", name=t["logout"]).click()
        expect(page).to_have_url(re.compile(r"/entrar$"))
        page.goto(f"{url['alfa']}/painel")
        expect(page).to_have_url(re.compile(r"/entrar\?next="))
        assert len(check.pages) >= 16
    finally:
        close(page)


def test_a_bank_that_is_down_does_not_hold_the_transfer_screens(consortium, chromium, new_cpf):
    """With Gama paused (SIGSTOP: its queue is there, nobody answers), the screens that ask
    every bank answer quickly and name the bank that did not answer."""
    url, cluster = consortium["url"], consortium["cluster"]
    cpf = new_cpf()
    ana = Customer(cpf, "Ana Souza", consortium["api"]).join("alfa").join("gama")
    ana.open_account("alfa")
    bruno = Customer(new_cpf(), "Bruno Lima", consortium["api"]).join("alfa")
    bruno.open_account("alfa")
    page = new_page(chromium, "pt-BR", "desktop")
    try:
        page.goto(f"{url['alfa']}/entrar")
        page.get_by_label("CPF", exact=True).fill(cpf)
        page.get_by_label("Senha").fill(PASSWORD)
        page.get_by_role("button", name="Entrar").click()
        expect(page.get_by_role("heading", name="Painel", exact=True)).to_be_visible()
        page.goto(f"{url['alfa']}/transferir")
        page.get_by_label(T["pt-BR"]["key"]).fill(bruno.cpf)
        cluster["gama"].pause()
        try:
            started = time.monotonic()
            page.get_by_role("button", name=T["pt-BR"]["find"]).click()
            expect(page.locator("#dest-candidates")).to_contain_text("Bruno L***")
            page.get_by_label(re.compile(r"Bruno L\*\*\*")).check()
            page.get_by_role("button", name="Continuar").click()
            expect(page.locator('.warn[role="status"]')).to_contain_text(T["pt-BR"]["not_answered"])
            elapsed = time.monotonic() - started
            assert elapsed < 4.0, f"two screens took {elapsed:.1f}s with a bank down"
        finally:
            cluster["gama"].resume()
    finally:
        close(page)


def test_the_sessions_of_banks_on_different_host_names_stay_apart(consortium, chromium, new_cpf):
    """Logged in at alfa.localhost and beta.localhost in one browser: each bank's pages get only
    its own cookie, which holds an opaque id the page's scripts cannot read."""
    url = consortium["url"]
    page = new_page(chromium, "pt-BR", "desktop")
    sent: dict[str, list[str]] = {"alfa": [], "beta": []}

    def record(request):
        for bank in sent:
            if request.url.startswith(url[bank]):
                sent[bank].append(request.headers.get("cookie", ""))
    page.on("request", record)
    try:
        cpf = new_cpf()
        register(page, url["alfa"], cpf, "Ana Souza", "pt-BR")
        register(page, url["beta"], cpf, "Ana Souza", "pt-BR")
        page.goto(f"{url['alfa']}/painel")
        assert page.evaluate("document.cookie") == ""                 # HttpOnly
        page.goto(f"{url['beta']}/painel")
        jar = page.context.cookies()
        by_host = {c["domain"]: c for c in jar}
        assert set(by_host) == {"alfa.localhost", "beta.localhost"}, jar
        assert all(c["httpOnly"] and c["sameSite"] == "Lax" for c in jar)
        assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", c["value"]) for c in jar)
        assert sent["beta"] and all("consorcio_alfa" not in h for h in sent["beta"])
        assert sent["alfa"] and all("consorcio_beta" not in h for h in sent["alfa"])
        alfa_id = by_host["alfa.localhost"]["value"]
        assert cpf not in alfa_id and alfa_id != by_host["beta.localhost"]["value"]
    finally:
        close(page)


def test_markup_is_text_forms_need_their_token_and_keys_suffice(consortium, chromium, new_cpf):
    url = consortium["url"]["alfa"]
    cpf = new_cpf()
    page = new_page(chromium, "pt-BR", "desktop")
    try:
        # A name made of markup is shown as text, and no script runs (close() checks dialogs).
        register(page, url, cpf, XSS, "pt-BR")
        expect(page.locator(".user-name")).to_have_text(XSS)
        number = open_individual_account(page, url, "alfa", "pt-BR")
        expect(card(page, "alfa", number).locator(".holder")).to_have_text(XSS)
        deposit(page, url, "10.00", "pt-BR")

        # A POST with the session cookie but without the form's CSRF token changes nothing.
        forged = page.evaluate("""async ([path, account]) => {
            const r = await fetch(path, {method: "POST", redirect: "manual",
                body: new URLSearchParams({account: account, op: "withdraw", amount: "10"})});
            return [r.status, await r.text()];
        }""", [f"{url}/movimentar", number])
        assert forged[0] == 400
        assert "O formulário expirou" in forged[1]
        page.goto(f"{url}/contas/{number}")
        expect(page.locator("#balance")).to_have_text("R$ 10,00")

        # The language switch, kept across pages.
        page.get_by_role("button", name="EN").click()
        expect(page.get_by_role("heading", name="Statement")).to_be_visible()
        page.goto(f"{url}/painel")
        expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
        expect(card(page, "alfa", number).locator(".balance")).to_have_text("R$ 10.00")
        page.get_by_role("button", name="PT").click()
        expect(page.get_by_role("heading", name="Painel")).to_be_visible()

        # Log out, then back in with the keyboard only: Tab between labelled fields, Enter sends.
        page.get_by_role("button", name="Sair").click()
        expect(page).to_have_url(re.compile(r"/entrar$"))
        page.get_by_label("CPF", exact=True).focus()
        page.keyboard.type(format_cpf(cpf))
        page.keyboard.press("Tab")
        expect(page.get_by_label("Senha")).to_be_focused()
        page.keyboard.type(PASSWORD)
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Painel")).to_be_visible()
    finally:
        close(page)
