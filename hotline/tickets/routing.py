"""Which agency a field report goes to: an ordered rule table read from call_flows/routing.yml.

A rule matches on the report's category (the NLU intent), optionally on the place (the
normalised administrative unit, its code, or the district or province it belonged to before
the 2025 reorganisation) and optionally on words in the caller's description. The first rule
that matches wins; when none does, the file's `default` agency gets the report. The file's own
header documents the format.

The file is validated when it is loaded, and a mistake fails at start naming the file and the
rule: a misspelt ward would otherwise never match, and its reports would quietly go to the
default agency.

Places are matched against the national gazetteer (`vietnam-provinces`): a location carrying
only a ward code is enriched with the ward's name and the former districts and provinces it
was made from, because agencies (power company branches, for one) still follow the old
boundaries.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from hotline.intents import REPORT_INTENTS

REPORT_CATEGORIES = frozenset(REPORT_INTENTS)
# voice_message: a message left outside operator hours; keypad_report: a report made by keys
# (no intent). Both usually go to the default agency, which sorts them by hand.
CATEGORIES = REPORT_CATEGORIES | {"voice_message", "keypad_report"}

# Short Vietnamese labels for operators' screens.
CATEGORY_LABELS = {
    "report_utilities": "điện, nước",
    "report_infrastructure": "hạ tầng, giao thông",
    "report_environment": "môi trường",
    "report_public_order": "an ninh, trật tự",
    "report_disaster": "thiên tai",
    "report_administration": "hành chính",
    "report_health": "y tế",
    "voice_message": "tin nhắn thoại",
    "keypad_report": "phản ánh qua bàn phím",
}

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "call_flows" / "routing.yml"

PLACE_KEYS = ("unit", "code", "legacy_district", "legacy_province")
_RULE_KEYS = {"category", "place", "keywords", "not_keywords", "agency", "note"}
_TOP_KEYS = {"version", "province", "default", "agencies", "rules"}
_TEMPLATE_FIELDS = {"unit"}
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def fold(text: str) -> str:
    """Lower case without diacritics: 'Đakrông' -> 'dakrong'."""
    text = unicodedata.normalize("NFD", nfc(text).casefold())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return text.replace("đ", "d")


# Administrative prefixes, longest first so "thị xã" is removed before "xã".
_UNIT_PREFIXES = (
    "thành phố",
    "thị trấn",
    "đặc khu",
    "thị xã",
    "phường",
    "huyện",
    "quận",
    "tỉnh",
    "tp.",
    "tp",
    "xã",
)
# Typed without accents too ("xa Dakrong").
_PREFIX_RE = re.compile(
    r"^(?:"
    + "|".join(
        re.escape(p)
        for p in sorted({*_UNIT_PREFIXES, *map(fold, _UNIT_PREFIXES)}, key=len, reverse=True)
    )
    + r")(?=\s|\.|$)"
)
_NON_WORD = re.compile(r"[\W_]+")


class RoutingError(ValueError):
    """The routing file is wrong; the message names the file and the problem."""


@dataclass(frozen=True)
class Agency:
    code: str
    name: str


def place_key(name: str) -> str:
    """The form unit names are compared in: no prefix, no spaces or punctuation, diacritics kept.

    'Xã Đa Krông', 'đakrông' and 'Đakrông' all give 'đakrông' (callers and signs write it as one
    word, the gazetteer as two). Diacritics stay: 'Đông Hà' and 'Đồng Hới' are different places.
    """
    key = nfc(str(name)).casefold().strip()
    key = _PREFIX_RE.sub("", key, count=1)
    return _NON_WORD.sub("", key)


def _display_unit(name: str) -> str:
    """'Phường Đông Hà' -> 'phường Đông Hà', as it reads after 'UBND' or 'Công an'."""
    name = nfc(name).strip()
    lowered = name.casefold()
    for prefix in _UNIT_PREFIXES:
        if lowered.startswith(prefix + " "):
            return prefix + name[len(prefix) :]
    return name


# --- gazetteer ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Unit:
    code: int
    name: str
    legacy_districts: frozenset[int]
    legacy_district_names: frozenset[str]  # place keys
    legacy_provinces: frozenset[int]


@dataclass(frozen=True)
class _Gazetteer:
    province: int
    units: dict[int, _Unit]
    by_key: dict[str, int]
    legacy_districts: dict[int, str]  # code -> name, of every former district in the province
    legacy_provinces: dict[int, str]


@cache
def _gazetteer(province: int) -> _Gazetteer:
    from vietnam_provinces import Ward
    from vietnam_provinces.legacy import District, Province

    units: dict[int, _Unit] = {}
    by_key: dict[str, int] = {}
    districts: dict[int, str] = {}
    provinces: dict[int, str] = {}
    try:
        wards = list(Ward.iter_by_province(province))
    except ValueError:
        wards = []
    for ward in wards:
        d_codes: set[int] = set()
        p_codes: set[int] = set()
        for src in ward.get_legacy_sources():
            district = District.from_code(src.district_code)
            d_codes.add(int(district.code))
            p_codes.add(int(district.province_code))
            districts[int(district.code)] = nfc(district.name)
            provinces[int(district.province_code)] = nfc(
                Province.from_code(district.province_code).name
            )
        unit = _Unit(
            code=int(ward.code),
            name=nfc(ward.name),
            legacy_districts=frozenset(d_codes),
            legacy_district_names=frozenset(place_key(districts[c]) for c in d_codes),
            legacy_provinces=frozenset(p_codes),
        )
        units[unit.code] = unit
        by_key.setdefault(place_key(unit.name), unit.code)
    return _Gazetteer(province, units, by_key, districts, provinces)


# --- locations ---------------------------------------------------------------------------------

_UNIT_NAME_KEYS = ("unit", "name", "ward", "unit_name", "ward_name")
_UNIT_CODE_KEYS = ("code", "unit_code", "ward_code")
_DISTRICT_NAME_KEYS = ("legacy_district", "district", "district_name")
_DISTRICT_CODE_KEYS = ("legacy_district_code", "district_code")


def _first(location: Mapping[str, Any], keys: Iterable[str]) -> Any:
    for key in keys:
        value = location.get(key)
        if value not in (None, ""):
            return value
    return None


def _as_int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def location_fields(location: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """(unit name, unit code) of a normalised location dict, as the tickets table stores them.

    Accepts the keys the gazetteer step may use: unit/name/ward for the name, code/unit_code/
    ward_code for the code."""
    if not location:
        return None, None
    name = _first(location, _UNIT_NAME_KEYS)
    code = _first(location, _UNIT_CODE_KEYS)
    return (nfc(str(name)).strip() if name else None, str(code).strip() if code else None)


@dataclass(frozen=True)
class _Place:
    unit: _Unit | None  # the commune/ward, when the gazetteer knows it
    district_keys: frozenset[str]
    district_codes: frozenset[int]
    province_codes: frozenset[int]
    province_keys: frozenset[str]

    @property
    def known(self) -> bool:
        return self.unit is not None


def _resolve_place(location: Mapping[str, Any] | None, gaz: _Gazetteer) -> _Place:
    location = location or {}
    name, code_text = location_fields(location)
    code = _as_int(code_text)
    unit = gaz.units.get(code) if code is not None else None
    if unit is None and name:
        found = gaz.by_key.get(place_key(name))
        unit = gaz.units.get(found) if found is not None else None
    district_keys: set[str] = set()
    district_codes: set[int] = set()
    province_codes: set[int] = set()
    if unit is not None:
        district_keys |= unit.legacy_district_names
        district_codes |= unit.legacy_districts
        province_codes |= unit.legacy_provinces
    # What the location says itself counts too (a caller may name only the old district).
    d_name = _first(location, _DISTRICT_NAME_KEYS)
    if d_name:
        district_keys.add(place_key(str(d_name)))
    d_code = _as_int(_first(location, _DISTRICT_CODE_KEYS))
    if d_code is not None:
        district_codes.add(d_code)
    p_code = _as_int(location.get("legacy_province_code") or location.get("legacy_province"))
    if p_code is not None:
        province_codes.add(p_code)
    province_keys = {
        place_key(gaz.legacy_provinces[p]) for p in province_codes if p in gaz.legacy_provinces
    }
    if isinstance(location.get("legacy_province"), str) and p_code is None:
        province_keys.add(place_key(location["legacy_province"]))
    return _Place(
        unit=unit,
        district_keys=frozenset(district_keys),
        district_codes=frozenset(district_codes),
        province_codes=frozenset(province_codes),
        province_keys=frozenset(province_keys),
    )


# --- rules -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PlaceCond:
    any_known: bool = False
    codes: frozenset[int] = frozenset()  # units named in the rule, by name or code
    district_keys: frozenset[str] = frozenset()
    district_codes: frozenset[int] = frozenset()
    province_keys: frozenset[str] = frozenset()
    province_codes: frozenset[int] = frozenset()
    has_unit: bool = False
    has_district: bool = False
    has_province: bool = False

    def matches(self, place: _Place) -> bool:
        if self.any_known:
            return place.known
        # Each key given in the rule must match (AND); a list within a key is OR.
        if self.has_unit and (place.unit is None or place.unit.code not in self.codes):
            return False
        if self.has_district and not (
            place.district_keys & self.district_keys or place.district_codes & self.district_codes
        ):
            return False
        return not (
            self.has_province
            and not (
                place.province_keys & self.province_keys
                or place.province_codes & self.province_codes
            )
        )


@dataclass(frozen=True)
class _Keyword:
    pattern: re.Pattern[str]
    folded: bool  # written without diacritics: matched against the folded description


@dataclass(frozen=True)
class _AgencySpec:
    code: str
    name: str
    templated: bool


@dataclass(frozen=True)
class Rule:
    index: int
    categories: frozenset[str] | None  # None: any category
    place: _PlaceCond | None
    keywords: tuple[_Keyword, ...]
    not_keywords: tuple[_Keyword, ...]
    agency: str
    note: str = ""

    def matches(self, category: str, place: _Place, text: str, folded_text: str) -> bool:
        if self.categories is not None and category not in self.categories:
            return False
        if self.place is not None and not self.place.matches(place):
            return False
        if any(_found(kw, text, folded_text) for kw in self.not_keywords):
            return False
        return not self.keywords or any(_found(kw, text, folded_text) for kw in self.keywords)


def _found(kw: _Keyword, text: str, folded_text: str) -> bool:
    return kw.pattern.search(folded_text if kw.folded else text) is not None


@dataclass
class Router:
    source: str
    province: int
    agencies: dict[str, _AgencySpec]
    rules: list[Rule]
    default: str
    _gaz: _Gazetteer = field(repr=False, default=None)  # type: ignore[assignment]
    deadlines: Any = field(repr=False, default=None)  # hotline.tickets.deadlines.Deadlines

    # -- loading --

    @classmethod
    def load(cls, path: Path | str = DEFAULT_PATH) -> Router:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise RoutingError(
                f"{path}: cannot read routing table: {exc.strerror or exc}"
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RoutingError(f"{path}: not valid YAML: {exc}") from None
        router = cls.from_dict(data, source=str(path))
        # Deadlines live beside the routing table and travel with it to every confirmation.
        sibling = path.with_name("deadlines.yml")
        if sibling.exists():
            from hotline.tickets.deadlines import DeadlineError, Deadlines

            try:
                router.deadlines = Deadlines.load(sibling)
            except DeadlineError as exc:
                raise RoutingError(str(exc)) from None
        return router

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<routing>") -> Router:
        return _Parser(source).parse(data)

    # -- routing --

    def route(
        self, category: str | None, location: Mapping[str, Any] | None, description: str = ""
    ) -> Agency:
        """The agency for a report; the default agency when no rule matches."""
        return self.explain(category, location, description)[0]

    def explain(
        self, category: str | None, location: Mapping[str, Any] | None, description: str = ""
    ) -> tuple[Agency, int | None]:
        """The agency and the index of the rule that chose it (None: the default)."""
        category = (category or "").strip()
        place = _resolve_place(location, self._gaz)
        text = nfc(description or "").casefold()
        folded_text = fold(text)
        for rule in self.rules:
            if rule.matches(category, place, text, folded_text):
                agency = self._agency(rule.agency, place)
                if agency is not None:
                    return agency, rule.index
        spec = self.agencies[self.default]  # checked at load to be untemplated
        return Agency(spec.code, spec.name), None

    def agency(self, code: str) -> Agency | None:
        """An untemplated agency by code (for an operator reassigning a ticket)."""
        spec = self.agencies.get(code)
        if spec is None or spec.templated:
            return None
        return Agency(spec.code, spec.name)

    def _agency(self, code: str, place: _Place) -> Agency | None:
        spec = self.agencies[code]
        if not spec.templated:
            return Agency(spec.code, spec.name)
        # A templated agency ("UBND {unit}") needs a unit the gazetteer knows (a village name
        # must not become "UBND thôn ..."); without one the rule is skipped. The gazetteer's
        # spelling is used, so the name reads the same whoever called.
        if place.unit is None:
            return None
        name = spec.name.replace("{unit}", _display_unit(place.unit.name))
        return Agency(f"{spec.code}:{place.unit.code}", name)


# --- validation --------------------------------------------------------------------------------


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> RoutingError:
        return RoutingError(f"{self.source}: {where}: {problem}")

    def parse(self, data: Any) -> Router:
        if not isinstance(data, dict):
            raise self.fail(
                "top level", "expected a mapping with 'agencies', 'default' and 'rules'"
            )
        unknown = set(data) - _TOP_KEYS
        if unknown:
            raise self.fail(
                "top level", f"unknown key(s) {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}"
            )
        if data.get("version", 1) != 1:
            raise self.fail("version", f"unsupported version {data.get('version')!r} (expected 1)")
        province = data.get("province", 44)
        if not isinstance(province, int) or isinstance(province, bool):
            raise self.fail("province", f"expected a province code such as 44, got {province!r}")
        gaz = _gazetteer(province)
        if not gaz.units:
            raise self.fail("province", f"no administrative units found for province {province}")
        self.gaz = gaz

        agencies = self.parse_agencies(data.get("agencies"))
        default = data.get("default")
        if not isinstance(default, str) or default not in agencies:
            raise self.fail(
                "default",
                f"must name one of the agencies ({', '.join(sorted(agencies))}), got {default!r}",
            )
        if agencies[default].templated:
            raise self.fail(
                "default", f"agency {default!r} is templated; the default must not need a place"
            )
        raw_rules = data.get("rules")
        if not isinstance(raw_rules, list) or not raw_rules:
            raise self.fail("rules", "expected a non-empty list of rules")
        rules = [self.parse_rule(i, r, agencies) for i, r in enumerate(raw_rules)]
        return Router(
            source=self.source,
            province=province,
            agencies=agencies,
            rules=rules,
            default=default,
            _gaz=gaz,
        )

    def parse_agencies(self, raw: Any) -> dict[str, _AgencySpec]:
        if not isinstance(raw, dict) or not raw:
            raise self.fail("agencies", "expected a mapping of agency code to name")
        out: dict[str, _AgencySpec] = {}
        for code, value in raw.items():
            where = f"agencies.{code}"
            if not isinstance(code, str) or not re.fullmatch(r"[a-z0-9_]+", code):
                raise self.fail(where, "agency codes are lower-case letters, digits and _")
            if isinstance(value, dict):
                extra = set(value) - {"name", "note", "phone"}
                if extra:
                    raise self.fail(
                        where, f"unknown key(s) {sorted(extra)}; allowed: name, note, phone"
                    )
                value = value.get("name")
            if not isinstance(value, str) or not value.strip():
                raise self.fail(where, "needs a non-empty name")
            name = nfc(value.strip())
            fields = set(_PLACEHOLDER.findall(name))
            if fields - _TEMPLATE_FIELDS:
                raise self.fail(
                    where,
                    f"unknown placeholder(s) {sorted(fields - _TEMPLATE_FIELDS)}; only {{unit}}",
                )
            out[code] = _AgencySpec(code, name, templated=bool(fields))
        return out

    def parse_rule(self, index: int, raw: Any, agencies: dict[str, _AgencySpec]) -> Rule:
        where = f"rules[{index}]"
        if not isinstance(raw, dict):
            raise self.fail(where, "expected a mapping with 'category' and 'agency'")
        unknown = set(raw) - _RULE_KEYS
        if unknown:
            raise self.fail(
                where, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(_RULE_KEYS)}"
            )
        agency = raw.get("agency")
        if not isinstance(agency, str) or agency not in agencies:
            close = difflib.get_close_matches(str(agency), list(agencies), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise self.fail(f"{where}.agency", f"unknown agency {agency!r}{hint}")
        if "category" not in raw:
            raise self.fail(where, "needs 'category' (an intent, a list of intents, or '*')")
        categories = self.parse_categories(f"{where}.category", raw["category"])
        place = self.parse_place(f"{where}.place", raw["place"]) if "place" in raw else None
        keywords = self.parse_keywords(f"{where}.keywords", raw.get("keywords"))
        not_keywords = self.parse_keywords(f"{where}.not_keywords", raw.get("not_keywords"))
        note = raw.get("note", "")
        return Rule(index, categories, place, keywords, not_keywords, agency, str(note))

    def parse_categories(self, where: str, raw: Any) -> frozenset[str] | None:
        if raw == "*":
            return None
        values = raw if isinstance(raw, list) else [raw]
        if not values or not all(isinstance(v, str) for v in values):
            raise self.fail(where, "expected an intent name, a list of them, or '*'")
        for v in values:
            if v not in CATEGORIES:
                close = difflib.get_close_matches(v, sorted(CATEGORIES), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.fail(where, f"unknown category {v!r}{hint}")
        return frozenset(values)

    def _legacy_refs(
        self, where: str, raw: Any, table: Mapping[int, str], what: str
    ) -> tuple[set[int], set[str], set[int]]:
        """Former districts or provinces named by code or by name: the codes given, the name
        keys given, and the codes those names stand for."""
        codes: set[int] = set()
        keys: set[str] = set()
        named: set[int] = set()
        for value in self._listed(where, raw):
            code = _as_int(value)
            if code is not None:
                if code not in table:
                    raise self.fail(where, f"no former {what} with code {value!r}")
                codes.add(code)
                continue
            key = place_key(value)
            match = [c for c, n in table.items() if place_key(n) == key]
            if not match:
                raise self.fail(
                    where, f"no former {what} {value!r}{self._suggest(value, list(table.values()))}"
                )
            keys.add(key)
            named.update(match)
        return codes, keys, named

    def parse_place(self, where: str, raw: Any) -> _PlaceCond:
        if raw == "any":
            return _PlaceCond(any_known=True)
        if not isinstance(raw, dict) or not raw:
            raise self.fail(
                where, f"expected 'any' or a mapping with one or more of {list(PLACE_KEYS)}"
            )
        unknown = set(raw) - set(PLACE_KEYS)
        if unknown:
            raise self.fail(where, f"unknown key(s) {sorted(unknown)}; allowed: {list(PLACE_KEYS)}")
        gaz = self.gaz
        codes: set[int] = set()
        district_keys: set[str] = set()
        district_codes: set[int] = set()
        province_keys: set[str] = set()
        province_codes: set[int] = set()
        for value in self._listed(f"{where}.unit", raw.get("unit")):
            if isinstance(value, int):
                raise self.fail(f"{where}.unit", f"{value!r} is a code; put codes under 'code'")
            key = place_key(value)
            if key not in gaz.by_key:
                raise self.fail(
                    f"{where}.unit",
                    f"no unit {value!r} in province {gaz.province}{self._suggest(value, [u.name for u in gaz.units.values()])}",
                )
            codes.add(gaz.by_key[key])
        for value in self._listed(f"{where}.code", raw.get("code")):
            code = _as_int(value)
            if code is None or code not in gaz.units:
                raise self.fail(
                    f"{where}.code", f"no unit with code {value!r} in province {gaz.province}"
                )
            codes.add(code)
        codes_, keys, _named = self._legacy_refs(
            f"{where}.legacy_district", raw.get("legacy_district"), gaz.legacy_districts, "district"
        )
        district_codes |= codes_
        district_keys |= keys
        codes_, keys, named = self._legacy_refs(
            f"{where}.legacy_province",
            raw.get("legacy_province"),
            gaz.legacy_provinces,
            "province",
        )
        province_codes |= codes_ | named
        province_keys |= keys
        return _PlaceCond(
            codes=frozenset(codes),
            district_keys=frozenset(district_keys),
            district_codes=frozenset(district_codes),
            province_keys=frozenset(province_keys),
            province_codes=frozenset(province_codes),
            has_unit="unit" in raw or "code" in raw,
            has_district="legacy_district" in raw,
            has_province="legacy_province" in raw,
        )

    def parse_keywords(self, where: str, raw: Any) -> tuple[_Keyword, ...]:
        if raw is None:
            return ()
        values = raw if isinstance(raw, list) else [raw]
        out: list[_Keyword] = []
        for value in values:
            if not isinstance(value, str) or not value.strip():
                raise self.fail(where, f"keywords are non-empty strings, got {value!r}")
            kw = nfc(value.strip()).casefold()
            folded = fold(kw) == kw
            words = [re.escape(w) for w in kw.split()]
            # Whole words only: "nước" must not match inside another word.
            pattern = re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)")
            out.append(_Keyword(pattern, folded))
        if not out:
            raise self.fail(where, "an empty keyword list never matches; remove it or add words")
        return tuple(out)

    def _listed(self, where: str, raw: Any) -> list[Any]:
        if raw is None:
            return []
        values = raw if isinstance(raw, list) else [raw]
        if not values:
            raise self.fail(where, "an empty list never matches")
        for v in values:
            if (
                not isinstance(v, str | int)
                or isinstance(v, bool)
                or (isinstance(v, str) and not v.strip())
            ):
                raise self.fail(where, f"expected names or codes, got {v!r}")
        return values

    @staticmethod
    def _suggest(value: Any, names: list[str]) -> str:
        keyed = {place_key(n): n for n in names}
        close = difflib.get_close_matches(place_key(str(value)), list(keyed), n=1, cutoff=0.6)
        return f" (did you mean {keyed[close[0]]!r}?)" if close else ""
