"""The operators' console end to end: a real `hotline serve` (real Rasa, flows, ticket store),
accounts made with the real CLI, a recorded call replayed through the Twilio stand-in, and a
real headless Chromium driving the pages.

Chromium is Debian's (/usr/bin/chromium) through Playwright's `executable_path`; its fake
microphone plays a silent WAV so the "Gọi thử" page can call the hotline.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
import yaml
from click.testing import CliRunner

from hotline.calls import add_turn
from hotline.replay import Recording
from tests.conftest import base_env
from tests.servers import CHROMIUM, CHROMIUM_ARGS, ROOT, HotlineServer, TwilioRestStandIn

PASSWORD = "mật-khẩu-thử-123"
XSS = '<script>window.__xss = 1</script><img src="x" onerror="window.__xss = 2">'

pytestmark = pytest.mark.nlu


def replay(server: HotlineServer, name: str) -> dict[str, Any]:
    rec = Recording.load(ROOT / "recordings" / f"{name}.wav")
    return asyncio.run(server.replay(rec, timeout=120)).summary()


@pytest.fixture(scope="module")
def console(
    tmp_path_factory: pytest.TempPathFactory, twilio_rest: TwilioRestStandIn, rasa_server: Any
) -> Iterator[dict[str, Any]]:
    env = base_env(twilio_rest) | {
        "HOTLINE_NLU_URL": rasa_server.url,
        "HOTLINE_NLU_TOKEN": rasa_server.token,
    }
    server = HotlineServer(tmp_path_factory.mktemp("console"), env).start()
    try:
        for user, role in (
            ("alice", "supervisor"),
            ("olga", "operator"),
            ("adam", "admin"),
            ("lena", "operator"),
        ):
            done = server.cli(
                "operators", "add", user, "--role", role, "--password-stdin", input=PASSWORD + "\n"
            )
            assert done.returncode == 0, done.stderr
        summary = replay(server, "power_cut_with_place")
        assert summary["outcome"] == "ticket", summary
        yield {"server": server, "call": summary}
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    silence = tmp_path_factory.mktemp("mic") / "silence.wav"
    with wave.open(str(silence), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(b"\0\0" * 48000)
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={silence}"],
        )
        yield b
        b.close()


def new_page(browser: Any, url: str, **context: Any) -> Any:
    # bypass_csp: Playwright's wait_for_function evaluates strings, which the console's CSP
    # forbids. It also makes the <script> test stricter: escaping alone must stop the script
    # (the CSP header itself is checked in test_roles_numbers_and_bad_input).
    ctx = browser.new_context(base_url=url, locale="vi-VN", bypass_csp=True, **context)
    page = ctx.new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    return page


def login(browser: Any, server: HotlineServer, user: str = "alice", **context: Any) -> Any:
    page = new_page(browser, server.url, **context)
    page.goto("/console/calls")
    assert "/console/login" in page.url  # refused without a session
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/calls")
    return page


def http_login(server: HotlineServer, user: str) -> httpx.Client:
    client = httpx.Client(base_url=server.url, follow_redirects=False, timeout=15)
    page = client.get("/console/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    r = client.post("/console/login", data={"csrf": token, "username": user, "password": PASSWORD})
    assert r.status_code == 303, r.text
    return client


def form_login(server: HotlineServer, user: str, password: str) -> int:
    """The status of one login attempt through the login form (303: signed in)."""
    with httpx.Client(base_url=server.url, follow_redirects=False) as c:
        token = csrf_of(c, "/console/login")
        r = c.post("/console/login", data={"csrf": token, "username": user, "password": password})
        return r.status_code


def csrf_of(client: httpx.Client, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]


# --- access ----------------------------------------------------------------------------------


def test_pages_and_apis_refuse_without_login(console: dict[str, Any]) -> None:
    server = console["server"]
    sid = console["call"]["call_sid"]
    code = console["call"]["ticket"]["code"]
    with httpx.Client(base_url=server.url, follow_redirects=False) as c:
        for path in (
            "/console/calls",
            f"/console/calls/{sid}",
            "/console/tickets",
            f"/console/tickets/{code}",
            "/console/dashboard",
            "/console/live",
            "/console/try",
            "/console/corrections",
            "/console/operators",
        ):
            r = c.get(path)
            assert r.status_code == 303, path
            assert r.headers["location"].startswith("/console/login?next=")
        for path in (
            "/console/api/live",
            "/console/api/live/active",
            "/console/api/me",
            f"/console/calls/{sid}/audio",
            "/console/tickets.csv",
            "/console/corrections.yml",
        ):
            r = c.get(path)
            assert r.status_code == 401, path
            assert r.json()["error"] == "Cần đăng nhập"
        r = c.post(f"/console/tickets/{code}/status", data={"status": "đã tiếp nhận"})
        assert r.status_code == 303 and "/console/login" in r.headers["location"]
    with httpx.Client(
        base_url=server.url, follow_redirects=False, cookies={"hotline_session": "forged"}
    ) as c:
        assert c.get("/console/calls").status_code == 303


def test_roles_numbers_and_bad_input(console: dict[str, Any]) -> None:
    server = console["server"]
    sid = console["call"]["call_sid"]
    operator = http_login(server, "olga")
    supervisor = http_login(server, "alice")
    page = operator.get(f"/console/calls/{sid}")
    assert "+84905***001" in page.text and "+84905000001" not in page.text
    # Supervisors see it masked too, and reveal it with a logged click (test_privacy_console).
    page = supervisor.get(f"/console/calls/{sid}")
    assert "+84905000001" not in page.text and f"/console/privacy/reveal/call/{sid}" in page.text
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    revealed = supervisor.post(f"/console/privacy/reveal/call/{sid}", data={"csrf": token})
    assert "+84905000001" in revealed.text
    for path in ("/console/corrections", "/console/operators", "/console/templates"):
        r = operator.get(path)
        assert r.status_code == 403 and "Không có quyền" in r.text
    # Operators get a simplified dashboard: the day's figures, not the per-agency detail.
    simple = operator.get("/console/dashboard")
    assert simple.status_code == 200 and 'id="kpi-containment"' in simple.text
    assert 'id="agency-title"' not in simple.text
    assert 'id="agency-title"' in supervisor.get("/console/dashboard").text
    assert supervisor.get("/console/operators").status_code == 403
    bad = {
        "/console/calls?from=27-11-2026": 400,
        "/console/calls?outcome=%3Cscript%3E": 400,
        "/console/calls?low=1&conf=101": 400,  # 0 to 1, or a percentage
        "/console/calls?page=-1": 400,
        "/console/tickets?status=bogus": 400,
        "/console/tickets?agency=nope": 400,
        "/console/tickets/1234567": 400,  # fails its check digit
        "/console/tickets/0000000": 404,
        "/console/calls/CAdoesnotexist": 404,
        "/console/calls/..%2F..%2Fetc%2Fpasswd/audio": 404,
        "/console/drafts/abc": 404,
        "/console/dashboard?from=2020-01-01&to=2026-01-01": 400,
        "/console/nothing-here": 404,
    }
    for path, status in bad.items():
        r = supervisor.get(path)
        assert r.status_code == status, (path, r.status_code)
        assert '<html lang="vi">' in r.text or r.headers["content-type"].startswith(
            "application/json"
        )
    r = supervisor.get("/console/calls?intent=xyz")
    assert "Ý định không hợp lệ" in r.text
    assert (
        supervisor.get("/console/calls")
        .headers["content-security-policy"]
        .startswith("default-src 'self'")
    )


ODD_VALUES = ("", "x", "\x00", "-1", "9" * 30, "<script>", "2026-02-30", "đ", "1e999", " ")
QUERY_KEYS = ("from", "to", "outcome", "intent", "low", "conf", "page", "status", "category",
              "agency", "age", "sort", "drafts", "actor", "q", "mine", "tests",
              "closed")  # fmt: skip


def test_no_server_error_on_odd_input(console: dict[str, Any]) -> None:
    server = console["server"]
    sid = console["call"]["call_sid"]
    code = console["call"]["ticket"]["code"]
    c = http_login(server, "adam")
    pages = ("/console/calls", "/console/tickets", "/console/tickets.csv", "/console/dashboard",
             "/console/corrections", "/console/audit", "/console/live", f"/console/calls/{sid}",
             f"/console/tickets/{code}", "/console/api/live/active", "/console/search",
             "/console/templates", "/console/tickets.xlsx", f"/console/calls/{sid}/audio.ogg",
             "/console/drafts/1")  # fmt: skip
    for path in pages:
        for value in ODD_VALUES:
            r = c.get(path, params={k: value for k in QUERY_KEYS})
            assert r.status_code < 500, (path, value, r.status_code)
        for key in QUERY_KEYS:
            r = c.get(path, params={key: "\ud7ff<\"'>" * 20})
            assert r.status_code < 500, (path, key, r.status_code)
    token = csrf_of(c, "/console/operators")
    posts = ("/console/turns/1/correct", "/console/turns/x/correct",
             f"/console/tickets/{code}/status", f"/console/tickets/{code}/assign",
             "/console/tickets/abc/comment", "/console/operators", "/console/operators/nobody",
             f"/console/tickets/{code}/category", "/console/tickets/1234567/category",
             "/console/drafts/1/confirm", "/console/drafts/x/close", "/console/drafts/99/callback",
             "/console/drafts/1/category", "/console/templates")  # fmt: skip
    for path in posts:
        for form in ({"csrf": token}, {"csrf": token, "intent": "<x>", "status": "\x00",
                                       "agency": "..", "action": "role", "role": "god",
                                       "category": "<x>", "sure": "1", "reason": "-",
                                       "t-0": "x" * 5000}):  # fmt: skip
            r = c.post(path, data=form)
            assert r.status_code < 500, (path, form, r.status_code)
    # Signing out ends the session: the same cookie is refused afterwards.
    r = c.post("/console/logout", data={"csrf": token})
    assert r.status_code == 303 and r.headers["location"].startswith("/console/login")
    assert c.get("/console/calls").status_code == 303


def test_recording_is_served_with_ranges_and_only_its_own_path(console: dict[str, Any]) -> None:
    server = console["server"]
    sid = console["call"]["call_sid"]
    c = http_login(server, "olga")
    whole = c.get(f"/console/calls/{sid}/audio")
    assert whole.status_code == 200 and whole.content[:4] == b"RIFF"
    part = c.get(f"/console/calls/{sid}/audio", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-199/{len(whole.content)}"
    assert part.content == whole.content[100:200]
    # For listening, a compressed copy (Ogg Vorbis made with sox); the WAV stays for export.
    small = c.get(f"/console/calls/{sid}/audio.ogg")
    assert small.status_code == 200 and small.content[:4] == b"OggS"
    assert len(small.content) * 8 < len(whole.content)
    assert small.headers["content-type"] == "audio/ogg"
    # A call whose stored path points outside the recordings directory gets nothing.
    db = server.db()
    db.execute(
        "INSERT INTO calls (call_sid, mixed_recording_path, recording_path) VALUES (?, ?, ?)",
        ["CAevil", "/etc/passwd", str(server.data_dir / "hotline.db")],
    )
    db.conn.commit()
    db.conn.close()
    assert c.get("/console/calls/CAevil/audio").status_code == 404
    assert c.get("/console/calls/CAevil/audio.ogg").status_code == 404


def test_csrf_token_is_required(console: dict[str, Any]) -> None:
    server = console["server"]
    code = console["call"]["ticket"]["code"]
    c = http_login(server, "olga")
    token = csrf_of(c, f"/console/tickets/{code}")
    before = len(c.get(f"/console/tickets/{code}").text)
    for data in ({"note": "không có mã"}, {"note": "sai mã", "csrf": "x" * 43}):
        r = c.post(f"/console/tickets/{code}/comment", data=data)
        assert r.status_code == 403 and "CSRF" in r.text
    r = c.post(
        f"/console/tickets/{code}/comment",
        data={"note": "mã đúng nhưng từ trang khác", "csrf": token},
        headers={"Origin": "https://evil.example"},
    )
    assert r.status_code == 403
    assert len(c.get(f"/console/tickets/{code}").text) == before  # nothing was written
    r = c.post(f"/console/tickets/{code}/comment", data={"note": "ghi chú hợp lệ", "csrf": token})
    assert r.status_code == 303
    assert "ghi chú hợp lệ" in c.get(f"/console/tickets/{code}").text
    # The login form has its own token (a cookie and a field that must match).
    with httpx.Client(base_url=server.url) as anon:
        r = anon.post("/console/login", data={"username": "olga", "password": PASSWORD})
        assert r.status_code == 403


def test_lockout_after_repeated_failures(console: dict[str, Any]) -> None:
    server = console["server"]

    codes = [form_login(server, "lena", "sai-mật-khẩu") for _ in range(5)]
    assert codes == [401, 401, 401, 401, 429]
    with httpx.Client(base_url=server.url) as c:
        token = csrf_of(c, "/console/login")
        r = c.post("/console/login", data={"csrf": token, "username": "lena", "password": PASSWORD})
    assert r.status_code == 429 and "tạm khóa" in r.text
    assert form_login(server, "olga", PASSWORD) == 303  # only that name is locked
    db = server.db()
    db.execute(
        "UPDATE console_login_throttle SET locked_until = '2000-01-01T00:00:00.000Z'"
        " WHERE username = 'lena'"
    )
    db.conn.commit()
    actions = {r["action"] for r in db.query("SELECT action FROM audit_log WHERE target = 'lena'")}
    db.conn.close()
    assert {"login_failed", "login_lockout", "login_locked"} <= actions
    assert form_login(server, "lena", PASSWORD) == 303  # fifteen minutes later


def test_media_stream_admits_only_signed_in_pages(console: dict[str, Any]) -> None:
    server = console["server"]
    c = http_login(server, "olga")
    cookie = c.cookies["hotline_session"]
    ws_url = server.url.replace("http://", "ws://") + "/twilio/media"

    async def connect(headers: dict[str, str]) -> str:
        try:
            async with websockets.connect(ws_url, additional_headers=headers) as ws:
                await ws.close()
                return "accepted"
        except websockets.InvalidStatus as exc:
            return str(exc.response.status_code)

    cookie_header = f"hotline_session={cookie}"
    assert asyncio.run(connect({})) == "403"
    assert asyncio.run(connect({"Origin": server.url})) == "403"
    assert (
        asyncio.run(connect({"Cookie": cookie_header, "Origin": "https://evil.example"})) == "403"
    )
    assert asyncio.run(connect({"Cookie": "hotline_session=nope", "Origin": server.url})) == "403"
    assert asyncio.run(connect({"Cookie": cookie_header, "Origin": server.url})) == "accepted"

    # A console stream may not reuse a recorded call's id, nor pose as a phone number.
    db = server.db()
    existing = next(iter(db.query("SELECT call_sid FROM calls LIMIT 1")))["call_sid"]
    db.conn.close()

    async def start(call_sid: str, params: dict[str, str] | None = None) -> str:
        headers = {"Cookie": cookie_header, "Origin": server.url}
        async with websockets.connect(ws_url, additional_headers=headers) as ws:
            await ws.send(
                json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
            )
            await ws.send(
                json.dumps(
                    {
                        "event": "start",
                        "sequenceNumber": "1",
                        "streamSid": "MZ" + "9" * 32,
                        "start": {
                            "callSid": call_sid,
                            "streamSid": "MZ" + "9" * 32,
                            "accountSid": "AC1",
                            "customParameters": params
                            or {"callSid": call_sid, "caller": "+84905123456"},
                            "mediaFormat": {
                                "encoding": "audio/x-mulaw",
                                "sampleRate": 8000,
                                "channels": 1,
                            },
                        },
                    }
                )
            )
            try:
                while True:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if msg["event"] == "media":
                        return "media"
            except websockets.ConnectionClosed as exc:
                return f"closed {exc.rcvd.code if exc.rcvd else None}"

    assert asyncio.run(start(existing)) == "closed 1008"
    fresh = "CA" + "7" * 32
    assert asyncio.run(start(fresh)) == "closed 1008"  # a call the server did not place
    # The page asks the server to place the call; its stream then carries the credential.
    assert c.post("/console/api/test-call").status_code == 403  # CSRF
    placed = c.post("/console/api/test-call", data={"csrf": csrf_of(c, "/console/try")}).json()
    assert asyncio.run(start(placed["callSid"], placed["parameters"])) == "media"
    assert asyncio.run(start(placed["callSid"], placed["parameters"])) == "closed 1008"  # once
    db = server.db()
    rows = db.query("SELECT caller FROM calls WHERE call_sid = ?", [placed["callSid"]])
    caller = next(iter(rows))["caller"]
    db.conn.close()
    assert caller == "console:olga"


# --- in the browser -----------------------------------------------------------------------------


@pytest.mark.browser
def test_call_page_plays_and_seeks(console: dict[str, Any], browser: Any) -> None:
    server = console["server"]
    page = login(browser, server)
    page.click(f"a[href='/console/calls/{console['call']['call_sid']}']")
    page.wait_for_selector("audio#player")
    assert page.locator("li.turn.caller").count() >= 2
    assert "nhà tui ở thôn an hưng" in page.inner_text("ol.turns")
    assert "Phản ánh điện, nước" in page.inner_text("ol.turns")
    assert "report_utilities" not in page.inner_text("ol.turns")  # no intent codes
    page.wait_for_function("document.getElementById('player').readyState >= 2", timeout=15000)
    assert page.evaluate("document.getElementById('player').duration") > 5
    page.evaluate("document.getElementById('player').play()")
    page.wait_for_function("document.getElementById('player').currentTime > 0.3", timeout=10000)
    # Clicking a caller turn seeks to where it starts.
    turn = page.locator("li.turn.caller").nth(1)
    start_s = int(turn.get_attribute("data-start-ms")) / 1000
    assert start_s > 2
    turn.locator("button.seek").click()
    page.wait_for_function(
        f"Math.abs(document.getElementById('player').currentTime - {start_s}) < 1.5",
        timeout=5000,
    )
    page.wait_for_function(
        "document.querySelector('li.turn.playing') !== null"
        f" && Math.abs(Number(document.querySelector('li.turn.playing').dataset.startMs)"
        f" - {start_s * 1000}) < 1"
    )
    assert page.errors == []
    page.context.close()


@pytest.mark.browser
def test_transcript_is_text_never_html(console: dict[str, Any], browser: Any) -> None:
    server = console["server"]
    sid = console["call"]["call_sid"]
    from hotline.store import open_db

    db = open_db(server.data_dir / "hotline.db", migrate=False)
    add_turn(
        db,
        sid,
        speaker="caller",
        kind="speech",
        text=XSS,
        intent="out_of_scope",
        intent_confidence=0.2,
        start_ms=1000,
    )
    db.conn.commit()
    db.conn.close()
    page = login(browser, server, "olga")
    page.goto(f"/console/calls/{sid}")
    assert XSS in page.inner_text("ol.turns")
    assert page.evaluate("window.__xss") is None
    assert page.locator("ol.turns img").count() == 0
    assert page.locator("ol.turns script").count() == 0
    page.goto("/console/calls?low=1&conf=0.5")
    assert sid in page.content()  # the 0.2 turn makes it a low-confidence call
    page.context.close()


@pytest.mark.browser
def test_correct_an_intent_and_export_it(
    console: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    server = console["server"]
    sid = console["call"]["call_sid"]
    page = login(browser, server, "olga")
    page.goto(f"/console/calls/{sid}")
    turn = page.locator("li.turn.caller", has_text="nhà tui ở thôn an hưng")
    turn.locator("summary").click()
    turn.locator("select[name=intent]").select_option("report_infrastructure")
    turn.locator("input[name=location]").fill("thôn an hưng xã triệu phong")
    turn.locator("button[type=submit]").click()
    page.wait_for_selector("p.notice")
    assert "Đã lưu nhãn sửa" in page.inner_text("p.notice")
    fixed = page.locator("li.turn.caller", has_text="nhà tui ở thôn an hưng").locator("p.fixed")
    assert "Phản ánh điện, nước" in fixed.inner_text()
    assert "Phản ánh đường sá, hạ tầng" in fixed.inner_text()
    # A location that is not in the caller's words is refused, in Vietnamese.
    turn = page.locator("li.turn.caller", has_text="nhà tui ở thôn an hưng")
    turn.locator("summary").click()
    turn.locator("input[name=location]").fill("thành phố hồ chí minh")
    turn.locator("button[type=submit]").click()
    assert "nguyên văn" in page.inner_text("main")
    page.context.close()

    # `hotline nlu export-corrections` (the nlu group's command when the lead has added it).
    from hotline.cli import main
    from hotline.console.cli import export_corrections_cmd

    out = tmp_path / "corrections.yml"
    env = {"HOTLINE_DATA_DIR": str(server.data_dir)}
    nlu = main.commands.get("nlu")
    if nlu is not None and "export-corrections" in getattr(nlu, "commands", {}):
        result = CliRunner().invoke(main, ["nlu", "export-corrections", "-o", str(out)], env=env)
    else:
        result = CliRunner().invoke(export_corrections_cmd, ["-o", str(out)], env=env)
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert doc["version"] == "3.1"
    blocks = {b["intent"]: b["examples"] for b in doc["nlu"]}
    assert (
        "- nhà tui ở [thôn an hưng xã triệu phong](location) mất điện từ sáng tới chừ"
        in blocks["report_infrastructure"]
    )

    # The supervisor's confusion view counts it.
    page = login(browser, server, "alice")
    page.goto("/console/corrections")
    rows = page.locator("#confusion tbody tr").all_inner_texts()
    assert any(
        "Phản ánh điện, nước" in r and "Phản ánh đường sá, hạ tầng" in r and r.strip().endswith("1")
        for r in rows
    ), rows
    assert page.locator("svg.heatmap rect.cell").count() >= 1
    assert "report_" not in page.inner_text("main")  # Vietnamese labels, not intent codes
    assert page.locator("#retrain-form button[type=submit]").is_enabled()
    page.context.close()


@pytest.mark.browser
def test_ticket_status_change_shows_in_history(console: dict[str, Any], browser: Any) -> None:
    server = console["server"]
    code = console["call"]["ticket"]["code"]
    page = login(browser, server, "olga")
    page.goto("/console/tickets?status=open")
    page.click(f"a[href='/console/tickets/{code}']")
    assert "thôn an hưng" in page.inner_text("main")  # the caller's words
    assert "Triệu Phong" in page.inner_text("main")  # the place as normalised
    page.select_option("#new-status", "đã tiếp nhận")
    page.fill("#status-note", "Đã chuyển đội sửa chữa điện")
    page.once("dialog", lambda d: d.accept())  # "this note is read to callers"
    page.click("form[action$='/status'] button[type=submit]")
    page.wait_for_selector("p.notice")
    history = page.inner_text("#history")
    assert "mới → đã tiếp nhận" in history
    assert "Đã chuyển đội sửa chữa điện" in history and "olga" in history
    # Assign to another agency from the routing table.
    page.select_option("#agency-select", "ioc")
    page.click("form[action$='/assign'] button[type=submit]")
    page.wait_for_selector("p.notice")
    assert "Trung tâm Giám sát" in page.inner_text("#agency")
    assert "giao lại" in page.inner_text("#history")
    # A form whose CSRF token was removed is refused.
    page.evaluate("document.querySelector(\"form[action$='/comment'] input[name=csrf]\").remove()")
    page.fill("#comment-note", "không có mã chống giả mạo")
    page.click("form[action$='/comment'] button[type=submit]")
    page.wait_for_load_state()
    assert "CSRF" in page.inner_text("main")
    page.goto(f"/console/tickets/{code}")
    assert "không có mã chống giả mạo" not in page.inner_text("#history")
    # CSV export: UTF-8 with a BOM, the operator sees masked numbers.
    r = page.request.get("/console/tickets.csv")
    body = r.body()
    assert body.startswith("\ufeff".encode())
    text = body.decode("utf-8-sig")
    assert code in text and "đã tiếp nhận" in text and "+84905***001" in text
    assert text.startswith("Mã phiếu,Trạng thái,Lĩnh vực") and "Điện, nước" in text
    assert "report_utilities" not in text and ".wav" not in text
    assert "+84905000001" not in text
    page.context.close()


@pytest.mark.browser
def test_dashboard_draws_the_figures(console: dict[str, Any], browser: Any) -> None:
    server = console["server"]
    page = login(browser, server, "alice")
    page.goto("/console/dashboard")
    assert int(page.inner_text("#kpi-calls")) >= 1
    assert int(page.inner_text("#kpi-tickets")) >= 1
    assert page.locator("svg.chart").count() >= 4
    per_day = page.locator("svg.columns").first
    assert per_day.locator("rect.bar").count() == 30  # one per day
    assert per_day.locator("rect.bar.today").count() == 1
    values = per_day.locator("text.value").all_text_contents()
    assert values and int(values[-1]) >= 1  # today's calls
    assert "Điện, nước" in page.inner_text("main")  # the ticket's category
    page.context.close()


@pytest.mark.browser
def test_live_page_shows_a_call_as_it_happens(console: dict[str, Any], browser: Any) -> None:
    server = console["server"]
    page = login(browser, server, "alice")
    page.goto("/console/live")
    page.wait_for_function(
        "document.getElementById('live-status').textContent.includes('Đang nhận')"
    )
    result: dict[str, Any] = {}
    worker = threading.Thread(
        target=lambda: result.update(replay(server, "birth_registration_enquiry"))
    )
    worker.start()
    try:
        first_words = yaml.safe_load(
            (ROOT / "recordings" / "birth_registration_enquiry.yml").read_text(encoding="utf-8")
        )["turns"][0]["text"]
        page.wait_for_selector(f"#live-calls li:has-text('{first_words}')", timeout=60000)
        assert "+84905" in page.inner_text("#live-calls")  # supervisors see the number
    finally:
        worker.join(120)
    assert result.get("outcome")
    page.context.close()


@pytest.mark.browser
def test_try_call_from_the_browser(console: dict[str, Any], browser: Any) -> None:
    server = console["server"]
    page = login(browser, server, "alice")
    page.goto("/console/try")
    # The page's mu-law codec is the server's.
    from hotline.audio import pcm16_to_ulaw, ulaw_to_pcm16

    decoded = page.evaluate("Array.from({length: 256}, (_, c) => HotlineMulaw.decode(c))")
    import numpy as np

    assert decoded == np.frombuffer(ulaw_to_pcm16(bytes(range(256))), "<i2").tolist()
    samples = list(range(-32768, 32768, 97))
    encoded = page.evaluate("(xs) => xs.map((x) => HotlineMulaw.encodeSample(x))", samples)
    assert bytes(encoded) == pcm16_to_ulaw(np.array(samples, dtype=np.int16))
    # Its resampler keeps telephone-band speech and removes what 8 kHz cannot carry.
    gains = page.evaluate(
        """() => {
          const gain = (hz) => {
            const d = new HotlineDownsampler(48000);
            const x = new Float32Array(48000);
            for (let i = 0; i < x.length; i++) x[i] = Math.sin(2 * Math.PI * hz * i / 48000);
            const y = [];
            for (let i = 0; i < x.length; i += 512) y.push(...d.process(x.subarray(i, i + 512)));
            const tail = y.slice(2000);
            return [y.length, Math.max(...tail.map(Math.abs))];
          };
          return [gain(1000), gain(6000)];
        }"""
    )
    (n_1k, peak_1k), (_, peak_6k) = gains
    assert abs(n_1k - 8000) <= 2 and peak_1k > 0.9 and peak_6k < 0.05

    page.click("#call-start")
    page.wait_for_function("Number(document.getElementById('frames-received').textContent) > 50")
    page.wait_for_function(
        "document.getElementById('call-transcript').textContent.includes('bấm phím 1')",
        timeout=30000,
    )
    page.wait_for_function("Number(document.getElementById('marks-echoed').textContent) >= 1")
    page.click(".key[data-digit='1']")
    page.wait_for_function(
        "document.getElementById('call-transcript').textContent.includes('Xin chọn lĩnh vực')",
        timeout=30000,
    )
    call_sid = page.get_attribute("#phone", "data-call-sid")
    page.click("#call-stop")
    page.wait_for_selector("#call-link:not([hidden])")
    assert int(page.text_content("#frames-sent") or 0) > 100  # in the folded technical details
    assert page.errors == []
    db = server.db()
    deadline = time.monotonic() + 10
    call: dict[str, Any] = {}
    while time.monotonic() < deadline:
        rows = list(db.query("SELECT * FROM calls WHERE call_sid = ?", [call_sid]))
        call = rows[0] if rows else {}
        if call.get("hangup_reason") and call.get("flow_path"):
            break
        time.sleep(0.2)
    turns = list(db.query("SELECT * FROM turns WHERE call_sid = ? ORDER BY seq", [call_sid]))
    db.conn.close()
    assert call["caller"] == "console:alice"
    assert call["hangup_reason"] == "stop"
    assert "keypad_report" in call["flow_path"]
    assert any(t["kind"] == "dtmf" and t["text"] == "1" for t in turns)
    # The call page shows who made the test call.
    page.goto(f"/console/calls/{call_sid}")
    assert "Gọi thử: alice" in page.inner_text("dl.facts")
    page.context.close()


@pytest.mark.browser
def test_phone_width_and_keyboard(console: dict[str, Any], browser: Any) -> None:
    server = console["server"]
    page = login(browser, server, "adam", viewport={"width": 390, "height": 844})
    code = console["call"]["ticket"]["code"]
    for path in (
        "/console/calls",
        f"/console/tickets/{code}",
        f"/console/calls/{console['call']['call_sid']}",
        "/console/dashboard",
        "/console/try",
        "/console/operators",
    ):
        page.goto(path)
        assert page.evaluate("document.documentElement.lang") == "vi"
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, (path, overflow)
    # The first Tab lands on the skip link, which moves focus to the content.
    page.goto("/console/calls")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent").startswith("Bỏ qua")
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    # Every form control has a label.
    unlabeled = page.evaluate(
        """() => Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea'))
              .filter((el) => !el.labels || el.labels.length === 0).map((el) => el.name)"""
    )
    assert unlabeled == []
    page.context.close()


@pytest.mark.browser
def test_admin_manages_operators(console: dict[str, Any], browser: Any) -> None:
    server = console["server"]
    page = login(browser, server, "adam")
    page.goto("/console/operators")
    page.fill("#new-username", "tuan")
    page.fill("#new-display", "Trần Văn Tuấn")
    page.select_option("#new-role", "operator")
    page.fill("#new-password", "mật khẩu của tuấn")
    page.fill("#new-password2", "mật khẩu của tuấn")
    page.click("form[action='/console/operators'] button[type=submit]")
    page.wait_for_selector("p.notice")
    assert "Trần Văn Tuấn" in page.inner_text("table")
    listed = server.cli("operators", "list", "--json")
    assert '"tuan"' in listed.stdout
    page.goto("/console/audit")
    log = page.inner_text("table")
    assert "Tạo tài khoản" in log and "adam" in log and "Đăng nhập" in log
    assert "operator_add" not in log
    page.context.close()
    assert form_login(server, "tuan", "mật khẩu của tuấn") == 303
    # Disabling from the CLI refuses its logins from then on.
    assert server.cli("operators", "disable", "tuan").returncode == 0
    assert form_login(server, "tuan", "mật khẩu của tuấn") == 401


def test_cli_operators(console: dict[str, Any]) -> None:
    server = console["server"]
    r = server.cli("operators", "add", "alice", "--password-stdin", input=PASSWORD + "\n")
    assert r.returncode != 0 and "Đã có" in r.stderr
    r = server.cli("operators", "add", "ngan", "--password-stdin", input="ngắn\n")
    assert r.returncode != 0 and "ít nhất 8" in r.stderr
    r = server.cli("operators", "add", "x y", "--password-stdin", input=PASSWORD + "\n")
    assert r.returncode != 0
    r = server.cli("operators", "list")
    assert r.returncode == 0 and "alice" in r.stdout and "Giám sát viên" in r.stdout
    assert "argon2" not in r.stdout
    r = server.cli("operators", "set-password", "olga", "--password-stdin", input="mới-123456\n")
    assert r.returncode == 0
    assert form_login(server, "olga", PASSWORD) == 401
    assert form_login(server, "olga", "mới-123456") == 303
    server.cli("operators", "set-password", "olga", "--password-stdin", input=PASSWORD + "\n")
