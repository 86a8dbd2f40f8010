"""CPF and CNPJ: accepted with or without punctuation, validated by their check digits,
stored as digits only."""
from __future__ import annotations

import re
from operator import mul

from .errors import InvalidDocument

_PUNCT = re.compile(r"[.\-/\s]")


def _digits(value: object, size: int, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidDocument(f"{what} must be a string of {size} digits")
    d = _PUNCT.sub("", value)
    if not d.isascii() or not d.isdigit() or len(d) != size:
        raise InvalidDocument(f"{what} must have {size} digits (punctuation is optional)")
    if d == d[0] * size:
        raise InvalidDocument(f"{what} {value!r} is not valid")
    return d


def _check_digit(digits: str, weights: list[int]) -> int:
    # the digits' code points minus 48 ("0"): twice as fast as int() per digit, which counts
    # when a seed makes a million CPFs
    r = (sum(map(mul, digits.encode("ascii"), weights)) - 48 * sum(weights[:len(digits)])) % 11
    return 0 if r < 2 else 11 - r


def normalize_cpf(value: object) -> str:
    d = _digits(value, 11, "CPF")
    if _check_digit(d[:9], list(range(10, 1, -1))) != int(d[9]) or \
            _check_digit(d[:10], list(range(11, 1, -1))) != int(d[10]):
        raise InvalidDocument("CPF check digits do not match: please check the number")
    return d


_CNPJ_W1 = [5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]
_CNPJ_W2 = [6] + _CNPJ_W1


def normalize_cnpj(value: object) -> str:
    d = _digits(value, 14, "CNPJ")
    if _check_digit(d[:12], _CNPJ_W1) != int(d[12]) or _check_digit(d[:13], _CNPJ_W2) != int(d[13]):
        raise InvalidDocument("CNPJ check digits do not match: please check the number")
    return d


def is_valid_cpf(value: object) -> bool:
    try:
        normalize_cpf(value)
        return True
    except InvalidDocument:
        return False


def format_cpf(d: str) -> str:
    return f"{d[:3]}.{d[3:6]}.{d[6:9]}-{d[9:]}"


def format_cnpj(d: str) -> str:
    return f"{d[:2]}.{d[2:5]}.{d[5:8]}/{d[8:12]}-{d[12:]}"


def make_cpf(base9: str) -> str:
    """A valid CPF from nine digits (used by tests, the workload and the demo data)."""
    d = base9
    d += str(_check_digit(d, list(range(10, 1, -1))))
    d += str(_check_digit(d, list(range(11, 1, -1))))
    return d


def make_cnpj(base12: str) -> str:
    d = base12
    d += str(_check_digit(d, _CNPJ_W1))
    d += str(_check_digit(d, _CNPJ_W2))
    return d


def mask_name(name: str) -> str:
    """"Maria da Silva Souza" -> "Maria S*** S***": enough to recognise a payee, as PIX does."""
    parts = [p for p in name.split() if p]
    if not parts:
        return "***"
    first = parts[0]
    rest = [p[0].upper() + "***" for p in parts[1:] if len(p) > 2]
    return " ".join([first] + rest)


def normalize_key(value: object) -> str:
    """A transfer's recipient key: a CPF (11 digits) or a CNPJ (14), with or without
    punctuation; anything else is InvalidDocument."""
    digits = _PUNCT.sub("", value) if isinstance(value, str) else ""
    return normalize_cnpj(value) if len(digits) == 14 else normalize_cpf(value)


def mask_document(doc: object) -> str:
    """A third party's CPF as Brazilian banks show it, ``***.982.247-**`` (the middle six
    digits); a CNPJ in full, a company's number being public."""
    d = _PUNCT.sub("", doc) if isinstance(doc, str) else ""
    if len(d) == 11 and d.isdigit():
        return f"***.{d[3:6]}.{d[6:9]}-**"
    if len(d) == 14 and d.isdigit():
        return format_cnpj(d)
    return ""
