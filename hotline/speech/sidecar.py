"""A scripted recognizer for replayed calls: each utterance's text comes from the recording's
sidecar instead of from decoding.

No Vietnamese speech that the recognisers understand can be produced on a build machine, so the
regression suite replays recorded calls whose caller turns were transcribed when recorded. Only
an explicit `HOTLINE_ASR=sidecar` selects this engine; it is never a default. The call is matched
to its sidecar by the caller number, and utterances take the sidecar's speech turns in order.
"""

from __future__ import annotations

import itertools
import logging
import threading
from pathlib import Path
from typing import Any

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
        continuations[caller] = _continuations(data.get("turns", []))
    return scripts


# caller -> {index of a text: seconds of audio after which the next text (the rest of the same
# sentence after a pause, `continues: true`) was heard in the same utterance}
continuations: dict[str, dict[int, float]] = {}


def _continuations(turns: list[Any]) -> dict[int, float]:
    """A sentence said in two pieces with a pause is one utterance if the hotline waited the
    pause out, or two if it did not: which one the recogniser heard depends on the audio it
    got, so the script says how much audio holds the first piece and the pause."""
    out: dict[int, float] = {}
    spoken = [t for t in turns if isinstance(t, dict) and "text" in t]
    for i, (first, rest) in enumerate(itertools.pairwise(spoken)):
        if rest.get("continues") and "at" in first and "at" in rest:
            pause = float(rest.get("pause", 0.5))
            first_s = float(first["end"]) - float(first["at"])
            out[i] = first_s + pause + 0.5 * (float(rest["end"]) - float(rest["at"]))
    return out


class SidecarStream:
    sample_rate = 8000

    def __init__(self, texts: list[str], joins: dict[int, float] | None = None) -> None:
        self._texts = list(texts)
        self._joins = joins or {}
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
            join_s = self._joins.get(self._next - 1)
            if join_s is not None and heard / 16000 >= join_s and self._next < len(self._texts):
                text = f"{text} {self._texts[self._next]}"  # heard through the pause
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
        return SidecarStream(texts or [], continuations.get(caller))
