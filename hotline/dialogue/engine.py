"""The flow engine: events in, actions out. No I/O, no clocks; the session does the rest.

A `Conversation` holds one call's place in the flow and what the caller has told us so far.
`start()` and `handle(event)` return the actions to carry out, in order. Operations that need
the outside world (open a ticket, look one up, transfer) become actions, and the session
answers with an event (`TicketOpened`, `TicketLookup`, `TransferResult`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from hotline.dialogue.flow import AFTER_SAY, AWAITING, GROUPS, Flow, State, Transition
from hotline.intents import FALLBACK_INTENT
from hotline.text import digits_from_speech, fold

# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Utterance:
    text: str
    intent: str | None = None
    confidence: float | None = None
    location: dict[str, Any] | None = None  # normalised unit, with "raw" for the caller's words
    ticket_code: str | None = None
    phone_number: str | None = None
    nlu_down: bool = False
    # The NLU's intents, best first: two close ones make the flow ask instead of guessing.
    ranking: tuple[tuple[str, float], ...] = ()
    # The words after a correction marker ("không phải, ở xã Gio Linh" -> "ở xã Gio Linh"),
    # understood on their own: what the caller is correcting the read-back to.
    fragment: Utterance | None = None


@dataclass(frozen=True)
class Digit:
    digit: str


@dataclass(frozen=True)
class Silence:
    pass


@dataclass(frozen=True)
class MessageRecorded:
    text: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class TicketOpened:
    code: str
    agency: str = ""
    reports: int = 1  # reports in its incident (this one included): 1 when it stands alone


@dataclass(frozen=True)
class TicketFailed:
    error: str


@dataclass(frozen=True)
class TicketLookup:
    status: str  # ok | invalid_code | not_found
    code: str
    ticket_status: str = ""
    note: str = ""
    category: str = ""
    resolved: bool = False  # the ticket is resolved: the caller may rate the result


@dataclass(frozen=True)
class TransferResult:
    ok: bool


@dataclass(frozen=True)
class HungUp:
    reason: str = "caller"


Event = (
    Utterance
    | Digit
    | Silence
    | MessageRecorded
    | TicketOpened
    | TicketFailed
    | TicketLookup
    | TransferResult
    | HungUp
)

# --- actions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnterState:
    state: str


@dataclass(frozen=True)
class Say:
    text: str
    prompt: str  # the prompt's name in the flow
    interruptible: bool = True


@dataclass(frozen=True)
class Listen:
    mode: str  # speech | digits | message
    grammar: str | None = None
    max_digits: int = 12


@dataclass(frozen=True)
class SaveDraft:
    fields: dict[str, Any]


@dataclass(frozen=True)
class OpenTicket:
    fields: dict[str, Any]


@dataclass(frozen=True)
class LookupTicket:
    code: str


@dataclass(frozen=True)
class Transfer:
    to: str  # operator | emergency


@dataclass(frozen=True)
class SendSms:
    code: str


@dataclass(frozen=True)
class CancelDraft:
    """The caller withdrew the report in progress: operators still see it, as cancelled."""

    reason: str


@dataclass(frozen=True)
class RateTicket:
    """The caller's verdict on a resolved ticket; not satisfied re-opens it with their words."""

    code: str
    satisfied: bool
    comment: str = ""


@dataclass(frozen=True)
class SetPace:
    """Speak slower (or normally again) for the rest of the call."""

    pace: str  # slow | normal


@dataclass(frozen=True)
class SetOutcome:
    outcome: str


@dataclass(frozen=True)
class Hangup:
    reason: str


Action = (
    EnterState
    | Say
    | Listen
    | SaveDraft
    | OpenTicket
    | LookupTicket
    | Transfer
    | SendSms
    | CancelDraft
    | RateTicket
    | SetPace
    | SetOutcome
    | Hangup
)

# Stronger outcomes win: a call that made a ticket and then said goodbye made a ticket.
OUTCOME_RANK = [
    "abandoned",
    "no_input",
    "goodbye",
    "answered",
    "status_given",
    "message",
    "ticket",
    "transferred",
    "emergency",
    # Past HOTLINE_MAX_CALLS: whatever such a call did (a voice message), it is counted as overflow.
    "overflow",
]

DIGIT_WORDS = ["không", "một", "hai", "ba", "bốn", "năm", "sáu", "bảy", "tám", "chín"]


def spell_digits(code: str) -> str:
    """'4821937' -> '4 8 2, 1 9 3 7': digit by digit, in two breaths."""
    digits = [c for c in code if c.isdigit()]
    if len(digits) > 4:
        half = len(digits) - 4
        return " ".join(digits[:half]) + ", " + " ".join(digits[half:])
    return " ".join(digits)


_PLACE_WORDS = ("o", "tai")  # folded "ở", "tại": "ở thôn Tân An" is a place
_REPORT_SLOTS = (
    "category",
    "description",
    "location",
    "location_raw",
    "message_span",
    "channel",
    "priority",
)


def _words(text: str) -> list[str]:
    return [w for w in (fold(t).strip(".,;:!?…") for t in text.split()) if w]


def split_correction(text: str, markers: Iterable[str], fillers: Iterable[str] = ()) -> str | None:
    """What follows a correction marker at the start of `text`.

    "không phải, ở xã Gio Linh" -> "ở xã Gio Linh"; "à nhầm, ở thôn Tân An" -> "ở thôn Tân An";
    "không phải mất điện, là mất nước" -> "mất nước" (the new value follows "là"); a bare
    "không" -> ""; no marker -> None. Markers and fillers are matched without diacritics.
    """
    tokens = text.split()
    folded = [fold(t).strip(".,;:!?…") for t in tokens]
    fill = {fold(f) for f in fillers}
    i = 0
    while i < len(folded) and (folded[i] in fill or not folded[i]):
        i += 1
    best = 0
    for marker in markers:
        m = fold(marker).split()
        if m and folded[i : i + len(m)] == m and len(m) > best:
            best = len(m)
    if not best:
        return None
    rest_tokens = tokens[i + best :]
    rest_folded = folded[i + best :]
    # "không phải X, (mà) là Y": the value the caller means is Y.
    if "la" in rest_folded:
        k = len(rest_folded) - 1 - rest_folded[::-1].index("la")
        if k + 1 < len(rest_tokens):
            rest_tokens = rest_tokens[k + 1 :]
    rest = " ".join(rest_tokens).strip(" ,.;:!?…")
    return rest if [w for w in _words(rest) if w not in fill] else ""


def _short(text: str, words: int = 16) -> str:
    """The start of a description, for reading back (a long one would bury the question)."""
    return " ".join(text.split()[:words])


@dataclass
class Conversation:
    flow: Flow
    kb: Any = None  # hotline.dialogue.knowledge.KnowledgeBase
    env: dict[str, Any] = field(default_factory=dict)  # operators_available, emergency_transfer
    state: str = ""
    ctx: dict[str, Any] = field(default_factory=dict)
    silences: int = 0
    misses: int = 0
    digits: str = ""
    waiting: str | None = None  # ticket | lookup | transfer: an answer is due from the session
    last_says: list[Say] = field(default_factory=list)
    outcome: str | None = None
    path: list[str] = field(default_factory=list)
    ended: bool = False

    # --- public ---------------------------------------------------------------------------
    def start(self, entry: str | None = None) -> list[Action]:
        """Enter the flow at its start, or at a named entry (`overflow`, see Flow.entries)."""
        if entry is None:
            return self._enter(self.flow.start)
        if entry not in self.flow.entries:
            raise ValueError(f"{self.flow.path}: no entry {entry!r} (define it under 'entries')")
        self.ctx["entry"] = entry
        return self._enter(self.flow.entries[entry])

    @property
    def current(self) -> State:
        return self.flow.states[self.state]

    def listen_mode(self) -> str:
        if self.ended or self.waiting:
            return "none"
        return self.current.listen

    def handle(self, event: Event) -> list[Action]:
        if self.ended:
            return []
        if isinstance(event, HungUp):
            return self._hung_up(event)
        if isinstance(event, TicketOpened):
            return self._answer(
                "ticket",
                "ticket_opened",
                code=event.code,
                agency=event.agency,
                incident_reports=event.reports,
            )
        if isinstance(event, TicketFailed):
            return self._answer("ticket", "ticket_failed", ticket_error=event.error)
        if isinstance(event, TicketLookup):
            status = {"invalid_code": "invalid"}.get(event.status, event.status)
            return self._answer(
                "lookup",
                f"lookup_{status}",
                lookup_code=event.code,
                ticket_status=event.ticket_status,
                ticket_note=event.note,
                lookup_category=event.category,
                lookup_resolved=event.resolved,
            )
        if isinstance(event, TransferResult):
            return self._answer("transfer", "transfer_ok" if event.ok else "transfer_failed")
        if self.waiting:
            return []  # the caller spoke while we were busy: it is not an answer to anything
        if isinstance(event, Silence):
            return self._silence()
        if isinstance(event, Digit):
            return self._digit(event.digit)
        if isinstance(event, MessageRecorded):
            self.ctx["last_message"] = event
            return self._fire("message", event) or self._listen_again()
        if isinstance(event, Utterance):
            return self._utterance(event)
        raise TypeError(f"unknown event {event!r}")

    # --- events ---------------------------------------------------------------------------
    def _utterance(self, u: Utterance) -> list[Action]:
        self.ctx["last_utterance"] = u
        self.silences = 0
        s = self.current
        if not u.text.strip():
            return self._nomatch(u)  # noise, or speech the recognizer made nothing of
        if self.ctx.get("clarify") and self.state == self.flow.clarify_state:
            choice = self._choice(u)
            if choice is not None:
                return self._clarified(choice)
        if u.nlu_down:
            return self._without_nlu(u)
        intent = u.intent
        low = u.confidence is not None and u.confidence < self.flow.min_confidence
        if intent in (None, FALLBACK_INTENT) or low:
            intent = None
        if s.listen == "digits":
            # A code read out, whatever the NLU tagged it as ("hai tám hai bảy..." may come back
            # as a phone number, or as no entity at all).
            code = u.ticket_code or digits_from_speech(u.text)
            if len(code) >= 4:
                self.ctx["code_input"] = code
                t = self._fire("digits", u)
                if t is not None:
                    return t
        fix = self._correction(u, intent)
        if fix is not None:
            self.misses = 0
            return self._take(s.on[fix], u)
        said = " " + " ".join(_words(u.text)) + " "
        for words, t in s.choices:
            if any(f" {fold(w)} " in said for w in words):
                self.misses = 0
                return self._take(t, u)
        if self._ambiguous(u, intent):
            return self._clarify(u)
        if intent is not None:
            t = self._lookup(intent)
            if t is not None:
                self.misses = 0
                return self._take(t, u)
        t = s.on.get("any")
        if t is not None:
            # States that take whatever is said (a place, a description) take it even when the
            # classifier is unsure: the words themselves are what we need.
            self.misses = 0
            return self._take(t, u)
        return self._nomatch(u)

    def _without_nlu(self, u: Utterance) -> list[Action]:
        """NLU is down: what can still be understood is, so a confirmation is not lost."""
        s = self.current
        if s.listen == "digits" and (u.ticket_code or re.search(r"\d", u.text)):
            self.ctx["code_input"] = u.ticket_code or re.sub(r"\D", "", u.text)
            return self._fire("digits", u) or []
        if s.grammar == "yes_no":
            answer = self._yes_no(u.text)
            if answer is not None:
                t = self._lookup(answer)
                if t is not None:
                    return self._take(t, u)
        if "any" in s.on:
            return self._take(s.on["any"], u)  # a place or a description: the words are enough
        return self._fire("nlu_down", u) or self._go(Transition(self.flow.nomatch_exhausted))

    def _yes_no(self, text: str) -> str | None:
        """affirm / deny from the words alone ("dạ không" is a no), or None."""
        words = " " + " ".join(_words(text)) + " "
        for intent, key in (("deny", "no_words"), ("affirm", "yes_words")):
            if any(f" {fold(w)} " in words for w in self.flow.repairs.get(key, [])):
                return intent
        return None

    # --- repairs: corrections and clarification ------------------------------------------
    def _correction(self, u: Utterance, intent: str | None) -> str | None:
        """Which correction transition this utterance takes at a read-back, if any.

        `correction`: the caller gives a new place or content ("không, ở xã Gio Linh", "à nhầm,
        ở thôn Tân An", "không phải mất điện, là mất nước"); `code_correction`: a new code.
        A bare "không" is not a correction: the state's `deny` asks what to change.
        """
        s = self.current
        if "correction" not in s.on and "code_correction" not in s.on:
            return None
        frag = u.fragment
        marked = frag is not None or intent in ("deny", "correct")
        if frag is None:
            if intent == "affirm":
                return None
            frag = u
        if "code_correction" in s.on and marked and frag.ticket_code:
            self.ctx["code_input"] = frag.ticket_code
            return "code_correction"
        if "correction" not in s.on:
            return None
        words = _words(frag.text)
        if not words:
            return None
        kind = None
        if frag.location or (words[0] in _PLACE_WORDS and len(words) > 1):
            kind = "place"
        elif marked and (
            (frag.intent or "").startswith("report_") or (len(words) >= 2 and frag is not u)
        ):
            kind = "content"
        if kind is None:
            return None
        self.ctx["correction"] = {"kind": kind, "fragment": frag}
        return "correction"

    def _ambiguous(self, u: Utterance, intent: str | None) -> bool:
        """Two intents too close to call, which would take the call different ways."""
        margin = self.flow.clarify_margin
        s = self.current
        if not margin or not self.flow.clarify_state or s.listen != "speech" or s.grammar:
            return False
        top = [(i, c) for i, c in u.ranking if i != FALLBACK_INTENT][:2]
        if len(top) < 2:
            return False
        (i1, c1), (i2, c2) = top
        labels = self.flow.labels.get("intents", {})
        if i1 not in labels or i2 not in labels or c1 - c2 >= margin:
            return False
        if c1 + c2 < self.flow.clarify_floor or (intent is not None and intent != i1):
            return False
        t1, t2 = self._lookup(i1), self._lookup(i2)
        if t1 is None or t2 is None:
            return False
        # Two report categories share a transition but not an agency: still worth asking.
        return t1 != t2 or i1 != i2

    def _clarify(self, u: Utterance) -> list[Action]:
        top = [i for i, _ in u.ranking if i != FALLBACK_INTENT][:2]
        self.ctx["clarify"] = {"options": top, "utterance": u, "state": self.state}
        return self._enter(self.flow.clarify_state)

    def _choice(self, u: Utterance | str) -> str | None:
        """Which of the two offered intents the caller picked: by key, by its intent, by the
        words of its label, or by "cái đầu" / "cái sau"."""
        options: list[str] = self.ctx["clarify"]["options"]
        if isinstance(u, str):
            return options[int(u) - 1] if u in ("1", "2") else None
        if u.intent in options and (u.confidence or 0) >= self.flow.min_confidence:
            return u.intent
        said = set(_words(u.text))
        labels = self.flow.labels.get("intents", {})
        sets = [set(_words(labels.get(o, ""))) for o in options]
        scores = [len((sets[k] - sets[1 - k]) & said) for k in (0, 1)]
        if scores[0] != scores[1]:
            return options[0 if scores[0] > scores[1] else 1]
        ordinals = self.flow.repairs.get("ordinals", {})
        for k, key in enumerate(("first", "second")):
            if any(fold(w) in " ".join(_words(u.text)) for w in ordinals.get(key, [])):
                return options[k]
        return None

    def _clarified(self, choice: str) -> list[Action]:
        c = self.ctx.pop("clarify")
        self.state = c["state"]
        self.path.append(self.state)
        self.misses = 0
        return self._utterance(replace(c["utterance"], intent=choice, confidence=1.0, ranking=()))

    def _digit(self, digit: str) -> list[Action]:
        s = self.current
        if self.ctx.get("clarify") and self.state == self.flow.clarify_state:
            choice = self._choice(digit)
            if choice is not None:
                return self._clarified(choice)
        if s.listen == "digits":
            if digit in s.dtmf:
                return self._take(s.dtmf[digit], None)
            if digit == "#":
                self.ctx["code_input"] = self.digits
                self.digits = ""
                return self._fire("digits", None) or []
            if digit == "*":
                self.digits = ""
                return []
            self.digits += digit
            if len(self.digits) >= s.max_digits:
                self.ctx["code_input"] = self.digits
                self.digits = ""
                return self._fire("digits", None) or []
            return []
        self.ctx["last_digit"] = digit
        t = s.dtmf.get(digit)
        if t is None and s.listen == "message" and digit == "#":
            return []  # the session ends the recording on '#'
        if t is None:
            t = self.flow.global_dtmf.get(digit)
        if t is None and s.menu:
            t = self.flow.menu.get(digit)
        if t is None:
            return self._nomatch(None)
        self.misses = 0
        return self._take(t, None)

    def _silence(self) -> list[Action]:
        s = self.current
        t = s.on.get("silence")
        if t is not None:
            return self._take(t, None)
        self.silences += 1
        limit = s.max_silence if s.max_silence is not None else self.flow.max_silence
        if self.silences > limit:
            self.silences = 0
            return self._go(Transition(s.silence_exhausted or self.flow.silence_exhausted))
        return self._reprompt(s.reprompt or self.flow.reprompt_silence)

    def _nomatch(self, u: Utterance | None) -> list[Action]:
        s = self.current
        t = s.on.get("nomatch")
        self.misses += 1
        limit = s.max_nomatch if s.max_nomatch is not None else self.flow.max_nomatch
        if self.misses >= limit:
            self.misses = 0
            return self._go(Transition(s.nomatch_exhausted or self.flow.nomatch_exhausted))
        if t is not None:
            return self._take(t, u)
        return self._reprompt(self.flow.reprompt_nomatch)

    def _set_outcome(self, outcome: str) -> bool:
        if self.outcome is None or OUTCOME_RANK.index(outcome) > OUTCOME_RANK.index(self.outcome):
            self.outcome = outcome
            return True
        return False

    def _hung_up(self, event: HungUp) -> list[Action]:
        self.ended = True
        actions: list[Action] = []
        if not self.outcome:
            self.outcome = "abandoned"
            actions.append(SetOutcome("abandoned"))
        return actions

    def _answer(self, kind: str, key: str, **values: Any) -> list[Action]:
        if self.waiting != kind:
            return []
        self.waiting = None
        self.ctx.update(values)
        if key == "ticket_opened":
            # That report is filed: whatever the caller reports next is a new one.
            self._clear_report()
            self.ctx.setdefault("codes", []).append(values.get("code"))
        if key in ("lookup_invalid", "lookup_not_found"):
            # A code heard wrong twice in a row: a person will do better than a third try.
            self.misses += 1
            if self.misses >= self.flow.max_nomatch:
                self.misses = 0
                t = self.current.on.get(key)
                says = self._says(t.say, True) if t else []
                return says + self._go(Transition(self.flow.nomatch_exhausted))
        return self._fire(key, None) or []

    # --- transitions ----------------------------------------------------------------------
    def _lookup(self, intent: str) -> Transition | None:
        s = self.current
        if intent in s.on:
            return s.on[intent]
        for group, members in GROUPS.items():
            if intent in members and group in s.on:
                return s.on[group]
        if intent in self.flow.global_on:
            return self.flow.global_on[intent]
        for group, members in GROUPS.items():
            if intent in members and group in self.flow.global_on:
                return self.flow.global_on[group]
        return None

    def _fire(self, key: str, event: Any) -> list[Action] | None:
        t = self.current.on.get(key) or self.flow.global_on.get(key)
        return None if t is None else self._take(t, event)

    def _take(self, t: Transition, event: Any) -> list[Action]:
        actions: list[Action] = []
        for op in t.do:
            actions += self._op(op, event)
        actions += self._says(t.say, self.current.interruptible)
        if t.goto == "reprompt" or t.goto is None and not t.say:
            return actions + self._reprompt(None)
        if t.goto == "repeat_last":
            return actions + self._repeat_last()
        if t.goto == "return":
            # Back to where the caller was (after a digression), its prompts said again.
            return actions + self._enter(self.state, event)
        if t.goto is None:
            return actions + self._listen_again()
        return actions + self._enter(t.goto, event)

    def _go(self, t: Transition) -> list[Action]:
        return self._take(t, None)

    def _enter(self, name: str, event: Any = None, depth: int = 0) -> list[Action]:
        if depth > 20:
            raise RuntimeError(f"flow loops without listening at {name!r}")
        self.state = name
        self.path.append(name)
        self.digits = ""
        if name != self.flow.clarify_state:
            self.ctx.pop("clarify", None)
        s = self.current
        actions: list[Action] = [EnterState(name)]
        if s.outcome and self._set_outcome(s.outcome):
            actions.append(SetOutcome(self.outcome))  # type: ignore[arg-type]
        for op in s.do:
            if op.split(":", 1)[0] not in AFTER_SAY:
                actions += self._op(op, event)
        says = self._says(s.say, s.interruptible)
        if says:
            self.last_says = says
        actions += says
        for op in s.do:
            if op.split(":", 1)[0] in AFTER_SAY:
                actions += self._op(op, event)
        if self.waiting or self.ended:
            return actions
        for branch in s.next:
            if branch.condition is None or self._cond(branch.condition) != branch.negate:
                return actions + self._enter(branch.goto, event, depth + 1)
        if s.listen != "none":
            actions.append(Listen(s.listen, s.grammar, s.max_digits))
        return actions

    def _reprompt(self, prefix: str | None) -> list[Action]:
        s = self.current
        actions = self._says((prefix,), True) if prefix else []
        says = self._says(s.retry if s.retry is not None else s.say, s.interruptible)
        return actions + says + self._listen_again()

    def _repeat_last(self) -> list[Action]:
        return list(self.last_says) + self._listen_again()

    def _listen_again(self) -> list[Action]:
        s = self.current
        if s.listen == "none":
            return []
        return [Listen(s.listen, s.grammar, s.max_digits)]

    def _says(self, keys: tuple[str, ...], interruptible: bool) -> list[Say]:
        values = self._template_values()
        out = []
        for key in keys:
            text = self.flow.prompt(key).format_map(_Defaults(values))
            out.append(Say(" ".join(text.split()), key, interruptible))
        return out

    # --- operations -----------------------------------------------------------------------
    def _op(self, op: str, event: Any) -> list[Action]:
        name = op.split(":", 1)[0]
        c = self.ctx
        u = event if isinstance(event, Utterance) else None
        match name:
            case "capture_report":
                if u is not None:
                    if u.intent and u.intent.startswith("report_"):
                        c["category"] = u.intent
                    c["description"] = (c.get("description", "") + " " + u.text).strip()
                    if u.location:
                        c["location"] = u.location
                        c["location_raw"] = u.location.get("raw") or c.get("location_raw")
                c.setdefault("channel", "voice")
                return [SaveDraft(self._draft())]
            case "capture_place":
                if u is not None:
                    if u.location:
                        c["location"] = u.location
                        c["location_raw"] = u.location.get("raw") or u.text
                    else:
                        c["location_raw"] = u.text
                        c.pop("location", None)
                return [SaveDraft(self._draft())]
            case "capture_category_digit":
                digit = c.get("last_digit", "")
                c["category"] = self.flow.keypad_categories.get(digit, "keypad_report")
                c["channel"] = "keypad"
                return []
            case "capture_message":
                m = c.get("last_message")
                if isinstance(m, MessageRecorded):
                    c["description"] = m.text.strip() or c.get("description", "")
                    c["message_span"] = [m.start_ms, m.end_ms]
                c.setdefault("category", "voice_message")
                c.setdefault("channel", "voice_message")
                return [SaveDraft(self._draft())]
            case "capture_code":
                if u is not None and u.ticket_code:
                    c["code_input"] = u.ticket_code
                return []
            case "reset_report":
                for key in ("description", "location", "location_raw", "message_span"):
                    c.pop(key, None)
                return []
            case "apply_correction":
                return self._apply_correction()
            case "replace_content":
                if u is not None:
                    if u.intent and u.intent.startswith("report_"):
                        c["category"] = u.intent
                    c["description"] = u.text.strip()
                return [SaveDraft(self._draft())]
            case "cancel_report":
                had = self._has_report()
                self._clear_report()
                return [CancelDraft("caller")] if had else []
            case "mark_urgent":
                c["priority"] = "urgent"
                return [SaveDraft(self._draft())] if self._has_report() else []
            case "rate_satisfied":
                return [RateTicket(str(c.get("lookup_code", "")), True)]
            case "reopen_ticket":
                return [RateTicket(str(c.get("lookup_code", "")), False, u.text if u else "")]
            case "slow_down":
                c["pace"] = "slow"
                return [SetPace("slow")]
            case "open_ticket":
                self.waiting = AWAITING[name]
                return [OpenTicket(self._draft())]
            case "lookup_ticket":
                self.waiting = AWAITING[name]
                return [LookupTicket(str(c.get("code_input", "")))]
            case "send_sms":
                return [SendSms(str(c["code"]))] if c.get("code") else []
            case "answer":
                c["answer"] = self._kb_answer(u)
                return []
            case "answer_followup":
                f = c.pop("followup", None)
                c["answer"] = self.kb.entry(f.entry_id).spoken if f and self.kb else ""
                if f:
                    c["answer_id"] = f.entry_id
                return []
            case "kb_menu_select":
                c["answer"] = self._kb_menu(c.get("last_digit", ""))
                return []
            case "pick_emergency":
                c["emergency_line"] = self._emergency_line(u.text if u else "")
                return []
            case "transfer_operator" | "transfer_emergency":
                self.waiting = AWAITING[name]
                return [Transfer("operator" if name == "transfer_operator" else "emergency")]
            case "hangup":
                self.ended = True
                return [Hangup(op.split(":", 1)[1] if ":" in op else "bot_hangup")]
            case "reset_misses":
                self.misses = 0
                return []
        raise ValueError(f"unknown operation {op!r}")

    def _cond(self, name: str) -> bool:
        c = self.ctx
        match name:
            case "has_location":
                return bool(c.get("location") or c.get("location_raw"))
            case "operators_available":
                return bool(self.env.get("operators_available"))
            case "emergency_transfer":
                return bool(self.env.get("emergency_transfer"))
            case "has_ticket":
                return bool(c.get("code"))
            case "has_code":
                return bool(c.get("code_input"))
            case "has_description":
                return bool(c.get("description"))
            case "has_answer":
                return bool(c.get("answer"))
            case "has_followup":
                return c.get("followup") is not None
            case "has_report":
                return self._has_report()
            case "incident_known":
                return int(c.get("incident_reports") or 1) > 1
            case "ticket_resolved":
                return bool(c.get("lookup_resolved"))
            case "overflow_call":
                return c.get("entry") == "overflow"
        raise ValueError(f"unknown condition {name!r}")

    def _draft(self) -> dict[str, Any]:
        c = self.ctx
        return {
            "category": c.get("category", "keypad_report"),
            "description": c.get("description", ""),
            "location_raw": c.get("location_raw"),
            "location": c.get("location"),
            "channel": c.get("channel", "voice"),
            "message_span": c.get("message_span"),
            "priority": c.get("priority", "normal"),
        }

    def _has_report(self) -> bool:
        c = self.ctx
        return bool(c.get("description") or c.get("location_raw") or c.get("message_span"))

    def _clear_report(self) -> None:
        for key in _REPORT_SLOTS:
            self.ctx.pop(key, None)

    def _apply_correction(self) -> list[Action]:
        """Replace only the slot the caller corrected; the others keep their values."""
        c = self.ctx
        fix = c.pop("correction", None)
        if not fix:
            return []
        frag: Utterance = fix["fragment"]
        if fix["kind"] == "place":
            if frag.location:
                c["location"] = frag.location
                c["location_raw"] = frag.location.get("raw") or frag.text
            else:
                words = frag.text.split()
                if words and fold(words[0]).strip(".,") in ("o", "tai"):
                    words = words[1:]  # "ở thôn Tân An": the place is "thôn Tân An"
                c["location_raw"] = " ".join(words).strip(" ,.")
                c.pop("location", None)
        else:
            if frag.intent and frag.intent.startswith("report_"):
                c["category"] = frag.intent
            c["description"] = frag.text.strip()
        return [SaveDraft(self._draft())]

    def _kb_answer(self, u: Utterance | None) -> str:
        if self.kb is None:
            return ""
        intent = u.intent if u and u.intent else "ask_public_service"
        answer = self.kb.answer(intent, u.text if u else "")
        self.ctx["answer_id"] = answer.entry_id
        self.ctx["followup"] = answer.followup
        return answer.spoken

    def _kb_menu(self, digit: str) -> str:
        if self.kb is None:
            return ""
        entry = self.kb.menu_entry(digit)
        if entry is None:
            return ""
        self.ctx["answer_id"] = entry.id
        self.ctx["followup"] = entry.followup
        return entry.spoken

    def _emergency_line(self, text: str) -> str:
        plain = fold(text)
        for line in self.flow.emergency_lines:
            if any(fold(k) in plain for k in line.get("keywords", [])):
                return str(line["say"])
        return ""

    def _template_values(self) -> dict[str, Any]:
        c = self.ctx
        labels = self.flow.labels.get("categories", {})
        loc = c.get("location") or {}
        place = (
            loc.get("spoken")
            or loc.get("name")
            or c.get("location_raw")
            or labels.get("unknown_place", "")
        )
        return {
            "code": spell_digits(str(c.get("code", ""))),
            "lookup_code": spell_digits(str(c.get("lookup_code", ""))),
            "category": labels.get(c.get("category", ""), c.get("category", "")),
            "place": place,
            "place_clause": f", tại {place}" if loc or c.get("location_raw") else "",
            "description": _short(c.get("description", "")),
            "answer": c.get("answer", ""),
            "ticket_status": c.get("ticket_status", ""),
            "ticket_note": (
                f"{labels.get('note_prefix', '')} {c['ticket_note']}".strip()
                if c.get("ticket_note")
                else ""
            ),
            "agency": c.get("agency", ""),
            "incident_reports": c.get("incident_reports", ""),
            "followup": c["followup"].prompt if c.get("followup") else "",
            "kb_menu": self.kb.menu.prompt if self.kb is not None else "",
            "kb_menu_invalid": self.kb.menu.invalid if self.kb is not None else "",
            "emergency_line": c.get("emergency_line", ""),
            **self._choices(),
        }

    def _choices(self) -> dict[str, str]:
        labels = self.flow.labels.get("intents", {})
        options = (self.ctx.get("clarify") or {}).get("options") or []
        return {f"choice_{k + 1}": labels.get(o, o) for k, o in enumerate(options[:2])}


class _Defaults(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""
