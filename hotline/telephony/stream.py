"""The Media Streams WebSocket: Twilio's side of a live call.

This module knows Twilio's messages and nothing of what the call is about: it verifies the
handshake, binds the stream to the call whose signed webhook issued its credential, turns
inbound messages into calls on a `CallHandler` (the dialogue session), plays outbound audio
through the `Player`, records both tracks and stores how the call ended.

Every stream is held to limits (message size and rate, payload size, timestamp jumps, errors,
recording length, silence, call duration) so that no stream can starve the event loop that
every other call shares; past a limit the stream is closed and the reason is on its record.
Warnings and error events are throttled per call to one per second, with a count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from hotline.audio import FRAME_BYTES_PCM, FRAME_BYTES_ULAW, ulaw_to_pcm16
from hotline.calls import add_event, claim_stream, mask_number, upsert_call
from hotline.logs import Throttle
from hotline.recording import CallRecorder
from hotline.store import Store, now_iso
from hotline.telephony import protocol, twiml
from hotline.telephony.admission import MODES
from hotline.telephony.credentials import MODE_PARAMETER, PARAMETER, StreamCredentials
from hotline.telephony.player import Player
from hotline.telephony.signature import SIGNATURE_HEADER, SignatureChecker

log = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0
PRESTART_MAX_MESSAGES = 16  # Twilio sends `connected` then `start`; nothing else comes first
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
WATCHDOG_S = 0.2  # how often the wall clock is checked
LINE_POKE_S = 0.25  # no audio for this long: the no-input clock is ticked on wall time
SILENT_PCM_FRAME = b"\x00" * FRAME_BYTES_PCM
DB_ERRORS = (OSError, sqlite3.Error)


class StreamLimitExceeded(Exception):
    """A stream broke one of its limits; `reason` goes on the call record as hangup_reason."""

    def __init__(self, reason: str, **detail: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class StreamLimits:
    max_message_bytes: int = 8192
    max_payload_bytes: int = 320
    max_gap_frames: int = 100
    max_messages_per_s: int = 2000
    max_errors: int = 50
    idle_s: float = 15.0
    max_call_s: float = 1800.0

    @classmethod
    def from_settings(cls, s: Any) -> StreamLimits:
        return cls(
            max_message_bytes=s.stream_max_message_bytes,
            max_payload_bytes=s.stream_max_payload_bytes,
            max_gap_frames=max(1, s.stream_max_gap_ms // 20),
            max_messages_per_s=s.stream_max_messages_per_s,
            max_errors=s.stream_max_errors,
            idle_s=s.stream_idle_s,
            max_call_s=s.max_call_s,
        )


class _Guard:
    """One stream's message budget: size, rate, errors. Counts, never sleeps."""

    def __init__(self, limits: StreamLimits) -> None:
        self.limits = limits
        self.window_start = time.monotonic()
        self.window_count = 0
        self.errors = 0
        self.last_message = time.monotonic()
        self.last_media = time.monotonic()

    def message(self, size: int) -> None:
        now = time.monotonic()
        self.last_message = now
        if size > self.limits.max_message_bytes:
            raise StreamLimitExceeded(
                "message_too_large", bytes=size, limit=self.limits.max_message_bytes
            )
        if now - self.window_start >= 1.0:
            self.window_start, self.window_count = now, 0
        self.window_count += 1
        if self.window_count > self.limits.max_messages_per_s:
            raise StreamLimitExceeded("message_rate", per_second=self.limits.max_messages_per_s)

    def error(self) -> None:
        self.errors += 1
        if self.errors > self.limits.max_errors:
            raise StreamLimitExceeded("too_many_errors", errors=self.errors)


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
    # "live", or "overflow": past HOTLINE_MAX_CALLS, only the busy prompt and a voice message.
    # Bound into the stream credential by the voice webhook (hotline/telephony/admission.py).
    mode: str = "live"
    hangup_reason: str | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    extra: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    throttle: Throttle = field(default_factory=Throttle)

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


async def close_and_drop(ws: WebSocket, code: int, reason: str = "") -> None:
    """Close a stream that broke its limits without waiting for the closing handshake.

    A graceful close keeps reading (and parsing, on the event loop every call shares) whatever
    the client goes on sending until it answers the close, which a flooding client never
    does. So after the close frame the connection itself is cut: uvicorn's protocol object is
    reached through the ASGI send callable (best effort; a server without it gets the
    graceful close)."""
    with contextlib.suppress(Exception):
        # The close frame is written at once; what follows is the wait for the client's.
        await asyncio.wait_for(ws.close(code=code, reason=reason[:120]), 0.05)
    protocol_obj = getattr(getattr(ws, "_send", None), "__self__", None)
    transport = getattr(protocol_obj, "transport", None)
    if transport is not None:
        with contextlib.suppress(Exception):
            transport.close()  # stops reading now; still flushes the close frame


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
        settings: Any = None,
    ) -> None:
        self.checker = checker
        self.stream_url = stream_url
        self.store = store
        self.recordings_dir = recordings_dir
        self.handler_factory = handler_factory
        self.caller_secret = caller_secret
        self.transfer_fn = transfer_fn
        # None: taken from the app's services on the first connection (see _configure).
        self.settings = settings
        self.active: dict[str, TwilioCall] = {}
        self.accepting = True
        # hotline.telephony.admission.Admission: told when a stream is up and when it ends.
        self.admission: Any = None
        # Another way in besides Twilio's signature: the console's "Gọi thử" page, whose browser
        # client speaks the same protocol. Returns who is calling, or None to refuse.
        self.extra_auth: Callable[[WebSocket], Awaitable[str | None]] | None = None
        # Refusals are logged (and stored) at most once a second per reason, with a count.
        self._refusals = Throttle()

    def _configure(self, ws: WebSocket) -> tuple[StreamLimits, StreamCredentials]:
        if self.settings is None:
            self.settings = ws.app.state.services.settings
        return StreamLimits.from_settings(self.settings), StreamCredentials.from_settings(
            self.settings
        )

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

    def _warn_refusal(self, key: str, message: str, *args: Any) -> None:
        count = self._refusals.hit(key)
        if count is not None:
            suffix = f" ({count} in the last second)" if count > 1 else ""
            log.warning(message + suffix, *args)

    async def handle(self, ws: WebSocket) -> None:
        signature = ws.headers.get(SIGNATURE_HEADER)
        admitted, console_user = await self._authorized(ws)
        if not admitted:
            self._warn_refusal(
                "handshake",
                "refused media stream from %s: %s X-Twilio-Signature",
                ws.client.host if ws.client else "?",
                "missing" if not signature else "invalid",
            )
            await ws.close(code=POLICY_VIOLATION)  # before accept: the handshake gets 403
            return
        if not self.accepting:
            await ws.close(code=1013)  # try again later: shutting down
            return
        limits, credentials = self._configure(ws)
        await ws.accept()
        guard = _Guard(limits)
        try:
            start = await asyncio.wait_for(self._await_start(ws, guard), START_TIMEOUT_S)
        except (TimeoutError, WebSocketDisconnect, StreamLimitExceeded) as exc:
            why = exc.reason if isinstance(exc, StreamLimitExceeded) else "no valid start"
            self._warn_refusal(
                "prestart", "media stream closed before a valid start message: %s", why
            )
            await close_and_drop(ws, POLICY_VIOLATION, why)
            return
        row = await self._admit(ws, start, credentials, console_user)
        if row is None:
            return
        if start.encoding != "audio/x-mulaw" or start.sample_rate != 8000:
            log.warning("unexpected media format %s/%s", start.encoding, start.sample_rate)
        await self._run_call(ws, start, row, limits, guard)

    async def _refuse(
        self, ws: WebSocket, start: protocol.Start, why: str, kind: str = "stream_refused"
    ) -> None:
        await close_and_drop(ws, POLICY_VIOLATION, why)
        self._warn_refusal(kind + why, "refused a stream for call %s: %s", start.call_sid, why)
        if self._refusals.hit(("event", kind, start.call_sid)) is not None:
            # Only calls on record get an event: unknown ids must not grow the database.
            with contextlib.suppress(*DB_ERRORS):
                await self.store.arun(
                    lambda db: (
                        add_event(db, start.call_sid, kind, stream_sid=start.stream_sid, why=why)
                        if db.table("calls").count_where("call_sid = ?", [start.call_sid])
                        else None
                    )
                )

    async def _admit(
        self,
        ws: WebSocket,
        start: protocol.Start,
        credentials: StreamCredentials,
        console_user: str | None,
    ) -> dict[str, Any] | None:
        """The call record this stream is bound to, or None (the stream is refused).

        The start must carry the credential the call's signed webhook issued; the call must
        be ringing with no stream yet (a credential is good once). Who is calling comes from
        that record, never from the stream's own parameters."""
        mode = start.custom_parameters.get(MODE_PARAMETER) or "live"
        why = (
            credentials.check(start.call_sid, start.custom_parameters.get(PARAMETER), mode=mode)
            if mode in MODES
            else "unknown stream mode"
        )
        if why is not None:
            await self._refuse(ws, start, why)
            return None
        if start.call_sid in self.active:
            await self._refuse(ws, start, "call already streaming", "duplicate_stream_refused")
            return None

        def claim(db: Any) -> dict[str, Any] | str:
            rows = list(
                db.query("SELECT caller, status FROM calls WHERE call_sid = ?", [start.call_sid])
            )
            if not rows:
                return "no webhook for this call"
            caller = rows[0]["caller"] or ""
            if (console_user is not None) != caller.startswith("console:") or (
                console_user is not None and caller != console_user
            ):
                return "stream does not match how the call was placed"
            row = claim_stream(db, start.call_sid, start.stream_sid)
            if row is None:
                return f"call is {rows[0]['status'] or 'not ringing'}, not waiting for a stream"
            add_event(db, start.call_sid, "stream_started", stream_sid=start.stream_sid, mode=mode)
            return {**row, "mode": mode}

        try:
            result = await self.store.arun(claim)
        except DB_ERRORS as exc:
            log.error("call %s: could not bind its stream: %s", start.call_sid, exc)
            with contextlib.suppress(Exception):
                await ws.close(code=1011, reason="storage unavailable")
            return None
        if isinstance(result, str):
            await self._refuse(ws, start, result)
            return None
        if self.admission is not None:
            self.admission.connected(start.call_sid, mode)
        return result

    async def _await_start(self, ws: WebSocket, guard: _Guard) -> protocol.Start:
        for _ in range(PRESTART_MAX_MESSAGES):
            text = await self._receive_text(ws, guard)
            if text is None:
                raise WebSocketDisconnect(1006)
            try:
                msg = protocol.parse(text)
            except protocol.ProtocolError as exc:
                self._warn_refusal("prestart_skip", "skipped a message before start: %s", exc)
                continue
            if isinstance(msg, protocol.Start):
                return msg
            if not isinstance(msg, protocol.Connected):
                self._warn_refusal("prestart_skip", "skipped %s before start", type(msg).__name__)
        raise StreamLimitExceeded("no_start", messages=PRESTART_MAX_MESSAGES)

    @staticmethod
    async def _receive_text(ws: WebSocket, guard: _Guard) -> str | None:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            if message.get("code") == MESSAGE_TOO_BIG:  # refused by the server's ws_max_size
                raise StreamLimitExceeded("message_too_large", limit=guard.limits.max_message_bytes)
            return None
        if message.get("text") is not None:
            text = message["text"]
            guard.message(len(text))
            return text
        if message.get("bytes") is not None:
            data = message["bytes"]
            guard.message(len(data))
            return data.decode("utf-8", errors="replace")
        guard.message(0)
        return ""

    async def _run_call(
        self,
        ws: WebSocket,
        start: protocol.Start,
        row: dict[str, Any],
        limits: StreamLimits,
        guard: _Guard,
    ) -> None:
        params = start.custom_parameters
        caller = row.get("caller") or ""
        recorder = CallRecorder(
            self.recordings_dir,
            start.call_sid,
            # A little beyond the longest call: the watchdog ends the call first.
            max_s=limits.max_call_s + 60,
        )

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
            called=row.get("called") or "",
            parameters=params,
            player=player,
            recorder=recorder,
            websocket=ws,
            transfer_fn=self.transfer_fn,
            mode=row.get("mode") or "live",
        )
        self.active[start.call_sid] = call
        reason = "socket_closed"
        handler: CallHandler | None = None
        watchdog: asyncio.Task[None] | None = None
        try:
            log.info(
                "call %s from %s: stream %s started",
                start.call_sid,
                call.masked_caller,
                start.stream_sid,
            )
            with contextlib.suppress(*DB_ERRORS):
                await self.store.arun(
                    lambda db: upsert_call(
                        db, start.call_sid, recording_path=str(recorder.caller_path)
                    )
                )
            # Built in a worker thread: a session loads its own VAD model (~0.1 s), which on
            # the event loop would stall every other call's audio each time a call starts.
            handler = await asyncio.to_thread(self.handler_factory, call)
            call.extra["handler"] = handler
            player.start()
            audio_lock = asyncio.Lock()
            await handler.on_start()
            watchdog = asyncio.create_task(
                self._watchdog(call, handler, guard, limits, audio_lock), name="watchdog"
            )
            reason = await self._receive_until_ended(ws, call, handler, guard, limits, audio_lock)
        except StreamLimitExceeded as exc:
            reason = exc.reason
            await self._limit_event(call, exc)
        except Exception:
            log.exception("call %s failed", start.call_sid)
            reason = "server_error"
        finally:
            # Each step on its own: a failing one (a full disk closing the WAVs) must not skip
            # the others, or the call would stay "active" and shutdown would wait for it.
            reason = call.hangup_reason or reason
            call.ended.set()
            if watchdog is not None:
                watchdog.cancel()
            with contextlib.suppress(Exception):
                await player.close()
            if handler is not None:
                try:
                    await handler.on_end(reason)
                except Exception:
                    log.exception("call %s: the session's end failed", start.call_sid)
            try:
                await asyncio.to_thread(recorder.close)
            except Exception:
                log.exception("call %s: closing the recording failed", start.call_sid)
            self.active.pop(start.call_sid, None)
            if self.admission is not None:
                self.admission.release(start.call_sid)
            try:
                await self._store_end(call, reason)
            except Exception:
                log.exception("call %s: could not store how the call ended", start.call_sid)
            if ws.application_state == WebSocketState.CONNECTED:
                with contextlib.suppress(Exception):
                    await ws.close()
            log.info("call %s ended: %s", start.call_sid, reason)

    async def _limit_event(self, call: TwilioCall, exc: StreamLimitExceeded) -> None:
        if call.websocket.application_state == WebSocketState.CONNECTED:
            await close_and_drop(call.websocket, POLICY_VIOLATION, exc.reason)
        log.warning("call %s: stream closed: %s %s", call.call_sid, exc.reason, exc.detail)
        with contextlib.suppress(*DB_ERRORS):
            await self.store.arun(
                lambda db: add_event(
                    db,
                    call.call_sid,
                    "stream_limit",
                    call.call_ms(),
                    reason=exc.reason,
                    **exc.detail,
                )
            )

    async def _report(
        self, call: TwilioCall, kind: str, message: str, *args: Any, **detail: Any
    ) -> None:
        """A warning and an event, at most once a second per kind for this call."""
        count = call.throttle.hit(kind)
        if count is None:
            return
        suffix = f" ({count} in the last second)" if count > 1 else ""
        log.warning("call %s: " + message + suffix, call.call_sid, *args)
        at = call.call_ms()
        with contextlib.suppress(*DB_ERRORS):
            await self.store.arun(
                lambda db: add_event(db, call.call_sid, kind, at, count=count, **detail)
            )

    async def _receive_until_ended(
        self,
        ws: WebSocket,
        call: TwilioCall,
        handler: CallHandler,
        guard: _Guard,
        limits: StreamLimits,
        audio_lock: asyncio.Lock,
    ) -> str:
        """Run the receive loop until it returns or the call is ended from our side (a hang-up,
        the watchdog): a client that has gone quiet must not keep the call open."""
        receiving = asyncio.create_task(
            self._receive_loop(ws, call, handler, guard, limits, audio_lock), name="receive"
        )
        ended = asyncio.create_task(call.ended.wait())
        try:
            await asyncio.wait({receiving, ended}, return_when=asyncio.FIRST_COMPLETED)
            if not receiving.done():
                # Hung up from here: the loop ends as the socket closes; don't wait long.
                await asyncio.wait({receiving}, timeout=1.0)
            if receiving.done():
                return receiving.result()
            receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await receiving
            return call.hangup_reason or "bot_hangup"
        finally:
            ended.cancel()
            if not receiving.done():
                receiving.cancel()

    async def _watchdog(
        self,
        call: TwilioCall,
        handler: CallHandler,
        guard: _Guard,
        limits: StreamLimits,
        audio_lock: asyncio.Lock,
    ) -> None:
        """The call's wall clock: a silent stream is dropped, a call has a longest duration,
        and the no-input clock runs even when no audio arrives."""
        try:
            while not call.ended.is_set():
                await asyncio.sleep(WATCHDOG_S)
                now = time.monotonic()
                if now - guard.last_message >= limits.idle_s:
                    await self._report(
                        call, "stream_silent", "nothing received for %.0f s", limits.idle_s
                    )
                    await call.hangup("dropped")
                    return
                if now - call.started >= limits.max_call_s:
                    await self._report(
                        call, "max_duration", "longest call (%.0f s) reached", limits.max_call_s
                    )
                    await call.hangup("max_duration")
                    return
                if now - guard.last_media >= LINE_POKE_S and not audio_lock.locked():
                    # No audio on the line: feed the session one silent frame so its
                    # no-input clock (which also runs on wall time) is looked at.
                    async with audio_lock:
                        await handler.on_audio(SILENT_PCM_FRAME)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("call %s: watchdog failed", call.call_sid)

    async def _receive_loop(
        self,
        ws: WebSocket,
        call: TwilioCall,
        handler: CallHandler,
        guard: _Guard,
        limits: StreamLimits,
        audio_lock: asyncio.Lock,
    ) -> str:
        last_seq: int | None = None
        frames_in = 0
        ts_offset = 0  # frames skipped past capped timestamp jumps
        while not call.ended.is_set():
            try:
                text = await self._receive_text(ws, guard)
            except (WebSocketDisconnect, RuntimeError):
                return "socket_closed"
            if text is None:
                return "socket_closed"
            try:
                msg = protocol.parse(text)
                if isinstance(msg, protocol.Media) and not msg.payload:
                    raise protocol.ProtocolError("media with an empty payload")
            except protocol.ProtocolError as exc:
                guard.error()
                await self._report(
                    call, "protocol_error", "skipped a message: %s", exc, error=str(exc)
                )
                continue
            seq = getattr(msg, "sequence_number", None)
            if seq is not None and last_seq is not None and seq > last_seq + 1:
                await self._report(
                    call, "sequence_gap", "sequence gap %d -> %d", last_seq, seq, to=seq
                )
            if seq is not None:
                last_seq = max(seq, last_seq or 0)
            match msg:
                case protocol.Media(payload=payload, timestamp_ms=ts):
                    if len(payload) > limits.max_payload_bytes:
                        raise StreamLimitExceeded(
                            "payload_too_large",
                            bytes=len(payload),
                            limit=limits.max_payload_bytes,
                        )
                    guard.last_media = time.monotonic()
                    at = None
                    if ts is not None and ts // 20 - ts_offset > frames_in:
                        gap = ts // 20 - ts_offset - frames_in
                        if gap > limits.max_gap_frames:
                            # Past the cap the timeline skips instead of filling hours of
                            # silence: later timestamps count from here.
                            ts_offset += gap - limits.max_gap_frames
                            await self._report(
                                call,
                                "timestamp_jump",
                                "timestamp jumped %d ms; filled %d ms",
                                gap * 20,
                                limits.max_gap_frames * 20,
                                jump_ms=gap * 20,
                            )
                            gap = limits.max_gap_frames
                        # Frames lost in transit: advance the clock past them.
                        call.player.inbound_frames += gap
                        frames_in += gap
                        at = frames_in
                    pcm = ulaw_to_pcm16(payload)
                    call.recorder.caller_frame(pcm, at)
                    if call.recorder.full:
                        raise StreamLimitExceeded(
                            "recording_limit", seconds=call.recorder.caller_ms // 1000
                        )
                    frames_in += max(1, len(payload) // FRAME_BYTES_ULAW)
                    call.player.on_inbound_frame()
                    async with audio_lock:
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
                    await self._report(call, "second_start", "second start message ignored")
                case protocol.Connected():
                    pass
        return call.hangup_reason or "bot_hangup"

    async def _store_end(self, call: TwilioCall, reason: str) -> None:
        held = call.throttle.pending()
        recorder = call.recorder

        def write(db: Any) -> None:
            row = next(
                iter(db.query("SELECT status FROM calls WHERE call_sid = ?", [call.call_sid])),
                {},
            )
            fields: dict[str, Any] = {
                "ended_at": now_iso(),
                "hangup_reason": reason,
                "recording_path": str(recorder.caller_path),
                "mixed_recording_path": str(recorder.mixed_path),
                "bot_recording_path": str(recorder.bot_path),
                "duration_s": round(recorder.caller_ms / 1000, 2),
            }
            if row.get("status") in (None, "", "ringing", "in-progress"):
                fields["status"] = "completed"
            upsert_call(db, call.call_sid, **fields)
            for kind, count in held.items():
                add_event(db, call.call_sid, str(kind), call.call_ms(), count=count, held=True)
            if recorder.error:
                add_event(db, call.call_sid, "recording_error", error=recorder.error)
            add_event(db, call.call_sid, "stream_ended", call.call_ms(), reason=reason)

        await self.store.arun(write)
