"""Logging set-up: caller numbers never reach a log file in full."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Hashable

from hotline.calls import mask_number

# Phone numbers: +84..., 0..., 84... with 9 to 13 digits, not part of a longer word or SID.
_PHONE = re.compile(r"(?<![\w+])\+?\d{9,13}(?!\w)")


def mask_phone_numbers(text: str) -> str:
    return _PHONE.sub(lambda m: mask_number(m.group(0)), text)


class MaskNumbers(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_phone_numbers(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(MaskNumbers())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    # Their request lines carry tokens in query strings (Rasa's ?token=) and caller numbers.
    for noisy in ("twilio.http_client", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class Throttle:
    """At most one report per `interval` seconds per key; the ones in between are counted.

    `hit(key)` returns how many occurrences the report should stand for (this one and those
    held back since the last report), or None when this one is held back. `pending()` gives
    the held-back counts, for a last report when the call ends. A hostile stream can then cost
    one log line and one event row per second, whatever it sends.
    """

    def __init__(self, interval: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._last: dict[Hashable, float] = {}
        self._held: dict[Hashable, int] = {}

    MAX_KEYS = 4096  # past this, keys idle for a whole interval are forgotten

    def hit(self, key: Hashable) -> int | None:
        now = self.clock()
        if len(self._last) > self.MAX_KEYS:
            # Many keys (a stream of made-up call ids): memory stays bounded.
            for k in [k for k, t in self._last.items() if now - t >= self.interval]:
                self._last.pop(k, None)
                self._held.pop(k, None)
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0) + 1

    def pending(self) -> dict[Hashable, int]:
        held, self._held = self._held, {}
        return {k: v for k, v in held.items() if v}
