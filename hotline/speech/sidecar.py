"""A scripted recognizer for replayed calls: each utterance's text comes from the recording's
sidecar instead of from decoding.

No Vietnamese speech that the recognisers understand can be produced on a build machine, so the
regression suite replays recorded calls whose caller turns were transcribed when recorded. Only
an explicit `HOTLINE_ASR=sidecar` selects this engine; it is never a default. The call is matched
to its sidecar by the caller number, and utterances take the sidecar's speech turns in order.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import yaml

from hotline.speech.recognizer import Transcript, Word

log = logging.getLogger(__name__)

MIN_AUDIO_BYTES = 8000  # 0.5 s of 8 kHz int16: less is a blip, not a turn


def load_sidecars(directory: Path) -> dict[str, list[str]]:
    """caller number -> the texts of its speech turns, for every sidecar in `directory`."""
    scripts: dict[str, list[str]] = {}
    for path in sorted(Path(directory).glob("*.yml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            log.warning("sidecar %s skipped: %s", path, exc)
            continue
        caller = str(data.get("caller", ""))
        if not caller or data.get("asr", "sidecar") != "sidecar":
            continue
        texts = [
            str(t["text"]) for t in data.get("turns", []) if isinstance(t, dict) and "text" in t
        ]
        if caller in scripts:
            log.warning("sidecar %s: caller %s already used by another sidecar", path, caller)
        scripts[caller] = texts
    return scripts


class SidecarStream:
    sample_rate = 8000

    def __init__(self, texts: list[str]) -> None:
        self._texts = list(texts)
        self._next = 0
        self._bytes = 0
        self._lock = threading.Lock()

    def accept(self, pcm16: bytes) -> None:
        with self._lock:
            self._bytes += len(pcm16)

    def partial(self) -> str:
        with self._lock:
            if self._bytes < MIN_AUDIO_BYTES or self._next >= len(self._texts):
                return ""
            return self._texts[self._next]

    def final(self) -> Transcript:
        with self._lock:
            heard, self._bytes = self._bytes, 0
            if heard < MIN_AUDIO_BYTES or self._next >= len(self._texts):
                return Transcript("", None, [])
            text = self._texts[self._next]
            self._next += 1
        return Transcript(text, 1.0, [Word(w, 1.0) for w in text.split()])

    def reset(self) -> None:
        with self._lock:
            self._bytes = 0

    def set_grammar(self, phrases: list[str] | None) -> None:
        pass

    def close(self) -> None:
        pass


class SidecarEngine:
    name = "sidecar"

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            from hotline.speech.recognizer import EngineError

            raise EngineError(f"HOTLINE_SIDECAR_DIR={directory} is not a directory")

    def new_stream(self, sample_rate: int = 8000) -> SidecarStream:
        return SidecarStream([])

    def stream_for_call(self, caller: str) -> SidecarStream:
        # Read at each call so a sidecar added while the server runs is picked up.
        texts = load_sidecars(self.directory).get(caller)
        if texts is None:
            log.warning("no sidecar for this caller: utterances will be empty")
        return SidecarStream(texts or [])
