"""Soak benchmark (not a test): N calls at a time for a set duration through a real server.

Starts `hotline serve` (its own supervised Rasa unless --nlu-url is given) and keeps N callers
busy with the Twilio stand-in, each placing report calls from recordings/ one after another
(sidecar recogniser, real NLU, real TTS, real SQLite, real WebSocket). Every --every seconds it
prints the server's RSS, open files, threads, the database size (with its WAL) and the calls
done; at the end, memory growth from the first sample after --warmup to the last.

    .venv/bin/python bench/soak.py --calls 4 --minutes 10
    .venv/bin/python bench/soak.py --calls 2 --minutes 1 --nlu-url http://127.0.0.1:5005 --nlu-token T
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hotline.replay import Recording  # noqa: E402
from tests.servers import HotlineServer, TwilioRestStandIn  # noqa: E402

RECORDINGS = ["power_cut_with_place", "birth_registration_enquiry", "keypad_only_report"]


def proc_figures(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
        "threads": int(fields["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def db_mb(data_dir: Path) -> float:
    """The database file with its WAL (the WAL is reused after each checkpoint, not shrunk)."""
    return sum(p.stat().st_size for p in data_dir.glob("hotline.db*") if p.is_file()) / 2**20


async def caller_loop(server: HotlineServer, rec: Recording, until: float, done: list[int]) -> None:
    standin = server.twilio(fast=False)
    while time.monotonic() < until:
        try:
            result = await asyncio.wait_for(standin.call(rec), 300)
            done[0 if result.call and result.call.get("outcome") else 1] += 1
        except Exception as exc:  # a failed call is counted, the soak goes on
            done[1] += 1
            print(f"  call failed: {type(exc).__name__}: {exc}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=4, help="calls at a time")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds before the baseline")
    ap.add_argument("--nlu-url", help="use this Rasa instead of spawning one")
    ap.add_argument("--nlu-token", default="")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    rest = TwilioRestStandIn().start()
    env = {
        "HOTLINE_ASR": "sidecar",
        "HOTLINE_SIDECAR_DIR": str(ROOT / "recordings"),
        "HOTLINE_LOG_LEVEL": "WARNING",
        "HOTLINE_TWILIO_API_BASE": rest.url,
        "TWILIO_ACCOUNT_SID": rest.account_sid,
        "HOTLINE_OPERATOR_NUMBER": "+842333888999",
        "HOTLINE_OPERATOR_HOURS": "always",
    }
    if args.nlu_url:
        env |= {"HOTLINE_NLU_URL": args.nlu_url, "HOTLINE_NLU_TOKEN": args.nlu_token}
    else:
        env["HOTLINE_NLU_MANAGE"] = "true"
    server = HotlineServer(tmp / "data", env).start()
    recs = [Recording.load(ROOT / "recordings" / f"{name}.wav") for name in RECORDINGS]
    try:
        server.wait_for_nlu(300)
        until = time.monotonic() + args.minutes * 60
        done = [0, 0]

        def run() -> None:
            async def all_callers() -> None:
                await asyncio.gather(
                    *(
                        caller_loop(server, recs[i % len(recs)], until, done)
                        for i in range(args.calls)
                    )
                )

            asyncio.run(all_callers())

        callers = threading.Thread(target=run, daemon=True)
        t0 = time.monotonic()
        callers.start()
        print(
            f"soak: {args.calls} calls at a time for {args.minutes} min, server pid {server.proc.pid}"
        )
        print(
            f"{'t s':>6} {'rss MiB':>8} {'fds':>5} {'threads':>7} {'db MiB':>7} {'calls':>6} {'failed':>6}"
        )
        samples = []
        while callers.is_alive():
            f = proc_figures(server.proc.pid)
            t = time.monotonic() - t0
            samples.append((t, f))
            print(
                f"{t:>6.0f} {f['rss_mb']:>8.1f} {f['fds']:>5} {f['threads']:>7} "
                f"{db_mb(server.data_dir):>7.2f} {done[0]:>6} {done[1]:>6}",
                flush=True,
            )
            callers.join(args.every)
        final = proc_figures(server.proc.pid)
        samples.append((time.monotonic() - t0, final))
        base = next((f for t, f in samples if t >= args.warmup), samples[0][1])
        growth = 100 * (final["rss_mb"] - base["rss_mb"]) / base["rss_mb"]
        print(
            f"end: {done[0]} calls completed, {done[1]} failed in {time.monotonic() - t0:.0f} s; "
            f"RSS {base['rss_mb']:.1f} -> {final['rss_mb']:.1f} MiB after warm-up "
            f"({growth:+.1f} %), fds {base['fds']} -> {final['fds']}, threads "
            f"{base['threads']} -> {final['threads']}, db {db_mb(server.data_dir):.2f} MiB"
        )
    finally:
        server.stop()
        rest.stop()


if __name__ == "__main__":
    main()
