"""A small client of the public REST API, on the standard library.

Used by the tests, the chaos workload and the operator tools; it speaks only the public API.
"""
from __future__ import annotations

import uuid

from .http import http_json


class ApiError(Exception):
    def __init__(self, status: int, body: dict):
        super().__init__(f"{status} {body.get('code')}: {body.get('detail')}")
        self.status, self.body = status, body


class Customer:
    """One person (a CPF) with a session at each bank they use."""

    def __init__(self, cpf: str, name: str, urls: dict[str, str], password: str = "senha-muito-boa"):
        self.cpf, self.name, self.urls, self.password = cpf, name, urls, password
        self.tokens: dict[str, str] = {}

    def call(self, bank: str, method: str, path: str, body: dict | None = None, *, expect: int | None = None,
             key: str | None = None, timeout: float = 30) -> tuple[int, dict]:
        headers = {"Idempotency-Key": key} if key else None
        status, data = http_json(method, self.urls[bank] + path, body, self.tokens.get(bank), headers, timeout)
        if expect is not None and status != expect:
            raise ApiError(status, data)
        return status, data

    def join(self, bank: str) -> "Customer":
        status, body = http_json("POST", self.urls[bank] + "/api/customers",
                                 {"cpf": self.cpf, "name": self.name, "password": self.password})
        if status not in (201, 409):
            raise ApiError(status, body)
        return self.login(bank)

    def login(self, bank: str) -> "Customer":
        status, body = http_json("POST", self.urls[bank] + "/api/sessions", {"cpf": self.cpf, "password": self.password})
        if status != 201:
            raise ApiError(status, body)
        self.tokens[bank] = body["token"]
        return self

    def open_account(self, bank: str, kind: str = "individual", holders: list[str] | None = None, **extra) -> str:
        _, body = self.call(bank, "POST", "/api/accounts",
                            {"kind": kind, "holders": holders or [self.cpf], **extra}, expect=201)
        return body["number"]

    def grant(self, bank: str, number: str, to_bank: str, **limits) -> dict:
        """Consent, at ``bank`` (the account's own), for ``to_bank`` to initiate debits from it."""
        return self.call(bank, "POST", "/api/mandates", {"account": number, "bank": to_bank, **limits},
                         expect=201)[1]

    def grant_everywhere(self, accounts: dict[str, str]) -> None:
        """Every account of ``accounts`` (bank -> number) may be debited by every other bank."""
        for bank, number in accounts.items():
            for other in self.urls:
                if other != bank:
                    self.grant(bank, number, other)

    def deposit(self, bank: str, number: str, amount: str, key: str | None = None) -> dict:
        return self.call(bank, "POST", f"/api/accounts/{number}/deposits", {"amount": amount}, expect=201, key=key)[1]

    def withdraw(self, bank: str, number: str, amount: str, key: str | None = None) -> tuple[int, dict]:
        return self.call(bank, "POST", f"/api/accounts/{number}/withdrawals", {"amount": amount}, key=key)

    def account(self, bank: str, number: str) -> dict:
        return self.call(bank, "GET", f"/api/accounts/{number}", expect=200)[1]

    def balance(self, bank: str, number: str) -> str:
        return self.account(bank, number)["balance"]

    def transfer(self, via: str, sources: list[tuple[str, str, str]], destination: tuple[str, str],
                 transfer_id: str | None = None, timeout: float = 60) -> tuple[int, dict]:
        body = {"id": transfer_id or str(uuid.uuid4()),
                "sources": [{"bank": b, "account": a, "amount": m} for b, a, m in sources],
                "destination": {"bank": destination[0], "account": destination[1]}}
        return self.call(via, "POST", "/api/transfers", body, timeout=timeout)
