"""Vietnamese text helpers: NFC, diacritic folding and spoken digits.

Used by the flow engine, the knowledge base, the NLU client, the gazetteer and the data
generators alike, so they live outside any one of them. Pure Python (no Rasa).
"""

from __future__ import annotations

import re
import unicodedata

_SPACES = re.compile(r"\s+")


def nfc(text: str) -> str:
    """NFC form: NFD input flipped a 1.00 intent to a wrong one in Rasa (see PLATFORM.md)."""
    return unicodedata.normalize("NFC", text)


def clean_utterance(text: str) -> str:
    """What we send to Rasa: NFC, lowercase, one space between words.

    ASR text is already lowercase; typed text (CLI, tests) may not be, and the training data is
    lowercase. Lowercasing keeps the length of Vietnamese NFC text, so entity offsets stay valid.
    """
    return _SPACES.sub(" ", nfc(text)).strip().lower()


def strip_diacritics(text: str) -> str:
    """'Đakrông hỉ' -> 'Dakrong hi': how ASR or typed text without tone marks looks."""
    decomposed = unicodedata.normalize("NFD", text)
    bare = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
    return nfc(bare.replace("đ", "d").replace("Đ", "D"))


def fold(text: str) -> str:
    """Key for diacritic- and case-insensitive comparison: lowercase, unaccented, single spaces."""
    return _SPACES.sub(" ", strip_diacritics(nfc(text)).lower().replace("-", " ")).strip()


# Vietnamese digit words as callers say them, with dialect and tone variants, and the unaccented
# forms the recognizer sometimes produces. "mốt" and "lăm" are the forms after "mươi" ("hai mốt" =
# 21, "hai lăm" = 25) but people also use them alone when reading codes; "tư" and "bẩy" are
# common variants of "bốn" and "bảy"; "linh"/"lẻ" say zero inside numbers ("một linh năm").
DIGIT_WORDS: dict[str, str] = {
    "không": "0",
    "khong": "0",
    "khôn": "0",
    "linh": "0",
    "lẻ": "0",
    "le": "0",
    "một": "1",
    "mot": "1",
    "mốt": "1",
    "hai": "2",
    "ba": "3",
    "bốn": "4",
    "bon": "4",
    "tư": "4",
    "tu": "4",
    "năm": "5",
    "nam": "5",
    "lăm": "5",
    "lam": "5",
    "nhăm": "5",
    "sáu": "6",
    "sau": "6",
    "bảy": "7",
    "bẩy": "7",
    "bay": "7",
    "tám": "8",
    "tam": "8",
    "chín": "9",
    "chin": "9",
}
# "mười" (ten) and "mươi" (tens) both fold to "muoi"; position tells them apart.
_TEN_FOLDED = "muoi"
_NOT_UNITS = {"khong", "khon", "linh", "le"}


def digits_from_speech(text: str) -> str:
    """Digits of a code or phone number said as words and/or numerals.

    "một hai ba bốn" -> "1234"; "không chín một 2 3" -> "09123"; "mười hai" -> "12";
    "hai mươi lăm" -> "25". Unknown words are skipped, so "mã số là 4 5 6" -> "456".
    Returns "" when no digit is found.
    """
    tokens = fold(text).replace(".", " ").replace(",", " ").replace("-", " ").split()
    out: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        units = _FOLDED_DIGITS.get(nxt) if nxt not in _NOT_UNITS else None
        if tok.isdigit():
            out.append(tok)
        elif tok == _TEN_FOLDED:
            if out and out[-1] in "23456789" and tokens[i - 1] in _FOLDED_DIGITS:
                # "<d> mươi [u]": the pending digit is the tens.
                out[-1] += units or "0"
            else:
                # "mười [u]": 10-19.
                out.append("1" + (units or "0"))
            if units:
                i += 1
        elif tok in _FOLDED_DIGITS:
            out.append(_FOLDED_DIGITS[tok])
        # anything else (fillers such as "số", "là", stray words) is ignored
        i += 1
    return "".join(out)


_FOLDED_DIGITS: dict[str, str] = {fold(k): v for k, v in DIGIT_WORDS.items()}


def spoken_digit_words() -> list[str]:
    """All digit words (accented and not), for regex features in the training data."""
    return sorted(set(DIGIT_WORDS) | {"mười", "mươi", "muoi"})
