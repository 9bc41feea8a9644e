"""Speech synthesis with the real pyttsx3 + espeak-ng: owner thread under concurrency, cache,
fallbacks and the 8 kHz mu-law output."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from hotline import audio
from hotline.speech.normalize import normalize_for_speech
from hotline.speech.tts import Synthesizer, TTSError, _Owner

TEXTS = [
    "Xin chào.",
    "Vui lòng cho biết địa điểm xảy ra sự việc.",
    "Mã phản ánh của quý vị là 4821937.",
    "Cảm ơn quý vị đã gọi đường dây nóng 1900868674 của UBND tỉnh Quảng Trị.",
    "Dạ vâng.",
    "Quý vị muốn phản ánh về điện, nước, đường sá hay môi trường?",
    "Hạn xử lý là ngày 15/11/2026.",
    "Xin lỗi, tôi chưa nghe rõ. Quý vị vui lòng nói lại chậm hơn, hoặc bấm phím 1 để gặp tổng đài viên.",
]


@pytest.fixture
def synth(tmp_path: Path) -> Synthesizer:
    s = Synthesizer(tmp_path / "tts-cache")
    s.start()
    yield s
    s.close()


def decoded(ulaw: bytes) -> np.ndarray:
    return audio.ulaw_to_array(ulaw).astype(np.float64)


def test_output_is_8k_mulaw_speech_of_plausible_length(synth: Synthesizer) -> None:
    text = TEXTS[3]
    ulaw = synth.render(text)
    pcm = decoded(ulaw)
    seconds = len(ulaw) / 8000
    words = len(normalize_for_speech(text).split())
    # espeak-ng at 150 wpm: roughly 0.25-0.5 s per Vietnamese syllable.
    assert 0.2 * words <= seconds <= 0.6 * words, (seconds, words)
    rms_db = 20 * np.log10(np.sqrt(np.mean(pcm**2)) / 32768)
    assert rms_db > -30, rms_db  # clearly audible
    # Voiced all along: no long silent hole in the middle of the prompt.
    win = 8000 // 10
    energy = [np.sqrt(np.mean(pcm[i : i + win] ** 2)) for i in range(0, pcm.size - win, win)]
    assert max(energy) > 3000
    assert sum(e < 50 for e in energy) / len(energy) < 0.3
    # Leading silence is trimmed so a reply starts at once.
    assert np.abs(pcm[:400]).max() > 300
    # Volume 0.85 keeps headroom: not a wall of clipped samples.
    assert np.mean(np.abs(pcm) >= 32000) < 0.001
    # Not the digits read by espeak as a big number: the normalised text was spoken.
    assert synth.cache_key(text) == synth.cache_key(normalize_for_speech(text))


def test_cache_hit_returns_identical_bytes_from_one_file(
    tmp_path: Path, synth: Synthesizer
) -> None:
    text = TEXTS[1]
    first = synth.render(text)
    again = synth.render(text)
    assert again == first
    files = list(synth.cache_dir.iterdir())
    assert [f.name for f in files] == [f"{synth.cache_key(text)}.ulaw"]
    assert files[0].read_bytes() == first
    # A new process-like synthesizer on the same directory reads it back without rendering.
    other = Synthesizer(synth.cache_dir)
    other.start()
    assert other.render(text) == first
    assert other.stats["disk_hits"] == 1
    assert other.stats["pyttsx3"] == 0 and other.stats["fallback"] == 0
    assert len(list(synth.cache_dir.iterdir())) == 1  # no temporary files left behind


def test_cache_key_depends_on_text_and_voice_settings(tmp_path: Path) -> None:
    a = Synthesizer(tmp_path, voice="vi-vn-x-central", rate=150, volume=0.85)
    b = Synthesizer(tmp_path, voice="vi-vn-x-central", rate=160, volume=0.85)
    c = Synthesizer(tmp_path, voice="vi-vn-x-central", rate=150, volume=0.8)
    d = Synthesizer(tmp_path, voice="vi", rate=150, volume=0.85)
    keys = {s.cache_key("Xin chào") for s in (a, b, c, d)}
    assert len(keys) == 4
    assert a.cache_key("Xin chào") != a.cache_key("Xin chào quý vị")
    # Same words after normalisation: same audio, same key.
    assert a.cache_key("UBND tỉnh") == a.cache_key("ủy ban nhân dân tỉnh")


LONG_TEXT = (
    "Cảm ơn quý vị đã gọi đường dây nóng của ủy ban nhân dân tỉnh Quảng Trị, tổng đài viên sẽ "
    "liên hệ lại với quý vị trong thời gian sớm nhất có thể, xin chân thành cảm ơn quý vị."
)
LONG = LONG_TEXT.split(" ")
# Prefixes of growing length: a request answered with another request's audio would show as
# a clearly different length.
GROWING = [" ".join(LONG[:n]) for n in (2, 3, 4, 6, 8, 11, 15, 20, 27)]


def tolerance(n_bytes: int) -> float:
    # pyttsx3 renders of one text differ by a few ms (espeak-ng state): 3% + 50 ms.
    return 0.03 * n_bytes + 400


def test_concurrent_requests_get_their_own_audio(synth: Synthesizer) -> None:
    # Reference renders, one at a time.
    reference = {t: synth.render(t, cache=False) for t in GROWING}
    lengths = [len(reference[t]) for t in GROWING]
    assert all(b - a > 2 * tolerance(b) for a, b in zip(lengths, lengths[1:], strict=False)), (
        lengths
    )

    jobs = [GROWING[i % len(GROWING)] for i in range(54)]
    results: list[tuple[str, bytes]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(12)

    def worker(k: int) -> None:
        try:
            barrier.wait()
            for text in jobs[k::12]:
                data = synth.render(text, cache=False)  # forces a real render every time
                with lock:
                    results.append((text, data))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert len(results) == len(jobs)
    for text, data in results:
        ref = reference[text]
        assert data, text
        assert abs(len(data) - len(ref)) <= tolerance(len(ref)), (text, len(data), len(ref))
        # Same words, same sound: the decoded envelopes line up.
        a, b = decoded(data), decoded(ref)
        n = min(a.size, b.size) // 400 * 400
        ea = np.sqrt(np.mean(a[:n].reshape(-1, 400) ** 2, axis=1))
        eb = np.sqrt(np.mean(b[:n].reshape(-1, 400) ** 2, axis=1))
        assert np.corrcoef(ea, eb)[0, 1] > 0.8, text
    assert synth.stats["fallback"] == 0


def test_concurrent_requests_for_one_uncached_text_make_one_file(synth: Synthesizer) -> None:
    text = "Tổng đài viên sẽ gọi lại cho quý vị trong thời gian sớm nhất."
    out: list[bytes] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        out.append(synth.render(text))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(out) == 8 and len(set(out)) == 1 and out[0]
    assert [f.name for f in synth.cache_dir.iterdir()] == [f"{synth.cache_key(text)}.ulaw"]


async def test_arender_runs_off_the_loop_and_matches_render(synth: Synthesizer) -> None:
    texts = TEXTS[:4]
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    got = await asyncio.gather(*(synth.arender(t) for t in texts))
    task.cancel()
    assert ticks > len(texts)  # the loop kept running while rendering
    assert got == [synth.render(t) for t in texts]
    assert all(got)


def test_prerender_caches_every_distinct_text(synth: Synthesizer) -> None:
    n = synth.prerender([TEXTS[0], TEXTS[4], TEXTS[0], "", "   "])
    assert n == 2  # rendered now
    assert len(list(synth.cache_dir.glob("*.ulaw"))) == 2
    assert synth.cached(TEXTS[0]) is not None
    # A second pass (or a restart on the same cache) renders only what is new.
    assert synth.prerender([TEXTS[0], TEXTS[4], TEXTS[5]]) == 1
    again = Synthesizer(synth.cache_dir)
    assert again.prerender([TEXTS[0], TEXTS[4], TEXTS[5]]) == 0
    assert again.stats["pyttsx3"] == 0


async def test_a_slower_rate_renders_longer_audio_cached_apart(synth: Synthesizer) -> None:
    """ "Nói chậm thôi": the same prompt at 75 % of the rate lasts longer, is cached under its own
    key, and leaves the normal rendering untouched."""
    text = "Tôi xin nhắc lại: quý vị phản ánh về điện, nước, tại phường Đông Hà."
    normal = synth.render(text)
    slow = await synth.arender(text, rate=int(synth.rate * 0.75))
    assert len(slow) > 1.2 * len(normal)
    assert synth.cache_key(text, int(synth.rate * 0.75)) != synth.cache_key(text)
    assert synth.render(text) == normal
    assert await synth.arender(text, rate=synth.rate) == normal  # the normal rate is the normal key


def test_empty_text_renders_nothing(synth: Synthesizer) -> None:
    assert synth.render("") == b""
    assert synth.render(" . ") == b""
    assert list(synth.cache_dir.iterdir()) == []


def test_unknown_voice_falls_back_to_northern_vi(tmp_path: Path) -> None:
    s = Synthesizer(tmp_path, voice="no-such-voice")
    s.start()
    assert s.voice == "aav/vi"
    assert len(s.render("Xin chào")) > 2000


def test_voice_ids_and_names_resolve(tmp_path: Path) -> None:
    for requested in ("vi-vn-x-central", "aav/vi-vn-x-central", "Vietnamese (Central)"):
        s = Synthesizer(tmp_path, voice=requested)
        s.start()
        assert s.voice == "aav/vi-vn-x-central"


def test_the_owner_checks_the_voice_really_changed() -> None:
    owner = _Owner.get()
    owner.ready.result(timeout=30)
    # pyttsx3 silently keeps the old voice for an unknown id; the owner notices.
    with pytest.raises(TTSError, match="voice"):
        owner.submit("xin chào", "no/such-voice", 150, 0.85).result(timeout=30)
    # And it recovers for the next request.
    ok = owner.submit("xin chào", "aav/vi", 150, 0.85).result(timeout=30)
    assert ok.size > 5000


def test_timeout_falls_back_to_the_espeak_cli(tmp_path: Path) -> None:
    s = Synthesizer(tmp_path, timeout_s=1e-6)  # no pyttsx3 render can finish in time
    s.start()
    ulaw = s.render("Xin chào quý vị đã gọi đường dây nóng.", cache=False)
    assert s.stats["fallback"] == 1
    ref = Synthesizer(tmp_path / "ref")
    ref.start()
    expected = ref.render("Xin chào quý vị đã gọi đường dây nóng.", cache=False)
    # The subprocess speaks the same voice and settings: same length within a few percent.
    assert abs(len(ulaw) - len(expected)) <= 0.05 * len(expected)
    assert np.sqrt(np.mean(decoded(ulaw) ** 2)) > 500


def test_no_audio_saved_print_reaches_stdout(
    synth: Synthesizer, capfd: pytest.CaptureFixture
) -> None:
    synth.render("Kiểm tra đầu ra.", cache=False)
    out, _err = capfd.readouterr()
    assert "Audio saved" not in out
