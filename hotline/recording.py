"""A call's audio on disk: caller track, bot track on the same timeline, and a stereo mix.

A recording never overwrites another: files are created exclusively, and if a file of this call
already exists (evidence of an earlier stream) the recorder takes the next free name. Writes
are bounded (the stream caps padding and length) and cost microseconds per 20 ms frame. A disk
error stops the recording, never the call: the caller is still served and the error is kept.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from hotline.audio import FRAME_SAMPLES, SAMPLE_RATE, WavAppender, mix_stereo

log = logging.getLogger(__name__)

MAX_NAME_TRIES = 100


class CallRecorder:
    def __init__(self, directory: Path, call_sid: str, *, max_s: float | None = None) -> None:
        self.call_sid = call_sid
        self.max_samples = int(max_s * SAMPLE_RATE) if max_s else None
        self.error: str | None = None
        self.closed = False
        self._caller: WavAppender | None = None
        self._bot: WavAppender | None = None
        stem = call_sid
        for n in range(MAX_NAME_TRIES):
            stem = call_sid if n == 0 else f"{call_sid}-{n}"
            paths = [directory / f"{stem}{ext}" for ext in (".caller.wav", ".bot.wav", ".wav")]
            if not any(p.exists() for p in paths):
                break
        self.caller_path = directory / f"{stem}.caller.wav"
        self.bot_path = directory / f"{stem}.bot.wav"
        self.mixed_path = directory / f"{stem}.wav"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._caller = WavAppender(self.caller_path)
            self._bot = WavAppender(self.bot_path)
        except OSError as exc:  # FileExistsError included: another stream won the name
            self._fail("open", exc)

    @property
    def caller_ms(self) -> int:
        return self._caller.samples * 1000 // SAMPLE_RATE if self._caller else 0

    @property
    def caller_samples(self) -> int:
        return self._caller.samples if self._caller else 0

    @property
    def full(self) -> bool:
        """The caller track has reached the longest recording allowed."""
        return self.max_samples is not None and self.caller_samples >= self.max_samples

    def _fail(self, what: str, exc: OSError) -> None:
        if self.error is None:
            log.error("call %s: recording stopped (%s): %s", self.call_sid, what, exc)
        self.error = self.error or f"{what}: {exc}"
        for track in (self._caller, self._bot):
            if track is not None:
                with contextlib.suppress(OSError):
                    track.close()

    @property
    def writable(self) -> bool:
        return self.error is None and not self.closed

    def _bounded(self, sample_index: int) -> int:
        return sample_index if self.max_samples is None else min(sample_index, self.max_samples)

    def caller_frame(self, pcm16: bytes, at_frame: int | None = None) -> None:
        if not self.writable or self._caller is None or self.full:
            return
        try:
            if at_frame is not None:
                # A gap in Twilio's sequence: keep the timeline by writing silence for what was
                # lost (the stream caps how far one message may jump).
                self._caller.pad_to(self._bounded(at_frame * FRAME_SAMPLES))
            self._caller.write(pcm16)
        except OSError as exc:
            self._fail("write", exc)

    def bot_frame(self, tick: int, pcm16: bytes) -> None:
        if not self.writable or self._bot is None:
            return
        start = tick * FRAME_SAMPLES
        if self.max_samples is not None and start >= self.max_samples:
            return
        try:
            self._bot.pad_to(start)
            self._bot.write(pcm16)
        except OSError as exc:
            self._fail("write", exc)

    def close(self) -> None:
        """Finish the WAV headers and build the mix. Never raises: the end of a call must be
        recorded whatever the disk says (the error is kept in `self.error`)."""
        if self.closed:
            return
        self.closed = True
        for track in (self._caller, self._bot):
            if track is None:
                continue
            try:
                track.close()
            except OSError as exc:
                self.error = self.error or f"close: {exc}"
                log.error("call %s: could not finish %s: %s", self.call_sid, track.path, exc)
        if self._caller is None or self._bot is None:
            return
        try:
            mix_stereo(self.caller_path, self.bot_path, self.mixed_path)
        except Exception as exc:
            self.error = self.error or f"mix: {exc}"
            log.exception("call %s: could not mix the stereo recording", self.call_sid)
