"""End-of-turn benchmark (not a test): how often each turn mode cuts a caller off, and how
long it waits after the last word.

Runs the real turn detector (Silero VAD) and the real Smart Turn v3.2 model over:
- paused sentences: a sentence said in two pieces with a pause to think of 0.5-1.0 s inside
  it (espeak-ng Vietnamese, telephone band, mu-law, line noise at -50 dBFS);
- the load bench's caller lines: long sentences with commas, where espeak-ng pauses;
- the recorded calls in recordings/ (caller audio with the spans of what was said).

A sentence is *cut off* when a turn ends inside it (between its first and last word). The
model answers after the time it really took (measured on each call), with the audio going on
meanwhile, as on a live line; the caller's next words cancel a pending "finished".
*Repaired* counts the cut-offs the session then undoes because the caller went on within
HOTLINE_TURN_RESUME_MS (1.5 s): the two parts are understood as one sentence, though the
caller may hear the start of a reply that is cut.

    .venv/bin/python bench/turns.py
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import pct  # noqa: E402
from load import SCRIPTS, VOICES, _trim  # noqa: E402

from hotline.audio import pcm16_to_ulaw, ulaw_to_pcm16  # noqa: E402
from hotline.config import Settings  # noqa: E402
from hotline.recordings import _espeak  # noqa: E402
from hotline.replay import Recording  # noqa: E402
from hotline.speech.endpoint import load_model  # noqa: E402
from hotline.speech.turns import EndCandidate, SpeechEnded, SpeechStarted, TurnDetector  # noqa: E402

S = Settings()  # the turn settings as served (HOTLINE_TURN_* from the environment)
RESUME_MS = S.turn_resume_ms
PAUSED = [
    ("nhà tui mất điện", "từ sáng tới chừ"),
    ("đèn đường hư cả tuần nay", "ở thôn an hưng xã triệu phong"),
    ("đường vô làng bị ngập", "xe máy không đi được"),
    ("rác để ở đầu ngõ", "mấy ngày rồi không ai dọn"),
    ("cho tui hỏi", "làm căn cước thì đi mô"),
    ("cây đổ chắn ngang đường", "ở xã gio linh"),
]
PAUSES_S = [0.5, 0.7, 0.9, 1.0]


@dataclass
class Call:
    name: str
    pcm: np.ndarray  # int16, 8 kHz
    sentences: list[tuple[float, float]]  # (first word, last word) in seconds


@dataclass
class Result:
    sentences: int = 0
    cut: int = 0
    repaired: int = 0
    waits_ms: list[float] = field(default_factory=list)  # last word -> end of turn
    model_ms: list[float] = field(default_factory=list)


def phone(pcm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = rng.standard_normal(len(pcm)) * 32768 * 10 ** (-50 / 20)
    x = np.clip(pcm.astype(np.float64) + noise, -32768, 32767).astype(np.int16)
    return np.frombuffer(ulaw_to_pcm16(pcm16_to_ulaw(x)), dtype="<i2")


def paused_calls() -> list[Call]:
    rng = np.random.default_rng(12)
    calls = []
    for voice in ("vi-vn-x-central", "vi-vn-x-south"):
        for first, rest in PAUSED:
            a, b = _espeak(first, voice), _espeak(rest, voice)
            for pause in PAUSES_S:
                lead = np.zeros(8000, np.int16)
                gap = np.zeros(int(pause * 8000), np.int16)
                tail = np.zeros(16000, np.int16)
                pcm = np.concatenate([lead, a, gap, b, tail])
                span = (1.0, 1.0 + (len(a) + len(gap) + len(b)) / 8000)
                calls.append(Call(f"{voice}:{first}+{pause}s", phone(pcm, rng), [span]))
    return calls


def scripted_lines() -> list[Call]:
    """The load bench's caller lines (bench/load.py), one call each: long sentences with
    commas, read slowly, so espeak-ng pauses 250-400 ms inside them where a caller would take
    a breath. Not the issue's paused sentences: these are how often a mode cuts at a comma."""
    rng = np.random.default_rng(13)
    calls = []
    for name, lines in SCRIPTS.items():
        for voice, rate in VOICES:
            for k, text in enumerate(lines):
                speech = _trim(_espeak(text, voice, rate))
                pcm = np.concatenate([np.zeros(8000, np.int16), speech, np.zeros(16000, np.int16)])
                span = (1.0, 1.0 + len(speech) / 8000)
                calls.append(Call(f"{name}:{voice}:{k}", phone(pcm, rng), [span]))
    return calls


def recorded_calls() -> list[Call]:
    calls = []
    for side in sorted((ROOT / "recordings").glob("*.yml")):
        wav = side.with_suffix(".wav")
        if not wav.exists():
            continue
        rec = Recording.load(wav)
        spans = [
            (float(t["at"]), float(t["end"]))
            for t in (rec.sidecar or {}).get("turns", [])
            if "at" in t and not t.get("continues")
        ]
        pcm = np.frombuffer(ulaw_to_pcm16(rec.audio), dtype="<i2")
        calls.append(Call(side.stem, pcm, spans))
    return calls


def speech_edges(pcm: np.ndarray, span: tuple[float, float]) -> tuple[float, float]:
    """First and last loud sample inside a sidecar span (the span has margins around words)."""
    a, b = int(span[0] * 8000), int(span[1] * 8000)
    seg = np.abs(pcm[a:b].astype(np.int32))
    loud = np.nonzero(seg > 2000)[0]
    if loud.size == 0:
        return span
    return (a + loud[0]) / 8000, (a + loud[-1]) / 8000


def run(call: Call, mode: str, model) -> Result:
    smart = mode == "smart"
    det = TurnDetector(
        end_silence_ms=S.turn_max_silence_ms if smart else S.end_silence_ms,
        probe_ms=S.turn_probe_ms,
        reprobe_ms=S.turn_reprobe_ms if smart else 0,
    )
    frames = [call.pcm[i : i + 160].tobytes() for i in range(0, len(call.pcm) - 159, 160)]
    ends: list[SpeechEnded] = []
    pending: list[tuple[int, EndCandidate, float]] = []  # (answer at ms, candidate, prob)
    audio = bytearray()
    res = Result()
    for frame in frames:
        for ev in det.feed(frame):
            if isinstance(ev, SpeechStarted):
                audio = bytearray()
            elif isinstance(ev, EndCandidate) and smart:
                t0 = time.perf_counter()
                prob = model.complete_probability(bytes(audio + frame))
                ms = (time.perf_counter() - t0) * 1000
                res.model_ms.append(ms)
                pending.append((det.now_ms + int(ms), ev, prob))
            elif isinstance(ev, SpeechEnded):
                ends.append(ev)
        if det.in_utterance:
            audio += frame
        for item in [p for p in pending if p[0] <= det.now_ms]:
            pending.remove(item)
            if item[2] >= S.turn_threshold:
                end = det.end_at(item[1])
                if end is not None:
                    ends.append(end)
    for span in call.sentences:
        first, last = speech_edges(call.pcm, span)
        res.sentences += 1
        inside = [e for e in ends if first * 1000 < e.speech_end_ms < last * 1000 - 100]
        if inside:
            res.cut += 1
            # Repaired when the caller went on within the resume window after each cut.
            if all(e.at_ms - e.speech_end_ms <= RESUME_MS for e in inside):
                res.repaired += 1
        after = [e for e in ends if e.speech_end_ms >= last * 1000 - 100]
        if after:
            res.waits_ms.append(after[0].at_ms - last * 1000)
    return res


def summarize(label: str, mode: str, results: list[Result]) -> None:
    n = sum(r.sentences for r in results)
    cut = sum(r.cut for r in results)
    rep = sum(r.repaired for r in results)
    waits = [w for r in results for w in r.waits_ms]
    model = [m for r in results for m in r.model_ms]
    print(
        f"{label:<18} {mode:<8} {n:>9} {cut:>4} ({100 * cut / max(n, 1):4.0f}%) {rep:>8} "
        f"{pct(waits, 50):>8.0f} {pct(waits, 95):>8.0f}"
        + (f"   model p50 {pct(model, 50):.0f} ms" if model else "")
    )


def main() -> None:
    model = load_model()
    sets = {
        "paused sentences": paused_calls(),
        "load-bench lines": scripted_lines(),
        "recorded calls": recorded_calls(),
    }
    print(
        f"{'calls':<18} {'mode':<8} {'sentences':>9} {'cut off':>11} {'repaired':>8} "
        f"{'wait p50':>8} {'wait p95':>8}"
    )
    for label, calls in sets.items():
        for mode in ("silence", "smart"):
            summarize(label, mode, [run(c, mode, model) for c in calls])


if __name__ == "__main__":
    main()
