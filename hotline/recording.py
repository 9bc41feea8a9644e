"""A call's audio on disk: caller track, bot track on the same timeline, and a stereo mix."""

from __future__ import annotations

import logging
from pathlib import Path

from hotline.audio import FRAME_SAMPLES, WavAppender, mix_stereo

log = logging.getLogger(__name__)


class CallRecorder:
    def __init__(self, directory: Path, call_sid: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.caller_path = directory / f"{call_sid}.caller.wav"
        self.bot_path = directory / f"{call_sid}.bot.wav"
        self.mixed_path = directory / f"{call_sid}.wav"
        self._caller = WavAppender(self.caller_path)
        self._bot = WavAppender(self.bot_path)
        self.closed = False

    @property
    def caller_ms(self) -> int:
        return self._caller.samples * 1000 // 8000

    def caller_frame(self, pcm16: bytes, at_frame: int | None = None) -> None:
        if at_frame is not None:
            # A gap in Twilio's sequence: keep the timeline by writing silence for what was lost.
            self._caller.pad_to(at_frame * FRAME_SAMPLES)
        self._caller.write(pcm16)

    def bot_frame(self, tick: int, pcm16: bytes) -> None:
        self._bot.pad_to(tick * FRAME_SAMPLES)
        self._bot.write(pcm16)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._caller.close()
        self._bot.close()
        try:
            mix_stereo(self.caller_path, self.bot_path, self.mixed_path)
        except Exception:
            log.exception("could not mix the stereo recording")
