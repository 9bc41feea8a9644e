"""Ticket codes: a misheard code must fail its check, never pass as someone else's."""

from __future__ import annotations

import itertools
import random

import pytest

from hotline.tickets.codes import (
    CODE_LENGTH,
    CodeGenerationError,
    check_digit,
    clean_code,
    format_code,
    is_valid,
    make_code,
    new_code,
)

DIGITS = "0123456789"


def single_digit_errors(code: str) -> list[str]:
    return [code[:i] + d + code[i + 1 :] for i in range(len(code)) for d in DIGITS if d != code[i]]


def adjacent_transpositions(code: str) -> list[str]:
    return [
        code[:i] + code[i + 1] + code[i] + code[i + 2 :]
        for i in range(len(code) - 1)
        if code[i] != code[i + 1]
    ]


def test_damm_reference_value() -> None:
    # The worked example of the Damm algorithm: 572 -> check digit 4.
    assert check_digit("572") == "4"
    assert is_valid("5724") is False  # right check, wrong length for a ticket code
    assert make_code("572") == "5724"


def test_every_single_digit_error_and_adjacent_swap_is_rejected() -> None:
    rng = random.Random(20261127)
    codes = [make_code(f"{rng.randrange(100000, 1000000)}") for _ in range(3000)]
    # Codes with repeated neighbours and edge digits too.
    codes += [make_code(p) for p in ("100000", "999999", "909090", "112233", "123456", "654321")]
    checked = 0
    for code in codes:
        assert is_valid(code), code
        for wrong in single_digit_errors(code) + adjacent_transpositions(code):
            assert not is_valid(wrong), f"{wrong} passes although it is a misreading of {code}"
            checked += 1
    assert checked > 3000 * 63


def test_exhaustively_on_short_payloads() -> None:
    # Damm's guarantee does not depend on length: check every 4-digit payload completely.
    for payload in map("".join, itertools.product(DIGITS, repeat=4)):
        code = make_code(payload)
        for wrong in single_digit_errors(code) + adjacent_transpositions(code):
            assert check_digit(wrong) != "0", (code, wrong)


def test_new_code_shape_and_randomness() -> None:
    codes = [new_code(lambda c: False) for _ in range(2000)]
    for code in codes:
        assert len(code) == CODE_LENGTH and code.isdigit() and is_valid(code)
        assert code[0] != "0"  # spreadsheets would drop a leading zero
    assert len(set(codes)) >= 1990  # 900 000 possible payloads
    assert {c[0] for c in codes} == set("123456789")
    # Not sequential: consecutive codes are not neighbours.
    payloads = [int(c[:6]) for c in codes]
    assert sum(abs(a - b) <= 10 for a, b in itertools.pairwise(payloads)) < 5


def test_new_code_retries_until_unused() -> None:
    taken: list[str] = []

    def exists(code: str) -> bool:
        taken.append(code)
        return len(taken) <= 3  # the first three candidates are "already issued"

    code = new_code(exists)
    assert len(taken) == 4 and code == taken[-1]
    with pytest.raises(CodeGenerationError):
        new_code(lambda c: True, max_attempts=10)


def test_clean_and_format() -> None:
    code = make_code("482913")
    spaced = f"{code[:3]} {code[3:5]}-{code[5:]}"
    assert clean_code(spaced) == code
    assert is_valid(spaced) and is_valid(f"  {code}  ")
    assert format_code(code) == f"{code[:3]} {code[3:]}"
    assert clean_code(None) == ""


@pytest.mark.parametrize(
    "bad",
    ["", "123", "12345678", "abcdefg", "48291x3", "١٢٣٤٥٦٧", None],
)
def test_malformed_codes_are_invalid(bad: str | None) -> None:
    assert not is_valid(bad)


def test_check_digit_refuses_non_digits() -> None:
    with pytest.raises(ValueError):
        check_digit("12a")
    with pytest.raises(ValueError):
        check_digit("")
