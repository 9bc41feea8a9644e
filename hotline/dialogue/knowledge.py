"""Spoken answers for enquiries, kept in `call_flows/knowledge.yml`.

`KnowledgeBase.load` reads and checks the file at start (a mistake stops the start, naming the
file, the place and the problem). `KnowledgeBase.answer(intent, text)` picks the entry that best
fits what the caller said; below a threshold it returns the fallback (or the intent's default
entry). Everything after loading is pure: no I/O, no clock, safe to share between calls.

Matching works on *folded* text: NFC, lower case, tones and other marks stripped, đ -> d,
punctuation dropped. Callers' words reach us through a recogniser (no punctuation, sometimes no
diacritics) or typed without tones, and Central speech varies the tone marks anyway ("mô", "ni",
"răng"), so tones cost more in missed matches than they buy in precision. Function words and
fillers ("dạ", "ạ", "cho tui hỏi", "đi mô", "làm chi") are dropped; what is left is compared
with the keywords:

- pairs of adjacent syllables from a keyword ("khai sinh", "can cuoc") are strong evidence,
  because Vietnamese words are mostly two syllables and single syllables are very ambiguous once
  tones are gone ("can" is cần and căn; "mat" is mất tiền and mất = died);
- single syllables of a longer keyword are weak evidence; a one-syllable keyword ("đất",
  "chết", "zalo") is strong;
- evidence shared by several entries is divided between them;
- a keyword heard whole, in order, with its function words ("mất rồi", "gọi số ni có mất tiền
  không") adds a bonus that grows with its length;
- entries of the intent the NLU found are preferred over the other enquiry intent's entries.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from hotline import text as vntext

INTENTS: tuple[str, ...] = ("ask_public_service", "ask_hotline_info")

# Scoring. A unique two-syllable keyword heard whole scores about 1.0 (pair) + 0.35 x 2 (its
# syllables) + 1.0 (whole phrase) = 2.7; one weak syllable alone scores at most 0.35.
STRONG = 1.0
WEAK = 0.35
PHRASE_PER_SYLLABLE = 0.5
PHRASE_CAP = 2.0
OTHER_INTENT_FACTOR = 0.6
DEFAULT_THRESHOLD = 0.9

# Folded (toneless) function words, fillers, pronouns and question words, Standard and Central.
# A word stays out of this list when its toneless form is also a content word we need:
# "dang" (đang / đăng ký), "do" (đó / sổ đỏ), "can" (cần / căn cước), "the" (thế / thẻ),
# "vo" (vô / vợ), "day" (đấy / đường dây), "ho" (hở / hộ khẩu), "ma" (mà / mã số).
_STOPWORD_TEXT = """
    a ah alo da u um uhm hm hmm ha he hi nhe nha nhi ne e oi on chao
    toi tui tao tau minh em anh chi chu bac ong ba co cau con chau noi o me mi nguoi ai
    gi sao rang nao mo dau ni nay no te kia ay vay rua ri
    roi thi la voi cho hoi xin muon duoc khong ko phai nen di den ve ra vao len
    lam man gium giup dum biet hay neu khi luc cung va cac nhung bi se lai nhu cai cay cua
    """
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
# Multi-syllable fillers whose syllables are content words on their own.
_STOP_PHRASES: tuple[tuple[str, ...], ...] = (
    ("nhu", "the", "nao"),
    ("the", "nao"),
    ("bay", "gio"),
    ("ho", "tro"),
    ("vui", "long"),
    ("cam", "on"),
)

_ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_DIGIT_KEY_RE = re.compile(r"^[1-9]$")
_TOKEN_RE = re.compile(r"[a-z0-9]+")
# Things espeak-ng reads badly or not at all; spoken text must spell them out in words.
_UNSPEAKABLE = (
    (re.compile(r"\d"), "a digit (write numbers as words: 'sáu mươi', 'một một ba')"),
    (re.compile(r"https?:|www\.|\w\.\w|[/@#%&*_=+<>\\|~^$]"), "a web address or symbol"),
)


class KnowledgeBaseError(ValueError):
    """The knowledge file is missing or wrong; the message names the file, place and problem."""


@dataclass(frozen=True)
class Followup:
    """An offer read after an answer ("Quý vị có muốn nghe ... không?"); yes reads `entry_id`."""

    prompt: str
    entry_id: str


@dataclass(frozen=True)
class Entry:
    id: str
    intent: str
    title: str
    keywords: tuple[str, ...]
    spoken: str
    text: str  # for SMS and the console; equals `spoken` when the file gives none
    followup: Followup | None = None


@dataclass(frozen=True)
class Answer:
    entry_id: str
    title: str
    spoken: str
    score: float  # the best entry's score, also when it was too low and this is the fallback
    text: str = ""
    matched: bool = True  # False: nothing matched well enough; this is the fallback/default
    followup: Followup | None = None


@dataclass(frozen=True)
class Menu:
    """The keypad submenu of procedures (after key 2): digit -> entry id."""

    prompt: str
    invalid: str
    items: Mapping[str, str]

    def entry_id(self, digit: str) -> str | None:
        return self.items.get(digit)


def fold(text: str) -> str:
    """Lower case, no tones or marks, đ -> d, words (letters and digits) separated by spaces."""
    return " ".join(_TOKEN_RE.findall(vntext.fold(text)))


def content_tokens(folded_tokens: Iterable[str]) -> tuple[str, ...]:
    """Drop fillers and function words from folded syllables."""
    tokens = list(folded_tokens)
    out: list[str] = []
    i = 0
    while i < len(tokens):
        for phrase in _STOP_PHRASES:
            if tuple(tokens[i : i + len(phrase)]) == phrase:
                i += len(phrase)
                break
        else:
            if tokens[i] not in _STOPWORDS:
                out.append(tokens[i])
            i += 1
    return tuple(out)


def _entry_features(keywords: Iterable[str]) -> dict[str, float]:
    """Feature -> weight for one entry's keywords (before sharing with other entries)."""
    features: dict[str, float] = {}
    for keyword in keywords:
        syllables = fold(keyword).split()
        content = content_tokens(syllables)
        if len(syllables) == 1 and content:
            # A one-syllable keyword was chosen to stand alone ("đất", "chết", "zalo").
            features[content[0]] = STRONG
            continue
        for tok in content:
            features[tok] = max(features.get(tok, 0.0), WEAK)
        for a, b in zip(content, content[1:], strict=False):
            features[f"{a} {b}"] = STRONG
    return features


def _utterance_features(content: tuple[str, ...]) -> set[str]:
    """Syllables, adjacent pairs, and pairs one word apart.

    The skipping pairs let "gọi đây có mất tiền không" meet the keyword "gọi có mất tiền
    không" ("goi mat") although the caller put a word between "gọi" and "mất".
    """
    pairs = zip(content, content[1:], strict=False)
    skips = zip(content, content[2:], strict=False)
    return set(content) | {f"{a} {b}" for a, b in (*pairs, *skips)}


class KnowledgeBase:
    def __init__(
        self,
        entries: Iterable[Entry],
        fallback: Entry,
        menu: Menu,
        intent_defaults: Mapping[str, str] | None = None,
        *,
        source: str = "<memory>",
        threshold: float = DEFAULT_THRESHOLD,
    ) -> None:
        self.source = source
        self.threshold = threshold
        self.entries: tuple[Entry, ...] = tuple(entries)
        self.fallback = fallback
        self.menu = menu
        self.intent_defaults: Mapping[str, str] = MappingProxyType(dict(intent_defaults or {}))
        self._by_id = {e.id: e for e in self.entries}
        raw_features = {e.id: _entry_features(e.keywords) for e in self.entries}
        # Whole keywords of two or more syllables, folded, with their bonus when heard in order.
        self._phrases: dict[str, list[tuple[str, float]]] = {}
        for e in self.entries:
            phrases = {fold(kw) for kw in e.keywords if " " in fold(kw)}
            self._phrases[e.id] = [
                (f" {p} ", min(PHRASE_CAP, PHRASE_PER_SYLLABLE * len(p.split())))
                for p in sorted(phrases)
            ]
        # A feature's weight is divided among the entries that share it. A strong feature is
        # divided only among entries where it is strong too: "đất" stands for land although
        # "đắt" (dear) is a weak syllable of a question about the price of the call.
        df: dict[str, int] = {}
        df_strong: dict[str, int] = {}
        for features in raw_features.values():
            for f, w in features.items():
                df[f] = df.get(f, 0) + 1
                if w >= STRONG:
                    df_strong[f] = df_strong.get(f, 0) + 1
        self._weights: dict[str, dict[str, float]] = {
            entry_id: {f: w / (df_strong[f] if w >= STRONG else df[f]) for f, w in features.items()}
            for entry_id, features in raw_features.items()
        }

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | Path, *, threshold: float = DEFAULT_THRESHOLD) -> KnowledgeBase:
        path = Path(path)
        try:
            raw = path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            raise KnowledgeBaseError(f"{path}: file not found") from None
        except UnicodeDecodeError as exc:
            raise KnowledgeBaseError(
                f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from None
        try:
            # A SafeLoader subclass: plain data only, no Python objects.
            data = yaml.load(raw, Loader=_UniqueKeyLoader)
        except yaml.YAMLError as exc:
            raise KnowledgeBaseError(f"{path}: invalid YAML: {exc}") from None
        return cls.from_data(data, source=str(path), threshold=threshold)

    @classmethod
    def from_data(
        cls, data: Any, *, source: str = "<memory>", threshold: float = DEFAULT_THRESHOLD
    ) -> KnowledgeBase:
        """Build from parsed YAML; every problem found is listed in one KnowledgeBaseError."""
        return _Builder(source).build(data, threshold)

    # ------------------------------------------------------------------ lookups
    def entry(self, entry_id: str) -> Entry:
        """The entry with this id (the fallback's id included); KeyError if none."""
        if entry_id == self.fallback.id:
            return self.fallback
        return self._by_id[entry_id]

    def menu_entry(self, digit: str) -> Entry | None:
        entry_id = self.menu.entry_id(digit)
        return None if entry_id is None else self._by_id[entry_id]

    def all_spoken_texts(self) -> list[str]:
        """Every fixed text the voice may read from this file, once each, in file order."""
        texts: list[str] = []
        for e in self.entries:
            texts.append(e.spoken)
            if e.followup:
                texts.append(e.followup.prompt)
        texts += [self.fallback.spoken, self.menu.prompt, self.menu.invalid]
        return list(dict.fromkeys(texts))

    # ------------------------------------------------------------------ matching
    def rank(self, intent: str | None, text: str) -> list[tuple[str, float]]:
        """All entries with a score above zero, best first (ties keep file order)."""
        tokens = fold(text).split()
        feats = _utterance_features(content_tokens(tokens))
        padded = f" {' '.join(tokens)} "
        scored: list[tuple[str, float]] = []
        for e in self.entries:
            weights = self._weights[e.id]
            score = sum(weights[f] for f in feats if f in weights)
            score += max((bonus for p, bonus in self._phrases[e.id] if p in padded), default=0.0)
            if intent in INTENTS and e.intent != intent:
                score *= OTHER_INTENT_FACTOR
            if score > 0:
                scored.append((e.id, round(score, 4)))
        scored.sort(key=lambda item: -item[1])  # stable: ties keep file order
        return scored

    def answer(self, intent: str | None, text: str) -> Answer:
        """The best answer for what the caller said, or the fallback/default below threshold."""
        ranked = self.rank(intent, text)
        best_id, best_score = ranked[0] if ranked else ("", 0.0)
        if best_id and best_score >= self.threshold:
            return _answer(self._by_id[best_id], best_score, matched=True)
        default_id = self.intent_defaults.get(intent or "")
        entry = self._by_id[default_id] if default_id else self.fallback
        return _answer(entry, best_score, matched=False)


def _answer(entry: Entry, score: float, *, matched: bool) -> Answer:
    return Answer(
        entry_id=entry.id,
        title=entry.title,
        spoken=entry.spoken,
        score=score,
        text=entry.text,
        matched=matched,
        followup=entry.followup,
    )


def _keyword_content(keyword: str) -> tuple[str, ...]:
    return content_tokens(fold(keyword).split())


# ---------------------------------------------------------------------- validation
class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last)."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:
            continue  # unhashable key: construct_mapping reports it
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_unique_mapping,  # type: ignore[arg-type]
)

_ENTRY_FIELDS = {"id", "intent", "title", "keywords", "spoken", "text", "followup"}
_ENTRY_REQUIRED = ("id", "intent", "title", "keywords", "spoken")
_FALLBACK_FIELDS = {"id", "title", "spoken", "text"}
_TOP_FIELDS = {"version", "entries", "fallback", "intent_defaults", "menu"}


class _Builder:
    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []
        # Ids of entries that had their own problems: references to them are not reported
        # again as "no entry with id", which would only bury the real problem.
        self.broken_ids: set[str] = set()

    def missing(self, entry_id: Any, by_id: Mapping[str, Entry]) -> bool:
        return entry_id not in by_id and entry_id not in self.broken_ids

    def problem(self, where: str, what: str) -> None:
        self.problems.append(f"{where}: {what}" if where else what)

    def fail_if_problems(self) -> None:
        if self.problems:
            shown = self.problems[:20]
            more = len(self.problems) - len(shown)
            lines = "\n".join(f"  - {p}" for p in shown)
            tail = f"\n  ... and {more} more" if more else ""
            raise KnowledgeBaseError(
                f"{self.source}: {len(self.problems)} problem(s):\n{lines}{tail}"
            )

    def build(self, data: Any, threshold: float) -> KnowledgeBase:
        if not isinstance(data, dict):
            self.problem("", "the file must be a mapping with entries, fallback and menu")
            self.fail_if_problems()
        self._check_nfc(data, "")
        for key in data:
            if key not in _TOP_FIELDS:
                self.problem(str(key), f"unknown field (expected one of {sorted(_TOP_FIELDS)})")
        if data.get("version", 1) != 1:
            self.problem("version", f"unsupported version {data['version']!r} (expected 1)")

        entries = self._entries(data.get("entries"))
        fallback = self._fallback(data.get("fallback"))
        by_id: dict[str, Entry] = {}
        for i, e in enumerate(entries):
            if e.id in by_id or (fallback and e.id == fallback.id):
                self.problem(f"entries[{i}]", f"duplicate id '{e.id}'")
            by_id.setdefault(e.id, e)
        for i, e in enumerate(entries):
            if e.followup and self.missing(e.followup.entry_id, by_id):
                self.problem(
                    f"entries[{i}] ({e.id}).followup.entry",
                    f"no entry with id '{e.followup.entry_id}'",
                )
        self._check_keyword_owners(entries)
        defaults = self._intent_defaults(data.get("intent_defaults"), by_id)
        menu = self._menu(data.get("menu"), by_id)
        self.fail_if_problems()
        assert fallback is not None and menu is not None  # no problems means both were built
        return KnowledgeBase(
            entries, fallback, menu, defaults, source=self.source, threshold=threshold
        )

    # -- pieces ------------------------------------------------------------------
    def _check_nfc(self, node: Any, where: str) -> None:
        if isinstance(node, str):
            if unicodedata.normalize("NFC", node) != node:
                self.problem(where or "(top)", f"text is not NFC-normalised: {node[:40]!r}")
        elif isinstance(node, dict):
            for k, v in node.items():
                self._check_nfc(k, f"{where}.{k}(key)" if where else f"{k}(key)")
                self._check_nfc(v, f"{where}.{k}" if where else str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                self._check_nfc(v, f"{where}[{i}]")

    def _text(self, value: Any, where: str, *, spoken: bool = False) -> str | None:
        if value is None:
            self.problem(where, "missing")
            return None
        if not isinstance(value, str):
            self.problem(where, f"must be text, got {value!r} (quote it in YAML)")
            return None
        text = " ".join(value.split())
        if not text:
            self.problem(where, "is empty")
            return None
        if spoken:
            for pattern, what in _UNSPEAKABLE:
                m = pattern.search(text)
                if m:
                    self.problem(where, f"spoken text has {what}: {m.group(0)!r}")
            for word in text.split():
                if sum(ch.isupper() for ch in word) >= 2:
                    self.problem(
                        where,
                        f"spoken text has the abbreviation {word!r}: write it in words "
                        "(Ủy ban nhân dân, căn cước công dân)",
                    )
        return text

    def _entries(self, value: Any) -> list[Entry]:
        if not isinstance(value, list) or not value:
            self.problem("entries", "must be a non-empty list")
            return []
        out = []
        for i, item in enumerate(value):
            where = f"entries[{i}]"
            if not isinstance(item, dict):
                self.problem(where, "must be a mapping")
                continue
            if isinstance(item.get("id"), str):
                where = f"entries[{i}] ({item['id']})"
            entry = self._entry(item, where)
            if entry:
                out.append(entry)
            elif isinstance(item.get("id"), str):
                self.broken_ids.add(item["id"])
        return out

    def _entry(self, item: dict[str, Any], where: str) -> Entry | None:
        ok = True
        for key in item:
            if key not in _ENTRY_FIELDS:
                self.problem(f"{where}.{key}", f"unknown field (expected {sorted(_ENTRY_FIELDS)})")
                ok = False
        for key in _ENTRY_REQUIRED:
            if key not in item:
                self.problem(where, f"missing field '{key}'")
                ok = False
        if not ok:
            return None
        entry_id = item["id"]
        if not isinstance(entry_id, str) or not _ID_RE.match(entry_id):
            self.problem(f"{where}.id", f"{entry_id!r} must be lower-case a-z, 0-9 and _")
            return None
        intent = item["intent"]
        if intent not in INTENTS:
            self.problem(
                f"{where}.intent", f"unknown intent {intent!r} (expected one of {list(INTENTS)})"
            )
        title = self._text(item["title"], f"{where}.title")
        spoken = self._text(item["spoken"], f"{where}.spoken", spoken=True)
        text = self._text(item["text"], f"{where}.text") if "text" in item else spoken
        keywords = self._keywords(item["keywords"], f"{where}.keywords")
        followup = None
        if "followup" in item:
            followup = self._followup(item["followup"], f"{where}.followup")
        if None in (title, spoken, text) or not keywords or intent not in INTENTS:
            return None
        assert title is not None and spoken is not None and text is not None
        return Entry(entry_id, intent, title, keywords, spoken, text, followup)

    def _keywords(self, value: Any, where: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            self.problem(where, "must be a non-empty list of words callers use")
            return ()
        out = []
        for j, kw in enumerate(value):
            text = self._text(kw, f"{where}[{j}]")
            if text is None:
                continue
            if not _keyword_content(text):
                self.problem(
                    f"{where}[{j}]",
                    f"{text!r} has only filler or function words and can never match",
                )
                continue
            out.append(text)
        return tuple(out)

    def _followup(self, value: Any, where: str) -> Followup | None:
        if not isinstance(value, dict):
            self.problem(where, "must be a mapping with prompt and entry")
            return None
        for key in value:
            if key not in ("prompt", "entry"):
                self.problem(f"{where}.{key}", "unknown field (expected prompt, entry)")
        prompt = self._text(value.get("prompt"), f"{where}.prompt", spoken=True)
        target = value.get("entry")
        if not isinstance(target, str):
            self.problem(f"{where}.entry", "missing or not an entry id")
            return None
        return Followup(prompt, target) if prompt else None

    def _check_keyword_owners(self, entries: list[Entry]) -> None:
        # The same words in two entries would make the answer depend on file order.
        owner: dict[tuple[str, ...], tuple[str, str]] = {}
        for i, e in enumerate(entries):
            for kw in e.keywords:
                content = _keyword_content(kw)
                first = owner.setdefault(content, (e.id, kw))
                if first[0] != e.id:
                    self.problem(
                        f"entries[{i}] ({e.id}).keywords",
                        f"{kw!r} is the same words as {first[1]!r} of entry '{first[0]}'",
                    )

    def _fallback(self, value: Any) -> Entry | None:
        where = "fallback"
        if not isinstance(value, dict):
            self.problem(where, "missing (a mapping with id, title, spoken)")
            return None
        for key in value:
            if key not in _FALLBACK_FIELDS:
                self.problem(
                    f"{where}.{key}", f"unknown field (expected {sorted(_FALLBACK_FIELDS)})"
                )
        entry_id = value.get("id")
        if not isinstance(entry_id, str) or not _ID_RE.match(entry_id):
            self.problem(f"{where}.id", f"{entry_id!r} must be lower-case a-z, 0-9 and _")
            return None
        title = self._text(value.get("title"), f"{where}.title")
        spoken = self._text(value.get("spoken"), f"{where}.spoken", spoken=True)
        text = self._text(value["text"], f"{where}.text") if "text" in value else spoken
        if title is None or spoken is None or text is None:
            return None
        return Entry(entry_id, "ask_public_service", title, (), spoken, text)

    def _intent_defaults(self, value: Any, by_id: dict[str, Entry]) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem("intent_defaults", "must be a mapping of intent -> entry id")
            return {}
        out = {}
        for intent, entry_id in value.items():
            where = f"intent_defaults.{intent}"
            if intent not in INTENTS:
                self.problem(where, f"unknown intent (expected one of {list(INTENTS)})")
            elif self.missing(entry_id, by_id):
                self.problem(where, f"no entry with id {entry_id!r}")
            elif entry_id not in by_id:
                continue  # the entry itself is reported
            elif by_id[entry_id].intent != intent:
                self.problem(where, f"entry '{entry_id}' belongs to {by_id[entry_id].intent}")
            else:
                out[intent] = entry_id
        return out

    def _menu(self, value: Any, by_id: dict[str, Entry]) -> Menu | None:
        if not isinstance(value, dict):
            self.problem("menu", "missing (a mapping with prompt, invalid and items)")
            return None
        for key in value:
            if key not in ("prompt", "invalid", "items"):
                self.problem(f"menu.{key}", "unknown field (expected prompt, invalid, items)")
        prompt = self._text(value.get("prompt"), "menu.prompt", spoken=True)
        invalid = self._text(value.get("invalid"), "menu.invalid", spoken=True)
        items_raw = value.get("items")
        if not isinstance(items_raw, dict) or not items_raw:
            self.problem("menu.items", "must map digits 1-9 to entry ids")
            return None
        items: dict[str, str] = {}
        for digit, entry_id in items_raw.items():
            key = str(digit)
            where = f"menu.items.{key}"
            if not _DIGIT_KEY_RE.match(key):
                self.problem(where, "menu keys are the digits 1-9 (0 is the operator)")
            elif key in items:
                self.problem(where, "digit given twice")
            elif self.missing(entry_id, by_id):
                self.problem(where, f"no entry with id {entry_id!r}")
            else:
                items[key] = entry_id
        if prompt is None or invalid is None:
            return None
        return Menu(prompt, invalid, MappingProxyType(dict(sorted(items.items()))))
