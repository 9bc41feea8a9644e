"""Call flows: loaded from `call_flows/*.yml`, validated at start.

A flow is a set of states. Each state may run built-in operations on entry (`do`), speak prompts
(`say`), then either listen (for speech, keypad digits or a recorded message) or move on
(`next`). Transitions (`on`) are keyed by intent, intent group, keypad digit, or by what
happened (silence, nomatch, ticket_opened, ...). A `global` block supplies transitions every
listening state inherits: nobody in danger is left in a menu.

Validation fails fast with the file and the problem named: unknown states, prompts,
operations, conditions, intents or event keys, and unreachable states.
"""

from __future__ import annotations

import re
import string
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hotline.intents import FALLBACK_INTENT, REPORT_INTENTS
from hotline.intents import INTENTS as ALL_INTENTS

INTENTS = {*ALL_INTENTS, FALLBACK_INTENT}
GROUPS = {
    "report": list(REPORT_INTENTS),
    "enquiry": ["ask_public_service", "ask_hotline_info"],
}
EVENT_KEYS = {
    "any",
    "nomatch",
    "silence",
    "nlu_down",
    "digits",
    "message",
    "ticket_opened",
    "ticket_failed",
    "lookup_ok",
    "lookup_invalid",
    "lookup_not_found",
    "transfer_ok",
    "transfer_failed",
    "correction",  # a new place or content given at a read-back ("không, ở xã Gio Linh")
    "code_correction",  # a new ticket code given after one was read back
}
OPERATIONS = {
    "capture_report",
    "capture_place",
    "capture_category_digit",
    "capture_message",
    "capture_code",
    "reset_report",
    "open_ticket",
    "lookup_ticket",
    "send_sms",
    "answer",
    "answer_followup",
    "kb_menu_select",
    "pick_emergency",
    "transfer_operator",
    "transfer_emergency",
    "hangup",
    "reset_misses",
    "apply_correction",
    "replace_content",
    "cancel_report",
    "mark_urgent",
    "slow_down",
    "rate_satisfied",
    "reopen_ticket",
}
# Operations that ask the session for something and wait for its answer as an event.
AWAITING = {
    "open_ticket": "ticket",
    "lookup_ticket": "lookup",
    "transfer_operator": "transfer",
    "transfer_emergency": "transfer",
}
# Operations that run after the state's prompts, whatever their place in `do`.
AFTER_SAY = set(AWAITING) | {"hangup"}
CONDITIONS = {
    "has_location",
    "operators_available",
    "emergency_transfer",
    "has_ticket",
    "has_code",
    "has_description",
    "has_answer",
    "has_followup",
    "has_report",
    "ticket_resolved",
    "incident_known",
    "overflow_call",
}
OUTCOMES = {
    "ticket",
    "answered",
    "transferred",
    "emergency",
    "message",
    "abandoned",
    "no_input",
    "status_given",
    "goodbye",
    "overflow",
}
# reprompt: say the state's retry; repeat_last: what was last said; return: enter the current
# state again (after a digression, the caller is brought back to where they were).
SPECIAL_TARGETS = {"reprompt", "repeat_last", "return"}
# Word lists of the `repairs` block (matched without diacritics).
REPAIR_LISTS = {"correction_markers", "fillers", "yes_words", "no_words"}
LISTEN_MODES = {"speech", "digits", "message", "none"}


class FlowError(ValueError):
    """A call flow file is wrong; the message names the file and the problem."""


@dataclass(frozen=True)
class Transition:
    goto: str | None
    do: tuple[str, ...] = ()
    say: tuple[str, ...] = ()


@dataclass(frozen=True)
class Branch:
    condition: str | None  # None: always
    negate: bool
    goto: str


@dataclass(frozen=True)
class State:
    name: str
    say: tuple[str, ...] = ()
    retry: tuple[str, ...] | None = None  # said again on reprompt (default: say)
    do: tuple[str, ...] = ()
    listen: str = "speech"
    grammar: str | None = None
    interruptible: bool = True
    menu: bool = True
    max_digits: int = 12
    on: dict[str, Transition] = field(default_factory=dict)
    dtmf: dict[str, Transition] = field(default_factory=dict)
    next: tuple[Branch, ...] = ()
    outcome: str | None = None
    reprompt: str | None = None
    silence_exhausted: str | None = None
    nomatch_exhausted: str | None = None
    max_silence: int | None = None
    max_nomatch: int | None = None
    # Spoken menu options, matched on the words before any intent: ((words...), transition).
    choices: tuple[tuple[tuple[str, ...], Transition], ...] = ()


@dataclass
class Flow:
    name: str
    path: Path
    start: str
    states: dict[str, State]
    prompts: dict[str, str]
    global_on: dict[str, Transition]
    global_dtmf: dict[str, Transition]
    menu: dict[str, Transition]
    labels: dict[str, dict[str, str]]
    keypad_categories: dict[str, str]
    emergency_lines: list[dict[str, Any]]
    grammars: dict[str, list[str]] = field(default_factory=dict)
    max_silence: int = 2
    max_nomatch: int = 2
    min_confidence: float = 0.5
    silence_exhausted: str = "goodbye_silence"
    nomatch_exhausted: str = "operator"
    reprompt_silence: str = "didnt_hear"
    reprompt_nomatch: str = "didnt_understand"
    # Conversation repair: correction markers, yes/no words for when NLU is down, ordinals.
    repairs: dict[str, Any] = field(default_factory=dict)
    # Ask "A, hay B?" when the top two intents are closer than this (0: never ask).
    clarify_margin: float = 0.0
    clarify_floor: float = 0.5  # ...and together carry at least this much confidence
    clarify_state: str | None = None
    # Other ways into the flow than `start`, by name (`overflow`: a call past HOTLINE_MAX_CALLS).
    entries: dict[str, str] = field(default_factory=dict)

    def prompt(self, key: str) -> str:
        return self.prompts[key]

    def fixed_texts(self) -> list[str]:
        """Prompts without placeholders: rendered to audio at start."""
        return [t for t in self.prompts.values() if not _placeholders(t)]


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def _nfc(value: Any) -> Any:
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, list):
        return [_nfc(v) for v in value]
    if isinstance(value, dict):
        return {_nfc(k): _nfc(v) for k, v in value.items()}
    return value


def _as_tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise TypeError(f"expected a name or a list of names, got {value!r}")


class _Loader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, problem: str) -> FlowError:
        return FlowError(f"{self.path}: {where}: {problem}")

    def transition(self, where: str, raw: Any) -> Transition:
        if isinstance(raw, str):
            return Transition(goto=raw)
        if isinstance(raw, dict):
            unknown = set(raw) - {"goto", "do", "say"}
            if unknown:
                raise self.fail(where, f"unknown keys {sorted(unknown)} (use goto, do, say)")
            try:
                return Transition(
                    goto=raw.get("goto"), do=_as_tuple(raw.get("do")), say=_as_tuple(raw.get("say"))
                )
            except TypeError as exc:
                raise self.fail(where, str(exc)) from None
        raise self.fail(where, f"a transition is a state name or a mapping, not {raw!r}")

    def transitions(
        self, where: str, raw: Any
    ) -> tuple[dict[str, Transition], dict[str, Transition]]:
        if raw is None:
            return {}, {}
        if not isinstance(raw, dict):
            raise self.fail(where, "'on' must be a mapping")
        on: dict[str, Transition] = {}
        dtmf: dict[str, Transition] = {}
        for key, value in raw.items():
            key = str(key)
            if key == "dtmf":
                if not isinstance(value, dict):
                    raise self.fail(f"{where}.dtmf", "must map keys (0-9, *, #) to transitions")
                for digit, t in value.items():
                    digit = str(digit)
                    if not re.fullmatch(r"[0-9*#]", digit):
                        raise self.fail(f"{where}.dtmf", f"{digit!r} is not a keypad key")
                    dtmf[digit] = self.transition(f"{where}.dtmf.{digit}", t)
                continue
            if key not in INTENTS and key not in GROUPS and key not in EVENT_KEYS:
                raise self.fail(where, f"unknown event or intent {key!r}")
            on[key] = self.transition(f"{where}.{key}", value)
        return on, dtmf

    def branches(self, where: str, raw: Any) -> tuple[Branch, ...]:
        if raw is None:
            return ()
        if isinstance(raw, str):
            return (Branch(None, False, raw),)
        if not isinstance(raw, list):
            raise self.fail(where, "'next' is a state name or a list of {if, goto}")
        out = []
        for i, item in enumerate(raw):
            if not isinstance(item, dict) or "goto" not in item:
                raise self.fail(f"{where}[{i}]", "each branch needs 'goto' (and optional 'if')")
            cond = item.get("if")
            negate = False
            if isinstance(cond, str) and cond.startswith("not "):
                negate, cond = True, cond[4:].strip()
            if cond is not None and cond not in CONDITIONS:
                raise self.fail(f"{where}[{i}]", f"unknown condition {cond!r}")
            out.append(Branch(cond, negate, str(item["goto"])))
        return tuple(out)

    def entries(self, raw: Any) -> dict[str, str]:
        if raw is None:
            return {}
        if not isinstance(raw, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
        ):
            raise self.fail("entries", "map entry names to state names")
        return dict(raw)

    def grammars(self, raw: Any) -> dict[str, list[str]]:
        if raw is None:
            return {}
        if not isinstance(raw, dict) or not all(
            isinstance(v, list) and v and all(isinstance(x, str) and x.strip() for x in v)
            for v in raw.values()
        ):
            raise FlowError(f"{self.path}: grammars: map names to non-empty lists of phrases")
        return {str(k): list(v) for k, v in raw.items()}

    def repairs(self, raw: Any) -> dict[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise FlowError(f"{self.path}: repairs: a mapping of word lists")
        out: dict[str, Any] = {}
        for key, value in raw.items():
            if key in REPAIR_LISTS:
                if not isinstance(value, list) or not all(
                    isinstance(v, str) and v.strip() for v in value
                ):
                    raise FlowError(f"{self.path}: repairs.{key}: a list of words")
                out[key] = list(value)
            elif key == "ordinals":
                if not isinstance(value, dict) or set(value) - {"first", "second"}:
                    raise FlowError(f"{self.path}: repairs.ordinals: first/second word lists")
                out[key] = {k: list(v) for k, v in value.items()}
            else:
                raise FlowError(
                    f"{self.path}: repairs: unknown key {key!r} "
                    f"(use {sorted(REPAIR_LISTS | {'ordinals'})})"
                )
        return out

    def state(self, name: str, raw: Any) -> State:
        where = f"states.{name}"
        if not isinstance(raw, dict):
            raise self.fail(where, "a state is a mapping")
        if True in raw:  # YAML 1.1 reads a bare `on:` key as the boolean true
            raw = {("on" if k is True else k): v for k, v in raw.items()}
        allowed = {
            "say",
            "retry",
            "do",
            "listen",
            "grammar",
            "interruptible",
            "menu",
            "max_digits",
            "on",
            "next",
            "outcome",
            "reprompt",
            "silence_exhausted",
            "nomatch_exhausted",
            "max_silence",
            "max_nomatch",
            "choices",
        }
        unknown = set(raw) - allowed
        if unknown:
            raise self.fail(where, f"unknown keys {sorted(unknown)}")
        on, dtmf = self.transitions(f"{where}.on", raw.get("on"))
        nxt = self.branches(f"{where}.next", raw.get("next"))
        listen = raw.get("listen", "none" if nxt else "speech")
        if listen not in LISTEN_MODES:
            raise self.fail(where, f"listen must be one of {sorted(LISTEN_MODES)}")
        if nxt and listen != "none":
            raise self.fail(where, "a state with 'next' does not listen")
        grammar = raw.get("grammar")
        if grammar is not None and not isinstance(grammar, str):
            raise self.fail(where, "grammar is the name of a list under 'grammars'")
        outcome = raw.get("outcome")
        if outcome is not None and outcome not in OUTCOMES:
            raise self.fail(where, f"unknown outcome {outcome!r}")
        try:
            say, do = _as_tuple(raw.get("say")), _as_tuple(raw.get("do"))
            retry = _as_tuple(raw["retry"]) if "retry" in raw else None
        except TypeError as exc:
            raise self.fail(where, str(exc)) from None
        choices = []
        for i, item in enumerate(raw.get("choices") or []):
            words = item.get("words") if isinstance(item, dict) else None
            if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
                raise self.fail(f"{where}.choices[{i}]", "needs words: [...] and a transition")
            rest = {k: v for k, v in item.items() if k != "words"}
            choices.append((tuple(words), self.transition(f"{where}.choices[{i}]", rest)))
        return State(
            choices=tuple(choices),
            name=name,
            say=say,
            retry=retry,
            do=do,
            listen=listen,
            grammar=grammar,
            interruptible=bool(raw.get("interruptible", True)),
            menu=bool(raw.get("menu", listen == "speech")),
            max_digits=int(raw.get("max_digits", 12)),
            on=on,
            dtmf=dtmf,
            next=nxt,
            outcome=outcome,
            reprompt=raw.get("reprompt"),
            silence_exhausted=raw.get("silence_exhausted"),
            nomatch_exhausted=raw.get("nomatch_exhausted"),
            max_silence=raw.get("max_silence"),
            max_nomatch=raw.get("max_nomatch"),
        )

    def load(self) -> Flow:
        try:
            raw = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise FlowError(f"{self.path}: not valid YAML: {exc}") from None
        except OSError as exc:
            raise FlowError(f"{self.path}: cannot read: {exc}") from None
        if not isinstance(raw, dict):
            raise FlowError(f"{self.path}: a flow file is a mapping")
        raw = _nfc(raw)
        for key in ("name", "start", "states", "prompts"):
            if key not in raw:
                raise FlowError(f"{self.path}: missing '{key}'")
        prompts = raw["prompts"]
        if not isinstance(prompts, dict) or not all(
            isinstance(v, str) and v.strip() for v in prompts.values()
        ):
            raise FlowError(f"{self.path}: prompts must map names to non-empty texts")
        if not isinstance(raw["states"], dict) or not raw["states"]:
            raise FlowError(f"{self.path}: states must be a non-empty mapping")
        states = {str(n): self.state(str(n), s) for n, s in raw["states"].items()}
        glob = raw.get("global") or {}
        global_on, global_dtmf = self.transitions("global", glob)
        menu_on, menu = self.transitions("menu", {"dtmf": raw.get("menu") or {}})
        limits = raw.get("limits") or {}
        flow = Flow(
            name=str(raw["name"]),
            path=self.path,
            start=str(raw["start"]),
            states=states,
            prompts={str(k): v for k, v in prompts.items()},
            global_on=global_on,
            global_dtmf=global_dtmf,
            menu=menu,
            labels=raw.get("labels") or {},
            keypad_categories={str(k): v for k, v in (raw.get("keypad_categories") or {}).items()},
            emergency_lines=raw.get("emergency_lines") or [],
            grammars=self.grammars(raw.get("grammars")),
            max_silence=int(limits.get("max_silence", 2)),
            max_nomatch=int(limits.get("max_nomatch", 2)),
            min_confidence=float(limits.get("min_confidence", 0.5)),
            silence_exhausted=str(limits.get("silence_exhausted", "goodbye_silence")),
            nomatch_exhausted=str(limits.get("nomatch_exhausted", "operator")),
            reprompt_silence=str(limits.get("reprompt_silence", "didnt_hear")),
            reprompt_nomatch=str(limits.get("reprompt_nomatch", "didnt_understand")),
            repairs=self.repairs(raw.get("repairs")),
            clarify_margin=float(limits.get("clarify_margin", 0.0)),
            clarify_floor=float(limits.get("clarify_floor", 0.5)),
            clarify_state=limits.get("clarify_state"),
            entries=self.entries(raw.get("entries")),
        )
        self.check(flow)
        return flow

    def check(self, flow: Flow) -> None:
        names = set(flow.states)

        def target(where: str, name: str | None) -> None:
            if name is not None and name not in names and name not in SPECIAL_TARGETS:
                raise self.fail(where, f"unknown state {name!r}")

        def prompts(where: str, keys: tuple[str, ...]) -> None:
            for key in keys:
                if key not in flow.prompts:
                    raise self.fail(where, f"unknown prompt {key!r}")

        def ops(where: str, keys: tuple[str, ...]) -> None:
            for op in keys:
                base = op.split(":", 1)[0]
                if base not in OPERATIONS:
                    raise self.fail(where, f"unknown operation {op!r}")

        def transition(where: str, t: Transition) -> None:
            target(where, t.goto)
            prompts(where, t.say)
            ops(where, t.do)

        if flow.start not in names:
            raise FlowError(f"{self.path}: start state {flow.start!r} is not defined")
        for entry, state in flow.entries.items():
            if state not in names:
                raise self.fail(f"entries.{entry}", f"unknown state {state!r}")
        for key in ("silence_exhausted", "nomatch_exhausted", "clarify_state"):
            target(f"limits.{key}", getattr(flow, key))
        prompts("limits", (flow.reprompt_silence, flow.reprompt_nomatch))
        if flow.clarify_margin:
            if not flow.clarify_state:
                raise self.fail("limits", "clarify_margin needs clarify_state")
            labels = flow.labels.get("intents") or {}
            unknown = set(labels) - INTENTS
            if unknown:
                raise self.fail("labels.intents", f"unknown intents {sorted(unknown)}")
        uses = {o for s in flow.states.values() for o in s.do} | {
            o
            for s in flow.states.values()
            for t in [*s.on.values(), *s.dtmf.values(), *(t for _, t in s.choices)]
            for o in t.do
        }
        if "apply_correction" in uses and not flow.repairs.get("correction_markers"):
            raise self.fail("repairs", "apply_correction needs repairs.correction_markers")
        for table, where in (
            (flow.global_on, "global"),
            (flow.global_dtmf, "global.dtmf"),
            (flow.menu, "menu"),
        ):
            for key, t in table.items():
                transition(f"{where}.{key}", t)
        for digit, category in flow.keypad_categories.items():
            if category not in INTENTS and category != "keypad_report":
                raise self.fail(f"keypad_categories.{digit}", f"unknown category {category!r}")
        for s in flow.states.values():
            where = f"states.{s.name}"
            prompts(f"{where}.say", s.say)
            prompts(f"{where}.retry", s.retry or ())
            if s.grammar is not None and s.grammar not in flow.grammars:
                raise self.fail(
                    where, f"unknown grammar {s.grammar!r} (define it under 'grammars')"
                )
            ops(f"{where}.do", s.do)
            if s.reprompt:
                prompts(f"{where}.reprompt", (s.reprompt,))
            for key in ("silence_exhausted", "nomatch_exhausted"):
                target(f"{where}.{key}", getattr(s, key))
            for key, t in {**s.on, **{f"dtmf.{k}": v for k, v in s.dtmf.items()}}.items():
                transition(f"{where}.on.{key}", t)
            for i, (_, t) in enumerate(s.choices):
                transition(f"{where}.choices[{i}]", t)
            for b in s.next:
                target(f"{where}.next", b.goto)
            awaiting = [AWAITING[o] for o in s.do if o in AWAITING]
            if awaiting and s.listen != "none":
                raise self.fail(where, f"{s.do} waits for an answer: set listen: none")
            if awaiting and s.next:
                raise self.fail(where, f"{s.do} waits for an answer: use 'on', not 'next'")
            hangs_up = any(o.split(":", 1)[0] == "hangup" for o in s.do)
            if s.listen == "none" and not s.next and not awaiting and not hangs_up:
                raise self.fail(where, "a state that does not listen needs 'next' or 'do: hangup'")
        # Every state must be reachable from the start or from a global handler.
        reachable: set[str] = set()
        todo = [flow.start, flow.silence_exhausted, flow.nomatch_exhausted, *flow.entries.values()]
        todo += [flow.clarify_state] if flow.clarify_state else []
        todo += [
            t.goto
            for t in [*flow.global_on.values(), *flow.global_dtmf.values(), *flow.menu.values()]
            if t.goto
        ]
        while todo:
            name = todo.pop()
            if name in reachable or name in SPECIAL_TARGETS or name not in flow.states:
                continue
            reachable.add(name)
            s = flow.states[name]
            todo += [t.goto for t in [*s.on.values(), *s.dtmf.values()] if t.goto]
            todo += [t.goto for _, t in s.choices if t.goto]
            todo += [b.goto for b in s.next]
            todo += [x for x in (s.silence_exhausted, s.nomatch_exhausted) if x]
        unreachable = names - reachable
        if unreachable:
            raise FlowError(f"{self.path}: unreachable states {sorted(unreachable)}")


def load_flow(path: Path) -> Flow:
    return _Loader(Path(path)).load()


def load_flows(directory: Path, name: str = "main") -> Flow:
    """Load `<directory>/<name>.yml` (other YAML files there are knowledge and routing data)."""
    path = Path(directory) / f"{name}.yml"
    if not path.exists():
        raise FlowError(f"{path}: call flow not found (HOTLINE_CALL_FLOWS_DIR={directory})")
    return load_flow(path)
