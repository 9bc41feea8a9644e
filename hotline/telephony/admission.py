"""Admission control: how many calls this server takes at once (HOTLINE_MAX_CALLS).

Past the limit a call still gets an answer, never silence: it is admitted in *overflow* mode,
a cheap stream with no live conversation (one pre-rendered busy prompt, then a voice message
that becomes a ticket). Overflow streams have their own, separate cap; past that the voice
webhook answers a <Say> busy message and hangs up. Calls in progress keep their latency
because new ones never take a live slot beyond the limit.

A call is counted from the moment the voice webhook admits it. Until its stream connects it
is *pending*: a call whose stream never comes (the caller hung up while it rang, Twilio gave
up) frees its slot after `pending_s`. It is released when its stream ends or when Twilio's
status callback says the call is over, whichever comes first.

Pure bookkeeping, in memory, one per server process: the event loop is the only caller, so
no lock is needed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Mode = Literal["live", "overflow"]
Decision = Literal["live", "overflow", "busy"]
MODES: tuple[str, ...] = ("live", "overflow")
PENDING_S = 15.0


def default_overflow(max_calls: int) -> int:
    """Overflow streams allowed when HOTLINE_MAX_OVERFLOW_CALLS is unset. They skip the NLU and
    are short, but the message is still decoded while the caller speaks: a quarter of the live
    limit bounds what they add to the live calls' load."""
    return max(1, max_calls // 4)


@dataclass
class _Slot:
    mode: Mode
    expires: float | None  # monotonic; None once the stream is connected


class Admission:
    def __init__(
        self,
        max_calls: int,
        max_overflow: int,
        *,
        pending_s: float = PENDING_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_calls < 1 or max_overflow < 0:
            raise ValueError("max_calls must be at least 1 and max_overflow not negative")
        self.max_calls = max_calls
        self.max_overflow = max_overflow
        self.pending_s = pending_s
        self._clock = clock
        self._slots: dict[str, _Slot] = {}

    @classmethod
    def from_settings(cls, settings: object) -> Admission:
        max_calls: int = settings.max_calls  # type: ignore[attr-defined]
        overflow = settings.max_overflow_calls  # type: ignore[attr-defined]
        return cls(max_calls, default_overflow(max_calls) if overflow is None else overflow)

    def _expire(self) -> None:
        now = self._clock()
        for sid in [s for s, slot in self._slots.items() if slot.expires and slot.expires < now]:
            del self._slots[sid]

    def count(self, mode: Mode) -> int:
        self._expire()
        return sum(1 for slot in self._slots.values() if slot.mode == mode)

    def decide(self, call_sid: str) -> Decision:
        """Take a new call as live, as overflow, or not at all (busy). A call already counted
        (Twilio retrying its webhook) keeps the mode it was given."""
        self._expire()
        slot = self._slots.get(call_sid)
        if slot is not None:
            return slot.mode
        expires = self._clock() + self.pending_s
        if self.count("live") < self.max_calls:
            self._slots[call_sid] = _Slot("live", expires)
            return "live"
        if self.count("overflow") < self.max_overflow:
            self._slots[call_sid] = _Slot("overflow", expires)
            return "overflow"
        return "busy"

    def connected(self, call_sid: str, mode: Mode = "live") -> None:
        """The call's stream is up: it holds its slot until released. A stream the webhook did
        not admit here (a console test call) is counted from now on too."""
        slot = self._slots.get(call_sid)
        if slot is None:
            self._slots[call_sid] = _Slot(mode, None)
        else:
            slot.expires = None

    def release(self, call_sid: str) -> None:
        self._slots.pop(call_sid, None)

    def status(self) -> dict[str, int]:
        return {
            "live": self.count("live"),
            "overflow": self.count("overflow"),
            "max_calls": self.max_calls,
            "max_overflow": self.max_overflow,
        }
