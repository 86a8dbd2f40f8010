"""A statement as the files customers take to a spreadsheet (CSV) or to a personal-finance app
(OFX 1.02, the format Brazilian banks exchange). Written from the same entries the API and the
web UI show, by both of them; nothing here reads the ledger.

Amounts keep the contract's form (``-30.00``: a dot, two decimals), which every spreadsheet and
OFX reader understands whatever the customer's language; instants are in the consortium's zone.
"""
from __future__ import annotations

import csv
import hashlib
import io
from datetime import datetime, timezone

from ..domain.calendar import CONSORTIUM_TZ

CSV_COLUMNS = ("date", "time", "kind", "amount", "balance_after", "transfer_id", "counterparty",
               "counterparty_bank", "counterparty_account")
KIND_MEMO = {"deposit": "Deposito", "withdrawal": "Saque", "transfer_in": "Transferencia recebida",
             "transfer_out": "Transferencia enviada"}


def _local(at: str) -> datetime:
    return datetime.fromisoformat(at.replace("Z", "+00:00")).astimezone(CONSORTIUM_TZ)


def to_csv(entries: list[dict]) -> str:
    """One line per entry, newest first (as the statement), with a header line."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for e in entries:
        at = _local(e["at"])
        party = e.get("counterparty") or {}
        w.writerow([at.strftime("%Y-%m-%d"), at.strftime("%H:%M:%S"), e["kind"], e["amount"], e["balance_after"],
                    e.get("transfer_id", ""), party.get("name") or party.get("document") or "",
                    party.get("bank", ""), party.get("account", "")])
    return out.getvalue()


def _ofx_time(at: datetime) -> str:
    offset = int(at.utcoffset().total_seconds() // 3600)
    return at.strftime("%Y%m%d%H%M%S") + f"[{offset}:BRT]"


def _sgml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fitid(bank: str, number: str, e: dict) -> str:
    """A stable id per entry (OFX readers use it to skip entries imported before)."""
    raw = f"{bank}|{number}|{e['at']}|{e['kind']}|{e['amount']}|{e['balance_after']}|{e.get('transfer_id', '')}"
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def to_ofx(bank: str, account: dict, entries: list[dict], now: datetime | None = None) -> str:
    """OFX 1.02 (SGML): a checking account's statement with its ledger balance."""
    now = (now or datetime.now(timezone.utc)).astimezone(CONSORTIUM_TZ)
    times = [_local(e["at"]) for e in entries]
    start, end = (min(times), max(times)) if times else (now, now)
    lines = ["OFXHEADER:100", "DATA:OFXSGML", "VERSION:102", "SECURITY:NONE", "ENCODING:UTF-8", "CHARSET:NONE",
             "COMPRESSION:NONE", "OLDFILEUID:NONE", "NEWFILEUID:NONE", "",
             "<OFX>", "<SIGNONMSGSRSV1><SONRS>", "<STATUS><CODE>0<SEVERITY>INFO</STATUS>",
             f"<DTSERVER>{_ofx_time(now)}", "<LANGUAGE>POR", "</SONRS></SIGNONMSGSRSV1>",
             "<BANKMSGSRSV1><STMTTRNRS>", "<TRNUID>1", "<STATUS><CODE>0<SEVERITY>INFO</STATUS>",
             "<STMTRS>", "<CURDEF>BRL",
             f"<BANKACCTFROM><BANKID>{_sgml(bank)}<ACCTID>{_sgml(account['number'])}<ACCTTYPE>CHECKING</BANKACCTFROM>",
             "<BANKTRANLIST>", f"<DTSTART>{_ofx_time(start)}", f"<DTEND>{_ofx_time(end)}"]
    for e, at in zip(entries, times):
        party = e.get("counterparty") or {}
        memo = KIND_MEMO.get(e["kind"], e["kind"])
        who = party.get("name") or party.get("document")
        lines += ["<STMTTRN>", f"<TRNTYPE>{'DEBIT' if e['amount'].startswith('-') else 'CREDIT'}",
                  f"<DTPOSTED>{_ofx_time(at)}", f"<TRNAMT>{e['amount']}",
                  f"<FITID>{fitid(bank, account['number'], e)}"]
        if who:
            lines.append(f"<NAME>{_sgml(who[:32])}")
        lines += [f"<MEMO>{_sgml(memo + (' ' + e['transfer_id'] if e.get('transfer_id') else ''))}", "</STMTTRN>"]
    lines += ["</BANKTRANLIST>",
              f"<LEDGERBAL><BALAMT>{account['balance']}<DTASOF>{_ofx_time(now)}</LEDGERBAL>",
              f"<AVAILBAL><BALAMT>{account['available']}<DTASOF>{_ofx_time(now)}</AVAILBAL>",
              "</STMTRS>", "</STMTTRNRS></BANKMSGSRSV1>", "</OFX>", ""]
    return "\n".join(lines)
