"""kill -9 of `hotline serve` during calls: no confirmed report lost, calls closed on restart.

One data directory, one port, one shared Rasa (the session server). Each cycle starts the
hotline, places report calls with the Twilio stand-in and SIGKILLs the server: at a random
moment, in the window where the caller has confirmed and the ticket is being written, or just
as the code is being read out. After each restart (which runs hotline.recovery) the test checks
that every caller who heard any of a code has a confirmed ticket with that call's id in the
database, that no call is left `in-progress`, that interrupted calls have repaired WAV headers
and a stereo mix, and that SQLite's integrity check passes.

Also here: the recovery functions on their own (a torn WAV header, a ringing call swept).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hotline.audio import write_wav
from hotline.calls import upsert_call
from hotline.recovery import recover_interrupted, repair_wav_header, sweep_ringing
from hotline.store import open_db
from tests.conftest import base_env
from tests.fault_calls import ObservedStandIn, report_recording, told_a_code
from tests.servers import HotlineServer, TwilioRestStandIn

pytestmark = pytest.mark.nlu

KILLS = int(os.environ.get("HOTLINE_TEST_KILLS", "30"))
LANES = 3
CALLS_PER_CYCLE = 2


def _wav_frames_header(path: Path) -> int:
    with wave.open(str(path)) as w:
        return w.getnframes()


def _check_after_restart(server: HotlineServer, results: list, stats: dict) -> None:
    db = server.db()
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        left = db.execute("SELECT count(*) FROM calls WHERE status = 'in-progress'").fetchone()[0]
        assert left == 0, "a call is still in progress after the restart"
        for result in results:
            sid = result.call_sid
            call = next(iter(db.query("SELECT * FROM calls WHERE call_sid = ?", [sid])), None)
            assert call is not None, f"call {sid} had a webhook but has no record"
            if told_a_code(result):
                stats["told"] += 1
                rows = list(
                    db.query("SELECT code FROM tickets WHERE call_sid = ? AND confirmed = 1", [sid])
                )
                assert rows, f"call {sid}: the caller heard a code but no ticket is on disk"
                assert call["ticket_code"] == rows[0]["code"]
            if call["status"] == "interrupted":
                stats["interrupted"] += 1
                caller = Path(call["recording_path"])
                frames = _wav_frames_header(caller)
                assert frames * 2 + 44 == caller.stat().st_size, "WAV header not repaired"
                assert call["duration_s"] == round(frames / 8000, 2)
                mixed = Path(call["mixed_recording_path"])
                with wave.open(str(mixed)) as w:
                    assert w.getnchannels() == 2 and w.getnframes() >= frames
                assert call["ended_at"] and call["outcome"]
    finally:
        db.conn.close()


async def _cycle(server: HotlineServer, rec, mode: str, rng: random.Random) -> list:
    pid = server.proc.pid
    loop = asyncio.get_running_loop()
    killed = asyncio.Event()

    def kill() -> None:
        if not killed.is_set():
            killed.set()
            os.kill(pid, signal.SIGKILL)

    def on_mark(_sid: str, name: str) -> None:
        label = name.split("-", 1)[-1]
        if mode == "commit" and label == "confirm_report":
            # The caller presses 1 about 0.5-1 s after this mark: kill around the ticket write.
            loop.call_later(rng.uniform(0.3, 1.6), kill)
        elif mode == "code" and label in ("confirm_report",):
            loop.call_later(rng.uniform(0.8, 2.5), kill)

    standin = ObservedStandIn(
        server.url, server.auth_token, public_url=server.public_url, fast=True, on_mark=on_mark
    )
    if mode == "random":
        loop.call_later(rng.uniform(0.2, 8.0), kill)
    loop.call_later(20.0, kill)  # whatever happens, this cycle ends with a kill

    async def one(delay: float):
        await asyncio.sleep(delay)
        if killed.is_set():
            return None
        return await standin.observed_call(rec)

    results = await asyncio.wait_for(
        asyncio.gather(*(one(i * rng.uniform(0.1, 0.6)) for i in range(CALLS_PER_CYCLE))), 60
    )
    kill()
    return [r for r in results if r is not None]


def _lane(lane: int, kills: int, data_dir: Path, env: dict[str, str], rec) -> dict:
    """One hotline, killed `kills` times; returns what it saw."""
    server = HotlineServer(data_dir, env)
    rng = random.Random(20261207 + lane)
    stats = {"told": 0, "interrupted": 0, "kills": 0, "recovered": 0}
    previous: list = []
    try:
        for i in range(kills):
            server.start()
            _check_after_restart(server, previous, stats)
            mode = ("random", "commit", "code")[(i + lane) % 3]
            previous = asyncio.run(_cycle(server, rec, mode, rng))
            server.proc.wait(10)
            assert server.proc.returncode == -signal.SIGKILL
            stats["kills"] += 1
        server.start()
        _check_after_restart(server, previous, stats)
    finally:
        server.stop()
    stats["recovered"] = server.log().count("recovered after a crash")
    return stats


def test_sigkill_during_calls_loses_no_confirmed_ticket(
    tmp_path: Path, nlu_env: dict[str, str], twilio_rest: TwilioRestStandIn
) -> None:
    sidecars = tmp_path / "sidecars"
    rec = report_recording(sidecars)
    env = base_env(twilio_rest) | nlu_env | {"HOTLINE_SIDECAR_DIR": str(sidecars)}
    t0 = time.monotonic()
    # Three hotlines side by side (own data directory and port), so the 30 kills fit in a few
    # minutes: most of a cycle is a process starting.
    with ThreadPoolExecutor(LANES) as pool:
        futures = [
            pool.submit(_lane, i, KILLS // LANES, tmp_path / f"data{i}", env, rec)
            for i in range(LANES)
        ]
        lanes = [f.result() for f in futures]
    stats = {k: sum(s[k] for s in lanes) for k in lanes[0]}
    print(f"\nSIGKILL harness: {stats} in {time.monotonic() - t0:.0f} s")
    assert stats["kills"] >= 30 or stats["kills"] == KILLS // LANES * LANES
    # The harness must have hit the windows it is about, not only quiet moments.
    assert stats["told"] >= stats["kills"] // 6, stats
    assert stats["interrupted"] >= stats["kills"], stats
    assert stats["recovered"] >= stats["kills"] - LANES, stats


# --- the recovery functions on their own -------------------------------------------------------


def test_torn_wav_header_is_repaired(tmp_path: Path) -> None:
    path = tmp_path / "x.caller.wav"
    pcm = (b"\x01\x02" * 8000) * 45  # 45 s
    write_wav(path, pcm[:320])  # the header says 0.02 s
    with path.open("ab") as f:
        f.write(pcm[320:] + b"\x07")  # and a torn last sample
    assert _wav_frames_header(path) == 160
    assert repair_wav_header(path) == 45 * 8000
    assert _wav_frames_header(path) == 45 * 8000
    assert path.stat().st_size == 44 + 45 * 16000
    assert repair_wav_header(path) == 45 * 8000  # idempotent
    (tmp_path / "not.wav").write_bytes(b"hello world, no riff here")
    assert repair_wav_header(tmp_path / "not.wav") is None


def test_recovery_closes_interrupted_calls_and_sweeps_ringing(tmp_path: Path) -> None:
    import hotline.schema  # noqa: F401

    db = open_db(tmp_path / "hotline.db")
    rec_dir = tmp_path / "recordings"
    rec_dir.mkdir()
    caller = rec_dir / "CAdead.caller.wav"
    write_wav(caller, b"")
    with caller.open("ab") as f:
        f.write(b"\x10\x00" * 8000 * 3)
    upsert_call(db, "CAdead", status="in-progress", recording_path=str(caller))
    # Killed before the buffered header reached the disk: an empty file.
    (rec_dir / "CAempty.caller.wav").write_bytes(b"")
    upsert_call(db, "CAempty", status="in-progress")
    upsert_call(db, "CAlive", status="completed")
    upsert_call(db, "CAring", status="ringing")
    db.execute("UPDATE calls SET updated_at = '2000-01-01T00:00:00.000Z' WHERE call_sid='CAring'")
    upsert_call(db, "CAnew", status="ringing")
    out = recover_interrupted(db, rec_dir)
    assert sorted(out.interrupted) == ["CAdead", "CAempty"]
    empty = next(iter(db.query("SELECT * FROM calls WHERE call_sid = 'CAempty'")))
    assert empty["duration_s"] == 0.0 and _wav_frames_header(rec_dir / "CAempty.caller.wav") == 0
    with wave.open(empty["mixed_recording_path"]) as w:
        assert (w.getnchannels(), w.getnframes()) == (2, 0)
    row = next(iter(db.query("SELECT * FROM calls WHERE call_sid = 'CAdead'")))
    assert row["status"] == "interrupted" and row["outcome"] == "interrupted"
    assert row["duration_s"] == 3.0 and row["hangup_reason"] == "server_crash"
    with wave.open(row["mixed_recording_path"]) as w:
        assert (w.getnchannels(), w.getnframes()) == (2, 24000)
    assert sweep_ringing(db, 300) == ["CAring"]
    statuses = dict(db.execute("SELECT call_sid, status FROM calls").fetchall())
    assert statuses == {
        "CAdead": "interrupted",
        "CAempty": "interrupted",
        "CAlive": "completed",
        "CAring": "failed",
        "CAnew": "ringing",
    }
    assert recover_interrupted(db, rec_dir).interrupted == []  # nothing twice
