"""Vietnamese text normalisation for speech: what espeak-ng should say, in words.

Raw espeak-ng reads "1900868674" as one huge number, "15/11/2026" without ngày/tháng/năm and
"UBND" as English letters. `normalize_for_speech` rewrites a prompt into plain Vietnamese
words before synthesis. Conventions (Vietnamese typography): "." groups thousands
("50.000"), "," is the decimal mark ("1,5 triệu"); a dot followed by other than exactly three
digits is read as a decimal point too.

Order matters: phone numbers and codes (digit by digit) and dates/times go first, then
amounts, units and abbreviations, then every remaining number.
"""

from __future__ import annotations

import re
import unicodedata

DIGITS = ("không", "một", "hai", "ba", "bốn", "năm", "sáu", "bảy", "tám", "chín")
MONTHS = {
    1: "một",
    2: "hai",
    3: "ba",
    4: "tư",  # "tháng tư", never "tháng bốn"
    5: "năm",
    6: "sáu",
    7: "bảy",
    8: "tám",
    9: "chín",
    10: "mười",
    11: "mười một",
    12: "mười hai",
}

# ----- numbers -------------------------------------------------------------------------------


def _triple(n: int, full: bool) -> list[str]:
    """0 < n < 1000. `full`: this group follows a higher one, so "không trăm" and "linh"
    are said (2026 -> hai nghìn không trăm hai mươi sáu, 1005 -> ... không trăm linh năm)."""
    h, t, u = n // 100, n // 10 % 10, n % 10
    out: list[str] = []
    if h or full:
        out += [DIGITS[h], "trăm"]
    if t == 0:
        if u:
            if h or full:
                out.append("linh")
            out.append(DIGITS[u])
    elif t == 1:
        out.append("mười")
        if u == 5:
            out.append("lăm")  # mười lăm
        elif u:
            out.append(DIGITS[u])  # mười một (never "mốt" after mười)
    else:
        out += [DIGITS[t], "mươi"]
        if u == 1:
            out.append("mốt")  # hai mươi mốt
        elif u == 5:
            out.append("lăm")  # hai mươi lăm
        elif u:
            out.append(DIGITS[u])
    return out


def _below_billion(n: int, full: bool) -> list[str]:
    out: list[str] = []
    groups = ((n // 1_000_000, "triệu"), (n // 1000 % 1000, "nghìn"), (n % 1000, ""))
    seen = full
    for value, scale in groups:
        if not value:
            continue
        out += _triple(value, seen)
        if scale:
            out.append(scale)
        seen = True
    return out


def number_words(n: int) -> str:
    """An integer in Vietnamese words: 21 -> hai mươi mốt, 105 -> một trăm linh năm."""
    if n < 0:
        return "âm " + number_words(-n)
    if n == 0:
        return "không"
    return " ".join(_number_parts(n, full=False))


def _number_parts(n: int, full: bool) -> list[str]:
    if n >= 1_000_000_000:
        high, low = divmod(n, 1_000_000_000)
        out = _number_parts(high, full) + ["tỷ"]
        if low:
            out += _below_billion(low, full=True)
        return out
    return _below_billion(n, full)


def digits_words(digits: str) -> str:
    """Digit by digit: "0905" -> không chín không năm."""
    return " ".join(DIGITS[int(d)] for d in digits if d.isdigit())


def _group_sizes(n: int) -> list[int]:
    """How a run of n digits is chunked when read aloud (pauses between chunks)."""
    table = {
        5: [2, 3],
        6: [3, 3],
        7: [3, 4],
        8: [4, 4],
        9: [3, 3, 3],
        10: [4, 3, 3],
        11: [4, 3, 4],
        12: [4, 4, 4],
    }
    if n <= 4:
        return [n]
    if n in table:
        return table[n]
    sizes = [3] * (n // 3)
    if n % 3 == 1:
        sizes[-1] = 4
    elif n % 3 == 2:
        sizes.append(2)
    return sizes


def grouped_digits(digits: str) -> str:
    """Digits in natural chunks with commas (espeak pauses): 1900868674 ->
    "một chín không không, tám sáu tám, sáu bảy bốn"."""
    digits = "".join(d for d in digits if d.isdigit())
    parts: list[str] = []
    pos = 0
    for size in _group_sizes(len(digits)):
        parts.append(digits_words(digits[pos : pos + size]))
        pos += size
    return ", ".join(parts)


def decimal_words(int_part: str, frac: str) -> str:
    """1,5 -> một phẩy năm; 2,25 -> hai phẩy hai mươi lăm; 0,05 -> không phẩy không năm."""
    whole = number_words(int(int_part or "0"))
    # Leading zeros or long tails are read digit by digit, short ones as a number.
    short = not frac.startswith("0") and len(frac) <= 3
    tail = number_words(int(frac)) if short else digits_words(frac)
    return f"{whole} phẩy {tail}"


def _plain_number(token: str) -> str:
    """A numeric token as written in Vietnamese text: 50.000, 1.500.000, 1,5, 2026, 05."""
    if re.fullmatch(r"\d{1,3}(?:\.\d{3})+", token):
        return number_words(int(token.replace(".", "")))
    m = re.fullmatch(r"(\d+(?:\.\d{3})*)[,.](\d+)", token)
    if m:
        return decimal_words(m.group(1).replace(".", ""), m.group(2))
    digits = token.replace(".", "")
    if not digits.isdigit():
        return token
    if len(digits) > 1 and digits.startswith("0") and len(digits) > 3:
        return digits_words(digits)  # 0123 style identifiers
    if len(digits) >= 13:
        return grouped_digits(digits)  # no one says trillions; it is an identifier
    return number_words(int(digits))


# ----- rules ---------------------------------------------------------------------------------

_W = r"0-9A-Za-zÀ-ỹĐđ"  # word characters incl. Vietnamese letters
_NB = rf"(?<![{_W}])"  # not preceded by a word character
_NA = rf"(?![{_W}])"  # not followed by one

_CODE_KEYWORDS = (
    r"mã\s+số\s+phiếu|mã\s+phản\s+ánh|mã\s+phiếu|mã\s+hồ\s+sơ|mã\s+tra\s+cứu|mã\s+số|"
    r"mã\s+xác\s+nhận|số\s+phiếu|mã"
)
_CODE_RE = re.compile(
    rf"(?i)(?P<kw>{_NB}(?:{_CODE_KEYWORDS}))(?P<mid>[^\d.!?;\n]{{0,40}}?)(?P<code>\d(?:[ .-]?\d)*){_NA}"
)


def _code(m: re.Match[str]) -> str:
    mid, code = m.group("mid"), re.sub(r"\D", "", m.group("code"))
    # "mã phản ánh của bạn là 4821937": words may sit between keyword and code, but then
    # only a code-sized number counts ("mã ... trong 15 phút" is not a code).
    if re.search(r"[^\W\d_]", mid) and len(code) < 5:
        return m.group(0)
    if not mid.endswith(" "):
        mid += " "
    return f"{m.group('kw')}{mid}{grouped_digits(code)}"


_PHONE_RE = re.compile(rf"{_NB}(?P<num>\+?\d(?:[ .-]?\d){{7,13}}){_NA}")


def _phone(m: re.Match[str]) -> str:
    raw = m.group("num")
    digits = re.sub(r"\D", "", raw)
    if raw.startswith("+"):
        if digits.startswith("84") and 10 <= len(digits) <= 12:
            return f"cộng tám bốn, {grouped_digits(digits[2:])}"
        return "cộng " + grouped_digits(digits)
    if (digits.startswith("0") and 9 <= len(digits) <= 11) or (
        digits[:4] in ("1900", "1800") and 8 <= len(digits) <= 10
    ):
        return grouped_digits(digits)
    return raw  # not a phone number: later rules read it (an amount, a date...)


_DATE_RE = re.compile(
    rf"(?P<ngay>{_NB}ngày\s+)?{_NB}(?P<d>\d{{1,2}})(?P<s>[/.-])(?P<m>\d{{1,2}})(?P=s)(?P<y>\d{{4}}){_NA}",
    re.IGNORECASE,
)
_DAY_MONTH_RE = re.compile(
    rf"(?P<pre>{_NB}ngày\s+)?{_NB}(?P<d>\d{{1,2}})/(?P<m>\d{{1,2}}){_NA}(?!/)",
    re.IGNORECASE,
)
_MONTH_YEAR_RE = re.compile(rf"{_NB}tháng\s+(?P<m>\d{{1,2}})/(?P<y>\d{{4}}){_NA}", re.IGNORECASE)
_MONTH_RE = re.compile(rf"{_NB}tháng\s+(?P<m>\d{{1,2}}){_NA}(?![/.:,]\d)", re.IGNORECASE)


def _valid_date(d: int, m: int) -> bool:
    return 1 <= d <= 31 and 1 <= m <= 12


def _date(m: re.Match[str]) -> str:
    d, mo, y = int(m.group("d")), int(m.group("m")), int(m.group("y"))
    if not _valid_date(d, mo):
        return m.group(0)
    return f"ngày {number_words(d)} tháng {MONTHS[mo]} năm {number_words(y)}"


def _day_month(m: re.Match[str]) -> str:
    d, mo = int(m.group("d")), int(m.group("m"))
    if not _valid_date(d, mo):
        return m.group(0)
    return f"ngày {number_words(d)} tháng {MONTHS[mo]}"


def _month_year(m: re.Match[str]) -> str:
    mo = int(m.group("m"))
    if not 1 <= mo <= 12:
        return m.group(0)
    return f"tháng {MONTHS[mo]} năm {number_words(int(m.group('y')))}"


def _month(m: re.Match[str]) -> str:
    mo = int(m.group("m"))
    return f"tháng {MONTHS[mo]}" if 1 <= mo <= 12 else m.group(0)


_TIME_COLON_RE = re.compile(rf"{_NB}(?P<h>\d{{1,2}}):(?P<mi>\d{{2}})(?::(?P<s>\d{{2}}))?{_NA}")
_TIME_H_RE = re.compile(
    rf"{_NB}(?P<h>\d{{1,2}})\s?(?:(?:h|giờ)(?P<mi>\d{{1,2}})?|g(?P<mi2>\d{{2}}))(?:p|ph|phút)?{_NA}"
)
_T = r"\d{1,2}(?:[:h]\d{2}|h)"
_TIME_RANGE_RE = re.compile(rf"{_NB}(?P<a>{_T})\s?[-–]\s?(?P<b>{_T}){_NA}")


def _clock(h: int, mi: int, s: int | None = None) -> str:
    out = f"{number_words(h)} giờ"
    if mi:
        out += f" {number_words(mi)} phút"
    if s:
        out += f" {number_words(s)} giây"
    return out


def _time_colon(m: re.Match[str]) -> str:
    h, mi = int(m.group("h")), int(m.group("mi"))
    s = int(m.group("s")) if m.group("s") else None
    if h > 24 or mi > 59 or (s is not None and s > 59):
        return m.group(0)
    return _clock(h, mi, s)


def _time_h(m: re.Match[str]) -> str:
    h = int(m.group("h"))
    mi_text = m.group("mi") or m.group("mi2")
    mi = int(mi_text) if mi_text else 0
    if h > 24 or mi > 59:
        return m.group(0)
    return _clock(h, mi)


# A number as written: thousands dots and/or a decimal comma.
_NUM = r"\d+(?:\.\d{3})*(?:,\d+)?|\d+(?:[.,]\d+)?"
_CURRENCY_RE = re.compile(rf"{_NB}(?P<n>{_NUM})\s?(?:đồng|đ|₫|VNĐ|VND|vnđ|vnd){_NA}")
_THOUSAND_K_RE = re.compile(rf"{_NB}(?P<n>{_NUM})\s?[kK]{_NA}")
_MILLION_TR_RE = re.compile(rf"{_NB}(?P<n>{_NUM})\s?tr{_NA}")
_PERCENT_RE = re.compile(rf"{_NB}(?P<n>{_NUM})\s?%")

_UNITS = {
    "km²": "ki lô mét vuông",
    "km2": "ki lô mét vuông",
    "m²": "mét vuông",
    "m2": "mét vuông",
    "m³": "mét khối",
    "m3": "mét khối",
    "km/h": "ki lô mét một giờ",
    "kWh": "ki lô oát giờ",
    "kW": "ki lô oát",
    "kV": "ki lô vôn",
    "km": "ki lô mét",
    "cm": "xen ti mét",
    "mm": "mi li mét",
    "kg": "ki lô gam",
    "ha": "héc ta",
    "°C": "độ xê",
    "m": "mét",
    "g": "gam",
    "l": "lít",
}
_UNIT_RE = re.compile(
    rf"{_NB}(?P<n>{_NUM})\s?(?P<u>{'|'.join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))})(?![{_W}²³])"
)

# Abbreviations: (pattern, replacement). Case-sensitive on purpose: "TP." is an
# abbreviation, "tp" inside a word is not.
_ABBREVIATIONS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(rf"{_NB}TP\.?\s?HCM{_NA}"), "thành phố Hồ Chí Minh"),
    (re.compile(rf"{_NB}HCM{_NA}"), "Hồ Chí Minh"),
    (re.compile(rf"{_NB}UBMTTQ(?:VN)?{_NA}"), "ủy ban mặt trận tổ quốc"),
    (re.compile(rf"{_NB}UBND{_NA}"), "ủy ban nhân dân"),
    (re.compile(rf"{_NB}HĐND{_NA}"), "hội đồng nhân dân"),
    (re.compile(rf"{_NB}CCCD{_NA}"), "căn cước công dân"),
    (re.compile(rf"{_NB}CMND{_NA}"), "chứng minh nhân dân"),
    (re.compile(rf"{_NB}BHYT{_NA}"), "bảo hiểm y tế"),
    (re.compile(rf"{_NB}BHXH{_NA}"), "bảo hiểm xã hội"),
    (re.compile(rf"{_NB}CSGT{_NA}"), "cảnh sát giao thông"),
    (re.compile(rf"{_NB}PCCC{_NA}"), "phòng cháy chữa cháy"),
    (re.compile(rf"{_NB}THPT{_NA}"), "trung học phổ thông"),
    (re.compile(rf"{_NB}THCS{_NA}"), "trung học cơ sở"),
    (re.compile(rf"{_NB}SĐT{_NA}"), "số điện thoại"),
    (re.compile(rf"{_NB}ĐT{_NA}(?=\s*:?\s*\d)"), "điện thoại"),
    (re.compile(rf"{_NB}BQL{_NA}"), "ban quản lý"),
    (re.compile(rf"{_NB}TDP{_NA}"), "tổ dân phố"),
    (re.compile(rf"{_NB}KCN{_NA}"), "khu công nghiệp"),
    (re.compile(rf"{_NB}QL\.?\s?(?=\d)"), "quốc lộ "),
    (re.compile(rf"{_NB}TL\.?\s?(?=\d)"), "tỉnh lộ "),
    (re.compile(rf"{_NB}SMS{_NA}"), "ét em ét"),
    (re.compile(rf"{_NB}(?:TP|Tp|tp)\.\s?(?=\S)"), "thành phố "),
    (re.compile(rf"{_NB}TP(?=\s+[A-ZĐÀ-Ỹ])"), "thành phố"),
    (re.compile(rf"{_NB}(?:TX|Tx)\.\s?(?=\S)"), "thị xã "),
    (re.compile(rf"{_NB}TX(?=\s+[A-ZĐÀ-Ỹ])"), "thị xã"),
    (re.compile(rf"{_NB}(?:TT|Tt)\.\s?(?=\S)"), "thị trấn "),
    (re.compile(rf"{_NB}TT(?=\s+[A-ZĐÀ-Ỹ])"), "thị trấn"),
    # Single letters only where unambiguous: followed by a number or a capitalised name.
    (re.compile(rf"{_NB}P\.\s?(?=\d|[A-ZĐÀ-Ỹ])"), "phường "),
    (re.compile(rf"{_NB}Q\.\s?(?=\d|[A-ZĐÀ-Ỹ])"), "quận "),
    (re.compile(rf"{_NB}H\.\s?(?=[A-ZĐÀ-Ỹ])"), "huyện "),
    (re.compile(rf"{_NB}X\.\s?(?=[A-ZĐÀ-Ỹ])"), "xã "),
    (re.compile(rf"{_NB}KP\.?\s?(?=\d)"), "khu phố "),
    (re.compile(rf"{_NB}T([2-7])\s?[-–]\s?CN{_NA}"), r"thứ \1 đến chủ nhật"),
    (re.compile(rf"{_NB}T([2-7])\s?[-–]\s?T([2-7]){_NA}"), r"thứ \1 đến thứ \2"),
    (re.compile(rf"{_NB}T([2-7]){_NA}"), r"thứ \1"),
]

_ORDINAL_RE = re.compile(rf"{_NB}thứ\s+(?P<n>[14]){_NA}", re.IGNORECASE)
_ADDRESS_SLASH_RE = re.compile(
    rf"(?P<pre>{_NB}(?:số|nhà|kiệt|hẻm|ngõ|ngách|kiệt số|hẻm số)\s+)(?P<a>\d+)/(?P<b>\d+){_NA}",
    re.IGNORECASE,
)
_RANGE_RE = re.compile(rf"(?P<a>{_NB}\d+(?:[.,]\d+)?)\s?[-–]\s?(?P<b>\d+(?:[.,]\d+)?{_NA})")
_NUMBER_RE = re.compile(rf"{_NB}(?P<n>\d+(?:\.\d{{3}})+(?:,\d+)?|\d+[.,]\d+|\d+)(?!\d)")
_DOMAIN_RE = re.compile(
    rf"{_NB}(?:www\.)?[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:gov\.vn|com\.vn|vn|com|org|net){_NA}"
)
_DOMAIN_WORDS = {
    "www": "vê kép vê kép vê kép",
    "gov": "gốp",
    "vn": "vê en",
    "com": "com",
    "org": "o rờ gờ",
    "net": "nét",
    "dichvucong": "dịch vụ công",
    "quangtri": "quảng trị",
    "dangkykinhdoanh": "đăng ký kinh doanh",
}


# Short service numbers said digit by digit: 113 công an, 114 cứu hỏa, 115 cấp cứu, 111 bảo vệ
# trẻ em, 112 cứu nạn; and the 1900/1800 prefix ("số 1900" is "một chín không không"). Not when
# a counted noun follows ("113 hộ dân") or, for 1900/1800, when it is a year ("năm 1900").
_COUNTED = r"\s*(?:%|đồng|đ\b|người|hộ|nhà|ngày|tuổi|năm|tháng|giờ|phút|km|m\b|kg|lần|xã|phường)"
_SERVICE_RE = re.compile(rf"(?<![\d.,]){_NB}(?P<n>11[1-6]){_NA}(?![.,]\d)(?!{_COUNTED})")
_PREFIX_RE = re.compile(rf"(?<!năm ){_NB}(?P<n>1[89]00){_NA}(?![.,]\d)(?!{_COUNTED})")


def _domain(m: re.Match[str]) -> str:
    return " chấm ".join(_DOMAIN_WORDS.get(p, p) for p in m.group(0).split("."))


def _spaced(words: str) -> str:
    return f" {words} "


def normalize_for_speech(text: str) -> str:
    """Rewrite `text` so espeak-ng reads it as a Vietnamese speaker would."""
    s = unicodedata.normalize("NFC", text)
    # Typographic noise espeak would read or stumble on.
    s = s.replace("\u00a0", " ").replace("“", "").replace("”", "").replace('"', "")
    s = re.sub(r"[\r\n]+", ". ", s)
    s = _DOMAIN_RE.sub(_domain, s)

    # Abbreviations first: they only turn letters into words ("P.5" -> "phường 5",
    # "SĐT 0905..." -> "số điện thoại 0905...") and leave numbers to the rules below.
    for pattern, repl in _ABBREVIATIONS:
        s = pattern.sub(repl, s)

    # "vợ/chồng": a slash between words (not between numbers, not km/h) means "or".
    s = re.sub(r"(?<=[^\W\d_])(?<!km)\s?/\s?(?=[^\W\d_])", " hoặc ", s)

    # Identifiers: never read as quantities.
    s = _CODE_RE.sub(_code, s)
    s = _PHONE_RE.sub(_phone, s)
    s = _SERVICE_RE.sub(lambda m: digits_words(m.group("n")), s)
    s = _PREFIX_RE.sub(lambda m: digits_words(m.group("n")), s)
    s = re.sub(rf"{_NB}24\s?/\s?7{_NA}", "hai mươi bốn trên bảy", s)  # round the clock

    # Dates and times.
    s = _DATE_RE.sub(_date, s)
    s = _MONTH_YEAR_RE.sub(_month_year, s)
    s = _ADDRESS_SLASH_RE.sub(lambda m: f"{m.group('pre')}{m.group('a')} xuyệt {m.group('b')}", s)
    s = _DAY_MONTH_RE.sub(_day_month, s)
    s = _TIME_RANGE_RE.sub(lambda m: f"{m.group('a')} đến {m.group('b')}", s)
    s = _TIME_COLON_RE.sub(_time_colon, s)
    s = _TIME_H_RE.sub(_time_h, s)
    s = _MONTH_RE.sub(_month, s)

    # Ranges ("2-3 ngày", "50.000-100.000 đồng"), then amounts, percentages, units.
    s = _RANGE_RE.sub(lambda m: f"{m.group('a')} đến {m.group('b')}", s)
    s = _CURRENCY_RE.sub(lambda m: _spaced(f"{_plain_number(m.group('n'))} đồng"), s)
    s = _THOUSAND_K_RE.sub(lambda m: _spaced(f"{_plain_number(m.group('n'))} nghìn"), s)
    s = _MILLION_TR_RE.sub(lambda m: _spaced(f"{_plain_number(m.group('n'))} triệu"), s)
    s = _PERCENT_RE.sub(lambda m: _spaced(f"{_plain_number(m.group('n'))} phần trăm"), s)
    s = _UNIT_RE.sub(lambda m: _spaced(f"{_plain_number(m.group('n'))} {_UNITS[m.group('u')]}"), s)

    # Ordinals, then every number left.
    s = _ORDINAL_RE.sub(lambda m: "thứ nhất" if m.group("n") == "1" else "thứ tư", s)
    s = _NUMBER_RE.sub(lambda m: _spaced(_plain_number(m.group("n"))), s)

    # Symbols: keypad keys, "vợ/chồng", "&", a lone "+".
    s = re.sub(r"(?<![\w#*])#(?![\w#])", " thăng ", s)
    s = re.sub(r"(?i)(phím\s*)\*|(?<![\w*])\*(?![\w*])", lambda m: f"{m.group(1) or ' '}sao ", s)
    s = re.sub(r"\s&\s", " và ", s)
    s = re.sub(r"\s\+\s", " cộng ", s)
    # Brackets become pauses.
    s = s.replace("(", ", ").replace(")", ", ")

    # Tidy spaces and punctuation left by the rewrites.
    s = re.sub(r"\s+", " ", s)
    s = re.sub(r"\s+([,.;:!?])", r"\1", s)
    s = re.sub(r",\s*,", ",", s)
    s = re.sub(r",\s*([.;:!?])", r"\1", s)  # "(sổ đỏ)." -> ", sổ đỏ."
    s = re.sub(r"([,.;:!?])(?=[^\s\d,.;:!?])", r"\1 ", s)
    s = re.sub(r"^[\s,]+|[\s,]+$", "", s)
    return s
