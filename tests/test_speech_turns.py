"""Turn-taking on audio with known speech and silence spans (espeak-ng speech, silence, low
white noise, clicks), passed through the telephone band and mu-law like a real call."""

from __future__ import annotations

import numpy as np
import pytest

from hotline.speech.turns import EndCandidate, SpeechEnded, SpeechStarted, TurnDetector
from tests.audio_fixtures import (
    VI_LONG,
    VI_SHORT,
    Timeline,
    click,
    frames,
    silence,
    speech,
    white_noise,
)

# How far the detector may be from the truth. Silero's onset lags 20-140 ms behind the first
# espeak sample (soft consonants); its offset trails the last sample by up to ~150 ms.
START_EARLY_MS = 60
START_LATE_MS = 200
BARGE_IN_MS = 350  # first sample of speech -> SpeechStarted event
END_LATE_MS = 250  # end of speech + end_silence_ms -> SpeechEnded event


def run(detector: TurnDetector, pcm: np.ndarray, candidates: bool = False) -> list:
    """Start and end events (and the end candidates when asked)."""
    events = []
    for frame in frames(pcm):
        events.extend(detector.feed(frame))
    return [e for e in events if candidates or not isinstance(e, EndCandidate)]


def two_turns() -> Timeline:
    return (
        Timeline()
        .add(silence(1000))
        .add_speech(speech(VI_SHORT))
        .add(silence(1500))
        .add_speech(speech("Vâng, đúng rồi."))
        .add(silence(1500))
    )


@pytest.mark.parametrize("noise", [None, -50.0, -35.0], ids=["quiet", "noise-50dB", "noise-35dB"])
@pytest.mark.parametrize("end_silence_ms", [600, 1000])
def test_start_and_end_of_each_turn(noise: float | None, end_silence_ms: int) -> None:
    tl = two_turns()
    det = TurnDetector(end_silence_ms=end_silence_ms)
    events = run(det, tl.audio(noise_dbfs=noise, phone=True))
    kinds = [type(e) for e in events]
    assert kinds == [SpeechStarted, SpeechEnded, SpeechStarted, SpeechEnded], events
    for (s, e), (start, end) in zip(
        tl.speech_spans, zip(events[::2], events[1::2], strict=True), strict=True
    ):
        assert s - START_EARLY_MS <= start.at_ms <= s + START_LATE_MS
        assert start.detected_ms - s <= BARGE_IN_MS
        assert start.detected_ms >= start.at_ms + det.min_speech_ms
        assert end.reason == "silence"
        assert end.started_ms == start.at_ms
        # Declared over exactly end_silence_ms after the last voiced frame...
        assert end.at_ms - end.speech_end_ms == end_silence_ms
        # ...and that last voiced frame is close to the real end of speech.
        assert e - 100 <= end.speech_end_ms <= e + END_LATE_MS
    assert not det.in_utterance


def test_pauses_shorter_than_the_silence_window_do_not_end_the_turn() -> None:
    tl = (
        Timeline()
        .add(silence(500))
        .add_speech(speech("Tôi muốn báo cáo"))
        .add(silence(400))
        .add_speech(speech("một sự cố mất điện"))
        .add(silence(1200))
    )
    events = run(TurnDetector(end_silence_ms=600), tl.audio(noise_dbfs=-50, phone=True))
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]
    # With a shorter window the pause does split it.
    events = run(TurnDetector(end_silence_ms=200), tl.audio(noise_dbfs=-50, phone=True))
    assert [type(e) for e in events].count(SpeechStarted) == 2


def test_max_length_cuts_a_long_utterance() -> None:
    tl = Timeline().add(silence(500)).add_speech(speech(VI_LONG)).add(silence(1000))
    det = TurnDetector(max_utterance_ms=3000)
    events = run(det, tl.audio(noise_dbfs=-50, phone=True))
    assert isinstance(events[0], SpeechStarted)
    cut = events[1]
    assert isinstance(cut, SpeechEnded) and cut.reason == "max_length"
    assert cut.at_ms - events[0].at_ms == 3000
    # The caller kept talking: further utterances, none longer than the maximum, and the
    # last one ends on silence.
    ends = [e for e in events if isinstance(e, SpeechEnded)]
    assert len(ends) >= 3
    assert all(e.at_ms - e.started_ms <= 3000 for e in ends)
    assert ends[-1].reason == "silence"


@pytest.mark.parametrize(
    "blip",
    [
        click(40),
        click(80, dbfs=-3.0, seed=5),
        speech("a")[:480],  # 60 ms cut from a vowel
        white_noise(100, dbfs=-20.0),  # a 100 ms burst of loud hiss
    ],
    ids=["click40", "click80", "vowel60", "hiss100"],
)
def test_short_blips_start_nothing(blip: np.ndarray) -> None:
    tl = Timeline().add(silence(500))
    for _ in range(4):
        tl.add(blip).add(silence(700))
    assert run(TurnDetector(), tl.audio(noise_dbfs=-50, phone=True)) == []


def test_steady_line_noise_starts_nothing() -> None:
    tl = Timeline().add(white_noise(10_000, dbfs=-30.0, seed=9))
    assert run(TurnDetector(), tl.audio(phone=True)) == []


def test_utterance_audio_includes_the_preroll_and_the_silence_window() -> None:
    tl = Timeline().add(silence(1000)).add_speech(speech(VI_SHORT)).add(silence(1000))
    pcm = tl.audio(noise_dbfs=-50, phone=True)
    det = TurnDetector(preroll_ms=200)
    taken = b""
    events = []
    for frame in frames(pcm):
        events += det.feed(frame)
        taken += det.take_audio()
    start, end = (e for e in events if not isinstance(e, EndCandidate))
    assert isinstance(start, SpeechStarted) and isinstance(end, SpeechEnded)
    first_ms = start.at_ms - 200
    assert len(taken) == (end.at_ms - first_ms) * 16  # 8 kHz int16: 16 bytes per ms
    # It is exactly that stretch of the call, so the recogniser hears the whole utterance.
    raw = pcm.astype("<i2").tobytes()
    assert taken == raw[first_ms * 16 : end.at_ms * 16]
    assert det.take_audio() == b""


def test_chunking_does_not_change_the_events() -> None:
    pcm = two_turns().audio(noise_dbfs=-50, phone=True)
    raw = pcm.astype("<i2").tobytes()
    by_frame = run(TurnDetector(), pcm, candidates=True)
    det = TurnDetector()
    by_chunk = []
    for i in range(0, len(raw), 250):  # odd-sized chunks, not frame aligned
        by_chunk += det.feed(raw[i : i + 250])
    assert by_chunk == by_frame


def test_reset_starts_over() -> None:
    det = TurnDetector()
    pcm = two_turns().audio(phone=True)
    first = run(det, pcm)
    det.reset()
    assert det.now_ms == 0 and not det.in_utterance
    assert run(det, pcm) == first
    det.close()


def test_webrtc_backend_handles_a_quiet_line() -> None:
    tl = two_turns()
    events = run(TurnDetector(vad="webrtc", vad_mode=3), tl.audio(noise_dbfs=-50, phone=True))
    starts = [e for e in events if isinstance(e, SpeechStarted)]
    assert len(starts) == 2
    for (s, _e), st in zip(tl.speech_spans, starts, strict=True):
        assert abs(st.at_ms - s) <= START_LATE_MS


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        TurnDetector(sample_rate=44100)
    with pytest.raises(ValueError):
        TurnDetector(vad="nope")  # type: ignore[arg-type]


@pytest.mark.parametrize("word", ["đúng", "dạ", "có", "không", "vâng"])
def test_short_answers_start_speech_whatever_their_alignment(word: str) -> None:
    # Silero scores a lone short word low in some alignments of its 32 ms windows; a one-word
    # answer must still be heard wherever it falls in the stream.
    from hotline.audio import pcm16_to_ulaw, ulaw_to_pcm16
    from hotline.recordings import _espeak

    speech = ulaw_to_pcm16(pcm16_to_ulaw(_espeak(word, "vi-vn-x-south")))
    missed = []
    for pad_ms in range(500, 1500, 40):
        pcm = b"\x00\x00" * (8 * pad_ms) + speech + b"\x00\x00" * 8000
        events = TurnDetector().feed(pcm)
        if not any(isinstance(e, SpeechStarted) for e in events):
            missed.append(pad_ms)
    assert not missed, f"{word!r} not heard with {len(missed)} of 25 offsets: {missed}"


def paused_sentence(pause_ms: int) -> Timeline:
    """One sentence with a pause to think inside it, then silence."""
    return (
        Timeline()
        .add(silence(800))
        .add_speech(speech("nhà tui mất điện"))
        .add(silence(pause_ms))
        .add_speech(speech("từ sáng tới chừ"))
        .add(silence(2000))
    )


def test_a_candidate_comes_after_probe_ms_of_silence_and_again_after_each_resumption() -> None:
    tl = paused_sentence(700)
    det = TurnDetector(end_silence_ms=1200, probe_ms=250)
    events = run(det, tl.audio(noise_dbfs=-50, phone=True), candidates=True)
    kinds = [type(e) for e in events]
    # One utterance (the 0.7 s pause is under the 1.2 s ceiling), a candidate in the pause and
    # one after the sentence.
    assert kinds == [SpeechStarted, EndCandidate, EndCandidate, SpeechEnded], events
    first, second = events[1], events[2]
    assert 250 <= first.at_ms - first.speech_end_ms < 250 + 20  # the first 20 ms frame past it
    assert first.started_ms == second.started_ms == events[0].at_ms
    assert second.speech_end_ms > first.at_ms  # the caller spoke again after the first
    assert events[3].reason == "silence" and events[3].at_ms - events[3].speech_end_ms == 1200


def test_end_at_ends_the_turn_only_if_the_caller_has_not_spoken_since() -> None:
    tl = paused_sentence(700)
    pcm = tl.audio(noise_dbfs=-50, phone=True)
    det = TurnDetector(end_silence_ms=1200, probe_ms=250)
    pending: list[EndCandidate] = []
    ended: list[SpeechEnded] = []
    for frame in frames(pcm):
        for ev in det.feed(frame):
            if isinstance(ev, EndCandidate):
                pending.append(ev)
        # The model's answer comes while audio keeps arriving; the first candidate is
        # answered once the caller has already started again: it must not end the turn.
        if len(pending) == 1 and det.in_utterance and det.now_ms > tl.speech_spans[1][0] + 300:
            assert det.end_at(pending[0]) is None
            pending.append(pending[0])  # answered
        if len(pending) == 3:
            end = det.end_at(pending[2])
            assert end is not None
            ended.append(end)
            pending.append(pending[2])
    assert len(ended) == 1 and ended[0].reason == "smart"
    end = ended[0]
    assert end.at_ms - end.speech_end_ms < 300  # decided at the probe, not at the ceiling
    assert end.started_ms < tl.speech_spans[0][0] + START_LATE_MS  # the whole sentence
    assert det.end_at(pending[2]) is None  # twice: nothing more to end


def test_with_reprobe_a_long_silence_gives_a_candidate_every_reprobe_ms() -> None:
    tl = Timeline().add(silence(800)).add_speech(speech(VI_SHORT)).add(silence(2000))
    det = TurnDetector(end_silence_ms=1200, probe_ms=250, reprobe_ms=300)
    events = run(det, tl.audio(noise_dbfs=-50, phone=True), candidates=True)
    cands = [e for e in events if isinstance(e, EndCandidate)]
    silences = [c.at_ms - c.speech_end_ms for c in cands]
    # 250, 550, 850, 1150 ms into the silence (to the next 20 ms frame), then the ceiling.
    assert len(cands) == 4 and all(
        250 + 300 * i <= s < 250 + 300 * i + 40 for i, s in enumerate(silences)
    ), silences
    assert len({(c.started_ms, c.speech_end_ms) for c in cands}) == 1  # one utterance, one pause
    assert isinstance(events[-1], SpeechEnded) and events[-1].reason == "silence"


def test_prewarmed_detectors_start_without_building_a_vad() -> None:
    from hotline.speech import turns

    with turns._Silero._pool_lock:
        turns._Silero._pool.clear()
    assert turns.prewarm_vad(3) == 3 and turns._Silero.pooled(8000) == 3
    assert turns.prewarm_vad(3) == 0  # already there: nothing more is built
    detectors = [TurnDetector() for _ in range(3)]
    assert turns._Silero.pooled(8000) == 0  # each call took one from the pool
    for d in detectors:
        d.close()
    assert turns._Silero.pooled(8000) == 3  # and gave it back at the end
