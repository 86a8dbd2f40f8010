"""CPF and CNPJ: check digits validated, punctuation optional, stored as digits."""
from __future__ import annotations

import pytest

from bank_node.domain.documents import (format_cnpj, format_cpf, is_valid_cpf, make_cnpj, make_cpf, mask_name,
                                        normalize_cnpj, normalize_cpf)
from bank_node.domain.errors import InvalidDocument

# Published examples, valid by the Receita Federal's algorithm (not computed by the code under test).
CPFS = ["52998224725", "11144477735", "39053344705"]
CNPJS = ["11222333000181", "11444777000161", "04252011000110"]


@pytest.mark.parametrize("digits", CPFS)
def test_valid_cpf_with_and_without_punctuation(digits):
    punctuated = f"{digits[:3]}.{digits[3:6]}.{digits[6:9]}-{digits[9:]}"
    assert normalize_cpf(digits) == digits
    assert normalize_cpf(punctuated) == digits
    assert normalize_cpf(f"  {punctuated} ") == digits
    assert is_valid_cpf(punctuated)


@pytest.mark.parametrize("digits", CNPJS)
def test_valid_cnpj_with_and_without_punctuation(digits):
    punctuated = f"{digits[:2]}.{digits[2:5]}.{digits[5:8]}/{digits[8:12]}-{digits[12:]}"
    assert normalize_cnpj(digits) == digits
    assert normalize_cnpj(punctuated) == digits


@pytest.mark.parametrize("value, why", [
    ("52998224724", "second check digit wrong"),
    ("52998224715", "first check digit wrong"),
    ("52998224752", "check digits swapped"),
    ("529.982.247-26", "punctuated, wrong digit"),
    ("12345678900", "made up"),
    *[(str(d) * 11, "all the same digit") for d in range(10)],
    ("5299822472", "ten digits"),
    ("529982247250", "twelve digits"),
    ("", "empty"),
    ("529.982.247-2x", "a letter"),
    ("52998224725a", "a trailing letter"),
    ("５２９９８２２４７２５", "full-width digits"),
    ("٥٢٩٩٨٢٢٤٧٢٥", "Arabic-Indic digits"),
    ("5299822472\u0665", "one non-ASCII digit"),
    ("529+982+247+25", "other punctuation"),
    ("11222333000181", "a CNPJ is not a CPF"),
])
def test_invalid_cpf_is_refused(value, why):
    with pytest.raises(InvalidDocument):
        normalize_cpf(value)
    assert not is_valid_cpf(value)


@pytest.mark.parametrize("value", [52998224725, None, 5.2, True, ["52998224725"], {"cpf": "52998224725"}])
def test_cpf_must_be_a_string(value):
    with pytest.raises(InvalidDocument):
        normalize_cpf(value)
    assert not is_valid_cpf(value)


@pytest.mark.parametrize("value, why", [
    ("11222333000180", "second check digit wrong"),
    ("11222333000191", "first check digit wrong"),
    ("11.222.333/0001-82", "punctuated, wrong digit"),
    *[(str(d) * 14, "all the same digit") for d in range(10)],
    ("1122233300018", "thirteen digits"),
    ("112223330001811", "fifteen digits"),
    ("52998224725", "a CPF is not a CNPJ"),
    ("１１２２２３３３０００１８１", "full-width digits"),
    ("11222333000l81", "letter l for one"),
    ("", "empty"),
])
def test_invalid_cnpj_is_refused(value, why):
    with pytest.raises(InvalidDocument):
        normalize_cnpj(value)


@pytest.mark.parametrize("value", [11222333000181, None, [], 1.5])
def test_cnpj_must_be_a_string(value):
    with pytest.raises(InvalidDocument):
        normalize_cnpj(value)


def test_invalid_document_is_a_422_with_a_stable_code():
    with pytest.raises(InvalidDocument) as exc:
        normalize_cpf("12345678900")
    assert (exc.value.status, exc.value.code) == (422, "invalid_document")
    assert "CPF" in exc.value.detail


def test_generators_make_documents_the_validator_accepts():
    for base in ("000000001", "123456789", "987654321", "529982247"):
        assert normalize_cpf(make_cpf(base)) == make_cpf(base)
    assert make_cpf("529982247") == "52998224725"
    assert make_cnpj("112223330001") == "11222333000181"


def test_format_puts_the_punctuation_back():
    assert format_cpf("52998224725") == "529.982.247-25"
    assert format_cnpj("11222333000181") == "11.222.333/0001-81"


@pytest.mark.parametrize("name, masked", [
    ("Maria da Silva Souza", "Maria S*** S***"),
    ("Ana Souza", "Ana S***"),
    ("ana souza", "ana S***"),
    ("  Ana   Souza  ", "Ana S***"),
    ("Ana", "Ana"),
    ("José de Oliveira", "José O***"),
    ("", "***"),
    ("   ", "***"),
])
def test_mask_name_shows_the_first_name_and_initials_only(name, masked):
    assert mask_name(name) == masked


def test_mask_name_never_shows_a_surname():
    masked = mask_name("Maria da Silva Souza")
    assert "Silva" not in masked and "Souza" not in masked
