"""viet-asr engine: the Vietnamese ONNX model embedded in the viet-asr wheel (no download).

One `Pipeline.preset("transcribe")` per process serves every call: sessions run in parallel
threads (its native code releases the GIL). Facts this code relies on (PLATFORM.md):
- audio must be int16: float arrays are cast and silently become zeros;
- `accept()` decodes about every 0.43 s of audio, a blocking spike of tens of ms: the caller
  runs it in a worker thread;
- it never signals an endpoint: turn ends come from hotline.speech.turns;
- after `final()` the session must be `reset()` before the next utterance;
- no word timings or confidences: Transcript.confidence is None.
"""

from __future__ import annotations

import logging
import threading

from hotline.speech.recognizer import EngineError, Transcript, Word, check_pcm

log = logging.getLogger(__name__)

# vietasr's native logger: 0 trace, 1 debug, 2 info, 3 warning, 4 error (found by trying:
# 2 still prints the INFO load lines, 3 prints none). It writes straight to stderr.
_VIETASR_LOG_WARNING = 3


class VietAsrEngine:
    name = "vietasr"

    def __init__(self, preset: str = "transcribe") -> None:
        try:
            import vietasr
            from vietasr.ffi import native
        except Exception as exc:  # missing wheel or a native library that does not load
            raise EngineError(
                f"HOTLINE_ASR=vietasr: the viet-asr package does not load ({exc}); "
                "install viet-asr==0.1.0.dev11 or set HOTLINE_VOSK_MODEL"
            ) from exc
        try:
            native.lib.vietasr_set_log_level(_VIETASR_LOG_WARNING)
        except Exception:  # an older build without the call: only noisier logs
            log.debug("vietasr_set_log_level unavailable")
        try:
            self.pipeline = vietasr.Pipeline.preset(preset)
        except Exception as exc:
            raise EngineError(
                f"HOTLINE_ASR=vietasr: loading the viet-asr model failed: {exc}"
            ) from exc
        self.preset = preset
        self.version = vietasr.__version__

    def new_stream(self, sample_rate: int = 8000) -> VietAsrStream:
        return VietAsrStream(self, sample_rate)

    def close(self) -> None:
        self.pipeline.close()


class VietAsrStream:
    def __init__(self, engine: VietAsrEngine, sample_rate: int = 8000) -> None:
        self.engine = engine
        self.sample_rate = sample_rate
        # One session is not safe for overlapping calls (accept in one worker thread, partial
        # polled from another): serialise them per stream. Different calls never share it.
        self._lock = threading.Lock()
        self._session = engine.pipeline.stream(sample_rate=float(sample_rate))
        self._closed = False

    def _check(self) -> None:
        if self._closed:
            raise RuntimeError("recognizer stream is closed")

    def accept(self, pcm16: bytes) -> None:
        data = check_pcm(pcm16)
        if not data:
            return
        with self._lock:
            self._check()
            # bytes go to the int16 entry point (never the float one, see module docstring).
            self._session.accept(data)

    def partial(self) -> str:
        with self._lock:
            self._check()
            res = self._session.partial()
        return (res.partial or res.text or "").strip()

    def final(self) -> Transcript:
        with self._lock:
            self._check()
            res = self._session.final()
            self._session.reset()
        text = " ".join((res.text or "").split())
        words = [Word(word=w) for w in text.split()]
        return Transcript(text=text, confidence=None, words=words)

    def reset(self) -> None:
        with self._lock:
            self._check()
            self._session.reset()

    def set_grammar(self, phrases: list[str] | None) -> None:
        # viet-asr has no grammar support: short answers are matched by the dialogue layer.
        return None

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._session.close()
