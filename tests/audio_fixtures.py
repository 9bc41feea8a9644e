"""Test audio made on the spot with espeak-ng: no recordings are shipped or downloaded.

Everything here returns 8 kHz mono int16 numpy arrays (or bytes via `to_bytes`) so tests and
bench/speech.py can build calls with speech and silence at known places. `Timeline` keeps the
ground truth (where speech really is) next to the samples.

espeak-ng Vietnamese is not understood by the recognisers (see PLATFORM.md), so Vietnamese
speech here is only for voice-activity and streaming tests; Korean "네"/"아니요" is recognised
by the real Korean Vosk model and is what the Vosk tests use.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import soxr

RATE = 8000
FRAME_MS = 20
FRAME_SAMPLES = RATE * FRAME_MS // 1000  # 160 samples = 320 bytes

# Long enough to give the streaming recognisers several partial results.
VI_LONG = (
    "Xin chào, tôi muốn báo cáo một sự cố về đường sá ở thành phố Đông Hà, tỉnh Quảng Trị. "
    "Đoạn đường trước trường học bị ngập nước từ sáng nay, xe máy không đi qua được. "
    "Mong các anh chị cử người đến kiểm tra sớm. Xin cảm ơn."
)
VI_SHORT = "Tôi muốn báo mất điện ở phường Đông Lương."


def _parse_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Parse espeak-ng's --stdout WAV, whose RIFF/data sizes are placeholders (0x7ffff000)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("espeak-ng did not return WAV")
    pos = 12
    rate = 22050
    while pos + 8 <= len(data):
        cid = data[pos : pos + 4]
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        if cid == b"fmt ":
            rate = int.from_bytes(data[pos + 12 : pos + 16], "little")
        if cid == b"data":
            body = data[pos + 8 :]
            body = body[: len(body) // 2 * 2]
            return np.frombuffer(body, dtype="<i2").copy(), rate
        pos += 8 + size + (size & 1)
    raise ValueError("no data chunk in espeak-ng output")


@lru_cache(maxsize=64)
def _espeak_cached(text: str, voice: str, speed: int) -> bytes:
    out = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-a", "90", "-b", "1", "--stdout"],
        input=text.encode("utf-8"),
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    pcm, rate = _parse_wav(out)
    y = soxr.resample(pcm.astype(np.float32) / 32768.0, rate, RATE, quality="HQ")
    return (np.clip(y, -1.0, 32767 / 32768) * 32768.0).astype(np.int16).tobytes()


def speech(
    text: str = VI_SHORT, voice: str = "vi", speed: int = 160, trim: bool = True
) -> np.ndarray:
    """espeak-ng speech at 8 kHz int16; `trim` cuts espeak's leading/trailing silence so the
    returned array is speech from its first to its last audible sample (ground truth spans)."""
    pcm = np.frombuffer(_espeak_cached(text, voice, speed), dtype=np.int16).copy()
    if trim:
        loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 300)
        if loud.size:
            pcm = pcm[loud[0] : loud[-1] + 1]
    return pcm


def korean(word: str) -> np.ndarray:
    """Korean speech ("네", "아니요") that the real Korean Vosk model recognises."""
    return speech(word, voice="ko", speed=150, trim=True)


def silence(ms: int) -> np.ndarray:
    return np.zeros(RATE * ms // 1000, dtype=np.int16)


def white_noise(ms: int, dbfs: float = -50.0, seed: int = 0) -> np.ndarray:
    """Gaussian white noise with an RMS of `dbfs` relative to full scale."""
    rng = np.random.default_rng(seed)
    rms = 32768.0 * 10 ** (dbfs / 20)
    x = rng.normal(0.0, rms, RATE * ms // 1000)
    return np.clip(x, -32768, 32767).astype(np.int16)


def click(ms: int = 40, dbfs: float = -6.0, seed: int = 1) -> np.ndarray:
    """A short loud burst (line click, bumped handset): must not count as speech."""
    rng = np.random.default_rng(seed)
    n = RATE * ms // 1000
    amp = 32768.0 * 10 ** (dbfs / 20)
    env = np.exp(-np.linspace(0, 5, n))
    return np.clip(rng.uniform(-amp, amp, n) * env, -32768, 32767).astype(np.int16)


def telephone(pcm: np.ndarray, low_hz: float = 300.0, high_hz: float = 3400.0) -> np.ndarray:
    """Band-limit to the telephone band and pass through G.711 mu-law, as a phone line does."""
    spec = np.fft.rfft(pcm.astype(np.float64))
    freqs = np.fft.rfftfreq(pcm.size, 1.0 / RATE)
    spec[(freqs < low_hz) | (freqs > high_hz)] = 0
    y = np.clip(np.fft.irfft(spec, n=pcm.size), -32768, 32767).astype(np.int16)
    return _ulaw_roundtrip(y)


def _ulaw_roundtrip(pcm: np.ndarray) -> np.ndarray:
    # Continuous mu-law companding then 8-bit quantisation: close enough to G.711 for tests.
    x = pcm.astype(np.float64) / 32768.0
    mu = 255.0
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    q = np.round(y * 127) / 127
    z = np.sign(q) * ((1 + mu) ** np.abs(q) - 1) / mu
    return np.clip(z * 32768.0, -32768, 32767).astype(np.int16)


def add_noise(pcm: np.ndarray, dbfs: float, seed: int = 2) -> np.ndarray:
    n = white_noise(int(pcm.size * 1000 // RATE) + 1, dbfs, seed)[: pcm.size]
    return np.clip(pcm.astype(np.int32) + n, -32768, 32767).astype(np.int16)


@dataclass
class Timeline:
    """Audio assembled piece by piece, remembering where the speech pieces are (in ms)."""

    pieces: list[np.ndarray] = field(default_factory=list)
    speech_spans: list[tuple[int, int]] = field(default_factory=list)

    @property
    def samples(self) -> int:
        return sum(p.size for p in self.pieces)

    @property
    def ms(self) -> int:
        return self.samples * 1000 // RATE

    def add(self, pcm: np.ndarray, is_speech: bool = False) -> Timeline:
        start = self.ms
        self.pieces.append(pcm.astype(np.int16))
        if is_speech:
            self.speech_spans.append((start, self.ms))
        return self

    def add_speech(self, pcm: np.ndarray) -> Timeline:
        return self.add(pcm, is_speech=True)

    def pad_to_frame(self) -> Timeline:
        rest = self.samples % FRAME_SAMPLES
        if rest:
            self.pieces.append(np.zeros(FRAME_SAMPLES - rest, dtype=np.int16))
        return self

    def audio(self, noise_dbfs: float | None = None, phone: bool = False) -> np.ndarray:
        self.pad_to_frame()
        pcm = np.concatenate(self.pieces) if self.pieces else np.zeros(0, np.int16)
        if phone:
            pcm = telephone(pcm)
        if noise_dbfs is not None:
            pcm = add_noise(pcm, noise_dbfs)
        return pcm


def to_bytes(pcm: np.ndarray) -> bytes:
    return pcm.astype("<i2").tobytes()


def frames(pcm: np.ndarray | bytes, frame_ms: int = FRAME_MS) -> list[bytes]:
    """Split into whole frames of `frame_ms` (a trailing partial frame is zero-padded)."""
    data = pcm if isinstance(pcm, bytes) else to_bytes(pcm)
    size = RATE * frame_ms // 1000 * 2
    if len(data) % size:
        data += b"\0" * (size - len(data) % size)
    return [data[i : i + size] for i in range(0, len(data), size)]
