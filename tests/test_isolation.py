"""One stream never hurts another (issue 10, "One stream freezes every call").

Each hostile stream from the audit runs in its own process (so its sending cannot stall the
test's own client) beside a normal call replayed through the Twilio stand-in. The normal call
must sound the same: its outcome and path unchanged, and no prompt stalling for more than
100 ms. The hostile stream must be closed with the reason on its record, having cost a
bounded amount of disk, log and database.
"""

from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing
import os
import secrets
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from hotline.replay import Recording, ReplayResult, parse_connect_stream
from hotline.telephony.signature import SIGNATURE_HEADER, sign
from tests.servers import ROOT, HotlineServer

NORMAL = ROOT / "recordings" / "ticket_status_keypad.wav"
MAX_GAP_MS = 100.0
SILENCE = base64.b64encode(bytes([0xFF]) * 160).decode()


# --- the hostile clients (run in a child process) ----------------------------------------------


def _media(seq: int, payload: str, timestamp: int) -> str:
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": str(seq),
            "media": {"track": "inbound", "timestamp": str(timestamp), "payload": payload},
        }
    )


async def _hostile(kind: str, url: str, public_url: str, token: str) -> dict[str, Any]:
    call_sid = "CA" + secrets.token_hex(16)
    stream_sid = "MZ" + secrets.token_hex(16)
    params: dict[str, str] = {}
    if kind != "flood_before_start":
        form = {
            "CallSid": call_sid,
            "AccountSid": "AC" + "1" * 32,
            "From": "+84905666777",
            "To": "+841900868674",
            "CallStatus": "ringing",
        }
        async with httpx.AsyncClient() as client:
            r = await client.post(
                url + "/twilio/voice",
                data=form,
                headers={SIGNATURE_HEADER: sign(token, public_url + "/twilio/voice", form)},
            )
        params = parse_connect_stream(r.text)[1]
    stream_url = public_url.replace("https://", "wss://") + "/twilio/media"
    ws_url = url.replace("http://", "ws://") + "/twilio/media"
    sent = 0
    closed: int | None = None
    async with websockets.connect(
        ws_url, additional_headers={SIGNATURE_HEADER: sign(token, stream_url, {})}
    ) as ws:
        try:
            await ws.send(json.dumps({"event": "connected", "protocol": "Call"}))
            if kind != "flood_before_start":
                await ws.send(
                    json.dumps(
                        {
                            "event": "start",
                            "sequenceNumber": "1",
                            "start": {
                                "callSid": call_sid,
                                "streamSid": stream_sid,
                                "accountSid": "AC" + "1" * 32,
                                "customParameters": params,
                            },
                        }
                    )
                )
            if kind == "timestamp_jump":
                # 300 bytes of audio stamped ten hours into the call, then the call goes on.
                payload = base64.b64encode(bytes([0xFF]) * 300).decode()
                await ws.send(_media(2, payload, 10 * 3600 * 1000))
                for i in range(100):
                    await ws.send(_media(3 + i, SILENCE, 10 * 3600 * 1000 + 20 * (i + 1)))
                    await asyncio.sleep(0.002)
                sent = 101
                await ws.send(json.dumps({"event": "stop", "sequenceNumber": "200"}))
            elif kind == "huge_payload":
                payload = base64.b64encode(secrets.token_bytes(10 * 1024 * 1024)).decode()
                await ws.send(_media(2, payload, 0))
                sent = 1
            elif kind == "empty_messages":
                for _ in range(100_000):
                    await ws.send("")
                    sent += 1
            elif kind == "flood_before_start":
                for i in range(100_000):
                    await ws.send(_media(i + 2, SILENCE, i * 20))
                    sent += 1
            async with asyncio.timeout(15):
                async for _ in ws:
                    pass
        except websockets.ConnectionClosed:
            pass
        closed = ws.close_code
    return {"call_sid": call_sid, "sent": sent, "close_code": closed}


def hostile_main(kind: str, url: str, public_url: str, token: str) -> dict[str, Any]:
    # A real attacker's CPU is not ours: on this shared machine the hostile client gets only
    # what the server and the normal call leave (what is measured is the server's work).
    os.nice(19 - os.nice(0))
    return asyncio.run(_hostile(kind, url, public_url, token))


# --- the tests ------------------------------------------------------------------------------------


def _normal_call(server: HotlineServer) -> ReplayResult:
    return asyncio.run(server.replay(Recording.load(NORMAL)))


@pytest.fixture(scope="module")
def baseline(plain_server: HotlineServer) -> dict[str, Any]:
    result = _normal_call(plain_server)
    summary = result.summary()
    return {
        "outcome": summary["outcome"],
        "path": summary["path"],
        "gap": result.max_audio_gap_ms(),
    }


@pytest.fixture(scope="module")
def pool() -> Any:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as executor:
        executor.submit(sum, [1]).result()  # the child is up before any timing starts
        yield executor


def call_row(server: HotlineServer, call_sid: str) -> dict[str, Any] | None:
    db = server.db()
    try:
        rows = list(db.query("SELECT * FROM calls WHERE call_sid = ?", [call_sid]))
        return rows[0] if rows else None
    finally:
        db.conn.close()


def event_rows(server: HotlineServer, call_sid: str) -> list[dict[str, Any]]:
    db = server.db()
    try:
        return list(db.query("SELECT * FROM events WHERE call_sid = ?", [call_sid]))
    finally:
        db.conn.close()


@pytest.mark.parametrize(
    "kind", ["timestamp_jump", "huge_payload", "empty_messages", "flood_before_start"]
)
def test_a_hostile_stream_leaves_a_normal_call_alone(
    plain_server: HotlineServer, baseline: dict[str, Any], pool: Any, kind: str
) -> None:
    # The machine's own noise, measured now: on a loaded machine (2 cores shared with other
    # work) a lone call can already stall for tens of ms; then the bound is 4x what it showed
    # (at most 1 s). A stall caused by the hostile stream happens every time (before the fix,
    # a 4 s freeze each run); one caused by the machine's other work does not: a pair that
    # misses the bound is run once more, and both runs must miss it to fail.
    alone = max(_normal_call(plain_server).max_audio_gap_ms() for _ in range(2))
    bound = MAX_GAP_MS if alone < MAX_GAP_MS / 2 else min(4 * alone, 1000.0)
    log_before = len(plain_server.log().splitlines())

    async def both() -> tuple[ReplayResult, dict[str, Any]]:
        normal = asyncio.create_task(plain_server.replay(Recording.load(NORMAL)))
        await asyncio.sleep(0.8)  # the greeting is playing
        loop = asyncio.get_running_loop()
        args = (kind, plain_server.url, plain_server.public_url, plain_server.auth_token)
        hostile = await loop.run_in_executor(pool, hostile_main, *args)
        return await normal, hostile

    gaps = []
    for _ in range(2):
        normal, hostile = asyncio.run(both())
        summary = normal.summary()
        assert (summary["outcome"], summary["path"]) == (baseline["outcome"], baseline["path"])
        gaps.append(normal.max_audio_gap_ms())
        if gaps[-1] < bound:
            break
    print(f"{kind}: normal call's longest stall {gaps} ms (alone just before: {alone:.0f} ms)")
    assert min(gaps) < bound, (kind, gaps, alone)

    log = plain_server.log().splitlines()[log_before:]
    assert len(log) < 60, "\n".join(log[-20:])  # bounded logging, whatever was sent
    sid = hostile["call_sid"]
    row = call_row(plain_server, sid)
    events = event_rows(plain_server, sid)
    assert len(events) < 20
    if kind == "timestamp_jump":
        assert row["hangup_reason"] == "stop"
        assert row["duration_s"] < 10  # not ten hours of silence
        assert Path(row["recording_path"]).stat().st_size < 200_000
        jumps = [e for e in events if e["kind"] == "timestamp_jump"]
        assert jumps and json.loads(jumps[0]["detail"])["jump_ms"] > 3600_000
    elif kind == "huge_payload":
        assert hostile["close_code"] != 1000
        assert row["hangup_reason"] == "message_too_large"
        assert any(e["kind"] == "stream_limit" for e in events)
    elif kind == "empty_messages":
        assert hostile["close_code"] != 1000
        assert row["hangup_reason"] == "too_many_errors"
        counted = sum(
            json.loads(e["detail"]).get("count", 0) for e in events if e["kind"] == "protocol_error"
        )
        assert 1 <= counted <= 60
    else:
        assert hostile["close_code"] != 1000
        assert row is None
        assert sum("before start" in line for line in log) <= 2


if __name__ == "__main__":  # a hostile client by hand: KIND URL PUBLIC_URL TOKEN
    print(hostile_main(*sys.argv[1:5]))


async def test_a_message_flood_is_closed_at_the_rate_limit(plain_server: HotlineServer) -> None:
    """Cheap messages (marks) as fast as a client can send them: closed past 2000 a second."""
    from tests.test_telephony import connect_stream, new_sid, ring

    sid, stream = new_sid(), "MZ" + secrets.token_hex(16)
    ws = await connect_stream(plain_server, sid, stream, await ring(plain_server, sid))
    mark = json.dumps({"event": "mark", "streamSid": stream, "mark": {"name": "x"}})
    try:
        for _ in range(50_000):
            await ws.send(mark)
    except websockets.ConnectionClosed:
        pass
    await ws.close()
    for _ in range(50):
        row = call_row(plain_server, sid)
        if row and row.get("ended_at"):
            break
        await asyncio.sleep(0.1)
    assert row["hangup_reason"] == "message_rate"


def test_throttle_reports_once_a_second_with_a_count() -> None:
    from hotline.logs import Throttle

    now = [0.0]
    t = Throttle(1.0, clock=lambda: now[0])
    assert t.hit("e") == 1
    assert [t.hit("e") for _ in range(99)] == [None] * 99
    assert t.hit("other") == 1
    now[0] = 1.0
    assert t.hit("e") == 100  # this one and the 99 held back
    assert t.hit("e") is None
    assert t.pending() == {"e": 1} and t.pending() == {}
    # Made-up keys (one per forged call id) do not accumulate.
    for i in range(10_000):
        now[0] = 2.0 + i
        t.hit(("refused", i))
    assert len(t._last) <= Throttle.MAX_KEYS + 1
