"""A stand-in for Twilio: plays a recorded call into a running hotline, exactly as Twilio would.

It posts the signed voice webhook, reads the TwiML, opens the Media Stream WebSocket with a
signed handshake, sends `connected`, `start`, 20 ms `media` frames (numeric fields as strings,
as Twilio sends them), `dtmf`, and `stop`, and plays what the server sends back on a simulated
line: outbound audio is "heard" one frame per inbound frame, a `mark` is echoed once the audio
before it has played, and `clear` drops the buffer and echoes its pending marks. Then it posts
the status callback and fetches the call's outcome.

A recorded call is a WAV file plus an optional sidecar (`NAME.yml` next to it) that lists the
caller's turns (spans of the WAV, keypad digits, silences, a dead line (`mute`: nothing sent),
hang-up) and the expected outcome.
With a sidecar, each turn is played after the bot has finished speaking, as a caller would;
without one, the WAV is streamed as it is. `--fast` sends audio as fast as the server takes it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import websockets
import yaml

from hotline.audio import FRAME_BYTES_ULAW, ULAW_SILENCE, read_wav_as_ulaw
from hotline.telephony.signature import SIGNATURE_HEADER, sign

SILENT_FRAME = bytes([ULAW_SILENCE]) * FRAME_BYTES_ULAW
FAST_SPEED = 20.0  # --fast: 20x real time, so the server's own work still fits between frames
QUIET_FRAMES = 15  # 300 ms of call time without bot audio: the bot has finished
QUIET_WALL_S = 0.25  # and, when sending fast, as much real time (prompts render one by one)
REPLY_TIMEOUT_FRAMES = 750  # 15 s: stop waiting for a reply that is not coming
END_TIMEOUT_FRAMES = 3000  # 60 s after the script: hang up if the server has not


@dataclass
class Recording:
    wav: Path
    audio: bytes  # 8 kHz mu-law
    sidecar: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.wav.stem

    @property
    def caller(self) -> str:
        return str((self.sidecar or {}).get("caller") or "+84900000000")

    @classmethod
    def load(cls, wav: Path | str, sidecar: Path | str | None = None) -> Recording:
        wav = Path(wav)
        side_path = Path(sidecar) if sidecar else wav.with_suffix(".yml")
        data = None
        if side_path.exists():
            data = yaml.safe_load(side_path.read_text(encoding="utf-8")) or {}
        return cls(wav, read_wav_as_ulaw(wav), data)

    def segment(self, start_s: float, end_s: float) -> bytes:
        return self.audio[int(start_s * 8000) : int(end_s * 8000)]


@dataclass
class SpokenTurn:
    """One scripted speech turn as the caller's side saw it (for latency benchmarks)."""

    start_ms: int  # call time (20 ms per frame sent) of its first frame
    end_ms: int  # call time just after its last frame
    start_wall: float  # monotonic time its first frame was sent
    end_wall: float  # monotonic time its last frame was sent


@dataclass
class ReplayResult:
    call_sid: str
    stream_sid: str
    twiml: str
    frames_sent: int = 0
    media_received: int = 0
    marks_received: list[str] = field(default_factory=list)
    marks_echoed: list[str] = field(default_factory=list)
    clears: int = 0
    closed_by: str = ""
    bot_audio: bytearray = field(default_factory=bytearray)
    call: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)
    # (mark, call frame, bot audio frames played by then), as the caller's line reached it
    marks_played: list[tuple[str, int, int]] = field(default_factory=list)
    first_audio_frame: int | None = None

    def first_question_s(self, prompt: str = "open_question") -> float | None:
        """Seconds from the answer until the first open question has been said: how long a
        caller waits before they can speak (greeting, disclosures and the question). Counted
        as the wait for the first audio plus the audio played up to the question's mark, so
        --fast replays (which play prompts faster than the server queues them) give the
        figure a real-time call would."""
        for name, _frame, audio_frames in self.marks_played:
            if name.endswith(f"-{prompt}"):
                return round(((self.first_audio_frame or 1) - 1 + audio_frames) * 0.02, 2)
        return None

    # (monotonic time, event) of what the server sent: media, mark, clear
    outbound: list[tuple[float, str]] = field(default_factory=list)
    # the script's speech turns, in order, as they were sent
    spoken: list[SpokenTurn] = field(default_factory=list)

    def turn_timings(self) -> list[tuple[float, float | None]]:
        """(speech_end_wall, first_reply_wall) per scripted speech turn, monotonic seconds: when
        the caller's last frame went out and when the first media frame after it arrived
        (None: nothing arrived before the caller spoke again or the call ended). Their
        difference is the voice-to-voice latency the caller heard."""
        media = [at for at, event in self.outbound if event == "media"]
        out: list[tuple[float, float | None]] = []
        for k, turn in enumerate(self.spoken):
            until = self.spoken[k + 1].start_wall if k + 1 < len(self.spoken) else float("inf")
            first = next((at for at in media if turn.end_wall < at < until), None)
            out.append((turn.end_wall, first))
        return out

    def max_audio_gap_ms(self) -> float:
        """The longest wait between two media messages of one prompt (no mark or clear
        between them): how long the caller would have heard the bot stall mid-sentence."""
        gap = 0.0
        last: float | None = None
        for at, event in self.outbound:
            if event != "media":
                last = None
                continue
            if last is not None:
                gap = max(gap, (at - last) * 1000)
            last = at
        return gap

    def summary(self) -> dict[str, Any]:
        call = self.call or {}
        turns = call.get("turns", [])
        return {
            "call_sid": self.call_sid,
            "outcome": call.get("outcome"),
            "status": call.get("status"),
            "hangup_reason": call.get("hangup_reason"),
            "path": call.get("flow_path", []),
            "turns": [
                {
                    k: t.get(k)
                    for k in (
                        "speaker",
                        "kind",
                        "text",
                        "intent",
                        "intent_confidence",
                        "start_ms",
                        "end_ms",
                        "interrupted",
                    )
                }
                for t in turns
            ],
            "bot_said": [t["text"] for t in turns if t.get("speaker") == "bot"],
            "first_question_s": self.first_question_s(),
            "events": [e.get("kind") for e in call.get("events", [])],
            "ticket": call.get("ticket"),
            "tickets": call.get("tickets", []),
            "drafts": call.get("drafts", []),
            "recording": call.get("recording_path"),
            "stream": {
                "frames_sent": self.frames_sent,
                "media_received": self.media_received,
                "marks": len(self.marks_received),
                "clears": self.clears,
                "closed_by": self.closed_by,
            },
        }


class _Line:
    """The caller's ear: outbound audio plays one frame per inbound frame."""

    def __init__(self, result: ReplayResult) -> None:
        self.queue: deque[tuple[str, Any]] = deque()
        self.result = result
        self.last_audio_frame = 0  # call time (frames) when bot audio was last heard
        self.last_audio_wall = time.monotonic()
        self.audio_since_mark = 0

    @property
    def playing(self) -> bool:
        return bool(self.queue)

    def push_audio(self, ulaw: bytes) -> None:
        for i in range(0, len(ulaw), FRAME_BYTES_ULAW):
            self.queue.append(("audio", ulaw[i : i + FRAME_BYTES_ULAW]))
        self.last_audio_wall = time.monotonic()

    def push_mark(self, name: str) -> None:
        self.queue.append(("mark", name))

    def clear(self) -> list[str]:
        marks = [v for k, v in self.queue if k == "mark"]
        self.queue.clear()
        return marks

    def tick(self, now_frame: int) -> list[str]:
        """Play one frame; return the marks reached."""
        reached = []
        while self.queue and self.queue[0][0] == "mark":
            reached.append(self.queue.popleft()[1])
        if self.queue:
            _, frame = self.queue.popleft()
            self.result.bot_audio += frame
            self.last_audio_frame = now_frame
        while self.queue and self.queue[0][0] == "mark":
            reached.append(self.queue.popleft()[1])
        return reached


class TwilioStandIn:
    def __init__(
        self,
        url: str,
        auth_token: str,
        *,
        public_url: str | None = None,
        account_sid: str = "AC" + "0" * 32,
        called: str = "+841900868674",
        fast: bool = False,
    ) -> None:
        self.url = url.rstrip("/")
        self.public_url = (public_url or url).rstrip("/")
        self.token = auth_token
        self.account_sid = account_sid
        self.called = called
        self.fast = fast

    # --- HTTP -------------------------------------------------------------------------------
    async def post_signed(
        self,
        client: httpx.AsyncClient,
        path: str,
        form: dict[str, str],
        *,
        signature: str | None = None,
    ) -> httpx.Response:
        sig = signature if signature is not None else sign(self.token, self.public_url + path, form)
        return await client.post(self.url + path, data=form, headers={SIGNATURE_HEADER: sig})

    def voice_form(self, call_sid: str, caller: str) -> dict[str, str]:
        return {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": call_sid,
            "CallStatus": "ringing",
            "Called": self.called,
            "Caller": caller,
            "Direction": "inbound",
            "From": caller,
            "To": self.called,
            "FromCountry": "VN",
            "ToCountry": "VN",
        }

    async def fetch_call(self, client: httpx.AsyncClient, call_sid: str) -> dict[str, Any] | None:
        path = f"/twilio/calls/{call_sid}"
        sig = sign(self.token, self.public_url + path, {})
        r = await client.get(self.url + path, headers={SIGNATURE_HEADER: sig})
        return r.json() if r.status_code == 200 else None

    # --- the call ---------------------------------------------------------------------------
    async def call(
        self,
        recording: Recording,
        *,
        dtmf: list[tuple[float, str]] | None = None,
        caller: str | None = None,
        before: Any = None,
        extra_params: dict[str, str] | None = None,
    ) -> ReplayResult:
        """Place one call. `before(call_sid)` runs before Twilio would ring the hotline (to mark
        a test call). `extra_params` are added to (or replace) the TwiML's <Parameter>s in the
        stream's start message, as a tampering client would."""
        call_sid = "CA" + secrets.token_hex(16)
        caller = caller or recording.caller
        if before is not None:
            before(call_sid)
        async with httpx.AsyncClient(timeout=30) as client:
            r = await self.post_signed(client, "/twilio/voice", self.voice_form(call_sid, caller))
            if r.status_code != 200:
                raise RuntimeError(f"voice webhook answered {r.status_code}: {r.text[:200]}")
            stream_url, params = parse_connect_stream(r.text)
            params = {**params, **(extra_params or {})}
            result = ReplayResult(call_sid, "MZ" + secrets.token_hex(16), r.text)
            started = time.monotonic()
            await self._stream(recording, stream_url, params, result, dtmf or [])
            duration = (
                int(time.monotonic() - started) if not self.fast else result.frames_sent // 50
            )
            form = {
                **self.voice_form(call_sid, caller),
                "CallStatus": "completed",
                "CallDuration": str(duration),
            }
            await self.post_signed(client, "/twilio/status", form)
            for _ in range(50):  # the server finishes the call record just after the socket
                result.call = await self.fetch_call(client, call_sid)
                if result.call and result.call.get("hangup_reason") and result.call.get("outcome"):
                    break
                await asyncio.sleep(0.1)
        return result

    def _ws_url(self, stream_url: str) -> str:
        # Connect where the server is, sign what Twilio would sign (the URL in the TwiML).
        base = urlsplit(self.url)
        scheme = "wss" if base.scheme == "https" else "ws"
        return f"{scheme}://{base.netloc}{urlsplit(stream_url).path}"

    async def _stream(
        self,
        rec: Recording,
        stream_url: str,
        params: dict[str, str],
        result: ReplayResult,
        dtmf: list[tuple[float, str]],
    ) -> None:
        headers = {SIGNATURE_HEADER: sign(self.token, stream_url, {})}
        async with websockets.connect(
            self._ws_url(stream_url), additional_headers=headers, max_size=2**22
        ) as ws:
            sender = _Sender(ws, result, params, self.account_sid, self.fast)
            receiver = asyncio.create_task(sender.receive())
            try:
                await sender.send_json(
                    {"event": "connected", "protocol": "Call", "version": "1.0.0"}
                )
                await sender.start()
                if rec.sidecar and rec.sidecar.get("turns") is not None:
                    await sender.run_script(rec)
                else:
                    await sender.stream_as_is(rec.audio, dtmf)
                if not sender.closed:
                    await sender.stop()
            finally:
                receiver.cancel()
                result.closed_by = result.closed_by or "client"


class _Sender:
    def __init__(
        self, ws: Any, result: ReplayResult, params: dict[str, str], account_sid: str, fast: bool
    ) -> None:
        self.ws = ws
        self.result = result
        self.params = params
        self.account_sid = account_sid
        self.fast = fast
        self.seq = 0
        self.frame = 0  # call time, in 20 ms frames sent
        self.line = _Line(result)
        self.next_at = time.monotonic()
        self.waiting = False  # waiting for the bot to answer
        self.closed = False
        # Marks received when the caller's last turn ended: a later one means the bot answered
        # (audio still in flight from a prompt the caller talked over does not count).
        self.marks_at_turn_end = 0

    async def send_json(self, msg: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(msg))

    def _next_seq(self) -> str:
        self.seq += 1
        return str(self.seq)

    async def start(self) -> None:
        await self.send_json(
            {
                "event": "start",
                "sequenceNumber": self._next_seq(),
                "start": {
                    "accountSid": self.account_sid,
                    "streamSid": self.result.stream_sid,
                    "callSid": self.result.call_sid,
                    "tracks": ["inbound"],
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    "customParameters": self.params,
                },
                "streamSid": self.result.stream_sid,
            }
        )

    async def receive(self) -> None:
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                event = msg.get("event")
                self.result.outbound.append((time.monotonic(), str(event)))
                if event == "media":
                    self.result.media_received += 1
                    self.line.push_audio(base64.b64decode(msg["media"]["payload"]))
                elif event == "mark":
                    name = msg["mark"]["name"]
                    self.result.marks_received.append(name)
                    self.line.push_mark(name)
                elif event == "clear":
                    self.result.clears += 1
                    for name in self.line.clear():
                        await self._echo_mark(name)
                else:
                    self.result.errors.append(f"unexpected event from server: {event}")
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed = True
            self.result.closed_by = self.result.closed_by or "server"

    async def _echo_mark(self, name: str) -> None:
        self.result.marks_echoed.append(name)
        try:
            await self.send_json(
                {
                    "event": "mark",
                    "sequenceNumber": self._next_seq(),
                    "streamSid": self.result.stream_sid,
                    "mark": {"name": name},
                }
            )
        except websockets.ConnectionClosed:
            self._closed_by_server()

    def _closed_by_server(self) -> None:
        # The client only closes in stop(); any other closed socket was the server's doing.
        self.closed = True
        self.result.closed_by = self.result.closed_by or "server"

    async def send_frame(self, ulaw: bytes = SILENT_FRAME) -> None:
        if self.closed:
            return
        now = time.monotonic()
        self.next_at = max(self.next_at, now - 0.05)  # after a stall, no burst to catch up
        if self.next_at > now:
            await asyncio.sleep(self.next_at - now)
        self.next_at += 0.02 / self._speed()
        self.frame += 1
        payload = base64.b64encode(ulaw.ljust(FRAME_BYTES_ULAW, bytes([ULAW_SILENCE])))
        try:
            await self.send_json(
                {
                    "event": "media",
                    "sequenceNumber": self._next_seq(),
                    "media": {
                        "track": "inbound",
                        "chunk": str(self.frame),
                        "timestamp": str((self.frame - 1) * 20),
                        "payload": payload.decode("ascii"),
                    },
                    "streamSid": self.result.stream_sid,
                }
            )
        except websockets.ConnectionClosed:
            self._closed_by_server()
            return
        self.result.frames_sent += 1
        for name in self.line.tick(self.frame):
            played = len(self.result.bot_audio) // FRAME_BYTES_ULAW
            self.result.marks_played.append((name, self.frame, played))
            await self._echo_mark(name)
        if self.result.first_audio_frame is None and self.result.bot_audio:
            self.result.first_audio_frame = self.frame

    async def send_audio(self, ulaw: bytes) -> None:
        for i in range(0, len(ulaw), FRAME_BYTES_ULAW):
            await self.send_frame(ulaw[i : i + FRAME_BYTES_ULAW])
            if self.closed:
                return

    async def send_silence(self, seconds: float) -> None:
        for _ in range(int(seconds * 50)):
            await self.send_frame()
            if self.closed:
                return

    async def send_dtmf(self, digit: str) -> None:
        if self.closed:
            return
        try:
            await self._send_dtmf(digit)
        except websockets.ConnectionClosed:
            self._closed_by_server()

    async def _send_dtmf(self, digit: str) -> None:
        await self.send_json(
            {
                "event": "dtmf",
                "streamSid": self.result.stream_sid,
                "sequenceNumber": self._next_seq(),
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    def _speed(self) -> float:
        """--fast plays the caller's audio and the bot's prompts fast, but waits for an answer
        in real time: the server's own work (decoding, NLU, synthesis) takes real time, and a
        caller racing ahead meanwhile would count as silence on the server's no-input clock."""
        if not self.fast or (self.waiting and not self.line.playing):
            return 1.0
        return FAST_SPEED

    async def wait_for_bot(self, expect_reply: bool = True) -> None:
        """Send silence until the bot has answered and finished speaking."""
        self.waiting = True
        try:
            await self._wait_for_bot(expect_reply)
        finally:
            self.waiting = False

    async def _wait_for_bot(self, expect_reply: bool) -> None:
        start = self.frame
        while not self.closed:
            quiet = (
                not self.line.playing
                and self.frame - self.line.last_audio_frame >= QUIET_FRAMES
                and (not self.fast or time.monotonic() - self.line.last_audio_wall >= QUIET_WALL_S)
            )
            replied = len(self.result.marks_received) > self.marks_at_turn_end or not expect_reply
            if quiet and replied:
                return
            if self.frame - start >= REPLY_TIMEOUT_FRAMES and (
                not self.fast or time.monotonic() - self.line.last_audio_wall >= 3.0
            ):
                return
            await self.send_frame()

    async def wait_for_bot_speaking(self) -> None:
        # In real time, like any wait for the bot: racing ahead at --fast speed while the server
        # has not started speaking yet would put the caller's barge-in past the prompt it meant.
        self.waiting = True
        start = self.frame
        try:
            while (
                not self.closed
                and not self.line.playing
                and self.frame - start < REPLY_TIMEOUT_FRAMES
            ):
                await self.send_frame()
        finally:
            self.waiting = False

    async def run_script(self, rec: Recording) -> None:
        turns = rec.sidecar.get("turns", [])  # type: ignore[union-attr]
        if not (turns and turns[0].get("barge_in")):
            await self.wait_for_bot()  # the greeting
        for turn in turns:
            if self.closed:
                return
            if turn.get("barge_in"):
                # Talk over the next prompt, `after` seconds into it.
                await self.wait_for_bot_speaking()
                await self.send_silence(float(turn.get("after", 0.6)))
            await self.send_silence(
                float(turn.get("pause", 0.5 if not turn.get("barge_in") else 0))
            )
            if "at" in turn:
                start_frame, start_wall = self.frame, time.monotonic()
                await self.send_audio(rec.segment(float(turn["at"]), float(turn["end"])))
                self.result.spoken.append(
                    SpokenTurn(start_frame * 20, self.frame * 20, start_wall, time.monotonic())
                )
            elif "dtmf" in turn:
                for digit in str(turn["dtmf"]):
                    await self.send_dtmf(digit)
                    await self.send_silence(0.2)
            elif "silence" in turn:
                marks = len(self.result.marks_received)
                await self.send_silence(float(turn["silence"]))
                if turn.get("wait"):
                    self.marks_at_turn_end = marks
                    await self.wait_for_bot()  # for what the silence made the bot say
                continue
            elif "mute" in turn:
                # A dead line: nothing at all is sent (not even silence) for this long.
                await asyncio.sleep(float(turn["mute"]))
                continue
            if turn.get("hangup"):
                await self.stop()
                return
            self.marks_at_turn_end = len(self.result.marks_received)
            if turn.get("wait", True):
                await self.wait_for_bot()
        end = self.frame
        while not self.closed and self.frame - end < END_TIMEOUT_FRAMES:
            await self.send_frame()

    async def stream_as_is(self, audio: bytes, dtmf: list[tuple[float, str]]) -> None:
        pending = sorted(dtmf)
        for i in range(0, len(audio), FRAME_BYTES_ULAW):
            while pending and pending[0][0] * 50 <= self.frame:
                await self.send_dtmf(pending.pop(0)[1])
            await self.send_frame(audio[i : i + FRAME_BYTES_ULAW])
            if self.closed:
                return
        for _, digit in pending:
            await self.send_dtmf(digit)

    async def stop(self) -> None:
        if self.closed:
            return
        try:
            await self.send_json(
                {
                    "event": "stop",
                    "sequenceNumber": self._next_seq(),
                    "streamSid": self.result.stream_sid,
                    "stop": {"accountSid": self.account_sid, "callSid": self.result.call_sid},
                }
            )
            await self.ws.close()
        except websockets.ConnectionClosed:
            pass
        self.closed = True
        self.result.closed_by = self.result.closed_by or "client"


def parse_connect_stream(twiml_text: str) -> tuple[str, dict[str, str]]:
    """The stream URL and <Parameter>s of a <Connect><Stream> response."""
    root = ET.fromstring(twiml_text)
    stream = root.find("./Connect/Stream")
    if stream is None:
        raise RuntimeError(f"TwiML has no <Connect><Stream>: {twiml_text[:200]}")
    params = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    return stream.get("url", ""), params


def parse_dtmf_option(spec: str) -> list[tuple[float, str]]:
    """'5.0:1,7.5:#' -> [(5.0, '1'), (7.5, '#')]"""
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        at, _, digits = part.partition(":")
        for i, digit in enumerate(digits):
            out.append((float(at) + i * 0.2, digit))
    return out


def check_expectations(summary: dict[str, Any], expect: dict[str, Any]) -> list[str]:
    """What differs from the sidecar's `expect` block (empty: the call went as expected)."""
    problems: list[str] = []
    if "outcome" in expect and summary["outcome"] != expect["outcome"]:
        problems.append(f"outcome {summary['outcome']!r}, expected {expect['outcome']!r}")
    path = summary.get("path") or []
    for state in expect.get("path_includes", []):
        if state not in path:
            problems.append(f"state {state!r} not visited (path: {path})")
    for state in expect.get("path_excludes", []):
        if state in path:
            problems.append(f"state {state!r} visited but should not be (path: {path})")
    if "path" in expect and path != expect["path"]:
        problems.append(f"path {path}, expected {expect['path']}")
    said = " ".join(summary.get("bot_said", []))
    for phrase in expect.get("said", []):
        if phrase not in said:
            problems.append(f"the bot never said {phrase!r}")
    for phrase in expect.get("not_said", []):
        if phrase in said:
            problems.append(f"the bot said {phrase!r}")
    ticket = summary.get("ticket")
    want = expect.get("ticket")
    if want is False and ticket:
        problems.append(f"a ticket was opened ({ticket.get('code')}) but none was expected")
    elif isinstance(want, dict):
        if not ticket:
            problems.append("no ticket was opened")
        else:
            for key, value in want.items():
                if key.endswith("_contains"):
                    field_name = key[: -len("_contains")]
                    if str(value).lower() not in str(ticket.get(field_name) or "").lower():
                        problems.append(
                            f"ticket {field_name} {ticket.get(field_name)!r} lacks {value!r}"
                        )
                elif ticket.get(key) != value:
                    problems.append(f"ticket {key} {ticket.get(key)!r}, expected {value!r}")
    tickets = summary.get("tickets") or []
    if "tickets" in expect:
        wanted = expect["tickets"]
        if len(tickets) != len(wanted):
            problems.append(f"{len(tickets)} tickets opened, expected {len(wanted)}")
        for k, (got, want_t) in enumerate(zip(tickets, wanted, strict=False)):
            for key, value in (want_t or {}).items():
                if key.endswith("_contains"):
                    name = key[: -len("_contains")]
                    if str(value).lower() not in str(got.get(name) or "").lower():
                        problems.append(f"ticket {k + 1} {name} {got.get(name)!r} lacks {value!r}")
                elif got.get(key) != value:
                    problems.append(f"ticket {k + 1} {key} {got.get(key)!r}, expected {value!r}")
    if "cancelled_drafts" in expect:
        n = sum(1 for d in summary.get("drafts", []) if d.get("closed_at"))
        if n != expect["cancelled_drafts"]:
            problems.append(f"{n} cancelled drafts, expected {expect['cancelled_drafts']}")
    for kind in expect.get("events_include", []):
        if kind not in summary.get("events", []):
            problems.append(f"no {kind!r} event on the call")
    slower = expect.get("slower_repeat")
    if slower:
        # The same prompt said again after "nói chậm thôi" lasts longer than the first time.
        spans = [
            (t.get("end_ms") or 0) - (t.get("start_ms") or 0)
            for t in summary.get("turns", [])
            if t.get("speaker") == "bot" and slower in (t.get("text") or "")
        ]
        if len(spans) < 2 or spans[1] < 1.2 * spans[0]:
            problems.append(f"{slower!r} was not said again slower: {spans} ms")
    limit = expect.get("first_question_max_s")
    fq = summary.get("first_question_s")
    if limit is not None and (fq is None or fq > float(limit)):
        problems.append(f"the first question was said by {fq} s, expected by {limit} s")
    if "drafts" in expect and len(summary.get("drafts", [])) != expect["drafts"]:
        problems.append(f"{len(summary.get('drafts', []))} drafts, expected {expect['drafts']}")
    if "clears_min" in expect and summary["stream"]["clears"] < expect["clears_min"]:
        problems.append(
            f"{summary['stream']['clears']} clear messages, expected at least "
            f"{expect['clears_min']}"
        )
    return problems
