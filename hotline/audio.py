"""Telephone audio: G.711 mu-law, resampling, 20 ms framing and WAV files.

mu-law uses numpy lookup tables (the stdlib `audioop` is deprecated and gone in Python 3.13);
resampling uses soxr. The tables follow ITU-T G.711 exactly as `audioop.lin2ulaw` did.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import soxr

SAMPLE_RATE = 8000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 160
FRAME_BYTES_ULAW = FRAME_SAMPLES  # one byte per sample
FRAME_BYTES_PCM = FRAME_SAMPLES * 2
ULAW_SILENCE = 0xFF  # mu-law code for 0

_BIAS = 0x84


def _build_decode_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _build_encode_table() -> np.ndarray:
    # Index by the 16-bit sample reinterpreted as uint16. Same arithmetic as CPython's audioop
    # (14-bit magnitude, clip 8159, bias 33) so recordings match what older tools produced.
    samples = np.arange(-32768, 32768, dtype=np.int32)
    value = samples >> 2
    negative = value < 0
    magnitude = np.minimum(np.where(negative, -value, value), 8159) + 33
    seg_ends = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
    seg = np.searchsorted(seg_ends, magnitude, side="left")
    uval = (seg << 4) | ((magnitude >> (seg + 1)) & 0x0F)
    mask = np.where(negative, 0x7F, 0xFF)
    codes = np.where(seg >= 8, 0x7F ^ mask, uval ^ mask) & 0xFF
    table = np.empty(65536, dtype=np.uint8)
    table[samples.astype(np.uint16)] = codes.astype(np.uint8)
    return table


_ULAW_TO_PCM = _build_decode_table()
_PCM_TO_ULAW = _build_encode_table()


def ulaw_to_pcm16(data: bytes) -> bytes:
    """mu-law bytes to little-endian int16 PCM bytes."""
    return _ULAW_TO_PCM[np.frombuffer(data, dtype=np.uint8)].astype("<i2").tobytes()


def ulaw_to_array(data: bytes) -> np.ndarray:
    return _ULAW_TO_PCM[np.frombuffer(data, dtype=np.uint8)]


def pcm16_to_ulaw(data: bytes | np.ndarray) -> bytes:
    samples = np.frombuffer(data, dtype="<i2") if isinstance(data, bytes | bytearray) else data
    return _PCM_TO_ULAW[np.asarray(samples, dtype=np.int16).view(np.uint16)].tobytes()


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample int16 (or float) mono audio; returns int16."""
    if from_rate == to_rate:
        return np.asarray(samples, dtype=np.int16)
    as_float = np.asarray(samples, dtype=np.float32)
    if np.issubdtype(np.asarray(samples).dtype, np.integer):
        as_float = as_float / 32768.0
    out = soxr.resample(as_float, from_rate, to_rate, quality="HQ")
    return np.clip(np.round(out * 32767.0), -32768, 32767).astype(np.int16)


def frames(
    data: bytes, frame_bytes: int = FRAME_BYTES_ULAW, pad: int = ULAW_SILENCE
) -> list[bytes]:
    """Cut audio into fixed frames; the last one is padded (with mu-law silence by default)."""
    out = [data[i : i + frame_bytes] for i in range(0, len(data), frame_bytes)]
    if out and len(out[-1]) < frame_bytes:
        out[-1] = out[-1] + bytes([pad]) * (frame_bytes - len(out[-1]))
    return out


def silence_ulaw(ms: int) -> bytes:
    return bytes([ULAW_SILENCE]) * (SAMPLE_RATE * ms // 1000)


def read_wav(path: Path | str) -> tuple[np.ndarray, int]:
    """Read a PCM16 WAV as mono int16 samples (channels are averaged) and its rate."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
        rate, channels = w.getframerate(), w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return data, rate


def read_wav_as_ulaw(path: Path | str) -> bytes:
    """Any PCM16 WAV as 8 kHz mu-law, as Twilio would carry it."""
    samples, rate = read_wav(path)
    return pcm16_to_ulaw(resample(samples, rate, SAMPLE_RATE))


def write_wav(
    path: Path | str,
    pcm: bytes | np.ndarray,
    rate: int = SAMPLE_RATE,
    channels: int = 1,
    *,
    exclusive: bool = False,
) -> None:
    """Write a PCM16 WAV; `exclusive` refuses to replace a file that exists (FileExistsError)."""
    data = pcm if isinstance(pcm, bytes | bytearray) else np.asarray(pcm, dtype="<i2").tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("xb" if exclusive else "wb") as f, wave.open(f, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data)


class WavAppender:
    """A mono 8 kHz PCM16 WAV written as the call goes.

    The file is created exclusively: an existing recording is never opened for writing (and so
    never truncated). The header is rewritten on close(); a crash leaves a file whose data chunk
    is intact and whose length `wave` can still recover from the file size.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = path.open("xb")  # noqa: SIM115 (open for the whole call)
        try:
            self._w = wave.open(self._file, "wb")  # noqa: SIM115
            self._w.setnchannels(1)
            self._w.setsampwidth(2)
            self._w.setframerate(SAMPLE_RATE)
        except BaseException:
            self._file.close()
            raise
        self.samples = 0

    def write(self, pcm16: bytes) -> None:
        self._w.writeframesraw(pcm16)
        self.samples += len(pcm16) // 2

    def pad_to(self, sample_index: int) -> None:
        """Write silence up to `sample_index` (keeps two tracks on one timeline)."""
        if sample_index > self.samples:
            self.write(b"\x00\x00" * (sample_index - self.samples))

    def close(self) -> None:
        try:
            self._w.close()
        finally:
            self._file.close()


def mix_stereo(left: Path, right: Path, out: Path) -> None:
    """Caller on the left, bot on the right, for the console's player."""
    a, _ = read_wav(left)
    b, _ = read_wav(right)
    n = max(len(a), len(b))
    stereo = np.zeros((n, 2), dtype=np.int16)
    stereo[: len(a), 0] = a
    stereo[: len(b), 1] = b
    write_wav(out, stereo.tobytes(), channels=2, exclusive=True)
