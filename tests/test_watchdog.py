"""The call's wall clock (issue 10, "No watchdog").

A stream that sends `start` and then nothing, or silence without ever echoing a mark, used to
stay in the greeting for as long as the client liked, and calls had no longest duration.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from hotline.replay import Recording
from tests.conftest import base_env
from tests.servers import ROOT, HotlineServer, TwilioRestStandIn, free_port
from tests.test_telephony import call_row, connect_stream, media_msg, new_sid, ring

IDLE_S = 3
MAX_CALL_S = 8


def _server(tmp: Path, twilio_rest: TwilioRestStandIn, **env: str) -> HotlineServer:
    full = base_env(twilio_rest) | {
        "HOTLINE_PUBLIC_URL": "https://hotline.test",
        "HOTLINE_NLU_URL": f"http://127.0.0.1:{free_port()}",
        **env,
    }
    return HotlineServer(tmp, full).start()


@pytest.fixture(scope="module")
def watched(
    tmp_path_factory: pytest.TempPathFactory, twilio_rest: TwilioRestStandIn
) -> Iterator[HotlineServer]:
    server = _server(
        tmp_path_factory.mktemp("watchdog"),
        twilio_rest,
        HOTLINE_NO_INPUT_S="1",
        HOTLINE_STREAM_IDLE_S=str(IDLE_S),
    )
    yield server
    server.stop()


def wait_ended(server: HotlineServer, sid: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    row: dict[str, Any] = {}
    while time.monotonic() < deadline:
        row = call_row(server, sid) or {}
        if row.get("ended_at") and row.get("outcome"):
            return row
        time.sleep(0.2)
    raise AssertionError(f"call {sid} still open after {timeout} s: {row}")


async def test_a_stream_that_sends_start_then_nothing_is_dropped(watched: HotlineServer) -> None:
    sid = new_sid()
    ws = await connect_stream(watched, sid, "MZ" + secrets.token_hex(16), await ring(watched, sid))
    t0 = time.monotonic()
    try:
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(IDLE_S + 10):
                while True:
                    await ws.recv()  # the greeting plays; we never answer anything
        closed_after = time.monotonic() - t0
    finally:
        await ws.close()
    row = await asyncio.to_thread(wait_ended, watched, sid, 10)
    assert row["hangup_reason"] == "dropped"
    assert IDLE_S - 0.5 <= closed_after <= IDLE_S + 5


async def test_silence_without_echoed_marks_still_times_out(watched: HotlineServer) -> None:
    """The client sends silence in real time but never echoes a mark: the no-input clock
    still runs once the prompts must have played, and the call ends the usual way."""
    sid, stream = new_sid(), "MZ" + secrets.token_hex(16)
    ws = await connect_stream(watched, sid, stream, await ring(watched, sid))

    async def ignore_marks() -> None:
        async for _ in ws:  # the line plays the audio; the marks are never echoed
            pass

    reader = asyncio.create_task(ignore_marks())
    seq = 1
    try:
        async with asyncio.timeout(90):
            while True:
                seq += 1
                try:
                    await ws.send(media_msg(seq, stream))
                except websockets.ConnectionClosed:
                    break
                await asyncio.sleep(0.02)
    finally:
        reader.cancel()
        await ws.close()
    row = await asyncio.to_thread(wait_ended, watched, sid, 10)
    assert row["outcome"] == "no_input" and row["hangup_reason"] == "no_input"
    path = json.loads(row["flow_path"])
    assert path[0] == "greeting" and path[-1] == "goodbye_silence"


def test_a_dead_line_ends_as_dropped_and_keeps_the_draft(
    watched: HotlineServer, tmp_path: Path
) -> None:
    """A keypad report whose line goes dead at the confirmation: the draft stays for the
    operators, and the call is marked dropped (not left open)."""
    wav = tmp_path / "dead_line.wav"
    shutil.copy(ROOT / "recordings" / "keypad_only_report.wav", wav)
    (tmp_path / "dead_line.yml").write_text(
        "caller: '+84905000009'\n"
        "turns:\n"
        "- dtmf: '1'\n"
        "- dtmf: '2'\n"
        "- {at: 1.0, end: 4.12, wait: false}\n"
        "- dtmf: '#'\n"
        f"- mute: {IDLE_S + 20}\n",
        encoding="utf-8",
    )
    result = asyncio.run(watched.replay(Recording.load(wav)))
    summary = result.summary()
    assert summary["hangup_reason"] == "dropped", summary
    assert "keypad_confirm" in summary["path"]
    assert summary["ticket"] is None
    assert len(summary["drafts"]) == 1
    assert "đèn đường" in (summary["drafts"][0]["description"] or "")


async def test_a_call_ends_at_the_longest_duration(
    tmp_path: Path, twilio_rest: TwilioRestStandIn
) -> None:
    server = await asyncio.to_thread(
        _server, tmp_path / "short", twilio_rest, HOTLINE_MAX_CALL_S=str(MAX_CALL_S)
    )
    try:
        sid, stream = new_sid(), "MZ" + secrets.token_hex(16)
        ws = await connect_stream(server, sid, stream, await ring(server, sid))
        t0 = time.monotonic()

        async def echo_marks() -> None:
            async for raw in ws:
                msg = json.loads(raw)
                if msg["event"] == "mark":
                    await ws.send(json.dumps({"event": "mark", "mark": msg["mark"]}))

        echo = asyncio.create_task(echo_marks())
        seq = 1
        try:
            async with asyncio.timeout(MAX_CALL_S + 20):
                while not echo.done():
                    seq += 1
                    try:
                        await ws.send(media_msg(seq, stream))
                    except websockets.ConnectionClosed:
                        break
                    await asyncio.sleep(0.02)
        finally:
            echo.cancel()
            await ws.close()
        lasted = time.monotonic() - t0
        row = await asyncio.to_thread(wait_ended, server, sid, 10)
    finally:
        await asyncio.to_thread(server.stop)
    assert row["hangup_reason"] == "max_duration"
    assert MAX_CALL_S - 0.5 <= lasted <= MAX_CALL_S + 5
