"""The recognizer interface the call session codes against, and the engine chooser.

An `Engine` is loaded once per process and shared by every call; each call opens its own
`RecognizerStream`. Stream methods are blocking (the engines decode inside `accept`), so the
caller runs them in a worker thread, never on the event loop.

Engines:
- `vosk`: Vosk's KaldiRecognizer on a local model directory (HOTLINE_VOSK_MODEL); per-state
  grammars for short answers. Nothing is downloaded: `vosk.Model(lang=...)` is never called.
- `vietasr`: the viet-asr wheel's embedded Vietnamese model; needs no files, the default.
- `sidecar`: scripted transcripts for replayed calls (hotline.speech.sidecar, the lead's).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


class EngineError(RuntimeError):
    """The engine cannot be loaded; the message names the setting to fix."""


@dataclass
class Word:
    word: str
    conf: float | None = None
    start: float | None = None  # seconds from the start of the utterance's audio
    end: float | None = None


@dataclass
class Transcript:
    text: str
    confidence: float | None = None  # mean word confidence where the engine gives one
    words: list[Word] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.text.strip()


@runtime_checkable
class RecognizerStream(Protocol):
    """One per call. All methods block; call them from a worker thread."""

    sample_rate: int

    def accept(self, pcm16: bytes) -> None:
        """Feed int16 little-endian mono audio at the stream's sample rate."""

    def partial(self) -> str:
        """The current hypothesis for the utterance so far ('' before any words)."""

    def final(self) -> Transcript:
        """End the utterance and return its transcript; the stream is then reset."""

    def reset(self) -> None:
        """Drop the current utterance (audio and hypothesis)."""

    def set_grammar(self, phrases: list[str] | None) -> None:
        """Restrict recognition to these phrases (None: free form). Engines without grammar
        support ignore it."""

    def close(self) -> None: ...


@runtime_checkable
class Engine(Protocol):
    name: str

    def new_stream(self, sample_rate: int = 8000) -> RecognizerStream: ...


def mean_confidence(words: list[Word]) -> float | None:
    confs = [w.conf for w in words if w.conf is not None]
    return sum(confs) / len(confs) if confs else None


def check_pcm(pcm16: bytes | bytearray | memoryview) -> bytes:
    """Reject odd-length buffers: a dropped byte would shift every later sample into noise."""
    data = bytes(pcm16)
    if len(data) % 2:
        raise ValueError("pcm16 must hold whole int16 samples (even number of bytes)")
    return data


# Engines are expensive (Vosk: ~0.7 GB and ~2 s; viet-asr: ~230 MB), so one per process
# and per model, however many times load_engine is called.
_ENGINES: dict[tuple[str, str], Engine] = {}
_ENGINES_LOCK = threading.Lock()


def resolve_asr(settings: Any) -> str:
    """`auto` means Vosk when a Vosk model is configured, viet-asr otherwise."""
    asr = getattr(settings, "asr", "auto") or "auto"
    if asr == "auto":
        return "vosk" if getattr(settings, "vosk_model", None) else "vietasr"
    return asr


def load_engine(settings: Any) -> Engine:
    """The engine chosen by HOTLINE_ASR (auto|vosk|vietasr|sidecar), loaded once per process."""
    asr = resolve_asr(settings)
    if asr == "sidecar":
        # The lead's scripted recogniser for replayed calls: cheap, never cached here.
        from hotline.speech.sidecar import SidecarEngine

        return SidecarEngine(settings.sidecar_dir)
    if asr == "vosk":
        model = getattr(settings, "vosk_model", None)
        if model is None:
            raise EngineError(
                "HOTLINE_ASR=vosk needs HOTLINE_VOSK_MODEL: the directory of an unpacked Vosk "
                "model such as vosk-model-small-vn-0.4"
            )
        key = ("vosk", str(Path(model).expanduser().resolve()))
    elif asr == "vietasr":
        key = ("vietasr", "")
    else:
        raise EngineError(f"HOTLINE_ASR={asr!r} is not one of auto, vosk, vietasr, sidecar")

    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            if asr == "vosk":
                from hotline.speech.vosk_engine import VoskEngine

                engine = VoskEngine(Path(key[1]))
            else:
                from hotline.speech.vietasr_engine import VietAsrEngine

                engine = VietAsrEngine()
            _ENGINES[key] = engine
        return engine
