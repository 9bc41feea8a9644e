"""Per-call stream credentials: what binds a Media Stream to the signed webhook of its call.

Twilio signs the WebSocket handshake over the stream URL alone, which is the same for every
call: a handshake seen once could be replayed forever. So the voice webhook (itself signed over
the call's own parameters) hands Twilio a credential as a TwiML <Parameter>, and Twilio gives
it back in `start.customParameters`. The credential is an HMAC over the CallSid and an expiry,
keyed from the Twilio auth token and the server's secret. It is single-use through the call
record: a stream is admitted only while its call is `ringing` with no stream yet, and admitting
it moves the call on (see `MediaStreamServer`).

The credential also binds the stream's mode (`live`, or `overflow` past HOTLINE_MAX_CALLS, see
hotline/telephony/admission.py), which travels as a second <Parameter>: a client that edits
the mode no longer matches the MAC, so it cannot pick a mode the webhook did not give it.
"""

from __future__ import annotations

import hashlib
import hmac
import time

PARAMETER = "streamToken"
MODE_PARAMETER = "streamMode"
DEFAULT_MODE = "live"
_CONTEXT = b"hotline media stream credential v1"


class StreamCredentials:
    def __init__(self, auth_token: str, server_secret: str, ttl_s: float) -> None:
        self._key = hmac.new(
            server_secret.encode(), _CONTEXT + b"\0" + auth_token.encode(), hashlib.sha256
        ).digest()
        self.ttl_s = ttl_s

    @classmethod
    def from_settings(cls, settings: object) -> StreamCredentials:
        return cls(
            settings.auth_token,  # type: ignore[attr-defined]
            settings.session_secret,  # type: ignore[attr-defined]
            settings.stream_token_ttl_s,  # type: ignore[attr-defined]
        )

    def _mac(self, call_sid: str, expires: int, mode: str) -> str:
        msg = f"{call_sid}\0{expires}"
        if mode != DEFAULT_MODE:  # a live call's credential is the same as before modes
            msg += f"\0{mode}"
        return hmac.new(self._key, msg.encode(), hashlib.sha256).hexdigest()

    def issue(self, call_sid: str, now: float | None = None, mode: str = DEFAULT_MODE) -> str:
        expires = int((now if now is not None else time.time()) + self.ttl_s)
        return f"{expires}.{self._mac(call_sid, expires, mode)}"

    def check(
        self,
        call_sid: str,
        token: str | None,
        now: float | None = None,
        mode: str | None = None,
    ) -> str | None:
        """None if the credential is good for this call, in this mode, now; else why not (for
        the log). No mode given is the live mode."""
        if not token:
            return "no stream credential"
        expires_text, _, mac = token.partition(".")
        if not expires_text.isdigit() or len(expires_text) > 12 or len(mac) != 64:
            return "malformed stream credential"
        expires = int(expires_text)
        if not hmac.compare_digest(mac, self._mac(call_sid, expires, mode or DEFAULT_MODE)):
            return "stream credential not issued for this call and mode"
        if expires < (now if now is not None else time.time()):
            return "stream credential expired"
        return None
