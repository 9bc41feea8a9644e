"""A full disk under the telephony layer (issue 10, "Crashes and full disks").

The data directory is a small tmpfs, filled to the last byte while the server runs. Twilio's
webhooks must still answer (the caller hears an apology, never a 500), and a call whose
recording cannot be finished must still end: no phantom active call for shutdown to wait on.
Needs root (mount); skipped elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hotline.telephony.signature import SIGNATURE_HEADER, sign
from tests.conftest import base_env
from tests.fault_calls import fill, tmpfs
from tests.servers import HotlineServer, TwilioRestStandIn, free_port
from tests.test_telephony import connect_stream, media_msg, new_sid, ring, voice_form

SIZE = "48m"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "disk", SIZE) as mount:
        yield mount


def post_voice(server: HotlineServer, sid: str) -> httpx.Response:
    form = voice_form(sid)
    url = server.public_url + "/twilio/voice"
    return httpx.post(
        server.url + "/twilio/voice",
        data=form,
        headers={SIGNATURE_HEADER: sign(server.auth_token, url, form)},
        timeout=30,
    )


def post_status(server: HotlineServer, sid: str) -> httpx.Response:
    form = {**voice_form(sid), "CallStatus": "completed", "CallDuration": "3"}
    url = server.public_url + "/twilio/status"
    return httpx.post(
        server.url + "/twilio/status",
        data=form,
        headers={SIGNATURE_HEADER: sign(server.auth_token, url, form)},
        timeout=30,
    )


def test_full_disk_webhooks_answer_and_calls_end(
    small_disk: Path, twilio_rest: TwilioRestStandIn
) -> None:
    env = base_env(twilio_rest) | {
        "HOTLINE_PUBLIC_URL": "https://hotline.test",
        "HOTLINE_NLU_URL": f"http://127.0.0.1:{free_port()}",
    }
    data = small_disk / "data"
    server = HotlineServer(data, env)
    # The server's log lives outside the small disk, so it can tell what happened.
    server.data_dir.mkdir(parents=True)
    log_file = small_disk.parent / "server.log"
    (data / "server.log").symlink_to(log_file)
    server.start()
    stopped_in = None
    try:
        # A call in progress when the disk fills.
        sid, stream = new_sid(), "MZ" + secrets.token_hex(16)

        async def call_across_the_fill() -> None:
            ws = await connect_stream(server, sid, stream, await ring(server, sid))
            for seq in range(2, 100):
                await ws.send(media_msg(seq, stream))
                await asyncio.sleep(0.005)
            await asyncio.to_thread(fill, small_disk)
            for seq in range(100, 400):  # ~6 s of audio that cannot be written
                await ws.send(media_msg(seq, stream))
                await asyncio.sleep(0.005)
            await ws.send(json.dumps({"event": "stop", "stop": {"callSid": sid}}))
            await ws.close()

        asyncio.run(call_across_the_fill())

        answers = []
        for _ in range(400):  # SQLite has room in its WAL for a while; then it has none
            r = post_voice(server, new_sid())
            answers.append(r)
            if r.status_code != 200 or "<Stream" not in r.text:
                break
        codes = {r.status_code for r in answers}
        assert 500 not in codes
        last = answers[-1]
        assert last.status_code in (200, 503), last.text
        if last.status_code == 200:
            assert "<Say" in last.text and "vi-VN" in last.text and "<Stream" not in last.text
        statuses = {post_status(server, new_sid()).status_code for _ in range(5)}
        assert statuses <= {204, 503}
        assert "database or disk is full" in log_file.read_text() or 503 in statuses | codes

        t0 = time.monotonic()
        code = server.stop(timeout=60)
        stopped_in = time.monotonic() - t0
    finally:
        server.stop()
    log = log_file.read_text(errors="replace")
    assert f"call {sid} ended" in log, log[-3000:]
    assert "ending 0 call(s) in progress" in log  # no phantom active call at shutdown
    assert stopped_in is not None and stopped_in < 15, stopped_in
    assert code in (0, -15)
