"""Password rules for registration: length, not a well-known password, not the CPF.

Argon2id makes each guess expensive, and login throttling makes guesses few; these rules
keep the first few guesses (the most common passwords, the customer's own CPF) from being
the right ones. The list is short on purpose: the passwords that top every leaked-password
ranking, in English and in Brazilian Portuguese, from 8 characters up (shorter ones are
refused by length already).
"""
from __future__ import annotations

import re

from .errors import InvalidInput

MIN_LENGTH = 8
MAX_LENGTH = 256

COMMON_PASSWORDS = frozenset("""
12345678 123456789 1234567890 0123456789 12341234 123123123 11223344 12344321 87654321
98765432 987654321 9876543210 11111111 00000000 22222222 55555555 66666666 88888888 99999999
147258369 123456abc 123456a@ abc12345 abcd1234 abcdefgh a1b2c3d4 1q2w3e4r 1q2w3e4r5t
1q2w3e4r5t6y q1w2e3r4 q1w2e3r4t5 1qaz2wsx zaq12wsx qwertyui qwertyuiop qwerty12 qwerty123
qwe12345 asdfghjk asdfghjkl zxcvbnm1 zxcvbnm123 password password1 password12 password123
passw0rd p@ssw0rd p@ssword iloveyou iloveyou1 sunshine princess football baseball welcome1
welcome123 admin123 administrator letmein1 trustno1 monkey12 dragon12 master12 superman
batman12 starwars whatever computer internet michelle jennifer charlie1 liverpool chelsea1
changeme changeme1 senha123 senha1234 senha12345 senha123456 minhasenha mudar123 123mudar
mudar1234 brasil123 brasil2014 flamengo flamengo1 corinthians palmeiras saopaulo vasco123
gremio123 botafogo cruzeiro fluminense santos123 internacional jesus123 deusefiel deus1234
teamo123 amor1234 meuamor1 gabriel1 mariana1 beatriz1 juliana1 fernanda rafael12 lucas123
consorcio consorcio1 banco123 bancoalfa
""".split())

_SEPARATORS = re.compile(r"[.\-/\s]")


def check_password(password: object, cpf: str | None = None) -> None:
    """Raise InvalidInput (code ``weak_password``, ``common_password`` or
    ``password_contains_cpf``) saying what is wrong with ``password``; return if it is fine."""
    if not isinstance(password, str):
        raise InvalidInput("password must be a string")
    if len(password) < MIN_LENGTH:
        raise InvalidInput(f"password must have at least {MIN_LENGTH} characters", code="weak_password")
    if len(password) > MAX_LENGTH:
        raise InvalidInput(f"password must have at most {MAX_LENGTH} characters", code="weak_password")
    try:
        password.encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate such as "\ud800", legal in JSON
        raise InvalidInput("password contains characters that are not valid text") from e
    if password.lower() in COMMON_PASSWORDS or len(set(password)) == 1:
        raise InvalidInput("this password is one of the most common ones and would be guessed first: "
                           "choose another", code="common_password")
    if cpf and cpf in _SEPARATORS.sub("", password):
        raise InvalidInput("the password must not contain your CPF", code="password_contains_cpf")
