"""Ticket codes: seven digits, the last a Damm check digit.

A caller reads the code back by voice or keypad, and the recogniser's weak spot is digits
("ba" dropped, "bảy" and "chín" confused). A code heard wrong must be *caught* rather than
silently matched to someone else's ticket, so the last digit checks the other six.

Why Damm (and not Luhn or Verhoeff):
- Damm detects every single-digit substitution and every adjacent transposition, the two
  commonest errors when digits are spoken, heard or typed. Luhn misses the 09 <-> 90
  transposition. Verhoeff detects the same classes as Damm, but needs a multiplication table,
  a permutation table and an inverse table; Damm needs one 10x10 table, and a code is valid
  exactly when running the whole code through the table ends at 0 (no separate "compute and
  compare" step that could be got wrong).
- What no single check digit can do: about 1 in 10 codes with two or more wrong digits still
  passes the check. Such a code is then looked up; it finds a ticket only if that exact code
  was issued, and issued codes are a small fraction of the 900 000 possible.

Codes are random, not sequential: a sequence would let anyone guess a neighbour's code and
would reveal how many reports the hotline takes. The first digit is never 0, because
spreadsheets (the CSV export opened in Excel) drop leading zeros.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

PAYLOAD_DIGITS = 6
CODE_LENGTH = PAYLOAD_DIGITS + 1
MAX_ATTEMPTS = 100

# Damm's totally anti-symmetric quasigroup of order 10 (Damm 2004; the table in common use).
_DAMM = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)

# What people put between digits when they write or dictate a code: spaces, dashes, dots.
_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015.·_/]+")
_ASCII_DIGITS = re.compile(r"[0-9]+")


class CodeGenerationError(RuntimeError):
    """No unused code was found (the code space is nearly full, or `exists` always says yes)."""


def _interim(digits: str) -> int:
    state = 0
    for ch in digits:
        state = _DAMM[state][ord(ch) - 48]
    return state


def check_digit(payload: str) -> str:
    """The Damm check digit for a string of ASCII digits."""
    if not payload or not _ASCII_DIGITS.fullmatch(payload):
        raise ValueError(f"check_digit needs ASCII digits, got {payload!r}")
    return str(_interim(payload))


def clean_code(s: str | None) -> str:
    """'123 45-67' -> '1234567'. Only separators are removed; anything else is left for
    is_valid to reject (a letter in a code is an error to report, not to drop)."""
    if not s:
        return ""
    return _SEPARATORS.sub("", str(s).strip())


def is_valid(code: str | None) -> bool:
    """True for a well-formed code: seven ASCII digits whose Damm check passes.

    Separators are accepted (the code is cleaned first)."""
    code = clean_code(code)
    if len(code) != CODE_LENGTH or not _ASCII_DIGITS.fullmatch(code):
        return False
    return _interim(code) == 0


def make_code(payload: str) -> str:
    return payload + check_digit(payload)


def random_payload() -> str:
    # secrets, not random: codes must not be predictable from earlier ones.
    first = 1 + secrets.randbelow(9)
    rest = "".join(str(secrets.randbelow(10)) for _ in range(PAYLOAD_DIGITS - 1))
    return f"{first}{rest}"


def new_code(exists: Callable[[str], bool], *, max_attempts: int = MAX_ATTEMPTS) -> str:
    """A random valid code for which `exists(code)` is False.

    `exists` is asked before the code is used; the unique index on tickets.code is the final
    guard (the caller retries on a constraint error)."""
    for _ in range(max_attempts):
        code = make_code(random_payload())
        if not exists(code):
            return code
    raise CodeGenerationError(f"no unused ticket code found after {max_attempts} attempts")


def format_code(code: str) -> str:
    """'1234567' -> '123 4567', for display and SMS (three then four digits are easy to copy)."""
    code = clean_code(code)
    return f"{code[:3]} {code[3:]}" if len(code) == CODE_LENGTH else code
