"""A live call: connects the telephony stream, speech, NLU, tickets and the pure flow engine.

Audio arrives every 20 ms on the event loop; turn detection runs inline (microseconds a frame),
decoding runs on this call's own worker thread (so one slow call never stalls another and the
loop never blocks), and everything the flow engine decides runs in order on one task.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import json
import logging
import sqlite3
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hotline.calls import add_event, add_turn, update_turn, upsert_call
from hotline.dialogue import engine as fe
from hotline.nlu.gazetteer import place_of
from hotline.speech.pieces import TurnPieces
from hotline.speech.recognizer import Transcript, mean_confidence
from hotline.speech.scheduler import AUDIO, FINAL
from hotline.speech.turns import EndCandidate, SpeechEnded, SpeechStarted, TurnDetector
from hotline.text import fold
from hotline.tickets import store as tickets

log = logging.getLogger(__name__)

MESSAGE_END_SILENCE_MS = 2500
MESSAGE_MAX_MS = 90_000
PARTIAL_EVERY_FRAMES = 25  # publish a partial transcript every 0.5 s of speech
TURN_AUDIO_BYTES = 8 * 8000 * 2  # the end-of-turn model reads the last 8 s
DRAIN_TIMEOUT_S = 60.0
SLOW_PACE = (
    0.75  # "nói chậm thôi": this share of the normal speaking rate, for the rest of the call
)


def operators_on_duty(spec: str, tz: str, now: datetime | None = None) -> bool:
    """`mon-fri 07:30-17:00` (or `always`/`never`) at the given time in the given zone."""
    spec = spec.strip().lower()
    if spec in ("always", "24/7"):
        return True
    if spec in ("", "never"):
        return False
    days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    now = now or datetime.now(ZoneInfo(tz))
    try:
        day_part, time_part = spec.split()
        first, _, last = day_part.partition("-")
        d0, d1 = days.index(first), days.index(last or first)
        start, _, end = time_part.partition("-")
        h0, m0 = (int(x) for x in start.split(":"))
        h1, m1 = (int(x) for x in end.split(":"))
    except ValueError:
        log.error("HOTLINE_OPERATOR_HOURS=%r is not like 'mon-fri 07:30-17:00'", spec)
        return False
    in_days = d0 <= now.weekday() <= d1 if d0 <= d1 else now.weekday() >= d0 or now.weekday() <= d1
    minutes = now.hour * 60 + now.minute
    return in_days and h0 * 60 + m0 <= minutes < h1 * 60 + m1


def _utterance(
    text: str, result: Any, *, nlu_down: bool = False, fragment: fe.Utterance | None = None
) -> fe.Utterance:
    """The flow engine's view of what the caller said and what the NLU made of it."""
    ranking = tuple(
        (str(r["name"]), float(r["confidence"])) for r in getattr(result, "intent_ranking", [])
    )
    return fe.Utterance(
        text=text,
        intent=getattr(result, "intent", None),
        confidence=getattr(result, "confidence", None),
        location=place_of(getattr(result, "location", None)),
        ticket_code=getattr(result, "ticket_code", None),
        phone_number=getattr(result, "phone_number", None),
        nlu_down=nlu_down,
        ranking=ranking,
        fragment=fragment,
    )


def _joined(parts: list[Any]) -> Transcript:
    """One transcript from the pieces of an utterance decoded separately."""
    if len(parts) == 1:
        return parts[0]
    words = [w for t in parts for w in t.words]
    text = " ".join(t.text.strip() for t in parts if t.text.strip())
    return Transcript(text=text, confidence=mean_confidence(words), words=words)


@dataclass
class _Pending:
    """An utterance whose transcript is being decoded."""

    future: Future[Any]
    started_ms: int
    ended_ms: int
    detected_at: float  # monotonic time the trailing silence ended
    state: str
    wait_ms: int = 0  # from the end of the caller's speech to the end of the turn (stream time)
    reason: str = "silence"
    continues_ms: int | None = None  # the turn (its start) this one goes on with
    heads: list[Future[Any]] = field(default_factory=list)  # finals of its earlier pieces


# What a reply may have done and still be taken back when the caller turns out not to have
# finished: say, listen, keep the draft up to date. Anything else (a ticket, a transfer, an
# SMS, a hang-up) stands.
UNDOABLE = (fe.EnterState, fe.Say, fe.Listen, fe.SaveDraft)


@dataclass
class _Resumable:
    """A caller turn already answered, which the caller may still be in the middle of."""

    started_ms: int
    speech_end_ms: int
    text: str
    state: str
    conv: fe.Conversation  # the conversation as it was before this turn was handled
    turn_id: int | None
    piece_ms: int  # start of its latest piece (the turn itself, or the part after a pause)


@dataclass
class _Speculation:
    """What the caller said up to an end candidate (its final pass), already being understood."""

    started_ms: int  # the utterance it belongs to
    text: str
    task: asyncio.Task[Any]


@dataclass
class _Prompt:
    say: fe.Say
    turn_id: int | None
    started_ms: int


class CallSession:
    def __init__(self, call: Any, services: Any) -> None:
        self.call = call
        self.sv = services
        self.settings = services.settings
        s = self.settings
        self.conv = fe.Conversation(services.flow, services.kb, env=self._env())
        self.turn_model = services.turn_model if s.turn == "smart" else None
        self.detector = TurnDetector(
            # Smart: the model ends most turns at the probe; the silence is only the ceiling.
            end_silence_ms=s.turn_max_silence_ms if self.turn_model else s.end_silence_ms,
            max_utterance_ms=int(s.max_utterance_s * 1000),
            vad_mode=s.vad_mode,
            probe_ms=s.turn_probe_ms,
            reprobe_ms=s.turn_reprobe_ms if self.turn_model else 0,
        )
        engine = services.asr
        if hasattr(engine, "stream_for_call"):
            self.asr = engine.stream_for_call(call.caller)
        else:
            self.asr = engine.new_stream(8000)
        self.asr_name = getattr(engine, "name", type(engine).__name__)
        # Past HOTLINE_MAX_CALLS (hotline/telephony/admission.py): only the busy prompt and a
        # voice message, no NLU.
        self.overflow = getattr(call, "mode", "live") == "overflow"
        # This call's decoding on the shared scheduler (finals first); the end-of-turn model
        # runs on a lane of its own so that it can overlap the final pass. A voice message
        # left while the line is full decodes only when no live caller waits.
        self.decode = services.decoder.lane(call.call_sid, background=self.overflow)
        self.turn_lane = services.decoder.lane(call.call_sid + ":turn")
        self.utt_audio = bytearray()  # the current utterance, for the end-of-turn model
        self.spec: _Speculation | None = None
        # The final passes this utterance's transcript is made of (a speculative one at an
        # end candidate, the audio held since, the heads the caller went on from).
        self.pieces: TurnPieces[Future[Any]] = TurnPieces()
        self.resumable: _Resumable | None = None  # the latest turn, while it may go on
        self.last_turn: tuple[int, int] | None = None  # (start, end of speech) of the latest
        self.in_flight: int | None = None  # start of the turn being understood and answered
        self.resuming_ms: int | None = None  # start of the turn the caller is going on with
        self.eot: dict[str, float] = {}  # the model's answer that ended the latest turn
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.listen: fe.Listen | None = None
        self.prompts: dict[str, _Prompt] = {}
        self.capturing = False
        self.idle_frames = 0
        self.speech_frames = 0
        self.grammar: str | None = None
        self.draft_id: int | None = None  # the report in progress (one draft per report)
        self.ticket_code: str | None = None  # the latest ticket opened in this call
        self.ticket_codes: list[str] = []  # every ticket opened in this call
        self.tts_rate: int | None = None  # a slower rate once the caller asked for it
        self.record_failed = False  # a turn or event could not be written (disk full)
        self.outcome: str | None = None
        self.ended = False
        self.worker: asyncio.Task[None] | None = None
        self.reply_from: float | None = None  # when the caller's last turn ended (monotonic)
        self.play_end_ms = 0  # where the queued prompts end on the call's timeline
        self.timing: dict[str, float] = {}
        self.last_intent: str | None = None  # of the caller's latest turn that has one
        # voice message capture
        self.message_parts: list[str] = []
        self.message_start_ms: int | None = None
        self.message_last_ms = 0

    # --- helpers --------------------------------------------------------------------------
    def _env(self) -> dict[str, Any]:
        s = self.settings
        # Browser test calls from the console cannot be transferred: they take the message path.
        rest_ok = self.sv.rest.configured and not self.call.caller.startswith("console:")
        return {
            "operators_available": bool(s.operator_number)
            and rest_ok
            and operators_on_duty(s.operator_hours, s.timezone),
            "emergency_transfer": bool(s.emergency_transfer_number) and rest_ok,
        }

    def _publish(self, event_type: str, /, **data: Any) -> None:
        self.sv.live.publish({"type": event_type, "call_sid": self.call.call_sid, **data})

    async def _db(self, fn: Any) -> Any:
        return await self.sv.store.arun(fn)

    async def _record(self, fn: Any) -> Any:
        """Write to the call's record (turns, events). A full or failing disk must not cut the
        caller off mid-report: the failure is logged once and the call goes on. What the
        caller confirms goes through `_db` and fails loudly (they hear that it was not saved)."""
        try:
            return await self._db(fn)
        except (sqlite3.Error, OSError) as exc:
            if not self.record_failed:
                log.error(
                    "call %s: the call record could not be written: %s", self.call.call_sid, exc
                )
            self.record_failed = True
            return None

    async def _event(self, kind: str, **detail: Any) -> None:
        at = self.call.call_ms()
        await self._record(lambda db: add_event(db, self.call.call_sid, kind, at, **detail))

    def _asr(self, fn: Any, *args: Any, priority: int = AUDIO) -> Future[Any]:
        return self.decode.submit(fn, *args, priority=priority)

    # --- CallHandler ----------------------------------------------------------------------
    async def on_start(self) -> None:
        self._publish(
            "call_started",
            caller=self.call.masked_caller,
            started_at=datetime.now().isoformat(timespec="seconds"),
        )
        await self._record(lambda db: upsert_call(db, self.call.call_sid, asr_engine=self.asr_name))
        starting = getattr(self.sv, "nlu_starting", None)
        if starting is not None and not self.sv.nlu_ok and starting() and not self.overflow:
            # Rasa is still loading: greet and hold rather than say understanding is broken.
            self._hold = asyncio.create_task(self._hold_until_nlu(), name="hold")
            return
        self.worker = asyncio.create_task(self._work(), name=f"call-{self.call.call_sid}")
        await self.queue.put(("start",))

    async def _hold_until_nlu(self) -> None:
        """Play the hold prompt (again every ~10 s) until the NLU answers or HOTLINE_START_HOLD_S
        passes, then start the flow; past the limit the greeting's keypad menu still works."""
        from hotline.app import hold_text

        t0 = time.monotonic()
        try:
            audio = await self.sv.tts.arender(hold_text(self.sv.flow))
            await self._event("start_hold", nlu=self.sv.checks.get("nlu"))
            last_played = -1e9
            while (
                not self.ended
                and time.monotonic() - t0 < self.settings.start_hold_s
                and not self.sv.nlu_ok
            ):
                if not self.call.player.busy and time.monotonic() - last_played > 10:
                    self.call.play("start_hold", audio)
                    last_played = time.monotonic()
                await asyncio.sleep(0.2)
            if self.ended:
                return
            waited = round(time.monotonic() - t0, 1)
            await self._event("start_hold_end", waited_s=waited, nlu_ready=self.sv.nlu_ok)
            await self.call.player.drain(15)  # the hold prompt is not cut mid-word
        except Exception:  # a hold that fails must not leave the call without its flow
            log.exception("call %s: hold failed", self.call.call_sid)
        if self.ended:  # no await between this check and the worker's start (see on_end)
            return
        self.worker = asyncio.create_task(self._work(), name=f"call-{self.call.call_sid}")
        self.queue.put_nowait(("start",))

    async def on_audio(self, pcm16: bytes) -> None:
        events = self.detector.feed(pcm16)
        for ev in events:
            if isinstance(ev, SpeechStarted):
                await self._speech_started(ev)
        audio = self.detector.take_audio()
        if self.capturing and audio:
            self.utt_audio += audio
            if len(self.utt_audio) > 2 * TURN_AUDIO_BYTES:
                del self.utt_audio[:-TURN_AUDIO_BYTES]
            self._feed(audio)
            self.speech_frames += 1
            if not self.pieces.holding and self.speech_frames % PARTIAL_EVERY_FRAMES == 0:
                fut = self.decode.partial(self.asr.partial)  # None: decoding is behind
                if fut is not None:
                    fut.add_done_callback(self._partial_done)
        for ev in events:
            if isinstance(ev, EndCandidate):
                self._end_candidate(ev)
            elif isinstance(ev, SpeechEnded):
                await self._speech_ended(ev)
        self._tick_idle()

    def _feed(self, audio: bytes) -> None:
        """Audio to the recogniser, or held while a speculative final is out (TurnPieces)."""
        cand = self.pieces.held_for
        went_on = (
            cand is not None and self.detector.in_utterance and not self.detector.is_current(cand)
        )
        audio = self.pieces.audio(audio, went_on)
        if audio:
            self.decode.accept(self.asr.accept, audio)

    def _end_candidate(self, ev: EndCandidate) -> None:
        """The caller went quiet. Decode what they said so far and start understanding it
        (used if the turn ends here), and in smart mode ask the model if they finished."""
        if not self.capturing or self.listen is None or self.listen.mode == "message":
            return
        loop = asyncio.get_running_loop()
        if not self.pieces.holding:
            heads = list(self.pieces.heads)
            fut = self._asr(self.asr.final, priority=FINAL)
            self.pieces.speculate(ev, fut)

            def final_done(f: Future[Any]) -> None:
                loop.call_soon_threadsafe(self._speculate, ev, heads, f)

            fut.add_done_callback(final_done)
        if self.turn_model is None:
            return
        if self.sv.decoder.behind():
            # Decoding is not keeping up: the model's ~0.1 s of CPU goes to the callers
            # waiting instead, and the turn ends on silence (about 550 ms), as in silence mode.
            silent = ev.at_ms - ev.speech_end_ms
            if silent >= self.settings.end_silence_ms - self.settings.turn_reprobe_ms // 2:
                end = self.detector.end_at(ev)
                if end is not None:
                    self.eot = {"eot_skipped": 1}
                    loop.create_task(self._speech_ended(end))
            return
        t0 = time.monotonic()

        def model_done(fut: Future[Any]) -> None:
            ms = (time.monotonic() - t0) * 1000
            loop.call_soon_threadsafe(self._model_said, ev, fut, ms)

        self.turn_lane.submit(
            self.turn_model.complete_probability, bytes(self.utt_audio), priority=FINAL
        ).add_done_callback(model_done)

    def _speculate(self, ev: EndCandidate, heads: list[Future[Any]], fut: Future[Any]) -> None:
        holding = self.pieces.held_for is ev and self.capturing and self.detector.is_current(ev)
        if fut.exception() or not (holding or self.pieces.used_for is ev):
            return  # the caller went on: this is only the head of the sentence
        text = _joined([h.result() for h in heads if not h.exception()] + [fut.result()]).text
        if not text:
            return
        task = asyncio.get_running_loop().create_task(self.sv.nlu.parse(text))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # never "unretrieved"
        self.spec = _Speculation(ev.started_ms, text, task)

    def _model_said(self, ev: EndCandidate, fut: Future[Any], ms: float) -> None:
        try:
            prob = float(fut.result())
        except Exception:  # the model failing must not end turns early: the ceiling decides
            log.exception("call %s: end-of-turn model failed", self.call.call_sid)
            return
        if prob < self.settings.turn_threshold or not self.capturing:
            return  # not finished (or already ended): wait, up to the ceiling
        end = self.detector.end_at(ev)
        if end is not None:
            self.eot = {"eot_prob": round(prob, 3), "eot_ms": round(ms, 1)}
            asyncio.get_running_loop().create_task(self._speech_ended(end))

    def _partial_done(self, fut: Future[Any]) -> None:
        with contextlib.suppress(Exception):
            text = fut.result()
            if text:
                self._publish("partial", text=text)

    async def on_dtmf(self, digit: str) -> None:
        if self.listen is None or self.ended:
            return  # not waiting for input (busy)
        try:
            if not await self._barge_in("dtmf"):
                # A prompt that may not be cut (the ticket code) is playing: keep the key for
                # when it has been heard (on_mark), instead of dropping it.
                self._held_digits().append(digit)
                return
        except Exception:
            # The socket closed under us: the caller hung up as the key arrived. Not an error
            # of ours, and the call's outcome stays what it was.
            log.info("call %s: key %s arrived as the call ended", self.call.call_sid, digit)
            return
        if self.listen is None or self.ended:
            return
        if self.listen.mode == "message":
            if digit == "#":
                await self._finish_message()
            return
        self.idle_frames = 0
        self.resumable = None  # a key is an answer: what was said before it is complete
        await self._turn_dtmf(digit)
        await self.queue.put(("event", fe.Digit(digit)))

    async def on_mark(self, name: str) -> None:
        self.prompts.pop(name, None)
        if not self.prompts:
            self.idle_frames = 0
        held = self._held_digits()
        if held and all(p.say.interruptible for p in self.prompts.values()):
            # The prompt that could not be cut has played: now the keys pressed over it count.
            digits, held[:] = list(held), []
            for digit in digits:
                await self.on_dtmf(digit)

    def _held_digits(self) -> list[str]:
        """Keys pressed during a non-interruptible prompt, handled once it has played."""
        held: list[str] = self.__dict__.setdefault("held_digits", [])
        return held

    async def on_end(self, reason: str) -> None:
        self.ended = True
        self.listen = None
        if self.capturing:
            # The caller hung up mid-sentence: what they said is still a turn.
            self.capturing = False
            ev = SpeechEnded(
                self.detector.now_ms, "silence", self.detector.now_ms, self.detector.now_ms
            )
            await self._queue_utterance(ev)
        await self.queue.put(("hangup", reason))
        if self.worker:
            try:
                # Let a confirmation already said be saved: the ticket must not be lost.
                await asyncio.wait_for(self.worker, timeout=20)
            except (TimeoutError, asyncio.CancelledError):
                self.worker.cancel()
        await self._finish(reason)

    async def shutdown(self) -> None:
        """The server is stopping: say so, then hang up. Drafts and tickets stay as they are."""
        if self.ended:
            return
        self.listen = None
        with contextlib.suppress(Exception):
            if self.call.player.busy:
                await self.call.clear()
            text = self.sv.flow.prompts.get("service_restart")
            if text:
                self.call.play("service_restart", await self.sv.tts.arender(text))
            await self.call.player.drain(15)
        await self._event("shutdown")
        await self.call.hangup("shutdown")

    # --- turn-taking ----------------------------------------------------------------------
    def _current_prompt(self) -> _Prompt | None:
        return next(iter(self.prompts.values()), None)

    async def _barge_in(self, why: str) -> bool:
        """Cut the prompt playing if it may be cut. False: input is ignored for now."""
        if not self.call.player.busy:
            return True
        if any(not p.say.interruptible for p in self.prompts.values()):
            return False
        cut = await self.call.clear()
        self.play_end_ms = self.call.call_ms()
        cut_prompts = [self.prompts.pop(pid) for pid in list(self.prompts) if pid in cut]
        for p in cut_prompts:
            if p.turn_id is not None:
                await self._record(
                    lambda db, tid=p.turn_id: db.table("turns").update(tid, {"interrupted": 1})
                )
        await self._event("barge_in", by=why, prompts=[p.say.prompt for p in cut_prompts])
        self._publish("barge_in", by=why)
        return True

    async def _speech_started(self, ev: SpeechStarted) -> None:
        last = self.last_turn
        going_on = (
            last is not None
            and self.settings.turn_resume_ms > 0
            and ev.at_ms - last[1] <= self.settings.turn_resume_ms
        )
        if self.ended or (
            self.listen is None
            and not (going_on and last is not None and self.in_flight == last[0])
        ):
            # Not listening: unless the caller is going on with the turn being answered.
            return
        if not await self._barge_in("speech"):
            # A prompt that may not be cut (the ticket code) is playing. What the caller says
            # over it is still theirs ("thôi cảm ơn"): capture it; the reply to it queues
            # behind the prompt, so it is answered once the prompt has been heard.
            await self._event("speech_over_prompt")
        self.capturing = True
        self.speech_frames = 0
        self.idle_frames = 0
        self.utt_audio.clear()
        self.spec = None
        self.pieces.reset()
        if going_on and last is not None:
            # The caller paused and went on before our reply could be an answer to them:
            # the rest of the same sentence (the reply, if it had started, was cut above).
            self.resuming_ms = last[0]
        if self.listen and self.listen.mode == "message" and self.message_start_ms is None:
            self.message_start_ms = ev.at_ms

    async def _speech_ended(self, ev: SpeechEnded) -> None:
        if not self.capturing:
            return
        self.capturing = False
        if self.listen is not None and self.listen.mode == "message":
            text = (await asyncio.wrap_future(self._asr(self.asr.final, priority=FINAL))).text
            if text:
                self.message_parts.append(text)
            self.message_last_ms = ev.speech_end_ms
            if ev.at_ms - (self.message_start_ms or 0) >= MESSAGE_MAX_MS:
                await self._finish_message()
            return
        self.listen = None  # until the flow asks again
        await self._queue_utterance(ev)

    async def _queue_utterance(self, ev: SpeechEnded) -> None:
        final, held, heads = self.pieces.finish(ev.speech_end_ms)
        if final is None:  # said more since the candidate (or none came): decode to the end
            if held:
                self.decode.accept(self.asr.accept, held)
            final = self._asr(self.asr.final, priority=FINAL)
        pending = _Pending(
            final,
            ev.started_ms,
            ev.speech_end_ms,
            time.monotonic(),
            self.conv.state,
            wait_ms=ev.at_ms - ev.speech_end_ms,
            reason=ev.reason,
            continues_ms=self.resuming_ms,
            heads=heads,
        )
        self.resuming_ms = None
        self.last_turn = (pending.started_ms, pending.ended_ms)
        self.in_flight = pending.started_ms
        await self.queue.put(("utterance", pending))

    def _tick_idle(self) -> None:
        """No-input timeout, counted in caller audio once the prompts have played, and on wall
        time too: a stream that sends nothing (the stream's watchdog then ticks this), or
        never echoes the marks that say a prompt has played, must not hold the call forever."""
        player = self.call.player
        playing = player.busy and not getattr(player, "overdue", False)
        if self.listen is None or self.capturing or playing or self.ended:
            self.idle_since = None
            return
        now = time.monotonic()
        if self.idle_frames == 0 or getattr(self, "idle_since", None) is None:
            self.idle_since = now  # the clock was (re)started: by a mark, a key, speech
        self.idle_frames += 1
        if self.listen.mode == "message" and self.message_parts:
            if self.detector.now_ms - self.message_last_ms >= MESSAGE_END_SILENCE_MS:
                asyncio.get_running_loop().create_task(self._finish_message())
            return
        waited_s = max(self.idle_frames * 0.02, now - self.idle_since)
        if waited_s >= self.settings.no_input_s:
            self.idle_frames = 0
            self.idle_since = None
            self.listen = None
            self.queue.put_nowait(("event", fe.Silence()))

    async def _finish_message(self) -> None:
        if self.listen is None or self.listen.mode != "message":
            return
        self.listen = None
        if self.capturing:
            self.capturing = False
            text = (await asyncio.wrap_future(self._asr(self.asr.final, priority=FINAL))).text
            if text:
                self.message_parts.append(text)
        start = self.message_start_ms or self.detector.now_ms
        end = max(self.message_last_ms, start)
        text = " ".join(self.message_parts).strip()
        self.message_parts, self.message_start_ms = [], None
        await self._store_caller_turn("message", text, start, end, None, None)
        await self.queue.put(("event", fe.MessageRecorded(text, start, end)))

    # --- the worker: one thing at a time, in order ---------------------------------------
    async def _work(self) -> None:
        while True:
            item = await self.queue.get()
            kind = item[0]
            try:
                if kind == "start":
                    await self._run(self.conv.start("overflow" if self.overflow else None))
                elif kind == "utterance":
                    await self._utterance(item[1])
                elif kind == "event":
                    await self._run(self.conv.handle(item[1]))
                elif kind == "hangup":
                    await self._run(self.conv.handle(fe.HungUp(item[1])))
                    return
            except Exception:
                log.exception("call %s: error handling %s", self.call.call_sid, kind)
                await self._event("error", during=kind)
                if not self.ended:
                    # Something broke in our code: a person is the safest place for the caller.
                    with contextlib.suppress(Exception):
                        await self._run(self.conv._go(fe.Transition("operator")))

    async def _utterance(self, p: _Pending) -> None:
        pieces = []
        for head in p.heads:  # decoded at pauses the caller then went on from
            with contextlib.suppress(Exception):
                pieces.append(await asyncio.wrap_future(head))
        transcript = _joined([*pieces, await asyncio.wrap_future(p.future)])
        self.timing = {
            "asr_ms": (time.monotonic() - p.detected_at) * 1000,
            "wait_ms": p.wait_ms,
            "turn": p.reason,
            **self.eot,
        }
        self.eot = {}
        text = transcript.text.strip()
        nlu_down = False
        result = None
        spec, self.spec = self.spec, None
        prev, self.resumable = self.resumable, None
        if prev is not None and p.continues_ms not in (prev.started_ms, prev.piece_ms):
            prev = None
        if prev is not None:
            # One sentence with a pause inside: understood whole, from where the conversation
            # was before its first half was answered.
            text = f"{prev.text} {text}".strip()
            self.conv = prev.conv
            spec = None
            self.timing["resumed"] = 1
            await self._event("turn_resumed", pause_ms=p.started_ms - prev.speech_end_ms)
        if text and spec is not None and spec.started_ms == p.started_ms:
            # Understood while the end of the turn was being decided: used if it is what the
            # final transcript says.
            hit = fold(spec.text) == fold(text)
            self.timing["nlu_speculative"] = int(hit)
            if hit:
                with contextlib.suppress(Exception):
                    result = await spec.task
        if text and result is None:
            try:
                result = await self.sv.nlu.parse(text)
            except Exception as exc:  # NLUUnavailable, or anything unexpected from the client
                log.warning("call %s: NLU unavailable: %s", self.call.call_sid, exc)
                nlu_down = True
        fragment = await self._correction_fragment(text, result)
        self.timing["nlu_ms"] = (time.monotonic() - p.detected_at) * 1000
        utterance = _utterance(text, result, nlu_down=nlu_down, fragment=fragment)
        turn_id = await self._store_caller_turn(
            "speech",
            text,
            prev.started_ms if prev else p.started_ms,
            p.ended_ms,
            transcript,
            result,
            state=prev.state if prev else p.state,
            nlu_down=nlu_down,
            replace=prev.turn_id if prev else None,
        )
        self.reply_from = p.detected_at
        before = dataclasses.replace(
            self.conv,
            ctx=copy.deepcopy(self.conv.ctx),
            last_says=list(self.conv.last_says),
            path=list(self.conv.path),
        )
        actions = self.conv.handle(utterance)
        started = prev.started_ms if prev else p.started_ms
        if text and all(isinstance(a, UNDOABLE) for a in actions):
            # Before the reply plays: the caller may start again at once.
            self.resumable = _Resumable(
                started,
                p.ended_ms,
                text,
                prev.state if prev else p.state,
                before,
                turn_id,
                p.started_ms,
            )
            if self.capturing and self.resuming_ms == p.started_ms:
                # They already have: no reply to half a sentence (the next turn is the rest).
                self.in_flight = None
                return
        if self.last_turn and self.last_turn[0] == p.started_ms:
            self.last_turn = (started, p.ended_ms)  # a merged turn starts where its first did
        self.in_flight = None
        await self._run(actions)

    async def _correction_fragment(self, text: str, result: Any) -> fe.Utterance | None:
        """At a read-back, "không, ở xã Gio Linh": the words after the "không", understood on
        their own, so the flow can replace just the slot they correct."""
        on = self.conv.current.on if not self.conv.ended else {}
        if result is None or ("correction" not in on and "code_correction" not in on):
            return None
        repairs = self.sv.flow.repairs
        rest = fe.split_correction(
            text, repairs.get("correction_markers", []), repairs.get("fillers", [])
        )
        if not rest:
            return None
        try:
            return _utterance(rest, await self.sv.nlu.parse(rest))
        except Exception as exc:  # the whole utterance was understood; its part is a bonus
            log.warning("call %s: NLU of a correction failed: %s", self.call.call_sid, exc)
            return None

    async def _store_caller_turn(
        self,
        kind: str,
        text: str,
        start: int,
        end: int,
        transcript: Any,
        result: Any,
        *,
        state: str | None = None,
        nlu_down: bool = False,
        replace: int | None = None,
    ) -> int | None:
        """Store (or, for a turn the caller went on with, rewrite) a caller turn: its id."""
        entities = [e.to_dict() for e in result.entities] if result is not None else None
        row = {
            "speaker": "caller",
            "kind": kind,
            "text": text,
            "start_ms": start,
            "end_ms": end,
            "asr_confidence": getattr(transcript, "confidence", None),
            "words": [w.__dict__ for w in getattr(transcript, "words", [])] or None,
            "intent": getattr(result, "intent", None) or ("nlu_down" if nlu_down else None),
            "intent_confidence": getattr(result, "confidence", None),
            "entities": entities,
            "state": state or self.conv.state,
        }
        if row["intent"] is not None:
            self.last_intent = row["intent"]
        if replace is not None:
            await self._record(lambda db: update_turn(db, replace, **row))
            turn_id: int | None = replace
        else:
            turn_id = await self._record(lambda db: add_turn(db, self.call.call_sid, **row))
        self._publish(
            "turn",
            speaker="caller",
            text=text,
            intent=row["intent"],
            confidence=row["intent_confidence"],
            start_ms=start,
        )
        return turn_id

    async def _turn_dtmf(self, digit: str) -> None:
        at = self.call.call_ms()
        await self._record(
            lambda db: add_turn(
                db,
                self.call.call_sid,
                speaker="caller",
                kind="dtmf",
                text=digit,
                start_ms=at,
                end_ms=at,
                state=self.conv.state,
            )
        )
        self._publish("turn", speaker="caller", text=digit, kind="dtmf", start_ms=at)

    # --- actions --------------------------------------------------------------------------
    async def _run(self, actions: list[Any]) -> None:
        for action in actions:
            await self._do(action)

    async def _do(self, a: Any) -> None:
        match a:
            case fe.EnterState(state=state):
                self._publish("state", state=state)
            case fe.Say():
                await self._say(a)
            case fe.Listen():
                await self._listen(a)
            case fe.SaveDraft(fields=fields):
                await self._save_draft(fields)
            case fe.OpenTicket(fields=fields):
                await self._open_ticket(fields)
            case fe.LookupTicket(code=code):
                await self._lookup(code)
            case fe.Transfer(to=to):
                await self._transfer(to)
            case fe.SendSms(code=code):
                asyncio.get_running_loop().create_task(self._sms(code))
            case fe.CancelDraft(reason=reason):
                await self._cancel_draft(reason)
            case fe.RateTicket():
                await self._rate(a)
            case fe.SetPace(pace=pace):
                rate = self.sv.tts.rate
                self.tts_rate = int(rate * SLOW_PACE) if pace == "slow" else None
                await self._event("pace", pace=pace, rate=self.tts_rate or rate)
            case fe.SetOutcome(outcome=outcome):
                self._set_outcome(outcome)
            case fe.Hangup(reason=reason):
                await self._hangup(reason)

    async def _say(self, say: fe.Say) -> None:
        if self.ended:
            return
        audio = await self.sv.tts.arender(say.text, rate=self.tts_rate)
        length = len(audio) // 8
        # Prompts queue behind each other: this one should start when the ones before it end.
        # The turn is stamped with that, then restamped when its first frame really goes out
        # (a prompt queued behind one that is cut never plays; one after a long reply starts
        # later than planned).
        start = max(self.call.call_ms(), self.play_end_ms)
        self.play_end_ms = start + length
        loop = asyncio.get_running_loop()
        latency: Any = None
        if self.reply_from is not None:
            # From the end of the caller's trailing silence to this reply's first audio frame
            # going out on the socket.
            t0, self.reply_from = self.reply_from, None

            timing = {k: round(v, 1) if isinstance(v, float) else v for k, v in self.timing.items()}
            timing["tts_ms"] = round((time.monotonic() - t0) * 1000, 1)

            def latency() -> None:
                ms = round((time.monotonic() - t0) * 1000, 1)
                # Voice to voice, as the server sees it: the silence waited after the caller's
                # last word, then the reply latency.
                v2v = round(ms + timing.get("wait_ms", 0), 1)
                loop.create_task(self._event("reply_latency", ms=ms, v2v_ms=v2v, **timing))

        prompt = _Prompt(say, None, start)
        played: dict[str, int] = {}

        def on_start() -> None:
            played["at"] = self.call.call_ms()
            if latency is not None:
                latency()
            if prompt.turn_id is not None:
                loop.create_task(self._restamp(prompt, played["at"], length))

        pid = self.call.play(say.prompt, audio, on_start)
        self.prompts[pid] = prompt  # before the write below: a barge-in may come meanwhile
        prompt.turn_id = await self._record(
            lambda db: add_turn(
                db,
                self.call.call_sid,
                speaker="bot",
                kind="prompt",
                text=say.text,
                start_ms=start,
                end_ms=start + length,
                state=self.conv.state,
                interrupted=0,
            )
        )
        if "at" in played:
            await self._restamp(prompt, played["at"], length)
        self._publish("turn", speaker="bot", text=say.text, start_ms=start)

    async def _restamp(self, prompt: _Prompt, at: int, length: int) -> None:
        """The prompt's turn starts when its audio started playing, on the call's timeline."""
        prompt.started_ms = at
        tid = prompt.turn_id
        if tid is None:
            return
        await self._record(
            lambda db: db.table("turns").update(tid, {"start_ms": at, "end_ms": at + length})
        )

    async def _listen(self, a: fe.Listen) -> None:
        if self.ended:
            return
        grammar = a.grammar if a.grammar in (self.sv.flow.grammars or {}) else None
        if grammar != self.grammar:
            phrases = self.sv.flow.grammars.get(grammar) if grammar else None
            self._asr(self.asr.set_grammar, phrases)  # in order, before the next audio
            self.grammar = grammar
        self.idle_frames = 0
        self.message_parts, self.message_start_ms = [], None
        self.listen = a

    async def _save_draft(self, fields: dict[str, Any], *, strict: bool = False) -> None:
        """Keep the report in progress on disk as a draft. A failure here is logged and the
        call goes on (the report is still in the flow's memory, and confirming writes it
        again); only the confirmation itself (`strict`) must fail loudly."""
        try:
            await self._write_draft(fields)
        except Exception:
            if strict:
                raise
            log.exception("call %s: draft not saved", self.call.call_sid)
            with contextlib.suppress(Exception):
                await self._event("error", during="save_draft")

    async def _write_draft(self, fields: dict[str, Any]) -> None:
        fields = dict(fields)
        span = fields.pop("message_span", None)
        call = self.call

        def write(db: Any) -> int:
            if self.draft_id is None:
                return tickets.create_draft(
                    db,
                    call_sid=call.call_sid,
                    caller=call.caller,
                    category=fields["category"],
                    description=fields["description"],
                    location_raw=fields.get("location_raw"),
                    location=fields.get("location"),
                    recording_path=str(call.recorder.mixed_path),
                    channel=fields["channel"],
                    priority=fields.get("priority") or "normal",
                )
            tickets.update_draft(db, self.draft_id, **fields)
            return self.draft_id

        self.draft_id = await self._db(write)
        if span:
            await self._event(
                "message_recorded", start_ms=span[0], end_ms=span[1], draft_id=self.draft_id
            )

    async def _open_ticket(self, fields: dict[str, Any]) -> None:
        try:
            await self._save_draft(fields, strict=True)
            draft_id = self.draft_id

            def confirm(db: Any) -> dict[str, Any]:
                ticket = tickets.confirm_ticket(
                    db,
                    draft_id,
                    self.sv.router,
                    incident_window=timedelta(hours=self.settings.incident_window_h),
                )
                upsert_call(db, self.call.call_sid, ticket_code=ticket["code"])
                add_event(
                    db,
                    self.call.call_sid,
                    "ticket_opened",
                    self.call.call_ms(),
                    code=ticket["code"],
                    category=ticket["category"],
                )
                return ticket

            # Committed and fsynced before the code is spoken.
            ticket = await self.sv.store.arun_durable(confirm)
        except Exception as exc:
            log.exception("call %s: ticket not saved", self.call.call_sid)
            await self._run(self.conv.handle(fe.TicketFailed(str(exc))))
            return
        # That draft is a ticket now: the caller's next report starts a draft of its own.
        self.draft_id = None
        self.ticket_code = ticket["code"]
        self.ticket_codes.append(ticket["code"])
        self._publish("ticket", code=ticket["code"], category=ticket["category"])
        await self._run(
            self.conv.handle(
                fe.TicketOpened(
                    ticket["code"],
                    ticket.get("agency_name") or "",
                    int(ticket.get("incident_reports") or 1),
                )
            )
        )

    async def _cancel_draft(self, reason: str) -> None:
        draft_id, self.draft_id = self.draft_id, None
        if draft_id is None:
            return
        try:
            await self._db(lambda db: tickets.cancel_draft(db, draft_id, reason=reason))
        except Exception:
            log.exception("call %s: draft %s not marked cancelled", self.call.call_sid, draft_id)
        await self._event("draft_cancelled", draft_id=draft_id, by=reason)

    async def _rate(self, a: fe.RateTicket) -> None:
        try:
            await self._db(
                lambda db: tickets.rate_ticket(
                    db,
                    a.code,
                    satisfied=a.satisfied,
                    comment=a.comment or None,
                    router=self.sv.router,
                )
            )
        except Exception:
            log.exception("call %s: rating of %s not saved", self.call.call_sid, a.code)
            return
        await self._event("ticket_rated", code=a.code, satisfied=a.satisfied)

    async def _lookup(self, code: str) -> None:
        result = await self._db(lambda db: tickets.lookup_ticket(db, code))
        t = result.ticket or {}
        note = tickets.latest_note(t) if t else None
        await self._event("ticket_lookup", code=result.code, status=result.status)
        await self._run(
            self.conv.handle(
                fe.TicketLookup(
                    result.status,
                    result.code,
                    t.get("status", ""),
                    note or "",
                    t.get("category", ""),
                    t.get("status") == tickets.RESOLVED,
                )
            )
        )

    async def _transfer(self, to: str) -> None:
        s = self.settings
        number = s.operator_number if to == "operator" else s.emergency_transfer_number
        ok = False
        if self.call.caller.startswith("console:"):
            number = ""  # a browser test call cannot be bridged to a phone
        if number and not self.ended:
            await self.call.player.drain(DRAIN_TIMEOUT_S)  # let "please hold" be heard
            ok = await self.call.transfer(number)
        await self._event("transfer", to=to, ok=ok)
        if ok:
            self._set_outcome("transferred" if to == "operator" else "emergency")
        await self._run(self.conv.handle(fe.TransferResult(ok)))

    async def _sms(self, code: str) -> None:
        if self.call.caller.startswith("console:"):
            return  # a test call from the console's browser phone: nobody to text
        text = (
            f"Đường dây nóng Quảng Trị 1900868674: phản ánh của quý vị đã được tiếp nhận, "
            f"mã {code}. Gọi lại số này và đọc mã để hỏi kết quả xử lý."
        )
        sid = await self.sv.rest.send_sms(self.call.caller, text)
        if sid:

            def mark(db: Any) -> None:
                ticket = tickets.get_ticket(db, code)
                if ticket is not None:
                    tickets.mark_sms_sent(db, ticket["id"])

            await self._db(mark)
        await self._event("sms", sent=bool(sid))

    def _set_outcome(self, outcome: str) -> None:
        rank = fe.OUTCOME_RANK
        if self.outcome is None or rank.index(outcome) >= rank.index(self.outcome):
            self.outcome = outcome

    async def _hangup(self, reason: str) -> None:
        if self.ended:
            return
        self.listen = None
        await self.call.player.drain(DRAIN_TIMEOUT_S)  # the goodbye is heard whole
        await self.call.hangup(reason)

    async def _finish(self, reason: str) -> None:
        outcome = self.outcome or self.conv.outcome or "abandoned"

        def write(db: Any) -> None:
            upsert_call(
                db,
                self.call.call_sid,
                outcome=outcome,
                flow_path=json.dumps(self.conv.path, ensure_ascii=False),
                last_intent=self.last_intent,
            )
            if self.draft_id is not None:
                add_event(db, self.call.call_sid, "draft_left", draft_id=self.draft_id)

        await self._db(write)
        self._publish("call_ended", outcome=outcome, reason=reason)
        fut = self._asr(self.asr.close)
        self.decode.close()
        self.turn_lane.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.wrap_future(fut), 5)
        self.detector.close()
