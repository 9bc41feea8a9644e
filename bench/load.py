"""Load benchmark (not a test): calls arriving at random through a real server, at rising load.

Starts `hotline serve` with live viet-asr decoding and its supervised Rasa, then places calls
with the Twilio stand-in (hotline/replay.py) in real time, as a ramp of target concurrencies.

Arrivals. Calls arrive as a Poisson stream. By Little's law, L = lambda * W: to keep N calls in
progress on average, calls must arrive at lambda = N / W, W the mean call duration. W is measured
by one warm-up call before the ramp (or given with --call-seconds) and then updated with the mean
of the calls completed so far. When a step begins, the calls in progress are still those of the
step before; so that the step does not spend a whole call duration climbing to N, the rate is
nudged by the gap: lambda = max(0, N/W + (N - in_progress) / (W/4)). Arrivals are drawn about
every 50 ms with probability 1 - exp(-lambda * elapsed): a Poisson stream at rate N/W once the
step has settled. The time-averaged number of calls actually in progress during the step is
printed as `conc`.

Callers. Each call is one of several caller scripts (a power cut, a flooded road, rubbish, a
broken street light, a question about a birth certificate), spoken by espeak-ng Vietnamese in
one of four voices at slowish rates, turn by turn with the stand-in's sidecar-script mode: the
caller waits for the hotline's real prompts (call_flows/main.yml) to finish, pauses 0.3-1.2 s,
then speaks the next line (the problem; the place "ở thôn ... xã ..."; "đúng rồi"; thanks and
goodbye), and hangs up after the last reply. The bot's prompts are long (the read-back and the
ticket code take 15 s each), so callers talk for about a quarter of the call, not a third (`talk%`:
caller speech / duration of the completed calls). espeak-ng
Vietnamese is not recognised well by viet-asr (PLATFORM.md), so a call does not always follow
the intended path (a misunderstanding is asked about, or leads to a voice message): decoding,
NLU, synthesis and the flow are all real, which is what the load is about.

Columns (one row per step):
- `started`/`done`: calls started in the step / of those, completed without a client error.
- `conc`: mean calls in progress over the step (sampled every 0.5 s).
- `replies`, `reply p50/p95/p99`: the server's `reply_latency` events (ms from the end of the
  caller's trailing-silence window to the reply's first frame on the socket, logged by
  hotline/dialogue/session.py) whose time falls inside the step.
- `v2v p50/p95`: voice-to-voice latency measured in the client: from the last frame of a
  scripted utterance sent to the first frame of reply audio received (includes the server's
  end-of-turn silence window, HOTLINE_END_SILENCE_MS, 600 ms by default), for utterances ended
  inside the step.
- `lag p50/p95`: recogniser lag, the `asr_ms` of the same reply_latency events: from the end of
  the caller's turn until the final transcript is ready. A recogniser that keeps up needs only
  its final pass (tens of ms); one that falls behind must first decode the backlog of audio
  queued on the call's ASR thread, and that shows here. (The server exposes no other lag
  figure; this one comes from the session's own timing.)
- `cpu%`: server CPU (hotline + its Rasa child) as a share of all cores (os.cpu_count()), over
  the step; `cli%`: this client's, likewise (it competes for the same cores); `rssMiB`: the
  peak of the server's and Rasa's summed RSS during the step.
- `gap95`: p95 over the calls of the longest wait between two audio frames of one prompt
  (ReplayResult.max_audio_gap_ms): the bot stalling mid-sentence. A stall of 300 ms or more
  also makes the stand-in take the prompt as finished and speak over the rest of it.
- `cut`: scripted utterances the server cut off, over those of the step's completed calls.
  Method: every scripted speech turn's span on the call's timeline is known on the client
  (SpokenTurn.start_ms/end_ms: 20 ms per media frame sent); the server's timeline for the
  same call is its count of inbound frames, and it stores each caller turn it heard in the
  `turns` table (speaker='caller', kind='speech', start_ms/end_ms). A server turn is matched to
  the utterances it overlaps (within 300 ms, the detector's pre-roll and frame granularity).
  An utterance matched by two or more server turns was split; a server turn matched by two or
  more utterances merged them; both count as cut. `miss` counts utterances no server turn
  covered (spoken while the hotline was not listening, e.g. after it hung up). Utterances
  inside a voice message (kind='message', one turn by design) are not counted.
- `spec%`: of the replies whose turn had a speculative parse (the partial transcript understood
  while the end of the turn was decided), the share where the final transcript said the same,
  so that parse was used; `rsm`: replies to a sentence the caller went on with after a pause
  (two parts understood as one, HOTLINE_TURN_RESUME_MS).

After the ramp: `capacity_p95_500ms: N`, the largest step whose p95 reply latency was at most
500 ms (0 if none), on a line of its own for scripts. `--sync N` adds the synchronized worst
case of bench/calls.py (N identical calls all speaking at the same moments) as a row `sync N`.
`--repeat K` repeats ramp and sync K times on the same server and prints each cell's median and
min-max spread (capacity: the lower median of the runs' capacities). `--turn smart|silence` sets
HOTLINE_TURN for the server.

    .venv/bin/python bench/load.py                       # ramp 4,8,16,24,32, ~9 min
    .venv/bin/python bench/load.py --steps 2 --step-seconds 20 --call-seconds 40   # smoke
    .venv/bin/python bench/load.py --sync 16 --repeat 3 --turn silence

The client (this process, up to ~1600 WebSocket messages a second at 32 calls) runs on the
same cores as the server: run it on an otherwise quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calls import UTTERANCES  # noqa: E402
from common import pct, proc_stats, reply_latency_events, server_env  # noqa: E402

from hotline.audio import pcm16_to_ulaw  # noqa: E402
from hotline.recordings import _espeak  # noqa: E402
from hotline.replay import Recording, ReplayResult  # noqa: E402
from tests.servers import HotlineServer  # noqa: E402

# Caller scripts: what residents of Quảng Trị say, in the order the main flow asks for it.
SCRIPTS: dict[str, list[str]] = {
    "power_cut": [
        "dạ alô, cho tui phản ánh chút, nhà tui với mấy nhà trong xóm bị mất điện từ sáng "
        "tới chừ, gọi điện lực mấy lần mà chưa thấy ai tới sửa hết, trời thì nắng nóng quá",
        "dạ ở thôn an hưng, xã triệu phong, gần chợ đó",
        "đúng rồi",
        "dạ không, rứa thôi, cảm ơn nghe, chào",
    ],
    "flooded_road": [
        "đường vô thôn tui bị ngập nước sâu lắm, tới đầu gối, xe máy chạy không được, "
        "học sinh đi học phải lội nước, nhờ mấy anh xem lại cái cống giùm",
        "ở thôn ba lòng, xã hải lăng, đoạn gần trường tiểu học",
        "đúng rồi đúng rồi",
        "thôi cảm ơn, chào anh",
    ],
    "rubbish": [
        "có đống rác to lắm ai đổ ở đầu cầu, bốc mùi hôi thối mấy ngày nay rồi, ruồi muỗi "
        "nhiều lắm, mấy nhà gần đó chịu không nổi",
        "ở khu phố hai, phường đông hà, chỗ đầu cầu sông hiếu",
        "đúng rồi",
        "dạ cảm ơn nghe",
    ],
    "street_light": [
        "đèn đường ở ngã ba chợ bị hư cả tuần nay rồi, tối đi lại tối om nguy hiểm lắm, "
        "hôm qua có người đi xe máy té ở đó",
        "thôn cam thành, xã cam lộ",
        "dạ đúng",
        "không, rứa thôi, cảm ơn",
    ],
    "birth_certificate": [
        "dạ cho tui hỏi, con tui mới sinh, giờ muốn làm giấy khai sinh cho cháu thì cần "
        "những giấy tờ chi, làm ở mô",
        "dạ, rứa là làm ở ủy ban xã phải không, có mất tiền không",
        "rứa là được rồi, cảm ơn nghe",
    ],
}
# Voices and rates: callers of the Central and Southern dialects, some of them slow.
VOICES = [
    ("vi-vn-x-central", 125),
    ("vi-vn-x-south", 135),
    ("vi-vn-x-central+f3", 120),
    ("vi", 140),
]
GAP = np.zeros(4000, np.int16)  # 0.5 s between utterances in the recording (never sent)
TICK_S = 0.05  # arrival draws
SAMPLE_S = 0.5  # concurrency and RSS samples
MATCH_SLACK_MS = 300  # server turn vs scripted utterance
CAPACITY_P95_MS = 500.0


def _trim(pcm: np.ndarray, floor: int = 200) -> np.ndarray:
    """Cut espeak-ng's leading and trailing near-silence, so an utterance's last frame sent is
    the end of the speech itself."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > floor)
    return pcm[loud[0] : loud[-1] + 1] if loud.size else pcm


@dataclass
class Script:
    name: str
    voice: str
    ulaw: bytes
    spans: list[tuple[float, float, str]]  # (at, end, text) in the recording

    @property
    def speech_s(self) -> float:
        return sum(end - at for at, end, _ in self.spans)

    def recording(self, tmp: Path, rng: random.Random) -> Recording:
        # A fresh sidecar per call: each caller takes their own time to answer.
        turns: list[dict[str, Any]] = [
            {"at": at, "end": end, "text": text, "pause": round(rng.uniform(0.3, 1.2), 2)}
            for at, end, text in self.spans
        ]
        turns.append({"hangup": True, "pause": 0.3})
        return Recording(tmp / f"{self.name}.wav", self.ulaw, {"turns": turns})


def render(name: str, lines: list[str], voice: str, rate: int) -> Script:
    pieces, spans, pos = [GAP], [], len(GAP) / 8000
    for text in lines:
        audio = _trim(_espeak(text, voice, rate))
        spans.append((pos, pos + len(audio) / 8000, text))
        pieces += [audio, GAP]
        pos += (len(audio) + len(GAP)) / 8000
    return Script(name, voice, pcm16_to_ulaw(np.concatenate(pieces)), spans)


def build_scripts() -> list[Script]:
    return [
        render(name, lines, voice, rate)
        for name, lines in SCRIPTS.items()
        for voice, rate in VOICES
    ]


def sync_call(tmp: Path) -> Recording:
    """bench/calls.py's call (its utterances and voice, the 0.5 s pause before each), with
    espeak-ng's trailing near-silence trimmed like the scripts' so voice-to-voice latency is
    measured from the end of speech in both: every caller gets the same sidecar, so all speak
    at the same moments."""
    script = render("sync", UTTERANCES, "vi-vn-x-south", 145)
    turns: list[dict[str, Any]] = [{"at": a, "end": e, "text": t} for a, e, t in script.spans]
    turns.append({"hangup": True})
    return Recording(tmp / "sync.wav", script.ulaw, {"turns": turns})


@dataclass
class Placed:
    step: str
    script: Script | None
    start: float  # monotonic
    end: float | None = None
    result: ReplayResult | None = None
    error: str | None = None


@dataclass
class Window:
    label: str
    n: int
    mono: tuple[float, float] = (0.0, 0.0)
    epoch: tuple[float, float] = (0.0, 0.0)
    cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    rss_peak: float = 0.0
    conc: list[int] = field(default_factory=list)
    calls: list[Placed] = field(default_factory=list)


class Load:
    def __init__(self, server: HotlineServer, scripts: list[Script], tmp: Path, seed: int):
        self.server = server
        self.scripts = scripts
        self.tmp = tmp
        self.rng = random.Random(seed)
        self.client = server.twilio(fast=False)
        self.placed: list[Placed] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.durations: list[float] = []
        self.seq = 0

    @property
    def in_progress(self) -> int:
        return sum(1 for p in self.placed if p.end is None)

    def mean_duration(self, prior: float) -> float:
        # The prior weighs as one call, so a few odd early calls do not swing the rate.
        return (prior + sum(self.durations)) / (1 + len(self.durations))

    async def _place(self, p: Placed, rec: Recording) -> None:
        self.seq += 1
        caller = f"+8491{self.seq:07d}"
        try:
            p.result = await asyncio.wait_for(self.client.call(rec, caller=caller), 600)
            if p.result.errors:
                p.error = "; ".join(p.result.errors[:2])
        except Exception as exc:  # counted as not done, with the reason kept
            p.error = f"{type(exc).__name__}: {exc}"[:200]
        finally:
            p.end = time.monotonic()
            if p.error is None and p.script is not None:
                self.durations.append(p.end - p.start)

    def start_call(self, step: str, script: Script | None, rec: Recording) -> Placed:
        p = Placed(step, script, time.monotonic())
        self.placed.append(p)
        task = asyncio.create_task(self._place(p, rec))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return p

    def overlapping(self, w: Window) -> list[Placed]:
        """The scripted calls in progress at some moment of the step (started before it ended,
        ended after it began): a reply inside the step may belong to a call started earlier."""
        return [
            p
            for p in self.placed
            if p.script is not None
            and p.start <= w.mono[1]
            and (p.end is None or p.end >= w.mono[0])
        ]

    async def sample(self, w: Window, stop: asyncio.Event) -> None:
        pid = self.server.proc.pid  # type: ignore[union-attr]
        while not stop.is_set():
            w.conc.append(self.in_progress)
            w.rss_peak = max(w.rss_peak, proc_stats(pid)[1])
            await asyncio.sleep(SAMPLE_S)

    async def measure(self, w: Window, body: Any) -> None:
        pid = self.server.proc.pid  # type: ignore[union-attr]
        stop = asyncio.Event()
        sampler = asyncio.create_task(self.sample(w, stop))
        cpu0, client0 = proc_stats(pid)[0], time.process_time()
        t0, e0 = time.monotonic(), time.time()
        await body()
        w.mono, w.epoch = (t0, time.monotonic()), (e0, time.time())
        w.cpu_s = proc_stats(pid)[0] - cpu0
        w.client_cpu_s = time.process_time() - client0
        stop.set()
        await sampler

    async def step(self, n: int, seconds: float, prior_w: float) -> Window:
        w = Window(str(n), n)

        async def arrivals() -> None:
            last = time.monotonic()
            end = last + seconds
            while (now := time.monotonic()) < end:
                mean_w = self.mean_duration(prior_w)
                rate = max(0.0, n / mean_w + (n - self.in_progress) / (mean_w / 4))
                # The loop may oversleep under load: the chance covers the time really passed.
                chance = 1 - math.exp(-rate * (now - last))
                last = now
                if self.rng.random() < chance:
                    script = self.rng.choice(self.scripts)
                    w.calls.append(
                        self.start_call(w.label, script, script.recording(self.tmp, self.rng))
                    )
                await asyncio.sleep(TICK_S)

        await self.measure(w, arrivals)
        return w

    async def drain(self, timeout: float = 600) -> None:
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=timeout)

    async def sync(self, n: int, rec: Recording) -> Window:
        w = Window(f"sync {n}", n)

        async def together() -> None:
            w.calls = [self.start_call(w.label, None, rec) for _ in range(n)]
            await self.drain()

        await self.measure(w, together)
        return w


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def cut_offs(db: Any, calls: list[Placed]) -> tuple[int, int, int]:
    """(utterances, cut: split or merged, missed) over these calls; see the module docstring."""
    total = cut = missed = 0
    for p in calls:
        if p.result is None or p.error:
            continue
        spoken = p.result.spoken
        rows = list(
            db.query(
                "SELECT kind, start_ms, end_ms FROM turns WHERE call_sid = ? "
                "AND speaker = 'caller' AND kind IN ('speech', 'message') "
                "AND start_ms IS NOT NULL AND end_ms IS NOT NULL",
                [p.result.call_sid],
            )
        )

        def overlaps(r: dict[str, Any], s: Any) -> bool:
            return (
                r["start_ms"] < s.end_ms + MATCH_SLACK_MS
                and r["end_ms"] > s.start_ms - MATCH_SLACK_MS
            )

        in_message = [any(r["kind"] == "message" and overlaps(r, s) for r in rows) for s in spoken]
        speech = [r for r in rows if r["kind"] == "speech"]
        merged = set()
        for r in speech:
            hit = [k for k, s in enumerate(spoken) if overlaps(r, s)]
            if len(hit) >= 2:
                merged.update(hit)
        for k, s in enumerate(spoken):
            if in_message[k]:
                continue
            total += 1
            n = sum(1 for r in speech if overlaps(r, s))
            if n >= 2 or k in merged:
                cut += 1
            elif n == 0:
                missed += 1
    return total, cut, missed


def row(load: Load, w: Window, by_time: bool) -> dict[str, Any]:
    """One table row. Ramp steps take the replies that happened inside the step (by_time);
    the synchronized case takes every reply of its calls."""
    db = load.server.db()
    calls = w.calls
    done = [p for p in calls if p.result is not None and not p.error]
    if by_time:
        sids = [p.result.call_sid for p in load.overlapping(w) if p.result is not None]
        events = [
            e for e in reply_latency_events(db, sids) if w.epoch[0] <= _epoch(e["at"]) <= w.epoch[1]
        ]
        turn_calls = load.overlapping(w)
    else:
        events = reply_latency_events(db, [p.result.call_sid for p in done])  # type: ignore[union-attr]
        turn_calls = done
    lat = [float(e["ms"]) for e in events]
    lag = [float(e["asr_ms"]) for e in events if "asr_ms" in e]
    spec = [int(e["nlu_speculative"]) for e in events if "nlu_speculative" in e]
    resumed = sum(1 for e in events if e.get("resumed"))
    v2v = []
    for p in turn_calls:
        if p.result is None:
            continue
        for end, reply in p.result.turn_timings():
            if reply is not None and (not by_time or w.mono[0] <= end <= w.mono[1]):
                v2v.append((reply - end) * 1000)
    gaps = [p.result.max_audio_gap_ms() for p in turn_calls if p.result is not None]
    utt, cut, missed = cut_offs(db, done)
    # What the callers really said: a call the hotline ended early did not play its whole script.
    speech = sum(
        (t.end_ms - t.start_ms) / 1000
        for p in done
        if p.script is not None and p.result is not None
        for t in p.result.spoken
    )
    dur = sum((p.end or 0) - p.start for p in done if p.script is not None)
    elapsed = w.mono[1] - w.mono[0]
    cores = os.cpu_count() or 1
    return {
        "step": w.label,
        "started": len(calls),
        "done": len(done),
        "conc": statistics.mean(w.conc) if w.conc else float("nan"),
        "replies": len(lat),
        "p50": pct(lat, 50),
        "p95": pct(lat, 95),
        "p99": pct(lat, 99),
        "v2v50": pct(v2v, 50),
        "v2v95": pct(v2v, 95),
        "lag50": pct(lag, 50),
        "lag95": pct(lag, 95),
        "cpu": 100 * w.cpu_s / (elapsed * cores) if elapsed else float("nan"),
        "cli": 100 * w.client_cpu_s / (elapsed * cores) if elapsed else float("nan"),
        "rss": w.rss_peak,
        "gap95": pct(gaps, 95),
        "cut": cut,
        "utt": utt,
        "miss": missed,
        "talk": 100 * speech / dur if dur else float("nan"),
        "spec": 100 * sum(spec) / len(spec) if spec else float("nan"),
        "resumed": resumed,
        "errors": sorted({p.error for p in calls if p.error}),
    }


COLUMNS = [
    ("step", "{:>8}", "{}"),
    ("started", "{:>7}", "{}"),
    ("done", "{:>5}", "{}"),
    ("conc", "{:>5}", "{:.1f}"),
    ("replies", "{:>7}", "{}"),
    ("p50", "{:>6}", "{:.0f}"),
    ("p95", "{:>6}", "{:.0f}"),
    ("p99", "{:>6}", "{:.0f}"),
    ("v2v50", "{:>6}", "{:.0f}"),
    ("v2v95", "{:>6}", "{:.0f}"),
    ("lag50", "{:>6}", "{:.0f}"),
    ("lag95", "{:>6}", "{:.0f}"),
    ("cpu", "{:>5}", "{:.0f}"),
    ("cli", "{:>4}", "{:.0f}"),
    ("rss", "{:>6}", "{:.0f}"),
    ("gap95", "{:>6}", "{:.0f}"),
    ("cut", "{:>4}", "{}"),
    ("utt", "{:>4}", "{}"),
    ("miss", "{:>4}", "{}"),
    ("talk", "{:>5}", "{:.0f}"),
    ("spec", "{:>5}", "{:.0f}"),
    ("resumed", "{:>4}", "{}"),
]
HEADER = {
    "p50": "rp50",
    "p95": "rp95",
    "p99": "rp99",
    "cpu": "cpu%",
    "cli": "cli%",
    "rss": "rssMiB",
    "talk": "talk%",
    "spec": "spec%",
    "resumed": "rsm",
}


def header() -> str:
    return " ".join(w.format(HEADER.get(k, k)) for k, w, _ in COLUMNS)


def format_row(r: dict[str, Any]) -> str:
    line = " ".join(w.format(f.format(r[k])) for k, w, f in COLUMNS)
    if r["errors"]:
        line += "  errors: " + " | ".join(r["errors"][:3])
    return line


def spread(runs: list[list[dict[str, Any]]]) -> str:
    """Each cell as 'median [min-max]' over the repeats, one line per column, one column per
    step (the cells are too wide for the per-run layout)."""
    steps = [r["step"] for r in runs[0]]
    lines = [f"{'':>8}" + "".join(f"{st:>20}" for st in steps)]
    for key, _, fmt in COLUMNS[1:]:
        cells = []
        for i in range(len(steps)):
            vals = [run[i][key] for run in runs if run[i][key] == run[i][key]]  # drop NaN
            if not vals:
                cells.append("nan")
                continue
            med, lo, hi = statistics.median(vals), min(vals), max(vals)
            ends = "{:.0f}" if fmt == "{}" else fmt  # a count: whole numbers
            mid = "{:.1f}" if fmt == "{}" and med != int(med) else ends  # unless between two
            cell = mid.format(med)
            if lo != hi:
                cell += f" [{ends.format(lo)}-{ends.format(hi)}]"
            cells.append(cell)
        lines.append(f"{HEADER.get(key, key):>8}" + "".join(f"{c:>20}" for c in cells))
    return "\n".join(lines)


def capacity(rows: list[dict[str, Any]]) -> int:
    ok = [int(r["step"]) for r in rows if r["step"].isdigit() and r["p95"] <= CAPACITY_P95_MS]
    return max(ok, default=0)


async def run_once(
    server: HotlineServer,
    scripts: list[Script],
    tmp: Path,
    args: argparse.Namespace,
    prior_w: float,
    seed: int,
) -> list[dict[str, Any]]:
    load = Load(server, scripts, tmp, seed)
    rows = []
    print(header(), flush=True)
    windows = []
    for n in [int(x) for x in args.steps.split(",")]:
        w = await load.step(n, args.step_seconds, prior_w)
        windows.append(w)
        rows.append(row(load, w, by_time=True))
        print(format_row(rows[-1]), flush=True)
    await load.drain()
    # Re-read now that every call has finished: done, cut-offs and talk time are final.
    rows = [row(load, w, by_time=True) for w in windows]
    if args.sync:
        w = await load.sync(args.sync, sync_call(tmp))
        rows.append(row(load, w, by_time=False))
    print("after all calls ended:")
    print(header())
    for r in rows:
        print(format_row(r))
    mean_w = load.mean_duration(prior_w)
    print(f"mean call duration {mean_w:.1f} s; capacity of this run: {capacity(rows)}", flush=True)
    return rows


async def calibrate(server: HotlineServer, scripts: list[Script], tmp: Path) -> float:
    """One call alone (also warms the prompt cache and Rasa): its duration seeds W."""
    load = Load(server, scripts, tmp, 0)
    p = load.start_call("warm-up", scripts[0], scripts[0].recording(tmp, random.Random(0)))
    await load.drain()
    if p.error or p.end is None:
        raise SystemExit(f"warm-up call failed: {p.error}")
    return p.end - p.start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", default="4,8,16,24,32", help="target concurrencies")
    ap.add_argument(
        "--step-seconds",
        type=float,
        default=100.0,
        help="seconds of arrivals per step (default 100: a ramp of 5 steps takes ~9 min)",
    )
    ap.add_argument(
        "--call-seconds",
        type=float,
        default=0.0,
        help="mean call duration W (0: measure with one warm-up call)",
    )
    ap.add_argument("--sync", type=int, default=0, help="also N synchronized callers")
    ap.add_argument("--repeat", type=int, default=1, help="runs, for median and spread")
    ap.add_argument("--turn", choices=["smart", "silence"], default=None, help="HOTLINE_TURN")
    ap.add_argument("--asr", default="vietasr")
    ap.add_argument("--seed", type=int, default=12, help="arrivals and scripts (run k: seed+k)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-load-"))
    t0 = time.monotonic()
    scripts = build_scripts()
    talk = statistics.mean(s.speech_s for s in scripts)
    print(
        f"{len(scripts)} caller scripts ({len(SCRIPTS)} texts x {len(VOICES)} voices), "
        f"{talk:.1f} s of speech each on average, rendered in {time.monotonic() - t0:.1f} s"
    )
    env = server_env(args.asr)
    if args.turn:
        env["HOTLINE_TURN"] = args.turn
    server = HotlineServer(tmp / "data", env).start()
    try:
        server.wait_for_nlu()
        prior_w = args.call_seconds or asyncio.run(calibrate(server, scripts, tmp))
        print(f"call duration for Little's law: {prior_w:.1f} s (updated as calls complete)")
        runs = []
        for k in range(args.repeat):
            if args.repeat > 1:
                print(f"--- run {k + 1} of {args.repeat}")
            runs.append(asyncio.run(run_once(server, scripts, tmp, args, prior_w, args.seed + k)))
        caps = [capacity(rows) for rows in runs]
        if args.repeat > 1:
            print(f"--- median [min-max] over {args.repeat} runs")
            print(spread(runs))
            print(f"capacity per run: {caps}")
        # The lower median: with an even number of runs it is still a step that was measured.
        print(f"capacity_p95_500ms: {statistics.median_low(caps)}")
    finally:
        server.stop()
        print(f"server log: {server.log_path}")


if __name__ == "__main__":
    main()
