"""Logging set-up: caller numbers never reach a log file in full."""

from __future__ import annotations

import logging
import re

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
