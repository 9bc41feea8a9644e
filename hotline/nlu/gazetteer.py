"""Normalise a spoken place to Quảng Trị's administrative units, before and after 2025.

Source: the `vietnam-provinces` package (new units: province 44, the merged Quảng Trị + Quảng
Bình; legacy units: `vietnam_provinces.legacy`, old Quảng Trị 45 and old Quảng Bình 44).
Old units are converted to new ones BY CODE (`Ward.search_from_legacy(code=...)`): names match
fuzzily across provinces, codes do not.

Callers say places the old way ("xã Hải Phú, huyện Hải Lăng"), the new way ("xã Nam Hải Lăng"),
without diacritics ("hai phu"), with the local spelling ("Đakrông" where the package has
"Đa Krông"), with spoken numbers ("phường một"), and with a village in front ("thôn An Mỹ").
`normalize_location()` parses such a phrase into typed segments and resolves them.

Ambiguous names are resolved in this order: the district the caller named, then old Quảng Trị
(the hotline's home), then new units, then old Quảng Bình. `alternatives` counts the others.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Literal

from vietnam_provinces import Province, ProvinceCode, Ward, WardCode
from vietnam_provinces.legacy import District as LegacyDistrict
from vietnam_provinces.legacy import ProvinceCode as LegacyProvinceCode
from vietnam_provinces.legacy import Ward as LegacyWard

from hotline.text import DIGIT_WORDS, fold, nfc

NEW_PROVINCE_CODE = 44  # Tỉnh Quảng Trị after the 2025 merger
LEGACY_QUANG_TRI = 45
LEGACY_QUANG_BINH = 44
LEGACY_CODES = (LEGACY_QUANG_TRI, LEGACY_QUANG_BINH)  # preference order

Level = Literal["commune", "district", "province", "street", "village", "unknown"]

# Unit words as callers say them, with the segment kind each starts. Matched accent-aware:
# an accented word must match exactly ("lăng" is not "làng"); an unaccented word matches the
# folded form unless it continues a known place name ("hai lang", "ho xa", "hai duong").
_UNIT_WORDS_RAW: list[tuple[str, str]] = [
    ("tỉnh", "province"),
    ("thành phố", "city"),
    ("tp", "city"),
    ("thị xã", "town"),
    ("tx", "town"),
    ("huyện", "district"),
    ("quận", "district"),
    ("đặc khu", "special"),
    ("xã", "commune"),
    ("phường", "ward"),
    ("thị trấn", "townlet"),
    ("tt", "townlet"),
    ("thôn", "village"),
    ("xóm", "village"),
    ("bản", "village"),
    ("làng", "village"),
    ("khóm", "village"),
    ("khu phố", "quarter"),
    ("kp", "quarter"),
    ("tổ dân phố", "quarter"),
    ("tổ", "quarter"),
    ("khu", "quarter"),
    ("đường", "street"),
    ("quốc lộ", "street"),
    ("ql", "street"),
    ("tỉnh lộ", "street"),
    ("kiệt", "street"),  # the Central word for an alley
    ("hẻm", "street"),
]
_UNIT_WORDS: list[tuple[tuple[str, ...], str]] = sorted(
    ((tuple(u.split()), k) for u, k in _UNIT_WORDS_RAW), key=lambda uk: -len(uk[0])
)
# Unaccented forms too common as ordinary words to start a segment on their own.
_ACCENT_ONLY = {"bản", "làng"}
# Words that glue an address together and carry no name.
_GLUE = {
    "ở",
    "tại",
    "thuộc",
    "của",
    "gần",
    "bên",
    "ngay",
    "phía",
    "chỗ",
    "chợ",
    "và",
    "trên",
    "dưới",
}
_GLUE_MULTI = {("khu", "vực"), ("đoạn", "qua"), ("ngã", "ba"), ("ngã", "tư")}

# Local spellings the package does not have (folded, spaces removed -> folded package name).
_ALIASES: dict[str, str] = {
    "dakrong": "da krong",
    "krongklang": "krong klang",
    "khexanh": "khe sanh",
    "laobao": "lao bao",
    "hoxa": "ho xa",
    "conco": "con co",
    "dongha": "dong ha",
    "thanhcoquangtri": "quang tri",
}

# Main streets and roads callers name (Đông Hà, Quảng Trị town, national roads). Not exhaustive:
# a street alone gives level "street"; with a unit the unit wins.
STREETS: tuple[str, ...] = (
    "Lê Duẩn",
    "Hùng Vương",
    "Trần Hưng Đạo",
    "Lê Lợi",
    "Nguyễn Huệ",
    "Quang Trung",
    "Hàm Nghi",
    "Lý Thường Kiệt",
    "Nguyễn Trãi",
    "Trần Phú",
    "Phan Bội Châu",
    "Điện Biên Phủ",
    "Lê Thánh Tông",
    "Hai Bà Trưng",
    "Ngô Quyền",
    "Tôn Thất Thuyết",
    "Nguyễn Du",
    "Lê Quý Đôn",
    "Đặng Tất",
    "Thành Cổ",
    "Bà Triệu",
    "Hoàng Diệu",
    "Trường Chinh",
    "Võ Nguyên Giáp",
    "Nguyễn Hoàng",
)


@dataclass(frozen=True)
class Location:
    """A place as the caller said it, resolved to administrative units where possible."""

    raw: str
    level: Level
    matched: bool  # resolved to at least a district or the province
    village: str | None = None  # "thôn An Mỹ", "khu phố 3": below the gazetteer, kept as said
    street: str | None = None  # "đường Lê Duẩn"
    legacy_district: str | None = None  # "Huyện Hải Lăng"
    legacy_district_code: int | None = None
    legacy_commune: str | None = None  # "Xã Hải Phú"
    legacy_commune_code: int | None = None
    new_unit: str | None = None  # "Xã Hải Lăng" (ward, commune or special zone since 2025)
    new_unit_code: int | None = None
    new_unit_candidates: tuple[str, ...] = field(default_factory=tuple)  # district-only answers
    province: str | None = None
    province_code: int | None = None
    alternatives: int = 0  # other units with the same name (0 = unambiguous)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["new_unit_candidates"] = list(self.new_unit_candidates)
        return d

    @property
    def label(self) -> str:
        """Short human label: 'thôn An Mỹ, Xã Hải Lăng (cũ: Xã Hải Phú, Huyện Hải Lăng)'."""
        parts = [p for p in (self.village, self.street) if p]
        if self.new_unit:
            parts.append(self.new_unit)
        elif self.legacy_district:
            parts.append(self.legacy_district)
        elif self.province:
            parts.append(self.province)
        old = [p for p in (self.legacy_commune, self.legacy_district) if p]
        text = ", ".join(parts) or self.raw
        if old and self.new_unit:
            text += f" (cũ: {', '.join(old)})"
        return text


@dataclass(frozen=True)
class _Entry:
    kind: Literal["new", "legacy_ward", "legacy_district"]
    name: str  # full name with prefix, as the package spells it
    code: int
    division: str  # the package's division type value: "xã", "phường", "huyện", ...
    province_pref: int  # lower is preferred (old Quảng Trị first)
    district_code: int | None = None  # legacy wards


# The package's own unit prefixes (from its division types), longest first.
_PACKAGE_PREFIXES = (
    "thanh pho",
    "thi tran",
    "thi xa",
    "dac khu",
    "phuong",
    "huyen",
    "quan",
    "tinh",
    "xa",
)


def _bare(name: str) -> str:
    """Package name without its unit prefix, folded: 'Thị trấn Khe Sanh' -> 'khe sanh'."""
    key = fold(name)
    for prefix in _PACKAGE_PREFIXES:
        if key.startswith(prefix + " "):
            return key[len(prefix) + 1 :]
    return key


def _squash(key: str) -> str:
    return key.replace(" ", "")


@dataclass
class _Index:
    by_name: dict[str, list[_Entry]]  # squashed bare name -> entries
    prefixes: set[str]  # squashed word-prefixes of every known name ("hai", "hailang", ...)

    def find(self, key: str) -> list[_Entry]:
        sq = _squash(key)
        sq = _squash(_ALIASES.get(sq, sq))
        return self.by_name.get(sq, [])

    def known(self, key: str) -> bool:
        sq = _squash(key)
        return sq in self.by_name or sq in _ALIASES

    def continues_name(self, key: str) -> bool:
        sq = _squash(key)
        return sq in self.prefixes or sq in _ALIASES


@lru_cache(maxsize=1)
def _index() -> _Index:
    by_name: dict[str, list[_Entry]] = {}

    def add(entry: _Entry) -> None:
        by_name.setdefault(_squash(_bare(entry.name)), []).append(entry)

    for pref, pcode in enumerate(LEGACY_CODES):
        for d in LegacyDistrict.iter_by_province(LegacyProvinceCode(pcode)):
            add(_Entry("legacy_district", d.name, d.code.value, d.division_type.value, pref))
            for w in LegacyWard.iter_by_district(d.code):
                add(
                    _Entry(
                        "legacy_ward",
                        w.name,
                        w.code.value,
                        w.division_type.value,
                        pref * 2,  # old Quảng Trị 0, old Quảng Bình 2; new units sit at 1
                        district_code=d.code.value,
                    )
                )
    for w in Ward.iter_by_province(ProvinceCode(NEW_PROVINCE_CODE)):
        add(_Entry("new", w.name, w.code.value, w.division_type.value, 1))
    prefixes: set[str] = set()
    for entries in by_name.values():
        words = _bare(entries[0].name).split()
        for n in range(1, len(words) + 1):
            prefixes.add("".join(words[:n]))
    for alias in _ALIASES.values():
        words = alias.split()
        for n in range(1, len(words) + 1):
            prefixes.add("".join(words[:n]))
    return _Index(by_name, prefixes)


@lru_cache(maxsize=1)
def new_province() -> Province:
    return Province.from_code(ProvinceCode(NEW_PROVINCE_CODE))


def new_units() -> list[Ward]:
    """The 78 units of Quảng Trị since 2025 (wards, communes, the Cồn Cỏ special zone)."""
    return list(Ward.iter_by_province(ProvinceCode(NEW_PROVINCE_CODE)))


def legacy_districts(province_code: int = LEGACY_QUANG_TRI) -> list[LegacyDistrict]:
    return list(LegacyDistrict.iter_by_province(LegacyProvinceCode(province_code)))


def legacy_wards(province_code: int = LEGACY_QUANG_TRI) -> list[LegacyWard]:
    return [w for d in legacy_districts(province_code) for w in LegacyWard.iter_by_district(d.code)]


def convert_legacy_ward(code: int) -> Ward | None:
    """Old commune/ward code -> the new unit that absorbed it (by code, never by name)."""
    found = Ward.search_from_legacy(code=code)
    return found[0].ward if found else None


def district_new_units(district_code: int) -> tuple[Ward, ...]:
    """New units covering an old district, in code order."""
    return tuple(w.ward for w in Ward.search_from_legacy_district(code=district_code))


# ---------------------------------------------------------------------------------------------
# Parsing the spoken phrase into typed segments


@dataclass
class _Segment:
    kind: str  # a kind from _UNIT_WORDS_RAW, or "bare" (a name said without a unit word)
    unit_word: str  # as said, "" for bare
    words: list[str]  # the name as said

    @property
    def name(self) -> str:
        return " ".join(self.words)

    @property
    def key(self) -> str:
        key = fold(self.name)
        # "phường một" -> "phường 1": ASR writes numbers as words.
        if self.kind in ("ward", "quarter", "village", "street") and key in _NUMBER_WORDS:
            return _NUMBER_WORDS[key]
        return key


_NUMBER_WORDS = {fold(k): v for k, v in DIGIT_WORDS.items() if v != "0"} | {"muoi": "10"}
_FOLDED_GLUE = {fold(g) for g in _GLUE}


def _unit_at(words: list[str], i: int, cur: _Segment | None, idx: _Index) -> tuple[int, str]:
    """(number of words, kind) if a unit word starts at words[i], else (0, "")."""
    for unit, kind in _UNIT_WORDS:
        n = len(unit)
        if i + n >= len(words):  # a unit word needs a name after it
            continue
        said = tuple(words[i : i + n])
        if said == unit:
            return n, kind
        folded = tuple(fold(w) for w in said)
        if said != folded or folded != tuple(fold(w) for w in unit):
            continue
        if any(w in _ACCENT_ONLY for w in unit):
            continue
        # Unaccented: "hai lang" is a name, not "hai" + "làng ...".
        if cur is not None and cur.words and idx.continues_name(fold(cur.name) + " " + folded[0]):
            continue
        return n, kind
    return 0, ""


def _glue_at(words: list[str], i: int, cur: _Segment | None, idx: _Index) -> int:
    for multi in _GLUE_MULTI:
        n = len(multi)
        said = tuple(words[i : i + n])
        if said == multi or (
            said == tuple(fold(w) for w in said) and said == tuple(fold(w) for w in multi)
        ):
            return n
    w = words[i]
    if w in _GLUE:
        return 1
    if w == fold(w) and w in _FOLDED_GLUE:
        # Unaccented: "vinh o" is Vĩnh Ô, not "vĩnh" + "ở".
        if cur is not None and cur.words and idx.continues_name(fold(cur.name) + " " + w):
            return 0
        return 1
    return 0


def _split_known(seg: _Segment, idx: _Index) -> list[_Segment]:
    """Split a name that is not itself known into known names, greedily from the left.

    "hải phú hải lăng" -> "hải phú" + "hải lăng"; "5 đông hà" (after "phường") -> "5" + "đông hà";
    "an mỹ hải phú" (after "thôn") -> "an mỹ" + "hải phú". The first piece keeps the unit word.
    """
    if seg.kind in ("village", "quarter", "street"):
        # A village keeps its name; only a known place at its end is split off.
        for j in range(1, len(seg.words)):
            tail = seg.words[j:]
            if len(tail) >= 2 and idx.known(fold(" ".join(tail))):
                return [
                    _Segment(seg.kind, seg.unit_word, seg.words[:j]),
                    _Segment("bare", "", tail),
                ]
        return [seg]
    if idx.known(seg.key) or len(seg.words) < 2:
        return [seg]
    out: list[_Segment] = []
    i = 0
    words = seg.words
    while i < len(words):
        for j in range(len(words), i, -1):
            piece = words[i:j]
            key = fold(" ".join(piece))
            numeric_ok = seg.kind == "ward" and not out
            if numeric_ok:
                key = _NUMBER_WORDS.get(key, key)
            if idx.known(key) and (not key.isdigit() or numeric_ok):
                first = not out
                out.append(
                    _Segment(seg.kind if first else "bare", seg.unit_word if first else "", piece)
                )
                i = j
                break
        else:
            i += 1  # an unknown word: drop it
    return out or [seg]


def _segments(text: str, idx: _Index) -> list[_Segment]:
    words = nfc(text).strip().lower().split()
    segs: list[_Segment] = []
    cur: _Segment | None = None
    i = 0
    while i < len(words):
        g = _glue_at(words, i, cur, idx)
        if g:
            cur = None  # glue ends the current name: "thôn an mỹ ở xã ..."
            i += g
            continue
        n, kind = _unit_at(words, i, cur, idx)
        if n:
            cur = _Segment(kind, " ".join(words[i : i + n]), [])
            segs.append(cur)
            i += n
            continue
        if cur is None:
            cur = _Segment("bare", "", [])
            segs.append(cur)
        cur.words.append(words[i])
        i += 1
    out: list[_Segment] = []
    for seg in segs:
        if seg.words:
            out.extend(_split_known(seg, idx))
    return out


_COMMUNE_KINDS = {"commune": {"xã"}, "ward": {"phường"}, "townlet": {"thị trấn"}}
_DISTRICT_KINDS = {"district": {"huyện", "quận"}, "city": {"thành phố"}, "town": {"thị xã"}}


def _pick(entries: list[_Entry], district_code: int | None) -> tuple[_Entry | None, int]:
    if not entries:
        return None, 0

    def rank(e: _Entry) -> tuple[int, int, int]:
        in_district = 0 if district_code is None or e.district_code == district_code else 1
        return (in_district, e.province_pref, e.code)

    ordered = sorted(entries, key=rank)
    if district_code is not None:
        ordered = [e for e in ordered if e.district_code == district_code] or ordered
    # Alternatives that end in the same new unit (old "Xã Ba Lòng" -> new "Xã Ba Lòng") are not
    # ambiguity for the caller.
    outcomes = {_new_code(e) for e in ordered}
    return ordered[0], len(outcomes) - 1


def _new_code(e: _Entry) -> int | None:
    if e.kind == "new":
        return e.code
    if e.kind == "legacy_ward":
        w = convert_legacy_ward(e.code)
        return w.code.value if w else None
    return -e.code  # districts: distinct from every ward code


def _title(name: str) -> str:
    return " ".join(w[:1].upper() + w[1:] for w in name.split())


def normalize_location(raw: str) -> Location:
    """Resolve a spoken place ("thôn an mỹ xã hải phú huyện hải lăng") to Quảng Trị's units.

    Never raises: an unknown place comes back with `matched=False` and level "village",
    "street" or "unknown".
    """
    raw = nfc(raw).strip()
    idx = _index()
    segs = _segments(raw, idx)

    village = next(
        (
            f"{s.unit_word} {_title(s.key if s.key.isdigit() else s.name)}"
            for s in segs
            if s.kind in ("village", "quarter")
        ),
        None,
    )
    street = next((f"{s.unit_word} {_title(s.name)}" for s in segs if s.kind == "street"), None)

    district: _Entry | None = None
    province_said = any(s.kind == "province" for s in segs)
    alternatives = 0
    # Districts first: a district the caller named narrows the communes ("phường 1 đông hà").
    for s in segs:
        if s.kind not in _DISTRICT_KINDS and s.kind != "bare":
            continue
        if s.kind == "bare" and s.key == "quang tri":
            continue  # "ở quảng trị" names the province, not the old town (handled below)
        cands = [e for e in idx.find(s.key) if e.kind == "legacy_district"]
        if s.kind in _DISTRICT_KINDS:
            typed = [e for e in cands if e.division in _DISTRICT_KINDS[s.kind]]
            cands = typed or cands
        if cands and (district is None or s.kind != "bare"):
            district, alternatives = _pick(cands, None)

    commune: _Entry | None = None
    for s in segs:
        if s.kind not in _COMMUNE_KINDS and s.kind not in ("special", "bare"):
            continue
        if s.kind == "bare" and s.key == "quang tri":
            province_said = True  # "ở quảng trị": the province, not the old town
            continue
        cands = [e for e in idx.find(s.key) if e.kind != "legacy_district"]
        if s.kind == "bare":
            if district is not None and idx.find(s.key) and district in idx.find(s.key):
                continue  # the bare name was the district itself ("ở hải lăng")
            if s.key.isdigit():
                continue
        elif s.kind in _COMMUNE_KINDS:
            typed = [e for e in cands if e.division in _COMMUNE_KINDS[s.kind]]
            cands = typed or cands
        picked, alt = _pick(cands, district.code if district else None)
        if picked is not None:
            commune, alternatives = picked, alt
            break

    loc: dict[str, Any] = {"raw": raw, "village": village, "street": street}
    prov = new_province()
    resolved = {"matched": True, "province": prov.name, "province_code": prov.code.value}
    if commune is not None:
        if commune.kind == "legacy_ward":
            new = convert_legacy_ward(commune.code)
            ld = LegacyDistrict.from_code(commune.district_code)  # type: ignore[arg-type]
            loc.update(
                legacy_commune=commune.name,
                legacy_commune_code=commune.code,
                legacy_district=ld.name,
                legacy_district_code=ld.code.value,
                new_unit=new.name if new else None,
                new_unit_code=new.code.value if new else None,
            )
        else:
            loc.update(
                new_unit=commune.name,
                new_unit_code=commune.code,
                legacy_district=district.name if district else None,
                legacy_district_code=district.code if district else None,
            )
        return Location(level="commune", alternatives=alternatives, **loc, **resolved)
    if district is not None:
        wards = district_new_units(district.code)
        if not wards and _squash(_bare(district.name)) == "conco":
            # The old island district has no communes in the data; it is a special zone now.
            wards = tuple(
                Ward.from_code(WardCode(e.code)) for e in idx.find("con co") if e.kind == "new"
            )
        loc.update(
            legacy_district=district.name,
            legacy_district_code=district.code,
            new_unit_candidates=tuple(w.name for w in wards),
            new_unit=wards[0].name if len(wards) == 1 else None,
            new_unit_code=wards[0].code.value if len(wards) == 1 else None,
        )
        return Location(level="district", alternatives=alternatives, **loc, **resolved)
    if province_said:
        return Location(level="province", **loc, **resolved)
    if street is None:
        street = _match_street(raw)
        loc["street"] = street
    level: Level = "street" if street else "village" if village else "unknown"
    return Location(level=level, matched=False, **loc)


def _match_street(raw: str) -> str | None:
    key = fold(raw)
    for s in STREETS:
        if re.search(rf"\b{re.escape(fold(s))}\b", key):
            return f"đường {s}"
    return None


def place_of(location: Any) -> dict[str, Any] | None:
    """The NLU's location as the flow and tickets use it: the caller's words, the unit they
    resolve to (name, code: the routing table and the console key on these), and how to say it."""
    if location is None:
        return None
    d = location.as_dict()
    unit = location.new_unit or location.legacy_district or location.province
    d["name"] = unit
    d["code"] = location.new_unit_code
    d["label"] = location.label
    spoken = location.raw
    if unit and fold(unit.split(" ", 1)[-1]) not in fold(spoken):
        spoken = f"{spoken}, {unit}"
    d["spoken"] = spoken
    return d
