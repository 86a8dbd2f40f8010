"""Double entry between banks: bilateral positions and net debit caps.

Every leg of a transfer also posts against a settlement account of the counterparty bank. When
the credit bank C credits its customer with money that a debit bank D took from its own
customer, D now owes C that amount: C posts ``+amount`` against D (a claim on D), and D posts
``-amount`` against C (a debt to C). So each bank's books balance::

    sum(customer balances) == deposits - withdrawals + sum(positions)

and each pair of banks agrees on what one owes the other (``position_C[D] == -position_D[C]``),
which ``tools.ops audit`` reconciles pair by pair and ``tools.ops positions`` reports.

A credit is money a bank gives its customer on a peer's word. Each bank therefore sets a **net
debit cap** per peer (as in Mojaloop): a credit that would push that peer's debt (its position
plus the claims of transfers still pending) past the cap is voted NO (``peer_cap_exceeded``).
What a dishonest bank can take — a lying YES vote, a credit-only PREPARE with an invented debit
at itself — is then bounded by the caps and written in everyone's books as its own debt.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable

from .transfer import Leg


def postings(legs: Iterable[Leg], bank_id: str) -> dict[str, int]:
    """What ``bank_id`` posts against each peer when the transfer commits: positive, a claim on
    the peer (we credited our customer with money the peer holds); negative, a debt to it."""
    legs = list(legs)
    credit = next(leg for leg in legs if not leg.is_debit)
    out: dict[str, int] = defaultdict(int)
    for leg in legs:
        if not leg.is_debit or leg.bank == credit.bank:
            continue
        if credit.bank == bank_id:
            out[leg.bank] += leg.amount
        elif leg.bank == bank_id:
            out[credit.bank] -= leg.amount
    return {peer: amount for peer, amount in out.items() if amount}


def claims(legs: Iterable[Leg], bank_id: str) -> dict[str, int]:
    """The claims on peers that a pending transfer would create here (the positive postings):
    what counts against each peer's cap while the transfer is in doubt."""
    return {peer: amount for peer, amount in postings(legs, bank_id).items() if amount > 0}


def cap_refusals(new_claims: dict[str, int], exposure: dict[str, int], caps: dict[str, int]) -> list[str]:
    """The peers whose debt to us would pass our cap on them if these claims were added.
    ``exposure`` is each peer's current position plus its pending claims."""
    return sorted(peer for peer, amount in new_claims.items()
                  if exposure.get(peer, 0) + amount > caps.get(peer, 0))
