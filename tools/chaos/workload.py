"""The chaos workload: customers with an account in every bank, and concurrent clients that
issue multi-leg transfers, deposits and withdrawals, recording what each was told."""
from __future__ import annotations

import http.client
import random
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field

from bank_node.domain.documents import make_cpf

from ..api_client import Customer


@dataclass
class Op:
    kind: str                 # transfer | deposit | withdrawal
    who: str
    via: str
    amount: int               # cents (for a transfer: the total)
    outcome: str = "unknown"  # committed | aborted | pending | ok | refused | unknown
    transfer_id: str | None = None
    legs: list = field(default_factory=list)   # [(bank, account, cents, direction)]
    account: str | None = None
    key: str | None = None
    resolved: str | None = None  # for a lost reply: what the coordinator says afterwards


class History:
    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.lock = threading.Lock()

    def add(self, op: Op) -> None:
        with self.lock:
            self.ops.append(op)

    def count(self) -> Counter:
        with self.lock:
            return Counter(f"{o.kind}:{o.outcome}" for o in self.ops)


class Workload:
    """``people`` customers, each with one account of 200.00 in every bank."""

    def __init__(self, seed: int, urls: dict[str, str], people: int, distrust: set[str] = frozenset()):
        self.seed = seed
        self.distrust = set(distrust)   # banks nobody consents to (a lying bank)
        self.bank_ids = list(urls)
        self.people = [Customer(make_cpf(f"{300000000 + 7919 * i:09d}"), f"Cliente {i}", urls)
                       for i in range(people)]
        self.accounts: list[tuple[Customer, str, str]] = []
        self.history = History()
        self.initial = 0
        self.stop = threading.Event()

    def setup(self) -> None:
        for p in self.people:
            mine = {}
            for bank in self.bank_ids:
                p.join(bank)
                mine[bank] = n = p.open_account(bank)
                p.deposit(bank, n, "200.00")
                self.initial += 200_00
                self.accounts.append((p, bank, n))
            # each bank may initiate debits from the others' accounts, but the distrusted ones
            for bank, number in mine.items():
                for other in self.bank_ids:
                    if other != bank and other not in self.distrust:
                        p.grant(bank, number, other)

    def person(self, cpf: str) -> Customer:
        return next(q for q in self.people if q.cpf == cpf)

    def client(self, k: int) -> None:
        rng = random.Random(self.seed * 1000 + k)
        while not self.stop.is_set():
            r = rng.random()
            if r < 0.7:
                self.transfer(rng)
            elif r < 0.85:
                self.cash(rng, "deposit")
            else:
                self.cash(rng, "withdrawal")

    def transfer(self, rng: random.Random) -> None:
        p = rng.choice(self.people)
        mine = [(b, n) for q, b, n in self.accounts if q is p]
        sources = rng.sample(mine, rng.choice([1, 1, 2, 3]))
        dest = rng.choice([(b, n) for q, b, n in self.accounts if (b, n) not in sources])
        amounts = [rng.randint(100, 6000) for _ in sources]
        op = Op("transfer", p.cpf, rng.choice(self.bank_ids), sum(amounts), transfer_id=str(uuid.uuid4()),
                legs=[(b, n, a, "debit") for (b, n), a in zip(sources, amounts)]
                + [(dest[0], dest[1], sum(amounts), "credit")])
        try:
            status, body = p.transfer(op.via, [(b, n, f"{a / 100:.2f}") for (b, n), a in zip(sources, amounts)], dest,
                                      transfer_id=op.transfer_id, timeout=15)
            op.outcome = body.get("status", "unknown") if status in (201, 202) else \
                ("refused" if 400 <= status < 500 else "unknown")
        except (OSError, http.client.HTTPException, ValueError):
            op.outcome = "unknown"
        self.history.add(op)

    def cash(self, rng: random.Random, kind: str) -> None:
        p, bank, n = rng.choice(self.accounts)
        cents = rng.randint(100, 5000)
        op = Op(kind, p.cpf, bank, cents, account=n, key=str(uuid.uuid4()))
        try:
            status, body = p.call(bank, "POST", f"/api/accounts/{n}/{kind}s", {"amount": f"{cents / 100:.2f}"},
                                  key=op.key, timeout=15)
            op.outcome = "ok" if status == 201 else ("refused" if 400 <= status < 500 else "unknown")
        except (OSError, http.client.HTTPException, ValueError):
            op.outcome = "unknown"
        self.history.add(op)
