"""Money crosses the API only as a string with at most two decimals.

Inside it is integer cents; a float, a JSON number, NaN or an exponent never becomes money.
"""
from __future__ import annotations

import pytest

from bank_node.domain.errors import InvalidAmount, InvalidInput
from bank_node.domain.money import format_cents, parse_amount

LIMIT = 100_000_00  # 100000.00, the default per-operation limit


@pytest.mark.parametrize("text, cents", [
    ("0.01", 1),
    ("1", 100),
    ("1.5", 150),
    ("1.50", 150),
    ("1234.56", 123456),
    ("007.00", 700),
    ("100000.00", LIMIT),          # exactly the limit is allowed
    (" 10.00 ", 1000),             # surrounding blanks are forgiven
])
def test_valid_amounts_become_exact_cents(text, cents):
    assert parse_amount(text, limit_cents=LIMIT) == cents


@pytest.mark.parametrize("value, why", [
    ("-1.00", "negative"),
    ("-0.01", "negative"),
    ("0", "zero"),
    ("0.00", "zero"),
    ("0.001", "three decimals"),
    ("1.001", "three decimals"),
    ("10.999", "three decimals"),
    ("NaN", "not a number"),
    ("nan", "not a number"),
    ("sNaN", "not a number"),
    ("Infinity", "infinite"),
    ("-Infinity", "infinite"),
    ("inf", "infinite"),
    ("1e3", "exponent"),
    ("1E3", "exponent"),
    ("1.0e2", "exponent"),
    ("100000.01", "over the limit"),
    ("999999999999999.99", "over the limit"),
    ("", "empty"),
    ("   ", "blank"),
    (".50", "no integer part"),
    ("10.", "dangling point"),
    ("1,50", "decimal comma"),
    ("1.000,50", "thousands separator"),
    ("+10.00", "sign"),
    ("10.00 BRL", "currency"),
    ("R$ 10,00", "currency"),
    ("0x10", "hex"),
    ("1_000", "underscore"),
    ("１０.００", "full-width digits"),
    ("١٠", "Arabic-Indic digits"),
    ("10.0\u0660", "non-ASCII digit in the decimals"),
    ("\ud800", "lone surrogate"),
])
def test_invalid_amount_strings_are_refused(value, why):
    with pytest.raises(InvalidAmount):
        parse_amount(value, limit_cents=LIMIT)


@pytest.mark.parametrize("value", [10, 10.5, 0.1, 1e3, float("nan"), float("inf"), True, False, None,
                                   [], {}, ["10.00"], {"amount": "10.00"}, b"10.00"])
def test_json_numbers_bools_null_and_containers_are_refused(value):
    with pytest.raises(InvalidAmount) as exc:
        parse_amount(value, limit_cents=LIMIT)
    assert "string" in exc.value.detail


def test_error_is_a_422_with_the_stable_code_and_names_the_field():
    with pytest.raises(InvalidAmount) as exc:
        parse_amount("-5", limit_cents=LIMIT, field="sources[1].amount")
    assert isinstance(exc.value, InvalidInput)
    assert (exc.value.status, exc.value.code) == (422, "invalid_amount")
    assert "sources[1].amount" in exc.value.detail


def test_over_limit_message_names_the_limit():
    with pytest.raises(InvalidAmount) as exc:
        parse_amount("100000.01", limit_cents=LIMIT)
    assert "100000.00" in exc.value.detail


def test_no_limit_when_none_is_given():
    assert parse_amount("9999999999999.99") == 999999999999999


@pytest.mark.parametrize("cents, text", [
    (0, "0.00"), (1, "0.01"), (10, "0.10"), (100, "1.00"), (123456, "1234.56"),
    (-1, "-0.01"), (-3000, "-30.00"), (-123456, "-1234.56"), (10**15, "10000000000000.00"),
])
def test_format_cents(cents, text):
    assert format_cents(cents) == text


@pytest.mark.parametrize("cents", [1, 99, 100, 101, 123456, LIMIT])
def test_format_then_parse_round_trips(cents):
    assert parse_amount(format_cents(cents), limit_cents=LIMIT) == cents
