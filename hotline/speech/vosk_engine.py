"""Vosk (Kaldi) engine on a local model directory (HOTLINE_VOSK_MODEL).

The model is loaded once and shared: Vosk's Model is safe to use from many recognizers in
parallel threads, each KaldiRecognizer belongs to one stream. Nothing is ever downloaded
(`vosk.Model(lang=...)` would try to, so only `vosk.Model(path)` is used).

Grammars: Vosk builds a grammar recognizer with `KaldiRecognizer(model, rate, json)`; it can
only do so with models that ship a runtime graph (graph/HCLr.fst + graph/Gr.fst, as the small
models do). A grammar with no known word, or an empty list, crashes or silences Vosk, so
phrases are checked against the model's vocabulary first.
"""

from __future__ import annotations

import json
import logging
import threading
import unicodedata
from pathlib import Path

from hotline.speech.recognizer import (
    EngineError,
    Transcript,
    Word,
    check_pcm,
    mean_confidence,
)

log = logging.getLogger(__name__)

# Keep this much of the current utterance so a grammar change mid-utterance can re-decode it.
_MAX_REPLAY_BYTES = 30 * 8000 * 2


def check_model_dir(path: Path) -> None:
    """Fail early with a message naming the setting, instead of Kaldi's log line."""
    hint = (
        "set HOTLINE_VOSK_MODEL to an unpacked Vosk model directory (for example "
        "vosk-model-small-vn-0.4 from https://alphacephei.com/vosk/models, see `make models`), "
        "or unset it to use the built-in viet-asr engine"
    )
    if not path.exists():
        raise EngineError(f"HOTLINE_VOSK_MODEL={path}: directory does not exist; {hint}")
    if not path.is_dir():
        raise EngineError(f"HOTLINE_VOSK_MODEL={path}: not a directory; {hint}")
    missing = [p for p in ("am/final.mdl", "conf/mfcc.conf") if not (path / p).is_file()]
    graph = path / "graph"
    if not (graph / "HCLG.fst").is_file() and not (
        (graph / "HCLr.fst").is_file() and (graph / "Gr.fst").is_file()
    ):
        missing.append("graph/HCLG.fst or graph/HCLr.fst+Gr.fst")
    if missing:
        raise EngineError(
            f"HOTLINE_VOSK_MODEL={path}: not a Vosk model directory (missing {', '.join(missing)}); {hint}"
        )


class VoskEngine:
    name = "vosk"

    def __init__(self, model_dir: Path | str) -> None:
        import vosk

        path = Path(model_dir).expanduser()
        check_model_dir(path)
        # -1 keeps Kaldi's per-utterance LOG lines out of the service log; errors still show.
        vosk.SetLogLevel(-1)
        try:
            self.model = vosk.Model(str(path))
        except Exception as exc:  # vosk raises a bare Exception("Failed to create a model")
            raise EngineError(
                f"HOTLINE_VOSK_MODEL={path}: Vosk could not load the model ({exc}); the directory "
                "is incomplete or corrupt: unpack the model again"
            ) from exc
        self.model_dir = path
        graph = path / "graph"
        # Static-graph (HCLG-only) models cannot build grammars; Vosk would ignore them anyway.
        self.supports_grammar = (graph / "HCLr.fst").is_file() and (graph / "Gr.fst").is_file()
        self._vosk = vosk

    def new_stream(self, sample_rate: int = 8000) -> VoskStream:
        return VoskStream(self, sample_rate)

    def known_word(self, word: str) -> bool:
        return self.model.vosk_model_find_word(word) >= 0

    def clean_grammar(self, phrases: list[str] | None) -> list[str] | None:
        """Phrases Vosk can use, NFC and lower-cased; None means free form."""
        if not phrases:
            return None
        if not self.supports_grammar:
            log.warning("Vosk model %s has a static graph: grammar ignored", self.model_dir)
            return None
        kept: list[str] = []
        for phrase in phrases:
            p = " ".join(unicodedata.normalize("NFC", phrase).lower().split())
            if not p:
                continue
            unknown = [w for w in p.split() if not self.known_word(w)]
            if unknown:
                log.warning(
                    "grammar phrase %r dropped: not in the model's vocabulary: %s", p, unknown
                )
                continue
            if p not in kept:
                kept.append(p)
        if not kept:
            log.warning("no grammar phrase is in the model's vocabulary: recognising free form")
            return None
        return kept


class VoskStream:
    """One call's recogniser. Vosk may close an utterance on its own (its endpointer); those
    pieces are kept and joined into the transcript returned by final()."""

    def __init__(self, engine: VoskEngine, sample_rate: int = 8000) -> None:
        self.engine = engine
        self.sample_rate = sample_rate
        self._grammar: list[str] | None = None
        self._lock = threading.Lock()
        self._done: list[Word] = []
        self._done_text: list[str] = []
        self._audio = bytearray()
        self._closed = False
        self._rec = self._make_recognizer()

    def _make_recognizer(self):
        vosk = self.engine._vosk
        if self._grammar:
            rec = vosk.KaldiRecognizer(
                self.engine.model, self.sample_rate, json.dumps(self._grammar, ensure_ascii=False)
            )
        else:
            rec = vosk.KaldiRecognizer(self.engine.model, self.sample_rate)
        rec.SetWords(True)
        return rec

    def _take(self, raw: str) -> None:
        res = json.loads(raw)
        text = res.get("text", "").strip()
        if not text:
            return
        self._done_text.append(text)
        for w in res.get("result", []):
            self._done.append(
                Word(
                    word=w.get("word", ""),
                    conf=float(w["conf"]) if "conf" in w else None,
                    start=float(w["start"]) if "start" in w else None,
                    end=float(w["end"]) if "end" in w else None,
                )
            )

    def _accept_locked(self, data: bytes) -> None:
        if self._rec.AcceptWaveform(data):
            self._take(self._rec.Result())

    def accept(self, pcm16: bytes) -> None:
        data = check_pcm(pcm16)
        if not data:
            return
        with self._lock:
            self._check()
            if len(self._audio) + len(data) <= _MAX_REPLAY_BYTES:
                self._audio += data
            self._accept_locked(data)

    def _check(self) -> None:
        if self._closed:
            raise RuntimeError("recognizer stream is closed")

    def partial(self) -> str:
        with self._lock:
            self._check()
            current = json.loads(self._rec.PartialResult()).get("partial", "")
            return " ".join([*self._done_text, current]).strip()

    def final(self) -> Transcript:
        with self._lock:
            self._check()
            self._take(self._rec.FinalResult())
            words = self._done
            text = " ".join(self._done_text).strip()
            self._reset_locked()
        return Transcript(text=text, confidence=mean_confidence(words), words=words)

    def _reset_locked(self) -> None:
        self._rec.Reset()
        self._done = []
        self._done_text = []
        self._audio = bytearray()

    def reset(self) -> None:
        with self._lock:
            self._check()
            self._reset_locked()

    def set_grammar(self, phrases: list[str] | None) -> None:
        grammar = self.engine.clean_grammar(phrases)
        with self._lock:
            self._check()
            if grammar == self._grammar:
                return
            self._grammar = grammar
            self._rec = self._make_recognizer()
            # A grammar can change while the caller is already talking (the prompt changed
            # mid-utterance): decode the utterance so far again under the new grammar.
            audio = bytes(self._audio)
            self._done = []
            self._done_text = []
            if audio:
                self._accept_locked(audio)

    @property
    def grammar(self) -> list[str] | None:
        return self._grammar

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._rec = None  # type: ignore[assignment]
            self._audio = bytearray()
