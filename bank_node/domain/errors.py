"""Domain errors: each carries a stable ``code`` that the API turns into problem+json.

The codes are part of the contract and also travel between banks as
data inside votes, so they never change meaning.
"""
from __future__ import annotations


class DomainError(Exception):
    code = "domain_error"
    status = 400
    title = "Request refused"

    def __init__(self, detail: str, *, code: str | None = None, status: int | None = None, **extra):
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.extra = extra


class InvalidInput(DomainError):
    code = "invalid_input"
    status = 422
    title = "Invalid input"


class InvalidAmount(InvalidInput):
    code = "invalid_amount"
    title = "Invalid amount"


class InvalidDocument(InvalidInput):
    code = "invalid_document"
    title = "Invalid CPF or CNPJ"


class NotFound(DomainError):
    code = "not_found"
    status = 404
    title = "Not found"


class Forbidden(DomainError):
    code = "forbidden"
    status = 403
    title = "Forbidden"


class Unauthorized(DomainError):
    code = "unauthorized"
    status = 401
    title = "Authentication required"


class Conflict(DomainError):
    code = "conflict"
    status = 409
    title = "Conflict"


class InsufficientFunds(Conflict):
    code = "insufficient_funds"
    title = "Insufficient funds"


class AlreadyExists(Conflict):
    code = "already_exists"
    title = "Already exists"


class IdempotencyMismatch(Conflict):
    code = "idempotency_key_reused"
    title = "Idempotency key reused with another request"


class AccountClosed(Conflict):
    code = "account_closed"
    title = "Account closed"


class AccountPending(Conflict):
    """A holder named by the account's opener has not accepted it yet: nothing moves."""
    code = "account_pending"
    title = "Account pending"


class BankUnreachable(DomainError):
    code = "bank_unreachable"
    status = 503
    title = "Bank unreachable"


class DailyLimitExceeded(Conflict):
    """The account's allowance for the day would be exceeded; it depends on what was already
    moved today, hence a 409 (like insufficient funds) and not a 422."""
    code = "daily_limit_exceeded"
    title = "Daily limit exceeded"


class TooManyAttempts(DomainError):
    """Too many failed logins (or registrations) in a short time: try again after
    ``retry_after`` seconds, which the API sends as the Retry-After header."""
    code = "too_many_attempts"
    status = 429
    title = "Too many attempts"

    def __init__(self, detail: str, *, retry_after: int, **kw):
        super().__init__(detail, retry_after=retry_after, **kw)
        self.retry_after = retry_after
