"""The web UI in a real browser (Debian's Chromium, driven by Playwright) against real bank
processes and a real RabbitMQ: what a customer does and sees, across three banks.

The screenshots of the main screens are written to docs/screenshots/ (the README shows them).
Every wait is on a condition (Playwright's auto-waiting ``expect``), never a fixed sleep.
"""
from __future__ import annotations

import os
import re
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from tools.api_client import Customer
from bank_node.domain.documents import format_cpf

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
# The README shows these; SCREENSHOTS_DIR sends them elsewhere (a CI artifact folder, say).
SHOTS = Path(os.environ.get("SCREENSHOTS_DIR") or Path(__file__).resolve().parents[2] / "docs" / "screenshots")
PASSWORD = "senha-muito-boa"
XSS = "<script>alert(1)</script>"
COLOURS = {"alfa": "#1f6feb", "beta": "#2da44e", "gama": "#bf3989"}
WAIT_MS = 15_000

if not os.access(CHROMIUM, os.X_OK):
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium): the browser tests need it",
                allow_module_level=True)

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402


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


@pytest.fixture
def page(chromium):
    context = chromium.new_context(locale="pt-BR", viewport={"width": 1000, "height": 720})
    context.set_default_timeout(WAIT_MS)
    expect.set_options(timeout=WAIT_MS)
    pg = context.new_page()
    dialogs: list[str] = []
    errors: list[str] = []
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: m.type == "error" and errors.append(m.text))
    pg.dialogs, pg.js_errors = dialogs, errors
    yield pg
    context.close()
    assert not dialogs, f"a page opened a dialog: {dialogs}"
    assert not errors, f"JavaScript or CSP errors in the pages: {errors}"


def coloured_cluster(make_cluster, banks=("alfa", "beta", "gama")):
    """make_cluster with each bank's colour in its consorcio.yml, so the screens tell them apart."""
    cluster = make_cluster(banks=banks, start=False)
    doc = yaml.safe_load(cluster.config_path.read_text())
    for b in doc["banks"]:
        b["color"] = COLOURS[b["id"]]
    cluster.config_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return cluster.start()


def shot(page: Page, name: str, full_page: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page, animations="disabled", caret="hide")


def register(page: Page, url: str, cpf: str, name: str) -> None:
    page.goto(f"{url}/cadastro")
    page.get_by_label("CPF", exact=True).fill(cpf)
    page.get_by_label("Nome completo").fill(name)
    page.get_by_label("Senha (pelo menos 8 caracteres)").fill(PASSWORD)
    page.get_by_label("Repita a senha").fill(PASSWORD)
    page.get_by_role("button", name="Cadastre-se").click()
    expect(page.get_by_role("heading", name="Painel")).to_be_visible()


def open_individual_account(page: Page, url: str, bank_id: str) -> str:
    page.goto(f"{url}/contas/nova")
    expect(page.get_by_label("Individual")).to_be_checked()
    page.get_by_role("button", name="Abrir a conta").click()
    expect(page.locator(".flash-success")).to_contain_text("aberta")
    card = page.locator(f'li.account-card[data-bank="{bank_id}"]')
    expect(card).to_have_count(1)
    return card.get_attribute("data-number")


def deposit(page: Page, url: str, amount: str) -> None:
    page.goto(f"{url}/movimentar")
    page.get_by_label("Depósito").check()
    page.get_by_label("Valor (R$)").fill(amount)
    page.get_by_role("button", name="Confirmar").click()
    expect(page.locator(".flash-success")).to_contain_text(f"Depósito de R$ {amount} realizado")


def card(page: Page, bank_id: str, number: str):
    return page.locator(f'li.account-card[data-bank="{bank_id}"][data-number="{number}"]')


def test_a_customer_moves_money_across_banks_in_the_browser(make_cluster, new_cpf, page):
    cluster = coloured_cluster(make_cluster)
    url = {b: p.url for b, p in cluster.banks.items()}
    ana_cpf, bruno_cpf = new_cpf(), new_cpf()
    bruno = Customer(bruno_cpf, "Bruno Carvalho Lima", url).join("gama")
    bruno_acc = bruno.open_account("gama")

    # The login screen, in the bank's colours.
    page.goto(f"{url['alfa']}/")
    expect(page).to_have_url(re.compile(r"/entrar$"))
    expect(page.locator(".brand-name")).to_have_text(cluster.doc["banks"][0]["name"])
    shot(page, "login", full_page=False)

    # Register at two banks (each bank has its own customers), open an account and deposit at each.
    register(page, url["alfa"], format_cpf(ana_cpf), "Ana Souza")
    register(page, url["beta"], ana_cpf, "Ana Souza")
    acc_beta = open_individual_account(page, url["beta"], "beta")
    deposit(page, url["beta"], "50,00")
    acc_alfa = open_individual_account(page, url["alfa"], "alfa")
    deposit(page, url["alfa"], "100,00")

    # The dashboard at Alfa shows both banks' accounts, and Gama with none.
    page.goto(f"{url['alfa']}/painel")
    expect(card(page, "alfa", acc_alfa).locator(".balance")).to_have_text("R$ 100,00")
    expect(card(page, "beta", acc_beta).locator(".balance")).to_have_text("R$ 50,00")
    expect(page.locator('section[data-bank="gama"]')).to_contain_text("Nenhuma conta sua")
    expect(page.locator("#grand-total")).to_contain_text("R$ 150,00")
    shot(page, "dashboard")

    # A two-source transfer to Bruno, found by his CPF (his name masked, as PIX does).
    page.get_by_role("link", name="Transferir").first.click()
    page.get_by_label("Buscar as contas de quem recebe pelo CPF").fill(bruno_cpf)
    page.get_by_role("button", name="Buscar").click()
    dest = page.get_by_label(re.compile(r"Bruno C\*\*\* L\*\*\*"))
    expect(dest).to_be_checked()
    expect(page.locator("#dest-candidates")).not_to_contain_text("Carvalho")
    page.locator(f'input[name="amount.alfa.{acc_alfa}"]').fill("30,00")
    page.locator(f'input[name="amount.beta.{acc_beta}"]').fill("20,50")
    expect(page.locator("#transfer-total")).to_have_text("R$ 50,50")   # the running total (JS)
    shot(page, "transfer")
    page.get_by_role("button", name="Revisar a transferência").click()
    expect(page.get_by_role("heading", name="Confira a transferência")).to_be_visible()
    expect(page.locator("#review-total")).to_have_text("R$ 50,50")
    expect(page.locator("#review-destination")).to_contain_text("Bruno C*** L***")
    shot(page, "transfer-review")
    page.get_by_role("button", name="Confirmar transferência").click()
    expect(page.locator("#status-banner")).to_have_text("Transferência realizada.")
    expect(page.locator(".leg-source")).to_have_count(2)
    expect(page.locator('.leg[data-bank="beta"]')).to_contain_text("Banco Beta: R$ 20,50 debitados")
    expect(page.locator('.leg[data-bank="gama"]')).to_contain_text("Banco Gama: R$ 50,50 creditados")
    transfer_id = page.locator("#transfer-id").inner_text()
    shot(page, "transfer-done")

    # The dashboard and both statements changed; the statement links to the transfer.
    page.get_by_role("link", name="Voltar ao painel").click()
    expect(card(page, "alfa", acc_alfa).locator(".balance")).to_have_text("R$ 70,00")
    expect(card(page, "beta", acc_beta).locator(".balance")).to_have_text("R$ 29,50")
    assert Decimal(bruno.balance("gama", bruno_acc)) == Decimal("50.50")
    card(page, "alfa", acc_alfa).get_by_role("link", name="Extrato").click()
    first = page.locator("tr.entry").first
    expect(first).to_contain_text("Transferência enviada")
    expect(first.locator(".amount")).to_have_text("-R$ 30,00")
    expect(page.locator("#balance")).to_have_text("R$ 70,00")
    shot(page, "statement")
    first.locator("a.transfer-link").click()
    expect(page.locator("#transfer-id")).to_have_text(transfer_id)
    page.goto(f"{url['beta']}/contas/{acc_beta}")                 # still logged in at Beta
    expect(page.locator("tr.entry").first.locator(".amount")).to_have_text("-R$ 20,50")
    expect(page.locator("#balance")).to_have_text("R$ 29,50")
    shot(page, "statement-beta")

    # A transfer Beta cannot cover is refused as a whole, and said so in plain words.
    page.goto(f"{url['alfa']}/transferir")
    page.locator(f'input[name="amount.alfa.{acc_alfa}"]').fill("10")
    page.locator(f'input[name="amount.beta.{acc_beta}"]').fill("100,00")
    expect(page.locator("#transfer-total")).to_have_text("R$ 110,00")
    page.get_by_label("Banco", exact=True).select_option("gama")
    page.get_by_label("Número da conta").fill(bruno_acc)
    page.get_by_role("button", name="Revisar a transferência").click()
    expect(page.locator("#review-destination")).to_contain_text("Titular não verificado")
    page.get_by_role("button", name="Confirmar transferência").click()
    expect(page.locator("#status-banner")).to_have_text("Transferência não realizada: nenhum dinheiro foi movimentado.")
    expect(page.locator('.leg[data-bank="beta"]')).to_contain_text("Banco Beta: saldo insuficiente")
    expect(page.locator('.leg[data-bank="alfa"]')).to_contain_text("Banco Alfa: nada foi debitado")
    shot(page, "transfer-refused")
    page.get_by_role("link", name="Voltar ao painel").click()
    expect(card(page, "alfa", acc_alfa).locator(".balance")).to_have_text("R$ 70,00")
    expect(card(page, "alfa", acc_alfa).locator(".available")).to_have_text("R$ 70,00")
    expect(card(page, "beta", acc_beta).locator(".available")).to_have_text("R$ 29,50")

    # At a phone's width nothing overflows sideways.
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    expect(card(page, "beta", acc_beta).locator(".balance")).to_have_text("R$ 29,50")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "dashboard-phone")
    page.set_viewport_size({"width": 1000, "height": 720})

    # Log out: the pages need a login again.
    page.get_by_role("button", name="Sair").click()
    expect(page).to_have_url(re.compile(r"/entrar$"))
    expect(page.locator(".flash-success")).to_have_text("Você saiu.")
    page.goto(f"{url['alfa']}/painel")
    expect(page).to_have_url(re.compile(r"/entrar\?next="))


def test_markup_is_text_forms_need_their_token_and_keys_suffice(make_cluster, new_cpf, page):
    cluster = coloured_cluster(make_cluster, banks=("alfa",))
    url = cluster["alfa"].url
    cpf = new_cpf()

    # A name made of markup is shown as text, and no script runs (the fixture checks dialogs).
    register(page, url, cpf, XSS)
    expect(page.locator(".user-name")).to_have_text(XSS)
    number = open_individual_account(page, url, "alfa")
    expect(card(page, "alfa", number).locator(".holder")).to_have_text(XSS)
    deposit(page, url, "10,00")

    # A POST with the session cookie but without the form's CSRF token changes nothing.
    forged = page.request.post(f"{url}/movimentar", form={"account": number, "op": "withdraw", "amount": "10"},
                               max_redirects=0)
    assert forged.status == 400
    assert "O formulário expirou" in forged.text()
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
