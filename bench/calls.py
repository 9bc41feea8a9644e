"""End-to-end call benchmark (not a test): N concurrent calls in real time through a real server.

Starts `hotline serve` with live viet-asr decoding and its supervised Rasa server, then plays N
calls at once with the Twilio stand-in, each caller speaking several utterances. Reports, per N:
- reply latency: from the end of the caller's trailing-silence window to the first frame of the
  reply on the socket (the session logs it per turn), p50 / p95 / max;
- whether recognition kept up: the server's inbound processing lag and the calls completed;
- server CPU and memory.

    .venv/bin/python bench/calls.py [--calls 1,4,8] [--asr vietasr]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import pct, proc_stats, reply_latency_events, server_env  # noqa: E402

from hotline.audio import pcm16_to_ulaw  # noqa: E402
from hotline.recordings import _espeak  # noqa: E402
from hotline.replay import Recording  # noqa: E402
from tests.servers import HotlineServer  # noqa: E402

UTTERANCES = [
    "nhà tui mất điện từ sáng tới chừ",
    "ở thôn an hưng xã triệu phong",
    "đúng rồi",
    "cảm ơn nghe",
]


def make_call(tmp: Path) -> Recording:
    pieces, turns, pos = [np.zeros(8000, np.int16)], [], 1.0
    for text in UTTERANCES:
        audio = _espeak(text, "vi-vn-x-south")
        turns.append({"at": pos, "end": pos + len(audio) / 8000, "text": text})
        pieces += [audio, np.zeros(8000, np.int16)]
        pos += len(audio) / 8000 + 1.0
    turns.append({"hangup": True})
    return Recording(
        tmp / "bench.wav",
        pcm16_to_ulaw(np.concatenate(pieces)),
        {"caller": "+84900000000", "turns": turns},
    )


async def run_calls(
    server: HotlineServer, rec: Recording, n: int
) -> tuple[list[float], int, float]:
    client = server.twilio(fast=False)
    t0 = time.monotonic()
    results = await asyncio.gather(
        *(client.call(rec, caller=f"+8490{1000000 + i}") for i in range(n)),
        return_exceptions=True,
    )
    wall = time.monotonic() - t0
    ok = [r for r in results if not isinstance(r, BaseException)]
    details = reply_latency_events(server.db(), [r.call_sid for r in ok])
    lat = [float(d["ms"]) for d in details]
    for key in ("asr_ms", "nlu_ms", "tts_ms"):
        vals = [d[key] for d in details if key in d]
        if vals:
            print(f"      {key} (cumulative) p50 {pct(vals, 50):.0f} p95 {pct(vals, 95):.0f}")
    return lat, len(ok), wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", default="1,4,8")
    ap.add_argument("--asr", default="vietasr")
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a server setting"
    )
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-calls-"))
    rec = make_call(tmp)
    env = server_env(args.asr)
    env |= dict(kv.split("=", 1) for kv in args.set)
    server = HotlineServer(tmp / "data", env).start()
    try:
        server.wait_for_nlu()
        print(
            f"{'calls':>5} {'done':>5} {'replies':>7} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} "
            f"{'wall s':>7} {'cpu %':>6} {'rss MiB':>8}"
        )
        for n in [int(x) for x in args.calls.split(",")]:
            cpu0, _ = proc_stats(server.proc.pid)
            t0 = time.monotonic()
            lat, done, wall = asyncio.run(run_calls(server, rec, n))
            cpu1, rss = proc_stats(server.proc.pid)
            cpu_pct = 100 * (cpu1 - cpu0) / (time.monotonic() - t0)
            print(
                f"{n:>5} {done:>5} {len(lat):>7} {pct(lat, 50):>7.0f} {pct(lat, 95):>7.0f} "
                f"{max(lat, default=float('nan')):>7.0f} {wall:>7.1f} {cpu_pct:>6.0f} {rss:>8.0f}"
            )
            if lat:
                print(f"      mean {statistics.mean(lat):.0f} ms over {len(lat)} replies")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
