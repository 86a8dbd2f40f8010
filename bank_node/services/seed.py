"""A bank's ledger filled with many customers and accounts at once: the seed of a load test.

Every seeded customer has the same password, hashed once. Argon2 at the bank's settings costs
tens of milliseconds a hash by design, so a million of them would take hours; one hash shared by
a million customers means that whoever knows the seed's password can log in as any of them. A
seed is for load tests, never for a bank with real customers: it fills only an empty ledger (no
customer, no account) and refuses any other, which also makes a second run into the same ledger
a refusal rather than a duplicate (an interrupted seed leaves a partly filled ledger: delete it
and seed again).

Seeded customer ``i`` (from 0) has the CPF made of the nine digits ``900000000 + i`` and its
check digits, so a load test knows whom to log in as; account numbers are random and distinct,
as the bank's own are. Rows go to the storage port in chunks of ``CHUNK`` customers, each chunk
one transaction of bulk inserts (``Tx.seed_accounts``).
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from ..domain import errors as E
from ..domain.documents import make_cpf
from ..domain.money import format_cents, parse_amount
from ..domain.passwords import check_password
from ..storage.port import SeededAccount
from .banking import Banking, account_number

FIRST_CPF = 900_000_000
"""The nine leading digits of seeded customer 0's CPF; customer i has FIRST_CPF + i."""
MAX_ACCOUNTS = 10_000_000
CHUNK = 50_000

_FIRST = ("Ana", "Bruno", "Carla", "Daniel", "Eduarda", "Felipe", "Gabriela", "Heitor", "Isabela", "João",
          "Larissa", "Marcos", "Natália", "Otávio", "Paula", "Rafael", "Sofia", "Thiago", "Vitória", "Yuri")
_LAST = ("Almeida", "Barbosa", "Cardoso", "Dias", "Esteves", "Ferreira", "Gomes", "Lima", "Martins",
         "Nascimento", "Oliveira", "Pereira", "Ribeiro", "Santos", "Teixeira", "Vieira")


def seeded_cpf(i: int) -> str:
    """The CPF of seeded customer ``i``."""
    return make_cpf(f"{FIRST_CPF + i:09d}")


def _name(i: int) -> str:
    return f"{_FIRST[i % len(_FIRST)]} {_LAST[i // len(_FIRST) % len(_LAST)]} {_LAST[i % len(_LAST)]}"


@dataclass(frozen=True)
class Seeded:
    accounts: int
    seconds: float
    opening_balance: str


def check_count(accounts: object) -> int:
    if not isinstance(accounts, int) or isinstance(accounts, bool) or not 1 <= accounts <= MAX_ACCOUNTS:
        raise E.InvalidInput(f"the number of accounts must be a whole number from 1 to {MAX_ACCOUNTS:,}")
    return accounts


def _chunks(count: int, rng: random.Random, size: int) -> Iterator[list[SeededAccount]]:
    numbers = rng.sample(range(10 ** 8), count)
    for start in range(0, count, size):
        yield [SeededAccount(seeded_cpf(i), _name(i), account_number(numbers[i]))
               for i in range(start, min(count, start + size))]


def seed(banking: Banking, accounts: int, password: str, opening_balance: str | None = None,
         progress: Callable[[int, int], None] = lambda done, total: None, *, chunk: int = CHUNK,
         rng: random.Random | None = None) -> Seeded:
    """Fill ``banking``'s empty ledger with ``accounts`` customers, each with an individual
    account holding ``opening_balance`` (one deposit; None: empty). ``progress(done, total)`` after each
    chunk. InvalidInput for bad arguments, Conflict for a ledger that is not empty."""
    accounts = check_count(accounts)
    check_password(password)
    balance = 0 if opening_balance is None else \
        parse_amount(opening_balance, limit_cents=banking.limit_cents, field="the opening balance")
    if balance > banking.daily_limit_cents:
        raise E.InvalidInput(f"an opening balance above the daily deposit limit "
                             f"({format_cents(banking.daily_limit_cents)}) is more than any customer could deposit")
    store = banking.store
    with store.transaction(write=False) as tx:
        if not tx.is_empty():
            raise E.Conflict("this ledger already holds customers or accounts: a seed fills only an empty ledger "
                             "(delete it, or seed another data folder)", code="ledger_not_empty")
    password_hash = banking.hasher.hash(password)
    t0 = time.monotonic()
    done = 0
    for rows in _chunks(accounts, rng or random.Random(), chunk):
        now = banking.clock()
        with store.transaction() as tx:
            if done == 0 and not tx.is_empty():   # another seed got here first
                raise E.Conflict("this ledger was filled while the seed started", code="ledger_not_empty")
            tx.seed_accounts(rows, password_hash, balance, now, banking.day(now))
        done += len(rows)
        progress(done, accounts)
    return Seeded(accounts, time.monotonic() - t0, format_cents(balance))
