"""Client for Rasa's `POST /model/parse`, with the hotline's post-processing of entities.

The call flow awaits `NLUClient.parse()` on every caller turn. It must never hang a call: a
short timeout, and any failure (server down, slow, bad answer) raises `NLUUnavailable`, on which
the flow falls back to the keypad menu or takes a message.

Post-processing (Rasa gives spans; the hotline needs values):
- `location`: spans from DIET and from the gazetteer lookup (RegexEntityExtractor) are merged
  (overlapping or adjacent), stray unit words ("khu", "thành") are dropped, and each place is
  normalised against the gazetteer (old and new units, see gazetteer.py).
- `ticket_code`, `phone_number`: digits, from numerals or spoken words ("một hai ba" -> "123",
  dialect and unaccented forms too); a span cut short by DIET is extended over the digit words
  next to it. When the caller asks about a ticket and DIET found no code, a run of 4+ digits in
  the text is taken as the code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Self

import httpx

from hotline.config import Settings, load_settings
from hotline.intents import FALLBACK_INTENT
from hotline.nlu.gazetteer import Location, normalize_location
from hotline.text import DIGIT_WORDS, clean_utterance, digits_from_speech, fold
from hotline.tickets.codes import CODE_LENGTH

POSTPROCESS_EXTRACTOR = "hotline.postprocess"


class NLUUnavailable(RuntimeError):
    """The NLU server did not answer in time or answered nonsense; degrade, don't drop the call."""


@dataclass(frozen=True)
class Entity:
    entity: str  # location | ticket_code | phone_number
    value: str  # normalised: digits for codes and phones, a gazetteer label for places
    text: str  # the span as the caller said it
    start: int
    end: int
    extractor: str | None = None
    confidence: float | None = None
    location: Location | None = None

    def to_dict(self) -> dict[str, Any]:
        """Rasa's entity shape, plus `text` and, for places, `normalized` (the gazetteer match)."""
        d: dict[str, Any] = {
            "entity": self.entity,
            "start": self.start,
            "end": self.end,
            "value": self.value,
            "text": self.text,
            "extractor": self.extractor,
        }
        if self.confidence is not None:
            d["confidence_entity"] = self.confidence
        if self.location is not None:
            d["normalized"] = self.location.as_dict()
        return d


@dataclass(frozen=True)
class NLUResult:
    text: str  # what was sent to Rasa (NFC, lowercase, single spaces)
    intent: str
    confidence: float
    entities: list[Entity]
    intent_ranking: list[dict[str, Any]]  # [{"name": ..., "confidence": ...}, ...]
    raw: dict[str, Any] = field(repr=False)  # Rasa's answer, untouched
    latency_ms: float = 0.0

    @property
    def is_fallback(self) -> bool:
        return self.intent == FALLBACK_INTENT

    def first(self, entity: str) -> Entity | None:
        return next((e for e in self.entities if e.entity == entity), None)

    @property
    def ticket_code(self) -> str | None:
        e = self.first("ticket_code")
        return e.value if e else None

    @property
    def phone_number(self) -> str | None:
        e = self.first("phone_number")
        return e.value if e else None

    @property
    def location(self) -> Location | None:
        e = self.first("location")
        return e.location if e else None

    def to_parse_json(self) -> dict[str, Any]:
        """Rasa's /model/parse format (text, intent, entities, intent_ranking), post-processed."""
        return {
            "text": self.text,
            "intent": {"name": self.intent, "confidence": self.confidence},
            "entities": [e.to_dict() for e in self.entities],
            "intent_ranking": self.intent_ranking,
        }


# ---------------------------------------------------------------------------------------------
# Post-processing

_DIGIT_TOKENS = {fold(w) for w in DIGIT_WORDS} | {"muoi"}
# Words that are locations only with a name after them; alone they are DIET noise.
_UNIT_NOISE = {
    "khu",
    "thanh",
    "lo",
    "kiet",
    "xa",
    "thon",
    "xom",
    "phuong",
    "huyen",
    "duong",
    "to",
    "ban",
    "lang",
    "o",
    "tai",
}


def _tokens(text: str) -> list[tuple[int, int, str]]:
    out = []
    i = 0
    for word in text.split(" "):
        out.append((i, i + len(word), word))
        i += len(word) + 1
    return [t for t in out if t[2]]


def _is_digit_token(word: str) -> bool:
    return word.isdigit() or fold(word) in _DIGIT_TOKENS


def _extend_digits(text: str, start: int, end: int) -> tuple[int, int]:
    """Grow [start, end) over neighbouring tokens of the same kind (numerals or digit words)."""
    toks = _tokens(text)
    inside = [t for t in toks if t[0] < end and t[1] > start]
    if not inside:
        return start, end
    numerals = all(t[2].isdigit() for t in inside)
    words = all(not t[2].isdigit() and _is_digit_token(t[2]) for t in inside)
    if not (numerals or words):
        return start, end

    def same_kind(w: str) -> bool:
        return w.isdigit() if numerals else (not w.isdigit() and _is_digit_token(w))

    first = toks.index(inside[0])
    last = toks.index(inside[-1])
    while first > 0 and same_kind(toks[first - 1][2]):
        first -= 1
    while last + 1 < len(toks) and same_kind(toks[last + 1][2]):
        last += 1
    return min(start, toks[first][0]), max(end, toks[last][1])


def _merge_spans(spans: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """Merge overlapping spans, and spans separated only by a space."""
    merged: list[dict[str, Any]] = []
    for s in sorted(spans, key=lambda s: (s["start"], -s["end"])):
        if (
            merged
            and s["start"] <= merged[-1]["end"] + 1
            and not text[merged[-1]["end"] : s["start"]].strip()
        ):
            m = merged[-1]
            if s["end"] > m["end"]:
                m["end"] = s["end"]
            m["extractors"].add(s["extractor"])
            if s.get("confidence") is not None:
                m["confidence"] = max(m.get("confidence") or 0.0, s["confidence"])
            continue
        merged.append({**s, "extractors": {s["extractor"]}})
    return merged


def _digit_runs(text: str, min_digits: int) -> list[tuple[int, int]]:
    toks = _tokens(text)
    runs: list[tuple[int, int]] = []
    i = 0
    while i < len(toks):
        if _is_digit_token(toks[i][2]):
            j = i
            while j + 1 < len(toks) and _is_digit_token(toks[j + 1][2]):
                j += 1
            span = (toks[i][0], toks[j][1])
            if len(digits_from_speech(text[span[0] : span[1]])) >= min_digits:
                runs.append(span)
            i = j + 1
        else:
            i += 1
    return runs


def postprocess(raw: dict[str, Any], *, latency_ms: float = 0.0) -> NLUResult:
    """Turn Rasa's /model/parse answer into an NLUResult (raises NLUUnavailable if malformed)."""
    try:
        text = str(raw["text"])
        intent = raw.get("intent") or {}
        name = str(intent.get("name") or FALLBACK_INTENT)
        confidence = float(intent.get("confidence") or 0.0)
        ranking = [
            {"name": str(r["name"]), "confidence": float(r["confidence"])}
            for r in raw.get("intent_ranking") or []
        ]
        rasa_entities = list(raw.get("entities") or [])
    except (KeyError, TypeError, ValueError) as exc:
        raise NLUUnavailable(f"malformed NLU answer: {exc}") from exc

    by_type: dict[str, list[dict[str, Any]]] = {}
    for e in rasa_entities:
        try:
            span = {
                "entity": str(e["entity"]),
                "start": int(e["start"]),
                "end": int(e["end"]),
                "extractor": e.get("extractor"),
                "confidence": e.get("confidence_entity"),
            }
        except (KeyError, TypeError, ValueError):
            continue  # an entity without a span is of no use to the flow
        by_type.setdefault(span["entity"], []).append(span)

    entities: list[Entity] = []
    for span in _merge_spans(by_type.get("location", []), text):
        said = text[span["start"] : span["end"]]
        loc = normalize_location(said)
        if (
            not loc.matched
            and loc.level == "unknown"
            and (len(said.split()) == 1 or fold(said) in _UNIT_NOISE)
        ):
            continue  # "khu", "thành": a unit word DIET tagged on its own
        entities.append(
            Entity(
                entity="location",
                value=loc.label if loc.matched or loc.level != "unknown" else said,
                text=said,
                start=span["start"],
                end=span["end"],
                extractor=",".join(sorted(x for x in span["extractors"] if x)),
                confidence=span.get("confidence"),
                location=loc,
            )
        )

    for kind in ("ticket_code", "phone_number"):
        spans = []
        for s in by_type.get(kind, []):
            start, end = _extend_digits(text, s["start"], s["end"])
            spans.append({**s, "start": start, "end": end})
        for span in _merge_spans(spans, text):
            said = text[span["start"] : span["end"]]
            digits = digits_from_speech(said)
            if not digits:
                continue
            entities.append(
                Entity(
                    # Phone numbers have 10 or 11 digits; seven are a ticket code (CODE_LENGTH).
                    entity="ticket_code" if len(digits) == CODE_LENGTH else kind,
                    value=digits,
                    text=said,
                    start=span["start"],
                    end=span["end"],
                    extractor=",".join(sorted(x for x in span["extractors"] if x)),
                    confidence=span.get("confidence"),
                )
            )

    if name == "ask_ticket_status" and not any(e.entity == "ticket_code" for e in entities):
        taken = [(e.start, e.end) for e in entities]
        for start, end in _digit_runs(text, 4):
            if any(start < b and end > a for a, b in taken):
                continue
            said = text[start:end]
            entities.append(
                Entity(
                    "ticket_code",
                    digits_from_speech(said),
                    said,
                    start,
                    end,
                    extractor=POSTPROCESS_EXTRACTOR,
                )
            )
            break

    entities.sort(key=lambda e: e.start)
    return NLUResult(
        text=text,
        intent=name,
        confidence=confidence,
        entities=entities,
        intent_ranking=ranking,
        raw=raw,
        latency_ms=latency_ms,
    )


# ---------------------------------------------------------------------------------------------
# HTTP clients


def _check_answer(resp: httpx.Response) -> dict[str, Any]:
    if resp.status_code != 200:
        raise NLUUnavailable(f"NLU server answered HTTP {resp.status_code}: {resp.text[:200]}")
    try:
        data = resp.json()
    except ValueError as exc:
        raise NLUUnavailable("NLU server answered with something that is not JSON") from exc
    if not isinstance(data, dict) or "intent" not in data or "text" not in data:
        raise NLUUnavailable("NLU server answer has no intent")
    return data


class _Client:
    """What the async and blocking clients share: where, how, and what a failure means."""

    def __init__(self, base_url: str, token: str = "", timeout_s: float = 1.5) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Self:
        settings = settings or load_settings()
        return cls(settings.nlu_url, settings.nlu_auth_token, settings.nlu_timeout_s)

    def _http_options(self) -> dict[str, Any]:
        # trust_env=False: a proxy from the environment must never sit between us and loopback.
        return {
            "base_url": self.base_url,
            "timeout": httpx.Timeout(self.timeout_s),
            "trust_env": False,
        }

    def _params(self) -> dict[str, str]:
        return {"token": self.token} if self.token else {}

    def _unavailable(self, exc: httpx.HTTPError) -> NLUUnavailable:
        if isinstance(exc, httpx.TimeoutException):
            return NLUUnavailable(f"NLU server slower than {self.timeout_s} s")
        return NLUUnavailable(f"NLU server unreachable at {self.base_url}: {exc}")

    @staticmethod
    def _status(resp: httpx.Response) -> dict[str, Any]:
        if resp.status_code != 200:
            raise NLUUnavailable(f"NLU /status answered HTTP {resp.status_code}")
        return resp.json()


class NLUClient(_Client):
    """Async client; one per process, reuse it (keep-alive keeps parse latency low)."""

    def __init__(self, base_url: str, token: str = "", timeout_s: float = 1.5) -> None:
        super().__init__(base_url, token, timeout_s)
        self._http = httpx.AsyncClient(**self._http_options())

    async def parse(self, text: str) -> NLUResult:
        cleaned = clean_utterance(text)
        t0 = time.perf_counter()
        try:
            resp = await self._http.post(
                "/model/parse", params=self._params(), json={"text": cleaned}
            )
        except httpx.HTTPError as exc:
            raise self._unavailable(exc) from exc
        latency = (time.perf_counter() - t0) * 1000
        return postprocess(_check_answer(resp), latency_ms=latency)

    async def status(self) -> dict[str, Any]:
        """Rasa's GET /status (model_file, model_id, ...); raises NLUUnavailable."""
        try:
            resp = await self._http.get("/status", params=self._params())
        except httpx.HTTPError as exc:
            raise self._unavailable(exc) from exc
        return self._status(resp)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> NLUClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class SyncNLUClient(_Client):
    """The same over a blocking connection, for the CLI, benches and scripts."""

    def __init__(self, base_url: str, token: str = "", timeout_s: float = 1.5) -> None:
        super().__init__(base_url, token, timeout_s)
        self._http = httpx.Client(**self._http_options())

    def parse(self, text: str) -> NLUResult:
        cleaned = clean_utterance(text)
        t0 = time.perf_counter()
        try:
            resp = self._http.post("/model/parse", params=self._params(), json={"text": cleaned})
        except httpx.HTTPError as exc:
            raise self._unavailable(exc) from exc
        latency = (time.perf_counter() - t0) * 1000
        return postprocess(_check_answer(resp), latency_ms=latency)

    def status(self) -> dict[str, Any]:
        try:
            resp = self._http.get("/status", params=self._params())
        except httpx.HTTPError as exc:
            raise self._unavailable(exc) from exc
        return self._status(resp)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SyncNLUClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_sync(text: str, settings: Settings | None = None) -> NLUResult:
    """One-shot parse against settings.nlu_url (raises NLUUnavailable)."""
    with SyncNLUClient.from_settings(settings) as client:
        return client.parse(text)
