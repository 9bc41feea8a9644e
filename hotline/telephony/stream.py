"""The Media Streams WebSocket: Twilio's side of a live call.

This module knows Twilio's messages and nothing of what the call is about: it verifies the
handshake, turns inbound messages into calls on a `CallHandler` (the dialogue session), plays
outbound audio through the `Player`, records both tracks and stores how the call ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from hotline.audio import FRAME_BYTES_ULAW, ulaw_to_pcm16
from hotline.calls import add_event, caller_hash, mask_number, upsert_call
from hotline.recording import CallRecorder
from hotline.store import Store, now_iso
from hotline.telephony import protocol, twiml
from hotline.telephony.player import Player
from hotline.telephony.signature import SIGNATURE_HEADER, SignatureChecker

log = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0
POLICY_VIOLATION = 1008


class CallHandler(Protocol):
    async def on_start(self) -> None: ...
    async def on_audio(self, pcm16: bytes) -> None: ...
    async def on_dtmf(self, digit: str) -> None: ...
    async def on_mark(self, name: str) -> None: ...
    async def on_end(self, reason: str) -> None: ...


@dataclass
class TwilioCall:
    """One live call as the dialogue sees it: play, clear, hang up, transfer."""

    call_sid: str
    stream_sid: str
    account_sid: str
    caller: str
    called: str
    parameters: dict[str, str]
    player: Player
    recorder: CallRecorder
    websocket: WebSocket
    transfer_fn: Callable[[str, str], Any] | None = None  # (call_sid, twiml) -> awaitable bool
    hangup_reason: str | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def masked_caller(self) -> str:
        return mask_number(self.caller)

    def tick(self) -> int:
        """The call's timeline, in 20 ms frames of caller audio."""
        return self.player.tick()

    def call_ms(self) -> int:
        return self.recorder.caller_ms

    def play(self, label: str, ulaw: bytes, on_start: Callable[[], None] | None = None) -> str:
        prompt_id = self.player.new_prompt_id(label)
        self.player.enqueue(prompt_id, ulaw, on_start)
        return prompt_id

    async def clear(self) -> list[str]:
        return await self.player.clear()

    async def hangup(self, reason: str = "bot_hangup") -> None:
        """Close the stream; Twilio then runs the TwiML after <Connect> (none: the call ends)."""
        self.hangup_reason = self.hangup_reason or reason
        self.ended.set()
        if self.websocket.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await self.websocket.close()

    async def transfer(self, number: str) -> bool:
        """Hand the caller to a phone number: Twilio's call is redirected to a <Dial>."""
        if self.transfer_fn is None:
            return False
        ok = bool(await self.transfer_fn(self.call_sid, twiml.dial(number)))
        if ok:
            self.hangup_reason = "transfer"
        return ok


class MediaStreamServer:
    """Accepts Twilio's WebSocket connections and runs each call."""

    def __init__(
        self,
        *,
        checker: SignatureChecker,
        stream_url: str,
        store: Store,
        recordings_dir: Any,
        handler_factory: Callable[[TwilioCall], CallHandler],
        caller_secret: str,
        transfer_fn: Callable[[str, str], Any] | None = None,
    ) -> None:
        self.checker = checker
        self.stream_url = stream_url
        self.store = store
        self.recordings_dir = recordings_dir
        self.handler_factory = handler_factory
        self.caller_secret = caller_secret
        self.transfer_fn = transfer_fn
        self.active: dict[str, TwilioCall] = {}
        self.accepting = True
        # Another way in besides Twilio's signature: the console's "Gọi thử" page, whose browser
        # client speaks the same protocol. Returns who is calling, or None to refuse.
        self.extra_auth: Callable[[WebSocket], Awaitable[str | None]] | None = None

    async def _authorized(self, ws: WebSocket) -> tuple[bool, str | None]:
        """(admitted, console identity). Twilio's signature admits with no identity."""
        if self.checker.valid(self.stream_url, {}, ws.headers.get(SIGNATURE_HEADER)):
            return True, None
        if self.extra_auth is not None and ws.headers.get(SIGNATURE_HEADER) is None:
            try:
                who = await self.extra_auth(ws)
            except Exception:
                log.exception("console stream authorisation failed")
                return False, None
            return who is not None, who
        return False, None

    async def handle(self, ws: WebSocket) -> None:
        signature = ws.headers.get(SIGNATURE_HEADER)
        admitted, console_user = await self._authorized(ws)
        if not admitted:
            log.warning(
                "refused media stream from %s: %s X-Twilio-Signature",
                ws.client.host if ws.client else "?",
                "missing" if not signature else "invalid",
            )
            await ws.close(code=POLICY_VIOLATION)  # before accept: the handshake gets 403
            return
        if not self.accepting:
            await ws.close(code=1013)  # try again later: shutting down
            return
        await ws.accept()
        try:
            start = await asyncio.wait_for(self._await_start(ws), START_TIMEOUT_S)
        except (TimeoutError, WebSocketDisconnect):
            log.warning("media stream closed before a valid start message")
            with contextlib.suppress(Exception):
                await ws.close(code=POLICY_VIOLATION)
            return
        if start.call_sid in self.active:
            log.warning("refused a second stream for call %s", start.call_sid)
            await self.store.arun(
                lambda db: add_event(
                    db, start.call_sid, "duplicate_stream_refused", stream_sid=start.stream_sid
                )
            )
            await ws.close(code=POLICY_VIOLATION, reason="call already streaming")
            return
        if console_user is not None:
            # A browser test call: it may not pose as a phone number (we would text it), nor
            # reuse the id of a call already on record (its record would be overwritten).
            exists = await self.store.arun(
                lambda db: db.table("calls").count_where("call_sid = ?", [start.call_sid])
            )
            if exists or not start.call_sid.startswith("CA"):
                log.warning("refused a console stream reusing call id %s", start.call_sid)
                await ws.close(code=POLICY_VIOLATION, reason="call id already used")
                return
            who = console_user.removeprefix("console:")
            start.custom_parameters["caller"] = f"console:{who}"
        if start.encoding != "audio/x-mulaw" or start.sample_rate != 8000:
            log.warning("unexpected media format %s/%s", start.encoding, start.sample_rate)
        await self._run_call(ws, start)

    async def _await_start(self, ws: WebSocket) -> protocol.Start:
        while True:
            text = await self._receive_text(ws)
            if text is None:
                raise WebSocketDisconnect(1006)
            try:
                msg = protocol.parse(text)
            except protocol.ProtocolError as exc:
                log.warning("skipped a message before start: %s", exc)
                continue
            if isinstance(msg, protocol.Start):
                return msg
            if not isinstance(msg, protocol.Connected):
                log.warning("skipped %s before start", type(msg).__name__)

    @staticmethod
    async def _receive_text(ws: WebSocket) -> str | None:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return None
        if message.get("text") is not None:
            return message["text"]
        if message.get("bytes") is not None:
            return message["bytes"].decode("utf-8", errors="replace")
        return ""

    async def _run_call(self, ws: WebSocket, start: protocol.Start) -> None:
        params = start.custom_parameters
        caller = params.get("caller", "")
        recorder = CallRecorder(self.recordings_dir, start.call_sid)

        async def send(text: str) -> None:
            await ws.send_text(text)

        player = Player(
            send,
            lambda ulaw: protocol.media(start.stream_sid, ulaw),
            lambda name: protocol.mark(start.stream_sid, name),
            lambda: protocol.clear(start.stream_sid),
            on_played=recorder.bot_frame,
        )
        call = TwilioCall(
            call_sid=start.call_sid,
            stream_sid=start.stream_sid,
            account_sid=start.account_sid,
            caller=caller,
            called=params.get("called", ""),
            parameters=params,
            player=player,
            recorder=recorder,
            websocket=ws,
            transfer_fn=self.transfer_fn,
        )
        self.active[start.call_sid] = call
        log.info(
            "call %s from %s: stream %s started",
            start.call_sid,
            call.masked_caller,
            start.stream_sid,
        )
        await self.store.arun(
            lambda db: (
                upsert_call(
                    db,
                    start.call_sid,
                    account_sid=start.account_sid,
                    stream_sid=start.stream_sid,
                    caller=caller,
                    caller_hash=caller_hash(caller, self.caller_secret),
                    called=call.called,
                    answered_at=now_iso(),
                    status="in-progress",
                    recording_path=str(recorder.caller_path),
                ),
                add_event(db, start.call_sid, "stream_started", stream_sid=start.stream_sid),
            )
        )
        handler = self.handler_factory(call)
        call.extra["handler"] = handler
        player.start()
        reason = "socket_closed"
        try:
            await handler.on_start()
            reason = await self._receive_loop(ws, call, handler)
        except Exception:
            log.exception("call %s failed", start.call_sid)
            reason = "server_error"
        finally:
            reason = call.hangup_reason or reason
            call.ended.set()
            await player.close()
            with contextlib.suppress(Exception):
                await handler.on_end(reason)
            recorder.close()
            self.active.pop(start.call_sid, None)
            await self._store_end(call, reason)
            if ws.application_state == WebSocketState.CONNECTED:
                with contextlib.suppress(Exception):
                    await ws.close()
            log.info("call %s ended: %s", start.call_sid, reason)

    async def _receive_loop(self, ws: WebSocket, call: TwilioCall, handler: CallHandler) -> str:
        last_seq: int | None = None
        frames_in = 0
        while not call.ended.is_set():
            try:
                text = await self._receive_text(ws)
            except (WebSocketDisconnect, RuntimeError):
                return "socket_closed"
            if text is None:
                return "socket_closed"
            try:
                msg = protocol.parse(text)
            except protocol.ProtocolError as exc:
                log.warning("call %s: skipped a message: %s", call.call_sid, exc)
                await self.store.arun(
                    lambda db, e=str(exc): add_event(
                        db, call.call_sid, "protocol_error", call.call_ms(), error=e
                    )
                )
                continue
            seq = getattr(msg, "sequence_number", None)
            if seq is not None and last_seq is not None and seq > last_seq + 1:
                log.warning("call %s: sequence gap %d -> %d", call.call_sid, last_seq, seq)
            if seq is not None:
                last_seq = max(seq, last_seq or 0)
            match msg:
                case protocol.Media(payload=payload, timestamp_ms=ts):
                    if len(payload) != FRAME_BYTES_ULAW:
                        log.debug("media frame of %d bytes", len(payload))
                    at = ts // 20 if ts is not None and ts // 20 > frames_in else None
                    if at is not None:
                        # Frames lost in transit: advance the clock past them.
                        call.player.inbound_frames += at - frames_in
                        frames_in = at
                    pcm = ulaw_to_pcm16(payload)
                    call.recorder.caller_frame(pcm, at)
                    frames_in += max(1, len(payload) // FRAME_BYTES_ULAW)
                    call.player.on_inbound_frame()
                    await handler.on_audio(pcm)
                    # Frames can arrive back to back; let the player and the call's worker run.
                    await asyncio.sleep(0)
                case protocol.Dtmf(digit=digit):
                    await handler.on_dtmf(digit)
                case protocol.Mark(name=name):
                    call.player.mark_echoed(name)
                    await handler.on_mark(name)
                case protocol.Stop():
                    return "stop"
                case protocol.Start():
                    log.warning("call %s: second start message ignored", call.call_sid)
                case protocol.Connected():
                    pass
        return call.hangup_reason or "bot_hangup"

    async def _store_end(self, call: TwilioCall, reason: str) -> None:
        def write(db: Any) -> None:
            row = next(
                iter(
                    db.query(
                        "SELECT answered_at, status FROM calls WHERE call_sid = ?", [call.call_sid]
                    )
                ),
                {},
            )
            ended = now_iso()
            fields: dict[str, Any] = {
                "ended_at": ended,
                "hangup_reason": reason,
                "recording_path": str(call.recorder.caller_path),
                "mixed_recording_path": str(call.recorder.mixed_path),
                "bot_recording_path": str(call.recorder.bot_path),
                "duration_s": round(call.recorder.caller_ms / 1000, 2),
            }
            if row.get("status") in (None, "", "ringing", "in-progress"):
                fields["status"] = "completed"
            upsert_call(db, call.call_sid, **fields)
            add_event(db, call.call_sid, "stream_ended", call.call_ms(), reason=reason)

        await self.store.arun(write)
