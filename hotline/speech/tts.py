"""Spoken replies: pyttsx3 driving espeak-ng, rendered to 8 kHz mu-law and cached.

pyttsx3 2.99 over espeak-ng has bugs that were all reproduced here (PLATFORM.md): it is not
thread-safe (concurrent use hangs or swaps audio), the first runAndWait() after init returns
early, an unknown voice id is silently ignored, about 1 render in 3000 comes out empty, a bad
output path hangs runAndWait() forever, and it prints "Audio saved to ...". So:

- ONE owner thread per process makes every pyttsx3 call (espeak-ng keeps global state, so
  even two Synthesizer objects share it); requests reach it through a queue;
- the engine is primed with an empty runAndWait() and the voice is checked after it is set;
- each render waits with a timeout; an empty or implausibly short result is retried once;
  then, or when the owner thread is stuck, `espeak-ng --stdout` runs as a subprocess;
- audio is written to an in-memory buffer, never a path, so a bad path cannot hang it;
- the "Audio saved to" print is silenced for pyttsx3's driver module only.

Output: raw G.711 mu-law, 8 kHz mono, no header: exactly the payload bytes of Twilio media
messages. Cache files are `<cache_dir>/<key>.ulaw`, key = sha256 of the normalised text,
voice, rate, volume and a format version; written to a temporary file then os.replace()d,
so readers never see half a file. Leading silence is cut to 10 ms and trailing silence to
150 ms (espeak adds ~0.4 s) so replies start and end promptly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import io
import logging
import os
import queue
import shutil
import subprocess
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hotline import audio
from hotline.speech.normalize import normalize_for_speech

log = logging.getLogger(__name__)

OUT_RATE = 8000
FORMAT_VERSION = "ulaw8k-v1"
CALIBRATION_TEXT = "một hai ba bốn năm sáu bảy tám chín mười"
FALLBACK_VOICE = "vi"


class TTSError(RuntimeError):
    pass


def _to_8k(pcm: np.ndarray, rate: int) -> np.ndarray:
    return audio.resample(pcm, rate, OUT_RATE)


def _trim(pcm: np.ndarray, rate: int, lead_ms: int = 10, tail_ms: int = 150) -> np.ndarray:
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 64)
    if not loud.size:
        return pcm[:0]
    start = max(int(loud[0]) - rate * lead_ms // 1000, 0)
    end = min(int(loud[-1]) + 1 + rate * tail_ms // 1000, pcm.size)
    return pcm[start:end]


def _parse_wav(data: bytes) -> tuple[np.ndarray, int]:
    """16-bit mono WAV, tolerating espeak-ng --stdout's placeholder chunk sizes."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise TTSError("synthesizer output is not WAV")
    pos, rate = 12, 22050
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if cid == b"fmt ":
            rate = int.from_bytes(data[pos + 12 : pos + 16], "little")
        elif cid == b"data":
            body = data[pos + 8 : pos + 8 + size] if size < 0x7FFF0000 else data[pos + 8 :]
            body = body[: len(body) // 2 * 2]
            return np.frombuffer(body, dtype="<i2").copy(), rate
        pos += 8 + size + (size & 1)
    raise TTSError("synthesizer output has no audio")


def ulaw_duration_s(data: bytes) -> float:
    return len(data) / OUT_RATE


# ----- the pyttsx3 owner thread ---------------------------------------------------------------


@dataclass
class _Request:
    text: str
    voice: str
    rate: int
    volume: float
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)


class _Owner:
    """The one thread allowed to touch pyttsx3/espeak-ng in this process."""

    _instance: _Owner | None = None
    _instance_lock = threading.Lock()

    @classmethod
    def get(cls) -> _Owner:
        with cls._instance_lock:
            if cls._instance is None or not cls._instance.thread.is_alive():
                cls._instance = _Owner()
            return cls._instance

    def __init__(self) -> None:
        self.requests: queue.Queue[_Request | None] = queue.Queue()
        self.ready = concurrent.futures.Future()
        self.busy_since: float | None = None  # monotonic time the current request began
        self.voices: list[tuple[str, str]] = []  # (id, name)
        self.renders = 0
        self.thread = threading.Thread(target=self._run, name="tts-owner", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            import pyttsx3
            import pyttsx3.drivers.espeak as espeak_driver

            # The driver prints "Audio saved to <file>" on every render: shadow `print` in that
            # module only (redirecting sys.stdout would swallow other threads' output too).
            def _quiet_print(*args: object, **kwargs: object) -> None:
                msg = " ".join(str(a) for a in args)
                if not msg.startswith("Audio saved to"):
                    log.warning("pyttsx3: %s", msg)

            espeak_driver.print = _quiet_print  # type: ignore[attr-defined]
            engine = pyttsx3.init("espeak")
            self.errors: list[BaseException] = []
            engine.connect("error", lambda name=None, exception=None: self.errors.append(exception))
            # Priming: the first runAndWait after init returns early. Exactly once: a second
            # empty runAndWait in a row hangs (reproduced here with pyttsx3 2.99).
            engine.runAndWait()
            self.voices = [(v.id, v.name) for v in engine.getProperty("voices")]
            self.engine = engine
            self.applied: tuple[str, int, float] | None = None
        except BaseException as exc:
            self.ready.set_exception(TTSError(f"pyttsx3/espeak-ng did not start: {exc}"))
            return
        self.ready.set_result(True)
        while True:
            req = self.requests.get()
            if req is None:
                return
            if not req.future.set_running_or_notify_cancel():
                continue
            self.busy_since = time.monotonic()
            try:
                req.future.set_result(self._render(req))
            except BaseException as exc:
                req.future.set_exception(exc)
            finally:
                self.busy_since = None

    def _render(self, req: _Request) -> np.ndarray:
        engine = self.engine
        settings = (req.voice, req.rate, req.volume)
        self.errors.clear()
        if settings != self.applied:
            engine.setProperty("voice", req.voice)
            engine.setProperty("rate", req.rate)
            engine.setProperty("volume", req.volume)
        buf = io.BytesIO()  # wave.open on a file object never hangs on a bad path
        engine.save_to_file(req.text, buf)
        engine.runAndWait()
        if self.errors:
            self.applied = None
            raise TTSError(f"pyttsx3 error: {self.errors[0]}")
        # pyttsx3 ignores an unknown voice silently: check what espeak-ng really uses.
        current = engine.getProperty("voice")
        if current != req.voice:
            self.applied = None
            raise TTSError(f"espeak-ng voice is {current!r}, not {req.voice!r}")
        self.applied = settings
        self.renders += 1
        data = buf.getvalue()
        if not data:
            return np.zeros(0, dtype=np.int16)
        pcm, rate = _parse_wav(data)
        if rate != 22050:
            raise TTSError(f"unexpected espeak-ng rate {rate}")
        return pcm

    def submit(self, text: str, voice: str, rate: int, volume: float) -> concurrent.futures.Future:
        req = _Request(text, voice, rate, volume)
        self.requests.put(req)
        return req.future

    def stuck_for(self) -> float:
        since = self.busy_since
        return 0.0 if since is None else time.monotonic() - since


# ----- the synthesizer ------------------------------------------------------------------------


class Synthesizer:
    """Text -> 8 kHz mu-law bytes, cached; safe to call from any thread and from asyncio."""

    def __init__(
        self,
        cache_dir: Path,
        voice: str = "vi-vn-x-central",
        rate: int = 150,
        volume: float = 0.85,
        *,
        timeout_s: float = 5.0,
        memory_cache_bytes: int = 64 << 20,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.requested_voice = voice
        self.voice = voice  # resolved to espeak-ng's voice id by start()
        self.rate = int(rate)
        self.volume = float(volume)
        self.timeout_s = timeout_s
        self._mem: OrderedDict[str, bytes] = OrderedDict()
        self._mem_bytes = 0
        self._mem_limit = memory_cache_bytes
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._inflight: dict[str, concurrent.futures.Future] = {}
        self._owner: _Owner | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._started = False
        # Prompts repeat all day: remember their normalised form (the regex pass is ~0.3 ms).
        self._normalize = functools.lru_cache(maxsize=4096)(normalize_for_speech)
        self.stats = {"pyttsx3": 0, "fallback": 0, "retries": 0, "disk_hits": 0, "memory_hits": 0}

    def _count(self, what: str) -> None:
        with self._lock:
            self.stats[what] += 1

    # ----- lifecycle -----
    def start(self) -> None:
        with self._start_lock:
            if not self._started:
                self._start()

    def _start(self) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        owner = _Owner.get()
        try:
            owner.ready.result(timeout=30)
        except Exception as exc:
            if shutil.which("espeak-ng") is None:
                raise TTSError(
                    "speech synthesis unavailable: pyttsx3 failed and espeak-ng is not installed "
                    "(apt-get install espeak-ng libespeak-ng1)"
                ) from exc
            log.error("pyttsx3 unavailable (%s): every render uses espeak-ng --stdout", exc)
            owner = None
        self._owner = owner
        self.voice = self._resolve_voice(owner)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=4, thread_name_prefix="tts"
        )
        self._started = True
        if owner is not None and not self._calibrated(owner):
            log.error("pyttsx3 speaks at the wrong rate in this process: using espeak-ng --stdout")
            self._owner = None

    def _calibrated(self, owner: _Owner) -> bool:
        """Does pyttsx3 speak at our rate? In about 1 process in 40 the rate set through
        pyttsx3 does not take (espeak-ng keeps pyttsx3's default of 200 wpm for every render):
        compare a short sentence's length with the espeak-ng command line's, once at start."""
        text = CALIBRATION_TEXT
        try:
            want = self._espeak_cli(text).size
        except TTSError:
            return True  # nothing to compare with; the owner stays
        for _attempt in range(2):
            try:
                got = owner.submit(text, self.voice, self.rate, self.volume).result(
                    timeout=max(self.timeout_s, 5.0)
                )
            except Exception:
                return True  # render failures are handled per render (retry, fallback)
            if abs(got.size - want) <= 0.12 * want:
                return True
            log.warning("pyttsx3 calibration: %d samples, espeak-ng %d", got.size, want)
        return False

    def _resolve_voice(self, owner: _Owner | None) -> str:
        """espeak-ng's voice id for the requested voice; falls back to Northern `vi`."""
        voices = owner.voices if owner else _cli_voices()
        want = self.requested_voice.lower()
        for vid, name in voices:
            if want in (vid, vid.rsplit("/", 1)[-1], name.lower()):
                return vid
        for vid, _name in voices:
            if vid.rsplit("/", 1)[-1] == FALLBACK_VOICE:
                log.warning(
                    "espeak-ng has no voice %r (HOTLINE_TTS_VOICE); using %r instead",
                    self.requested_voice,
                    vid,
                )
                return vid
        raise TTSError(
            f"espeak-ng has neither voice {self.requested_voice!r} (HOTLINE_TTS_VOICE) nor "
            f"{FALLBACK_VOICE!r}: install espeak-ng with its Vietnamese voices"
        )

    def close(self) -> None:
        # The owner thread stays for the process (espeak-ng initialises once per process).
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        self._started = False

    def __enter__(self) -> Synthesizer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- cache -----
    def cache_key(self, text: str, rate: int | None = None) -> str:
        if not self._started:
            self.start()  # the key uses espeak-ng's resolved voice id, known after start()
        norm = self._normalize(text)
        rate = rate or self.rate
        raw = "\x1f".join([FORMAT_VERSION, norm, self.voice, str(rate), f"{self.volume:.3f}"])
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:40]

    def cache_path(self, text: str) -> Path:
        return self.cache_dir / f"{self.cache_key(text)}.ulaw"

    def _mem_get(self, key: str) -> bytes | None:
        with self._lock:
            data = self._mem.get(key)
            if data is not None:
                self._mem.move_to_end(key)
            return data

    def _mem_put(self, key: str, data: bytes) -> None:
        with self._lock:
            if key in self._mem:
                return
            self._mem[key] = data
            self._mem_bytes += len(data)
            while self._mem_bytes > self._mem_limit and self._mem:
                _, old = self._mem.popitem(last=False)
                self._mem_bytes -= len(old)

    def cached(self, text: str, rate: int | None = None) -> bytes | None:
        """The rendered audio if it is already in memory (no disk, no rendering)."""
        return self._mem_get(self.cache_key(text, rate))

    # ----- rendering -----
    def render(self, text: str, *, cache: bool = True, rate: int | None = None) -> bytes:
        """8 kHz mu-law for `text`. Blocking; thread-safe. `cache=False` for one-off texts
        (they are neither read from nor written to disk). `rate` (words per minute) speaks
        slower or faster than the configured rate, for a caller who asked to slow down."""
        if not self._started:
            self.start()
        norm = self._normalize(text)
        if not norm.strip(" .,;:!?"):
            return b""
        rate = None if rate == self.rate else rate
        key = self.cache_key(text, rate)
        data = self._mem_get(key)
        if data is not None:
            self._count("memory_hits")
            return data
        path = self.cache_dir / f"{key}.ulaw"
        if cache:
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                data = None
            if data:
                self._count("disk_hits")
                self._mem_put(key, data)
                return data
        # One render per key at a time: concurrent requests for the same text wait for it.
        with self._lock:
            fut = self._inflight.get(key)
            mine = fut is None
            if mine:
                fut = concurrent.futures.Future()
                self._inflight[key] = fut
        if not mine:
            return fut.result()
        try:
            data = self._synthesize(norm, rate)
            if cache:
                self._write_atomic(path, data)
                self._mem_put(key, data)
            fut.set_result(data)
            return data
        except BaseException as exc:
            fut.set_exception(exc)
            raise
        finally:
            with self._lock:
                self._inflight.pop(key, None)

    async def arender(self, text: str, *, cache: bool = True, rate: int | None = None) -> bytes:
        """render() off the event loop (memory hits return at once)."""
        if not self._started:
            await asyncio.to_thread(self.start)
        data = self.cached(text, None if rate == self.rate else rate) if cache else None
        if data is not None:
            return data
        loop = asyncio.get_running_loop()
        # A private pool: slow renders must not starve the loop's default executor.
        return await loop.run_in_executor(
            self._executor, lambda: self.render(text, cache=cache, rate=rate)
        )

    def prerender(self, texts: Iterable[str]) -> int:
        """Render and cache every distinct text; returns how many had to be rendered (the
        others were already cached in memory or on disk)."""
        done: set[str] = set()
        new = 0
        for text in texts:
            if not text or not text.strip():
                continue
            key = self.cache_key(text)
            if key in done:
                continue
            done.add(key)
            if self._mem_get(key) is None and not (self.cache_dir / f"{key}.ulaw").is_file():
                new += 1
            self.render(text)
        return new

    def _write_atomic(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def _min_samples(self, norm: str) -> int:
        # espeak-ng speaks a Vietnamese syllable in >= 0.29 s at 150 wpm (0.07 s at 400): a
        # result much shorter than 0.1 s per word (scaled by rate) is truncated or empty.
        words = max(len(norm.split()), 1)
        return int(22050 * max(0.05, 0.1 * words * 150 / max(self.rate, 1)))

    def _synthesize(self, norm: str, rate: int | None = None) -> bytes:
        pcm: np.ndarray | None = None
        owner = self._owner
        if rate is not None:
            # Another rate: the command line, since switching pyttsx3's rate back and forth
            # between calls is what makes its renders come back empty (PLATFORM.md).
            owner = None
        if owner is not None:
            for attempt in range(2):
                if owner.stuck_for() > self.timeout_s:
                    log.error(
                        "pyttsx3 owner thread stuck for %.1f s: using espeak-ng", owner.stuck_for()
                    )
                    break
                fut = owner.submit(norm, self.voice, self.rate, self.volume)
                try:
                    got = fut.result(timeout=self.timeout_s)
                except concurrent.futures.TimeoutError:
                    fut.cancel()
                    log.error(
                        "pyttsx3 render timed out after %.1f s: using espeak-ng", self.timeout_s
                    )
                    break
                except TTSError as exc:
                    log.warning("pyttsx3 render failed (%s)", exc)
                    continue
                if got.size >= self._min_samples(norm):
                    pcm = got
                    self._count("pyttsx3")
                    break
                self._count("retries")
                log.warning(
                    "pyttsx3 render too short (%d samples, render #%d in this process), attempt %d",
                    got.size,
                    owner.renders,
                    attempt + 1,
                )
        if pcm is None:
            pcm = self._espeak_cli(norm, rate)
            if rate is None:
                self._count("fallback")
        out = _to_8k(pcm, 22050)
        out = _trim(out, OUT_RATE)
        if not out.size:
            raise TTSError(f"synthesis produced silence for {norm[:60]!r}")
        return audio.pcm16_to_ulaw(out)

    def _espeak_cli(self, norm: str, rate: int | None = None) -> np.ndarray:
        voice = self.voice.rsplit("/", 1)[-1]
        cmd = [
            "espeak-ng",
            "-v",
            voice,
            "-s",
            str(rate or self.rate),
            "-a",
            str(round(self.volume * 100)),
            "-b",
            "1",
            "--stdout",
        ]
        try:
            out = subprocess.run(
                cmd,
                input=norm.encode("utf-8"),
                capture_output=True,
                timeout=max(self.timeout_s * 3, 10),
                check=True,
            ).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            raise TTSError(f"espeak-ng failed: {exc}") from exc
        pcm, rate = _parse_wav(out)
        if rate != 22050:
            pcm = audio.resample(pcm, rate, 22050)
        if pcm.size < self._min_samples(norm):
            raise TTSError(f"espeak-ng produced {pcm.size} samples for {norm[:60]!r}")
        return pcm


def _cli_voices() -> list[tuple[str, str]]:
    """espeak-ng's voices from the command line (when pyttsx3 is unusable)."""
    try:
        out = subprocess.run(
            ["espeak-ng", "--voices"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    voices = []
    for line in out.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 5:
            # Pty Language Age/Gender VoiceName File Other
            voices.append((parts[4].lower(), parts[3].replace("_", " ")))
    return voices
