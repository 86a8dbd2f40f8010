"""The comprovante as a PDF, drawn with fpdf2: the same facts as the receipt page (payer and
payee masked, banks, accounts, the amount of each leg, the transfer id, date and time in the
consortium's zone, the outcome), for the customer to keep or share."""
from __future__ import annotations

from fpdf import FPDF

from . import formatting as F
from .i18n import translate as _

# fpdf2's built-in Helvetica covers Latin-1 (every letter of Portuguese); other characters are
# written with their closest Latin-1 form.
_REPLACE = {"…": "...", "—": "-", "–": "-", "“": '"', "”": '"', "•": "*", "\u202f": " ", "\u00a0": " "}


def _latin1(text: str) -> str:
    for a, b in _REPLACE.items():
        text = text.replace(a, b)
    return text.encode("latin-1", "replace").decode("latin-1")


def render_pdf(info: dict, bank, lang: str) -> bytes:
    view = info["view"]
    pdf = FPDF(format="A4")
    pdf.set_title(_latin1(_("Transfer receipt")))
    pdf.set_author(_latin1(bank.name))
    pdf.set_creator("Consorcio")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 18)
    pdf.cell(0, 10, _latin1(bank.name), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "B", 14)
    pdf.cell(0, 9, _latin1(_("Transfer receipt")), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    outcome = _("Transfer done.") if view["status"] == "committed" else _("Transfer not done: no money was moved.")
    pdf.set_font("Helvetica", "", 12)
    pdf.multi_cell(0, 7, _latin1(outcome), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, _latin1(F.money(info["amount"], lang)), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)

    def row(label: str, value: str) -> None:
        pdf.set_font("Helvetica", "B", 10)
        pdf.cell(45, 6, _latin1(label))
        pdf.set_font("Helvetica", "", 10)
        pdf.multi_cell(0, 6, _latin1(value), new_x="LMARGIN", new_y="NEXT")

    dest = info["destination"]
    if info["payers"]:
        row(_("Paid by"), ", ".join(info["payers"]))
    if dest:
        who = dest.get("holder") or "-"
        if info.get("payee_document"):
            who += f" ({info['payee_document']})"
        row(_("Paid to"), who)
        row(_("Destination"), f"{dest['bank_obj'].name if dest['bank_obj'] else dest['bank']} · "
                              f"{_('Account')} {F.account_number(dest['account'])}")
    for leg in info["sources"]:
        row(_("From"), f"{leg['bank_obj'].name if leg['bank_obj'] else leg['bank']} · {_('Account')} "
                       f"{F.account_number(leg['account'])} · {F.money(leg['amount'], lang)}"
                       + (f" ({leg['reason_text']})" if leg.get("reason_text") else ""))
    row(_("Started"), F.local_datetime(view.get("created_at"), lang))
    if view.get("decided_at"):
        row(_("Decided"), F.local_datetime(view["decided_at"], lang))
    row(_("Transfer id"), view["id"])
    if info.get("general_reason"):
        row(_("Reason:"), info["general_reason"])
    pdf.ln(4)
    pdf.set_font("Helvetica", "", 8)
    pdf.multi_cell(0, 5, _latin1(_("Times in Brasília time. Issued by %(bank)s, a bank of the consortium.",
                                   bank=bank.name)))
    return bytes(pdf.output())
