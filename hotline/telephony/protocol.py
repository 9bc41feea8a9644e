"""Twilio Media Streams messages, parsed and built. Pure: no sockets, no clocks.

Inbound (from Twilio): connected, start, media, dtmf, mark, stop. Numeric fields such as
sequenceNumber, chunk and timestamp arrive as strings. Outbound (to Twilio): media, mark, clear.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any


class ProtocolError(ValueError):
    """A message we cannot use; the stream skips it and goes on."""


@dataclass(frozen=True)
class Connected:
    protocol: str
    version: str


@dataclass(frozen=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: list[str]
    encoding: str
    sample_rate: int
    channels: int
    custom_parameters: dict[str, str] = field(default_factory=dict)
    sequence_number: int | None = None


@dataclass(frozen=True)
class Media:
    payload: bytes
    track: str
    chunk: int | None
    timestamp_ms: int | None
    sequence_number: int | None


@dataclass(frozen=True)
class Dtmf:
    digit: str
    sequence_number: int | None


@dataclass(frozen=True)
class Mark:
    name: str
    sequence_number: int | None


@dataclass(frozen=True)
class Stop:
    call_sid: str
    account_sid: str
    sequence_number: int | None


Inbound = Connected | Start | Media | Dtmf | Mark | Stop

DTMF_DIGITS = set("0123456789*#ABCD")


def _int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ProtocolError(f"{name} is not a number: {value!r}") from None


def _obj(msg: dict[str, Any], key: str) -> dict[str, Any]:
    value = msg.get(key)
    if not isinstance(value, dict):
        raise ProtocolError(f"'{key}' event without a '{key}' object")
    return value


def parse(text: str | bytes) -> Inbound:
    """Parse one WebSocket text frame from Twilio. Raises ProtocolError for anything unusable."""
    try:
        msg = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("message is not a JSON object")
    event = msg.get("event")
    seq = _int(msg.get("sequenceNumber"), "sequenceNumber")
    match event:
        case "connected":
            return Connected(str(msg.get("protocol", "")), str(msg.get("version", "")))
        case "start":
            start = _obj(msg, "start")
            fmt = start.get("mediaFormat") or {}
            call_sid = start.get("callSid")
            stream_sid = start.get("streamSid") or msg.get("streamSid")
            if not call_sid or not stream_sid:
                raise ProtocolError("start without callSid or streamSid")
            params = start.get("customParameters") or {}
            if not isinstance(params, dict):
                raise ProtocolError("customParameters is not an object")
            return Start(
                stream_sid=str(stream_sid),
                call_sid=str(call_sid),
                account_sid=str(start.get("accountSid", "")),
                tracks=list(start.get("tracks") or ["inbound"]),
                encoding=str(fmt.get("encoding", "audio/x-mulaw")),
                sample_rate=_int(fmt.get("sampleRate", 8000), "sampleRate") or 8000,
                channels=_int(fmt.get("channels", 1), "channels") or 1,
                custom_parameters={str(k): str(v) for k, v in params.items()},
                sequence_number=seq,
            )
        case "media":
            media = _obj(msg, "media")
            payload = media.get("payload")
            if not isinstance(payload, str):
                raise ProtocolError("media without a payload")
            try:
                audio = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                raise ProtocolError("media payload is not valid base64") from None
            return Media(
                payload=audio,
                track=str(media.get("track", "inbound")),
                chunk=_int(media.get("chunk"), "chunk"),
                timestamp_ms=_int(media.get("timestamp"), "timestamp"),
                sequence_number=seq,
            )
        case "dtmf":
            digit = str(_obj(msg, "dtmf").get("digit", ""))
            if digit not in DTMF_DIGITS:
                raise ProtocolError(f"unknown DTMF digit {digit!r}")
            return Dtmf(digit, seq)
        case "mark":
            name = _obj(msg, "mark").get("name")
            if not name:
                raise ProtocolError("mark without a name")
            return Mark(str(name), seq)
        case "stop":
            stop = msg.get("stop") or {}
            return Stop(str(stop.get("callSid", "")), str(stop.get("accountSid", "")), seq)
        case _:
            raise ProtocolError(f"unknown event {event!r}")


def media(stream_sid: str, ulaw: bytes) -> str:
    payload = base64.b64encode(ulaw).decode("ascii")
    return json.dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}})


def mark(stream_sid: str, name: str) -> str:
    return json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear(stream_sid: str) -> str:
    return json.dumps({"event": "clear", "streamSid": stream_sid})
