"""Privacy end to end on a real `hotline serve`: calls replayed through the Twilio stand-in,
accounts made with the real CLI, the console over real HTTP (and Chromium for the browser
phone): the disclosure on every entry path, audited recording access and number reveal, and a
person's request answered from the console without touching anyone else's data."""

from __future__ import annotations

import asyncio
import io
import re
import time
import wave
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest

from hotline.replay import Recording
from tests.conftest import base_env
from tests.servers import CHROMIUM, CHROMIUM_ARGS, ROOT, HotlineServer, TwilioRestStandIn, free_port

PASSWORD = "mật-khẩu-thử-123"
ALICE = "+84905111222"
BOB = "+84905333444"
DISCLOSURE = ("trợ lý tự động", "ghi âm")


def _call(server: HotlineServer, number: str) -> Any:
    rec = Recording.load(ROOT / "recordings" / "silent_caller.wav")
    return asyncio.run(asyncio.wait_for(server.twilio().call(rec, caller=number), 120))


@pytest.fixture(scope="module")
def hotline(
    tmp_path_factory: pytest.TempPathFactory, twilio_rest: TwilioRestStandIn
) -> Iterator[dict[str, Any]]:
    # No Rasa: calls degrade to the keypad, which is all these tests need.
    env = base_env(twilio_rest) | {"HOTLINE_NLU_URL": f"http://127.0.0.1:{free_port()}"}
    server = HotlineServer(tmp_path_factory.mktemp("privacy"), env).start()
    try:
        for user, role in (("alice", "supervisor"), ("olga", "operator"), ("adam", "admin")):
            done = server.cli(
                "operators", "add", user, "--role", role, "--password-stdin", input=PASSWORD + "\n"
            )
            assert done.returncode == 0, done.stderr
        alice = _call(server, ALICE)
        bob = _call(server, BOB)
        for result in (alice, bob):  # the stereo mix is written once the call has ended
            mixed = server.data_dir / "recordings" / f"{result.call_sid}.wav"
            deadline = time.monotonic() + 20
            while not mixed.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert mixed.exists(), mixed
        yield {"server": server, "alice": alice, "bob": bob}
    finally:
        server.stop()


def login(server: HotlineServer, user: str) -> httpx.Client:
    client = httpx.Client(base_url=server.url, follow_redirects=False, timeout=30)
    page = client.get("/console/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    r = client.post("/console/login", data={"csrf": token, "username": user, "password": PASSWORD})
    assert r.status_code == 303, r.text
    return client


def csrf(client: httpx.Client, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]


def audit_rows(server: HotlineServer, action: str) -> list[dict[str, Any]]:
    db = server.db()
    try:
        return list(db.query("SELECT * FROM audit_log WHERE action = ? ORDER BY id", [action]))
    finally:
        db.conn.close()


def first_bot_turn(server: HotlineServer, call_sid: str) -> dict[str, Any]:
    db = server.db()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            turns = list(
                db.query("SELECT * FROM turns WHERE call_sid = ? ORDER BY seq", [call_sid])
            )
            if turns:
                return turns[0]
            time.sleep(0.2)
        raise AssertionError(f"no turns for {call_sid}")
    finally:
        db.conn.close()


# --- disclosure ------------------------------------------------------------------------------


def test_twiml_says_nothing_before_the_stream(hotline: dict[str, Any]) -> None:
    """The webhook answers with the stream only: the first words a caller hears are the flow's
    greeting, never an unannounced <Say> from the webhook."""
    root = ElementTree.fromstring(hotline["alice"].twiml)
    assert [child.tag for child in root] == ["Connect"]
    assert root[0][0].tag == "Stream"


def test_disclosure_first_on_a_twilio_call(hotline: dict[str, Any]) -> None:
    result = hotline["alice"]
    turn = first_bot_turn(hotline["server"], result.call_sid)
    assert turn["speaker"] == "bot"  # said before the caller is asked anything
    for phrase in DISCLOSURE:
        assert phrase in turn["text"].lower(), turn["text"]
    assert result.marks_received, "the greeting's audio reached the caller"


def test_try_page_tells_the_operator_the_same(hotline: dict[str, Any]) -> None:
    page = login(hotline["server"], "olga").get("/console/try")
    assert page.status_code == 200
    for phrase in DISCLOSURE:
        assert phrase in page.text
    assert "phím 0" in page.text


@pytest.mark.browser
def test_disclosure_first_on_the_console_phone(
    hotline: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    from playwright.sync_api import sync_playwright

    server = hotline["server"]
    silence = tmp_path_factory.mktemp("mic") / "silence.wav"
    with wave.open(str(silence), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(b"\0\0" * 48000)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={silence}"],
        )
        try:
            ctx = browser.new_context(base_url=server.url, locale="vi-VN", bypass_csp=True)
            page = ctx.new_page()
            page.goto("/console/login")
            page.fill("#username", "olga")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url("**/console/calls")
            page.goto("/console/try")
            page.click("#call-start")
            page.wait_for_function(
                "document.getElementById('call-transcript').textContent.length > 10",
                timeout=30000,
            )
            call_sid = page.get_attribute("#phone", "data-call-sid")
            heard = page.inner_text("#call-transcript")
            page.click("#call-stop")
        finally:
            browser.close()
    assert call_sid
    turn = first_bot_turn(server, call_sid)
    assert turn["speaker"] == "bot"
    for phrase in DISCLOSURE:
        assert phrase in turn["text"].lower(), turn["text"]
        assert phrase in heard.lower()


# --- access to recordings and numbers --------------------------------------------------------


def test_numbers_masked_and_reveal_is_logged(hotline: dict[str, Any]) -> None:
    server = hotline["server"]
    sid = hotline["alice"].call_sid
    operator = login(server, "olga")
    page = operator.get(f"/console/calls/{sid}")
    assert "+84905***222" in page.text and ALICE not in page.text
    assert "/console/privacy/reveal/call/" not in page.text  # operators cannot reveal
    token = csrf(operator, f"/console/calls/{sid}")
    r = operator.post(f"/console/privacy/reveal/call/{sid}", data={"csrf": token})
    assert r.status_code == 403

    supervisor = login(server, "alice")
    page = supervisor.get(f"/console/calls/{sid}")
    assert ALICE not in page.text  # masked by default for supervisors too
    assert f"/console/privacy/reveal/call/{sid}" in page.text
    assert supervisor.post(f"/console/privacy/reveal/call/{sid}").status_code == 403  # no CSRF
    assert not audit_rows(server, "reveal_number")
    token = csrf(supervisor, f"/console/calls/{sid}")
    r = supervisor.post(f"/console/privacy/reveal/call/{sid}", data={"csrf": token})
    assert r.status_code == 200 and ALICE in r.text
    rows = audit_rows(server, "reveal_number")
    assert [(x["actor"], x["target"]) for x in rows] == [("alice", f"call:{sid}")]
    assert rows[0]["at"] and rows[0]["ip"] == "127.0.0.1"
    # Bob's call was not revealed by anyone.
    assert all(hotline["bob"].call_sid not in (x["target"] or "") for x in rows)


def test_listening_and_downloading_are_logged(hotline: dict[str, Any]) -> None:
    server = hotline["server"]
    sid = hotline["bob"].call_sid
    client = login(server, "olga")
    assert not [x for x in audit_rows(server, "recording_listen") if x["target"] == sid]
    r = client.get(f"/console/calls/{sid}/audio")
    assert r.status_code == 200 and r.content[:4] == b"RIFF"
    r = client.get(f"/console/calls/{sid}/audio", headers={"Range": "bytes=1000-"})
    assert r.status_code == 206  # the player seeking: the same listen
    listens = [x for x in audit_rows(server, "recording_listen") if x["target"] == sid]
    assert [(x["actor"], x["target"]) for x in listens] == [("olga", sid)]
    r = client.get(f"/console/calls/{sid}/audio?download=1")
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    downloads = [x for x in audit_rows(server, "recording_download") if x["target"] == sid]
    assert [x["actor"] for x in downloads] == ["olga"]
    # Without a session: nothing served, nothing logged as anyone.
    with httpx.Client(base_url=server.url) as anon:
        assert anon.get(f"/console/calls/{sid}/audio").status_code == 401

    # Admins see it in the audit view, filtered to access.
    admin = login(server, "adam")
    page = admin.get("/console/audit", params={"kind": "access", "target": sid})
    assert page.status_code == 200
    assert "recording_listen" in page.text and "recording_download" in page.text
    assert "login" not in re.sub(r"<[^>]+>", " ", page.text).split("Nhật ký thao tác", 1)[1]
    assert login(server, "alice").get("/console/audit").status_code == 403


# --- a person's request, from the console ------------------------------------------------------


def test_request_find_export_erase_from_the_console(hotline: dict[str, Any]) -> None:
    server = hotline["server"]
    alice_sid, bob_sid = hotline["alice"].call_sid, hotline["bob"].call_sid
    recordings = server.data_dir / "recordings"
    assert (recordings / f"{alice_sid}.wav").exists() and (recordings / f"{bob_sid}.wav").exists()

    assert login(server, "olga").get("/console/privacy").status_code == 403
    client = login(server, "alice")
    token = csrf(client, "/console/privacy")
    bad = client.post(
        "/console/privacy/requests",
        data={"csrf": token, "kind": "deletion", "number": "12ab", "received_on": "2026-12-07"},
    )
    assert bad.status_code == 400 and "không hợp lệ" in bad.text
    r = client.post(
        "/console/privacy/requests",
        data={
            "csrf": token,
            "kind": "deletion",
            "number": "0905 111 222",
            "received_on": "2026-12-04",  # a Friday
            "requester": "Nguyễn Văn A, CCCD đã kiểm tra",
            "channel": "trực tiếp",
        },
    )
    assert r.status_code == 303, r.text
    url = r.headers["location"].split("?")[0]
    page = client.get(url)
    assert page.status_code == 200
    assert "2026-12-08" in page.text  # acknowledgement: 2 working days, over the weekend
    assert "2026-12-24" in page.text  # deletion: 20 days
    assert "1 cuộc gọi" in page.text and alice_sid in page.text and bob_sid not in page.text
    assert ALICE not in page.text  # the request page shows the number masked

    z = client.get(url + "/export.zip")
    assert z.status_code == 200 and z.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(z.content)) as archive:
        names = archive.namelist()
        data = archive.read("data.json").decode()
    assert f"audio/{alice_sid}.wav" in names and not any(bob_sid in n for n in names)
    assert alice_sid in data and bob_sid not in data and BOB not in data

    token = csrf(client, url + "/erase")
    wrong = client.post(url + "/erase", data={"csrf": token, "confirm": "0905333444"})
    assert wrong.status_code == 400 and (recordings / f"{alice_sid}.wav").exists()
    done = client.post(url + "/erase", data={"csrf": token, "confirm": "84905111222"})
    assert done.status_code == 303
    assert not list(recordings.glob(f"{alice_sid}*"))
    assert (recordings / f"{bob_sid}.wav").exists()
    db = server.db()
    try:
        rows = {r["call_sid"]: r for r in db.query("SELECT call_sid, caller FROM calls")}
    finally:
        db.conn.close()
    assert rows[alice_sid]["caller"] == "erased" and rows[bob_sid]["caller"] == BOB
    page = client.get(url)
    assert "0 cuộc gọi" in page.text

    token = csrf(client, url)
    r = client.post(url + "/close", data={"csrf": token, "status": "done", "note": "Đã xoá"})
    assert r.status_code == 303
    page = client.get(url)
    assert "Đã xong" in page.text and "export.zip" not in page.text
    db = server.db()
    try:
        req = next(iter(db.query("SELECT * FROM privacy_requests")))
    finally:
        db.conn.close()
    assert req["number"] is None and req["number_masked"] == "+84905***222"
    actions = [x["action"] for x in audit_rows(server, "privacy_erase")]
    assert actions == ["privacy_erase"]
    # Files at rest: everything the running server wrote is the owner's alone.
    for path in (server.data_dir, recordings, server.data_dir / "hotline.db"):
        assert Path(path).stat().st_mode & 0o077 == 0, path
    for wav in recordings.glob("*.wav"):
        assert wav.stat().st_mode & 0o777 == 0o600, wav
