"""The flow engine: events in, actions out. No I/O, no clocks; the session does the rest.

A `Conversation` holds one call's place in the flow and what the caller has told us so far.
`start()` and `handle(event)` return the actions to carry out, in order. Operations that need
the outside world (open a ticket, look one up, transfer) become actions, and the session
answers with an event (`TicketOpened`, `TicketLookup`, `TransferResult`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from hotline.dialogue.flow import AFTER_SAY, AWAITING, GROUPS, Flow, State, Transition
from hotline.text import fold

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
]

DIGIT_WORDS = ["không", "một", "hai", "ba", "bốn", "năm", "sáu", "bảy", "tám", "chín"]


def spell_digits(code: str) -> str:
    """'4821937' -> '4 8 2, 1 9 3 7': digit by digit, in two breaths."""
    digits = [c for c in code if c.isdigit()]
    if len(digits) > 4:
        half = len(digits) - 4
        return " ".join(digits[:half]) + ", " + " ".join(digits[half:])
    return " ".join(digits)


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
    def start(self) -> list[Action]:
        return self._enter(self.flow.start)

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
            return self._answer("ticket", "ticket_opened", code=event.code, agency=event.agency)
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
        if u.nlu_down:
            # Without NLU, a code or digits can still be understood; anything else goes to people.
            if s.listen == "digits" and (u.ticket_code or re.search(r"\d", u.text)):
                self.ctx["code_input"] = u.ticket_code or re.sub(r"\D", "", u.text)
                return self._fire("digits", u) or []
            return self._fire("nlu_down", u) or self._go(Transition(self.flow.nomatch_exhausted))
        intent = u.intent
        low = u.confidence is not None and u.confidence < self.flow.min_confidence
        if intent in (None, "nlu_fallback") or low:
            intent = None
        if s.listen == "digits" and u.ticket_code:
            self.ctx["code_input"] = u.ticket_code
            t = self._fire("digits", u)
            if t is not None:
                return t
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

    def _digit(self, digit: str) -> list[Action]:
        s = self.current
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
        }

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
            "description": _short(c.get("description", "")),
            "answer": c.get("answer", ""),
            "ticket_status": c.get("ticket_status", ""),
            "ticket_note": (
                f"{labels.get('note_prefix', '')} {c['ticket_note']}".strip()
                if c.get("ticket_note")
                else ""
            ),
            "agency": c.get("agency", ""),
            "followup": c["followup"].prompt if c.get("followup") else "",
            "kb_menu": self.kb.menu.prompt if self.kb is not None else "",
            "kb_menu_invalid": self.kb.menu.invalid if self.kb is not None else "",
            "emergency_line": c.get("emergency_line", ""),
        }


class _Defaults(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""
