"""The Twilio call path over a real server: signed webhooks, Media Streams, storage, replay."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import wave
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import numpy as np
import pytest
import websockets

from hotline.replay import Recording, parse_connect_stream
from hotline.telephony.signature import SIGNATURE_HEADER, sign
from tests.servers import HotlineServer

SILENCE = base64.b64encode(bytes([0xFF]) * 160).decode()


def voice_form(call_sid: str, caller: str = "+84905123456") -> dict[str, str]:
    return {
        "CallSid": call_sid,
        "AccountSid": "AC" + "1" * 32,
        "From": caller,
        "To": "+841900868674",
        "CallStatus": "ringing",
        "Direction": "inbound",
    }


def new_sid() -> str:
    return "CA" + secrets.token_hex(16)


def post_voice(
    server: HotlineServer, form: dict[str, str], signature: str | None
) -> httpx.Response:
    headers = {SIGNATURE_HEADER: signature} if signature is not None else {}
    return httpx.post(server.url + "/twilio/voice", data=form, headers=headers)


def call_row(server: HotlineServer, call_sid: str) -> dict | None:
    rows = list(server.db().query("SELECT * FROM calls WHERE call_sid = ?", [call_sid]))
    return rows[0] if rows else None


# --- webhooks ---------------------------------------------------------------------------------


def test_unsigned_voice_webhook_is_refused(plain_server: HotlineServer) -> None:
    sid = new_sid()
    r = post_voice(plain_server, voice_form(sid), None)
    assert r.status_code == 403
    assert call_row(plain_server, sid) is None


def test_forged_voice_webhook_is_refused(plain_server: HotlineServer) -> None:
    sid = new_sid()
    form = voice_form(sid)
    url = plain_server.public_url + "/twilio/voice"
    cases = {
        "wrong token": sign("not-the-token", url, form),
        "signed for other params": sign(plain_server.auth_token, url, {**form, "From": "+1"}),
        "signed for another URL": sign(
            plain_server.auth_token, plain_server.url + "/twilio/voice", form
        ),
        "garbage": "%%%not-base64",
    }
    for why, signature in cases.items():
        r = post_voice(plain_server, form, signature)
        assert r.status_code == 403, why
    assert call_row(plain_server, sid) is None
    assert "bad or missing X-Twilio-Signature" in plain_server.log()


def test_signed_voice_webhook_answers_with_a_media_stream(plain_server: HotlineServer) -> None:
    sid = new_sid()
    form = voice_form(sid, "+84905111222")
    r = post_voice(
        plain_server,
        form,
        sign(plain_server.auth_token, plain_server.public_url + "/twilio/voice", form),
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(r.text)
    stream = root.find("./Connect/Stream")
    assert stream is not None, r.text
    assert stream.get("url") == "wss://hotline.test/twilio/media"  # wss, no query string
    params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert params["callSid"] == sid
    assert params["streamToken"]  # the call's own stream credential
    assert "caller" not in params  # who is calling is on record, not round-tripped
    row = call_row(plain_server, sid)
    assert row is not None and row["status"] == "ringing"
    assert row["caller"] == "+84905111222"


def test_status_callback_updates_the_call(plain_server: HotlineServer) -> None:
    sid = new_sid()
    url = plain_server.public_url + "/twilio/voice"
    form = voice_form(sid)
    assert (
        post_voice(plain_server, form, sign(plain_server.auth_token, url, form)).status_code == 200
    )
    status = {**form, "CallStatus": "busy"}
    status_url = plain_server.public_url + "/twilio/status"
    # Unsigned status callbacks change nothing.
    r = httpx.post(plain_server.url + "/twilio/status", data=status)
    assert r.status_code == 403
    assert call_row(plain_server, sid)["status"] == "ringing"
    r = httpx.post(
        plain_server.url + "/twilio/status",
        data=status,
        headers={SIGNATURE_HEADER: sign(plain_server.auth_token, status_url, status)},
    )
    assert r.status_code == 204
    row = call_row(plain_server, sid)
    assert row["status"] == "busy"
    assert row["outcome"] == "not_answered"
    assert row["ended_at"]


def test_webhooks_refuse_bad_input_without_a_500(plain_server: HotlineServer) -> None:
    url = plain_server.public_url + "/twilio/voice"
    form = {"From": "+84905123456"}  # no CallSid
    r = post_voice(plain_server, form, sign(plain_server.auth_token, url, form))
    assert r.status_code == 400
    r = httpx.post(
        plain_server.url + "/twilio/voice",
        content=b"\xff\xfe\x00garbage",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 403


def test_healthz(plain_server: HotlineServer) -> None:
    # Its NLU URL is a closed port: it takes calls, but is not ready end to end.
    r = httpx.get(plain_server.url + "/healthz")
    assert r.status_code == 503
    assert r.json()["status"] in ("starting", "degraded")
    code, body = plain_server.health()
    assert code == 503
    assert body["accepting_calls"] is True
    assert body["checks"]["nlu"] and body["checks"]["disk"] is None
    assert body["asr"] == "sidecar"
    assert body["signatures"] == "verified"


# --- media streams ----------------------------------------------------------------------------


def ws_url(server: HotlineServer) -> str:
    return f"ws://127.0.0.1:{server.port}/twilio/media"


def stream_signature(server: HotlineServer) -> str:
    return sign(server.auth_token, "wss://hotline.test/twilio/media", {})


def start_msg(
    call_sid: str,
    stream_sid: str,
    caller: str = "+84905123456",
    params: dict[str, str] | None = None,
) -> str:
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": stream_sid,
            "start": {
                "accountSid": "AC" + "1" * 32,
                "streamSid": stream_sid,
                "callSid": call_sid,
                "tracks": ["inbound"],
                "customParameters": params
                if params is not None
                else {"callSid": call_sid, "caller": caller},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        }
    )


def media_msg(seq: int, stream_sid: str, payload: str = SILENCE) -> str:
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": str(seq),
            "streamSid": stream_sid,
            "media": {
                "track": "inbound",
                "chunk": str(seq - 1),
                "timestamp": str((seq - 2) * 20),
                "payload": payload,
            },
        }
    )


async def ring(server: HotlineServer, call_sid: str, caller: str = "+84905123456") -> dict:
    """Twilio's signed voice webhook for a new call: the <Parameter>s its stream must send."""
    form = voice_form(call_sid, caller)
    signature = sign(server.auth_token, server.public_url + "/twilio/voice", form)
    async with httpx.AsyncClient() as client:
        r = await client.post(
            server.url + "/twilio/voice", data=form, headers={SIGNATURE_HEADER: signature}
        )
    assert r.status_code == 200, r.text
    return parse_connect_stream(r.text)[1]


async def connect_stream(
    server: HotlineServer, call_sid: str, stream_sid: str, params: dict[str, str] | None
):
    ws = await websockets.connect(
        ws_url(server), additional_headers={SIGNATURE_HEADER: stream_signature(server)}
    )
    await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
    await ws.send(start_msg(call_sid, stream_sid, params=params))
    return ws


async def open_stream(server: HotlineServer, call_sid: str, stream_sid: str):
    """A call as Twilio places it: the signed webhook, then its stream."""
    return await connect_stream(server, call_sid, stream_sid, await ring(server, call_sid))


async def next_event(ws, kind: str, timeout: float = 10.0) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            msg = json.loads(await ws.recv())
            if msg["event"] == kind:
                return msg


@pytest.mark.parametrize("signature", [None, "forged"])
async def test_unsigned_or_forged_websocket_gets_no_call(
    plain_server: HotlineServer, signature: str | None
) -> None:
    headers = {}
    if signature == "forged":
        headers[SIGNATURE_HEADER] = sign("wrong-token", "wss://hotline.test/twilio/media", {})
    with pytest.raises(websockets.InvalidStatus) as err:
        async with websockets.connect(ws_url(plain_server), additional_headers=headers) as ws:
            await ws.send(start_msg(new_sid(), "MZ1"))
    assert err.value.response.status_code == 403
    assert "refused media stream" in plain_server.log()


async def test_malformed_messages_do_not_end_the_call(plain_server: HotlineServer) -> None:
    sid, stream = new_sid(), "MZ" + secrets.token_hex(16)
    bad = [
        "{not json",
        json.dumps(["an", "array"]),
        json.dumps({"event": "media", "sequenceNumber": "2", "media": {"payload": "!!!"}}),
        json.dumps({"event": "media", "sequenceNumber": "3", "media": {}}),
        json.dumps({"event": "dance", "sequenceNumber": "4"}),
        json.dumps({"event": "dtmf", "sequenceNumber": "5", "dtmf": {"digit": "x"}}),
        json.dumps({"event": "media", "sequenceNumber": "many", "media": {"payload": SILENCE}}),
    ]
    ws = await open_stream(plain_server, sid, stream)
    try:
        await next_event(ws, "media")  # the greeting is playing
        for msg in bad:
            await ws.send(msg)
        seq = 10
        for seq in range(10, 40):
            await ws.send(media_msg(seq, stream))
        await ws.send(media_msg(seq + 25, stream))  # a gap in sequence numbers
        # The call goes on: the bot keeps sending the greeting, and a mark follows it.
        await next_event(ws, "mark", timeout=30)
        await ws.send(
            json.dumps(
                {
                    "event": "stop",
                    "sequenceNumber": str(seq + 26),
                    "streamSid": stream,
                    "stop": {"callSid": sid},
                }
            )
        )
        await ws.wait_closed()
    finally:
        await ws.close()
    await asyncio.sleep(0.5)
    row = call_row(plain_server, sid)
    assert row["hangup_reason"] == "stop"
    kinds = [
        e["kind"]
        for e in plain_server.db().query("SELECT kind FROM events WHERE call_sid = ?", [sid])
    ]
    # Error events are throttled to one a second per call; their counts add up to every one.
    errors = [
        json.loads(e["detail"])["count"]
        for e in plain_server.db().query(
            "SELECT detail FROM events WHERE call_sid = ? AND kind = 'protocol_error'", [sid]
        )
    ]
    assert sum(errors) == len(bad) and len(errors) <= 2
    assert "stream_ended" in kinds


async def test_a_second_stream_for_the_same_call_is_refused(plain_server: HotlineServer) -> None:
    sid = new_sid()
    params = await ring(plain_server, sid)
    first = await connect_stream(plain_server, sid, "MZ" + "a" * 32, params)
    try:
        await next_event(first, "media")
        second = await connect_stream(plain_server, sid, "MZ" + "b" * 32, params)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(second.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        # The first stream is unaffected.
        await first.send(media_msg(2, "MZ" + "a" * 32))
        await next_event(first, "media")
    finally:
        await first.close()
    await asyncio.sleep(0.5)
    kinds = [
        e["kind"]
        for e in plain_server.db().query("SELECT kind FROM events WHERE call_sid = ?", [sid])
    ]
    assert "duplicate_stream_refused" in kinds
    assert call_row(plain_server, sid)["stream_sid"] == "MZ" + "a" * 32


async def test_a_dropped_socket_ends_the_call_and_records_why(plain_server: HotlineServer) -> None:
    sid = new_sid()
    ws = await open_stream(plain_server, sid, "MZ" + "c" * 32)
    await next_event(ws, "media")
    ws.transport.abort()  # no close frame: the network went away
    for _ in range(50):
        row = call_row(plain_server, sid)
        if row and row.get("ended_at"):
            break
        await asyncio.sleep(0.1)
    assert row["hangup_reason"] == "socket_closed"
    assert row["outcome"] == "abandoned"


# --- replay -----------------------------------------------------------------------------------


async def test_replayed_call_is_stored_with_its_audio(
    plain_server: HotlineServer, tmp_path: Path
) -> None:
    # A caller who says nothing: the hotline greets, reprompts, says goodbye and hangs up.
    wav = tmp_path / "silent.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 8000 * 2)
    (tmp_path / "silent.yml").write_text("caller: '+84905000111'\nturns:\n  - silence: 60\n")
    result = await plain_server.replay(Recording.load(wav))
    assert result.closed_by == "server"
    assert result.marks_received and set(result.marks_received) <= set(result.marks_echoed)
    summary = result.summary()
    assert summary["outcome"] == "no_input"
    assert summary["path"][0] == "greeting" and summary["path"][-1] == "goodbye_silence"
    assert any("Quảng Trị" in said for said in summary["bot_said"])

    row = call_row(plain_server, result.call_sid)
    assert row["status"] == "completed" and row["hangup_reason"] == "no_input"
    caller_wav, bot_wav, mixed = (
        Path(row[k]) for k in ("recording_path", "bot_recording_path", "mixed_recording_path")
    )
    with wave.open(str(caller_wav)) as w:
        assert w.getframerate() == 8000 and w.getnchannels() == 1
        # The header was finished (it matches the call's duration), and the server recorded
        # no more than was sent (a loaded server may still have frames unread at the hang-up).
        assert abs(w.getnframes() - row["duration_s"] * 8000) <= 160
        assert w.getnframes() <= result.frames_sent * 160 + 160
    with wave.open(str(bot_wav)) as w:
        bot = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert np.abs(bot).max() > 1000  # the greeting is in the bot's track
    with wave.open(str(mixed)) as w:
        assert w.getnchannels() == 2

    listed = plain_server.cli("calls", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    calls = {c["call_sid"]: c for c in json.loads(listed.stdout)}
    assert calls[result.call_sid]["outcome"] == "no_input"
    assert calls[result.call_sid]["caller"] == "+84905***111"  # masked

    shown = plain_server.cli("calls", "show", result.call_sid, "--json")
    assert shown.returncode == 0
    assert [t["speaker"] for t in json.loads(shown.stdout)["turns"]][0] == "bot"


def test_replay_cli_prints_the_outcome(plain_server: HotlineServer, tmp_path: Path) -> None:
    wav = tmp_path / "keys.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 8000 * 30)
    # No sidecar: the WAV is streamed as it is, with keys pressed at given times (goodbye by
    # keypad is not a thing, so press 3 for ticket status, then a code, then stay silent).
    r = plain_server.cli(
        "replay",
        str(wav),
        "--url",
        plain_server.url,
        "--public-url",
        plain_server.public_url,
        "--fast",
        "--json",
        "--dtmf",
        "1.0:3,3.0:1234567#",
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["path"][:3] == ["greeting", "status_ask_code", "status_lookup"]
    assert [t["text"] for t in out["turns"] if t["kind"] == "dtmf"][:2] == ["3", "1"]


def test_parse_connect_stream_reads_parameters() -> None:
    url, params = parse_connect_stream(
        '<?xml version="1.0"?><Response><Connect><Stream url="wss://x/twilio/media">'
        '<Parameter name="caller" value="+84905"/></Stream></Connect></Response>'
    )
    assert url == "wss://x/twilio/media" and params == {"caller": "+84905"}


async def test_sigterm_ends_calls_cleanly_and_keeps_their_records(
    tmp_path: Path, twilio_rest
) -> None:
    from tests.conftest import base_env
    from tests.servers import free_port

    env = base_env(twilio_rest) | {
        "HOTLINE_PUBLIC_URL": "https://hotline.test",
        "HOTLINE_NLU_URL": f"http://127.0.0.1:{free_port()}",
    }
    server = HotlineServer(tmp_path / "sigterm", env).start()
    sid = new_sid()
    try:
        ws = await open_stream(server, sid, "MZ" + "d" * 32)
        for seq in range(2, 30):
            await ws.send(media_msg(seq, "MZ" + "d" * 32))
        await next_event(ws, "media")
        await asyncio.sleep(0.3)
        stopping = asyncio.create_task(asyncio.to_thread(server.stop))
        # The caller is told, then the server hangs up (before uvicorn closes anything).
        said = bytearray()
        async with asyncio.timeout(20):
            async for raw in ws:
                msg = json.loads(raw)
                if msg["event"] == "clear":
                    said.clear()
                elif msg["event"] == "media":
                    said += base64.b64decode(msg["media"]["payload"])
                    await ws.send(media_msg(seq := seq + 1, "MZ" + "d" * 32))
                elif msg["event"] == "mark":
                    await ws.send(
                        json.dumps(
                            {"event": "mark", "streamSid": "MZ" + "d" * 32, "mark": msg["mark"]}
                        )
                    )
        assert len(said) > 8000  # seconds of "the switchboard must restart, call again"
        code = await stopping
    finally:
        server.stop()
    assert code in (0, -15), server.log()  # uvicorn re-raises SIGTERM after a clean shutdown
    row = call_row(server, sid)
    assert row["ended_at"] and row["outcome"]
    assert row["hangup_reason"] == "shutdown"
    with wave.open(row["recording_path"]) as w:  # the WAV header was finished
        assert w.getnframes() >= 28 * 160
    assert "Application shutdown complete" in server.log()


def test_verification_off_only_when_asked_and_then_serve_warns(tmp_path: Path, twilio_rest) -> None:
    from tests.conftest import base_env
    from tests.servers import free_port

    env = base_env(twilio_rest) | {
        "HOTLINE_VERIFY_SIGNATURES": "false",
        "HOTLINE_NLU_URL": f"http://127.0.0.1:{free_port()}",
    }
    server = HotlineServer(tmp_path / "insecure", env).start()
    try:
        r = post_voice(server, voice_form(new_sid()), None)
        assert r.status_code == 200
        assert server.health()[1]["signatures"].startswith("NOT VERIFIED")
    finally:
        server.stop()
    assert "HOTLINE_VERIFY_SIGNATURES=false" in server.log()
    assert "NOT checked" in server.log()
