"""Streams are bound to their call (issue 10, "Stream security").

Twilio signs the WebSocket handshake over the stream URL alone, so a handshake seen once opens
a socket forever. What must stop an attacker is the per-call credential the signed voice
webhook issues: these tests replay a real handshake and try every way around it.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from hotline.replay import Recording, parse_connect_stream
from hotline.telephony.credentials import PARAMETER, StreamCredentials
from hotline.telephony.signature import SIGNATURE_HEADER, sign
from tests.servers import ROOT, TEST_AUTH_TOKEN, HotlineServer, TwilioRestStandIn
from tests.test_telephony import (
    call_row,
    connect_stream,
    media_msg,
    new_sid,
    post_voice,
    ring,
    voice_form,
)

ATTACKER = "+19005550199"


def credentials(server: HotlineServer, ttl: float = 60.0) -> StreamCredentials:
    """The server's own key (the test reads its secret from the data directory): tokens made
    with it are exactly what the server would issue."""
    secret = (server.data_dir / "console-secret-key").read_text().strip()
    return StreamCredentials(TEST_AUTH_TOKEN, secret, ttl)


def events(server: HotlineServer, call_sid: str) -> list[dict[str, Any]]:
    db = server.db()
    try:
        return list(db.query("SELECT * FROM events WHERE call_sid = ? ORDER BY id", [call_sid]))
    finally:
        db.conn.close()


async def attempt(server: HotlineServer, call_sid: str, params: dict[str, str] | None) -> str:
    """Open a stream with a genuine handshake signature and `params` as customParameters:
    "media" if the server started talking, else how it closed."""
    stream_sid = "MZ" + secrets.token_hex(16)
    ws = await connect_stream(server, call_sid, stream_sid, params)
    try:
        async with asyncio.timeout(10):
            while True:
                msg = json.loads(await ws.recv())
                if msg["event"] == "media":
                    return "media"
    except websockets.ConnectionClosed as exc:
        return f"closed {exc.rcvd.code if exc.rcvd else None}"
    finally:
        await ws.close()


def test_the_handshake_signature_alone_opens_no_call(plain_server: HotlineServer) -> None:
    sid = new_sid()
    params = asyncio.run(ring(plain_server, sid))
    other = new_sid()
    asyncio.run(ring(plain_server, other))
    creds = credentials(plain_server)
    forged = {
        "no credential": {"callSid": sid},
        "another call's credential": {
            "callSid": sid,
            PARAMETER: creds.issue(other),
        },
        "expired": {"callSid": sid, PARAMETER: creds.issue(sid, now=time.time() - 3600)},
        "tampered expiry": {
            "callSid": sid,
            PARAMETER: str(int(time.time()) + 10**6) + "." + params[PARAMETER].split(".")[1],
        },
        "garbage": {"callSid": sid, PARAMETER: "x" * 5000},
    }
    for why, p in forged.items():
        assert asyncio.run(attempt(plain_server, sid, p)) == "closed 1008", why
    row = call_row(plain_server, sid)
    assert row["status"] == "ringing" and not row["stream_sid"]  # still waiting for Twilio
    # The genuine credential still works: once.
    assert asyncio.run(attempt(plain_server, sid, params)) == "media"
    assert asyncio.run(attempt(plain_server, sid, params)) == "closed 1008"
    assert f"refused a stream for call {sid}" in plain_server.log()


def test_no_stream_for_a_call_without_a_signed_webhook(plain_server: HotlineServer) -> None:
    sid = new_sid()  # never announced by a voice webhook; the credential itself is perfect
    token = credentials(plain_server).issue(sid)
    assert asyncio.run(attempt(plain_server, sid, {PARAMETER: token})) == "closed 1008"
    assert call_row(plain_server, sid) is None  # and nothing was written about it
    assert "no webhook for this call" in plain_server.log()


def _wav_sizes(row: dict[str, Any]) -> dict[str, int]:
    keys = ("recording_path", "bot_recording_path", "mixed_recording_path")
    return {k: Path(row[k]).stat().st_size for k in keys}


@pytest.fixture(scope="module")
def finished_ticket_call(plain_server: HotlineServer) -> dict[str, Any]:
    """A real call that ended with a ticket (keypad report), as evidence to protect."""
    rec = Recording.load(ROOT / "recordings" / "keypad_only_report.wav")
    result = asyncio.run(plain_server.replay(rec))
    row = call_row(plain_server, result.call_sid)
    # Without NLU (this server has none) the closing "anything else?" goes to a person.
    assert row["ticket_code"] and row["outcome"] in ("ticket", "transferred"), result.summary()
    _, params = parse_connect_stream(result.twiml)
    return {"sid": result.call_sid, "row": row, "params": params, "sizes": _wav_sizes(row)}


def test_a_finished_call_cannot_be_streamed_again(
    plain_server: HotlineServer, finished_ticket_call: dict[str, Any]
) -> None:
    sid, before = finished_ticket_call["sid"], finished_ticket_call["row"]
    params = {**finished_ticket_call["params"], "caller": ATTACKER}
    fresh = {**params, PARAMETER: credentials(plain_server).issue(sid)}
    for p in (params, fresh, {"callSid": sid, "caller": ATTACKER}):
        assert asyncio.run(attempt(plain_server, sid, p)) == "closed 1008"
    time.sleep(0.5)
    after = call_row(plain_server, sid)
    for key in ("caller", "outcome", "duration_s", "hangup_reason", "status", "ticket_code"):
        assert after[key] == before[key], key
    assert _wav_sizes(after) == finished_ticket_call["sizes"]  # evidence not truncated
    assert before["mixed_recording_path"] == after["mixed_recording_path"]


def test_a_replayed_voice_webhook_does_not_reset_the_call(
    plain_server: HotlineServer, finished_ticket_call: dict[str, Any]
) -> None:
    sid, before = finished_ticket_call["sid"], finished_ticket_call["row"]
    form = voice_form(sid, "+84905000009")
    r = post_voice(
        plain_server,
        form,
        sign(plain_server.auth_token, plain_server.public_url + "/twilio/voice", form),
    )
    assert r.status_code == 200
    assert "<Hangup" in r.text and "<Stream" not in r.text  # no second stream offered
    after = call_row(plain_server, sid)
    for key in ("status", "outcome", "ended_at", "answered_at", "caller", "stream_sid"):
        assert after[key] == before[key], key
    # A late status callback does not bring the call back either.
    status = {**form, "CallStatus": "in-progress"}
    url = plain_server.public_url + "/twilio/status"
    r = httpx.post(
        plain_server.url + "/twilio/status",
        data=status,
        headers={SIGNATURE_HEADER: sign(plain_server.auth_token, url, status)},
    )
    assert r.status_code == 204
    assert call_row(plain_server, sid)["status"] == before["status"] == "completed"


def test_a_repeated_webhook_while_ringing_offers_the_stream_again(
    plain_server: HotlineServer,
) -> None:
    sid = new_sid()
    first = asyncio.run(ring(plain_server, sid, "+84905000111"))
    second = asyncio.run(ring(plain_server, sid, ATTACKER))  # a retry: same call, nothing reset
    assert first["callSid"] == second["callSid"] == sid
    assert call_row(plain_server, sid)["caller"] == "+84905000111"
    assert asyncio.run(attempt(plain_server, sid, second)) == "media"


def test_the_caller_comes_from_the_webhook_never_from_the_stream(
    plain_server: HotlineServer, twilio_rest: TwilioRestStandIn
) -> None:
    rec = Recording.load(ROOT / "recordings" / "keypad_only_report.wav")
    result = asyncio.run(
        plain_server.twilio().call(rec, extra_params={"caller": ATTACKER, "called": ATTACKER})
    )
    row = call_row(plain_server, result.call_sid)
    assert row["ticket_code"], result.summary()
    assert row["caller"] == rec.caller and row["called"] == "+841900868674"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not [
        s for s in twilio_rest.of_kind("sms") if s["form"].get("To") == rec.caller
    ]:
        time.sleep(0.1)
    sent_to = {s["form"].get("To") for s in twilio_rest.of_kind("sms")}
    assert rec.caller in sent_to  # the code went to the number that called
    assert ATTACKER not in sent_to


async def test_a_stream_with_no_webhook_opens_no_ticket_and_texts_nobody(
    plain_server: HotlineServer, twilio_rest: TwilioRestStandIn
) -> None:
    """The audit's SMS-pumping attack: a keypad report over a stream nobody announced, with
    the number to text in the stream's own parameters."""
    sid, stream = new_sid(), "MZ" + secrets.token_hex(16)
    ws = await connect_stream(plain_server, sid, stream, {"callSid": sid, "caller": ATTACKER})
    outcome = "open"
    try:
        seq = 2
        for digit in "12#1":
            await ws.send(
                json.dumps({"event": "dtmf", "sequenceNumber": str(seq), "dtmf": {"digit": digit}})
            )
            for _ in range(25):
                seq += 1
                await ws.send(media_msg(seq, stream))
    except websockets.ConnectionClosed as exc:
        outcome = f"closed {exc.rcvd.code if exc.rcvd else None}"
    if outcome == "open":
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        outcome = f"closed {closed.value.rcvd.code if closed.value.rcvd else None}"
    assert outcome == "closed 1008"
    await asyncio.sleep(1)
    assert call_row(plain_server, sid) is None
    db = plain_server.db()
    tickets = list(db.query("SELECT * FROM tickets WHERE call_sid = ?", [sid]))
    db.conn.close()
    assert tickets == []
    assert ATTACKER not in {s["form"].get("To") for s in twilio_rest.of_kind("sms")}


def test_an_existing_recording_is_never_truncated(tmp_path: Path) -> None:
    from hotline.recording import CallRecorder

    sid = new_sid()
    evidence = {}
    for ext in (".caller.wav", ".bot.wav", ".wav"):
        path = tmp_path / f"{sid}{ext}"
        path.write_bytes(b"RIFF" + secrets.token_bytes(4000))
        evidence[path] = path.read_bytes()
    rec = CallRecorder(tmp_path, sid)
    rec.caller_frame(b"\x01\x00" * 160)
    rec.bot_frame(0, b"\x02\x00" * 160)
    rec.close()
    assert rec.caller_path.name == f"{sid}-1.caller.wav" and rec.mixed_path.exists()
    for path, data in evidence.items():
        assert path.read_bytes() == data


def test_an_answered_callback_before_the_stream_does_not_lock_it_out(
    plain_server: HotlineServer,
) -> None:
    """Twilio's optional `answered` status callback can beat the stream's start."""
    sid = new_sid()
    params = asyncio.run(ring(plain_server, sid))
    status = {**voice_form(sid), "CallStatus": "in-progress"}
    url = plain_server.public_url + "/twilio/status"
    r = httpx.post(
        plain_server.url + "/twilio/status",
        data=status,
        headers={SIGNATURE_HEADER: sign(plain_server.auth_token, url, status)},
    )
    assert r.status_code == 204
    assert asyncio.run(attempt(plain_server, sid, params)) == "media"
