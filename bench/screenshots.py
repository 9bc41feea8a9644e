"""Screenshots of the operators' console for the README, taken from a real run.

    .venv/bin/python bench/screenshots.py [--out bench/screenshots]

Starts `hotline serve` on a temporary data directory (with its own Rasa server, sidecar speech
recognition and a loopback stand-in for Twilio's REST API), creates accounts with the CLI,
replays recorded calls from recordings/ through the Twilio stand-in, works a few tickets and
corrects a few intents through the console itself, then photographs each page with Debian's
headless Chromium: at laptop width (1366 px) and, for some pages, at phone width (390 px).
Besides the replayed calls, a known mix of calls and tickets (tests/console_seed.py) fills the
lists, the search and the dashboard the way a working day would.
The live page is taken during a call replayed in real time, and "Gọi thử" during a call made
from the browser (Chromium's fake microphone, fed silence).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import wave
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hotline.replay import Recording  # noqa: E402
from tests.conftest import base_env  # noqa: E402
from tests.servers import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    HotlineServer,
    TwilioRestStandIn,
    free_port,
)

PASSWORD = "mật-khẩu-minh-họa"
CALLS = (
    "power_cut_with_place",
    "keypad_only_report",
    "birth_registration_enquiry",
    "flood_without_place",
    "request_human",
    "emergency_fire",
    "hangup_mid_report",
    "silent_caller",
)


def replay(server: HotlineServer, name: str, *, fast: bool = True) -> dict[str, Any]:
    rec = Recording.load(ROOT / "recordings" / f"{name}.wav")
    return asyncio.run(server.replay(rec, fast=fast)).summary()


def login(browser: Any, server: HotlineServer, user: str, width: int = 1366) -> Any:
    height = 844 if width < 600 else 800
    ctx = browser.new_context(
        base_url=server.url,
        viewport={"width": width, "height": height},
        device_scale_factor=1,
        locale="vi-VN",
        timezone_id="Asia/Ho_Chi_Minh",
        bypass_csp=True,  # Playwright's wait_for_function evaluates strings
    )
    page = ctx.new_page()
    page.on("dialog", lambda d: d.accept())  # "this status note is read to callers"
    page.goto("/console/login")
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/calls")
    return page


def shoot(page: Any, out: Path, name: str, *, full: bool = True) -> None:
    page.wait_for_timeout(250)
    path = out / f"{name}.png"
    page.screenshot(path=str(path), full_page=full)
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


# Operators' corrections on these recordings, as a person listening would make them: the place
# marked where the intent was right, and one answer that closed the call labelled a goodbye.
CORRECTIONS = (
    (
        "power_cut_with_place",
        "nhà tui ở thôn an hưng",
        "report_utilities",
        "thôn an hưng xã triệu phong",
    ),
    ("flood_without_place", "ở thôn phước mỹ", "report_disaster", "thôn phước mỹ xã hải lăng"),
    ("birth_registration_enquiry", "không cần nữa", "goodbye", ""),
)


def work_the_console(page: Any, calls: dict[str, dict[str, Any]]) -> None:
    """What an operator would do: correct intents, move tickets along."""
    for name, words, intent, place in CORRECTIONS:
        page.goto(f"/console/calls/{calls[name]['call_sid']}")
        turn = page.locator("li.turn.caller", has_text=words).first
        turn.locator("summary").click()
        turn.locator("select[name=intent]").select_option(intent)
        turn.locator("input[name=location]").fill(place)
        turn.locator("button[type=submit]").click()
        page.wait_for_selector("p.notice")
    steps = [
        ("đã tiếp nhận", "Đã chuyển cho đơn vị phụ trách"),
        ("đang xử lý", "Đội sửa chữa đang đến"),
    ]
    for name in ("power_cut_with_place", "keypad_only_report"):
        ticket = calls[name].get("ticket")
        if not ticket:
            continue
        for status, note in steps:
            page.goto(f"/console/tickets/{ticket['code']}")
            page.select_option("#new-status", status)
            page.fill("#status-note", note)
            page.click("form[action$='/status'] button[type=submit]")
            page.wait_for_selector("p.notice")
        steps = [*steps, ("đã xử lý", "Đã thay bóng đèn đường")]
    page.goto(f"/console/tickets/{calls['power_cut_with_place']['ticket']['code']}")
    page.fill("#comment-note", "Người dân báo lại lúc 9 giờ: vẫn chưa có điện.")
    page.click("form[action$='/comment'] button[type=submit]")
    page.wait_for_selector("p.notice")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "screenshots")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    rest = TwilioRestStandIn().start()
    tmp = Path(tempfile.mkdtemp(prefix="hotline-screens-"))
    env = base_env(rest) | {
        "HOTLINE_NLU_MANAGE": "true",
        "HOTLINE_NLU_URL": f"http://127.0.0.1:{free_port()}",
    }
    server = HotlineServer(tmp / "data", env).start()
    try:
        server.wait_for_nlu(timeout=600)  # Rasa loads slowly on a busy 2-core machine
        for user, role, display in (
            ("lan", "supervisor", "Nguyễn Thị Lan"),
            ("hung", "operator", "Lê Văn Hùng"),
            ("quantri", "admin", "Quản trị hệ thống"),
        ):
            done = server.cli(
                "operators", "add", user, "--role", role, "--name", display,
                "--password-stdin", input=PASSWORD + "\n",
            )  # fmt: skip
            if done.returncode:
                raise RuntimeError(done.stderr)
        calls = {name: replay(server, name) for name in CALLS}
        from tests.console_seed import seed

        db = server.db()
        with db.conn:
            seeded = seed(db)
        db.conn.close()
        silence = tmp / "silence.wav"
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
            ctx = browser.new_context(
                base_url=server.url, viewport={"width": 1366, "height": 800}, locale="vi-VN"
            )
            page = ctx.new_page()
            page.goto("/console/login")
            shoot(page, out, "login", full=False)
            ctx.close()

            page = login(browser, server, "hung")
            work_the_console(page, calls)
            page.context.close()

            page = login(browser, server, "lan")
            page.goto("/console/calls")
            shoot(page, out, "calls")
            power = calls["power_cut_with_place"]
            page.goto(f"/console/calls/{power['call_sid']}")
            page.locator("li.turn.caller details.correct").nth(1).locator("summary").click()
            shoot(page, out, "call")
            page.goto("/console/tickets")
            shoot(page, out, "tickets")
            page.goto(f"/console/tickets/{power['ticket']['code']}")
            shoot(page, out, "ticket")
            page.goto("/console/dashboard")
            shoot(page, out, "dashboard")
            page.goto("/console/corrections")
            shoot(page, out, "corrections")
            page.goto("/console/search?q=m%E1%BA%A5t+%C4%91i%E1%BB%87n+Tri%E1%BB%87u+Phong")
            shoot(page, out, "search")
            page.goto(f"/console/drafts/{seeded.draft_id}")
            shoot(page, out, "draft")
            page.goto(f"/console/calls/{seeded.dog_call}")
            turn = page.locator(f"#turn-{seeded.dog_turn}")
            turn.locator("summary").click()
            turn.locator("select[name=intent]").select_option("report_health")
            turn.locator("button[type=submit]").click()
            page.wait_for_selector("form.offer")
            shoot(page, out, "category-offer", full=False)
            page.goto("/console/templates")
            shoot(page, out, "templates")

            # Live: a call replayed in real time, photographed mid-call.
            page.goto("/console/live")
            worker = threading.Thread(
                target=replay, args=(server, "power_cut_with_place"), kwargs={"fast": False}
            )
            worker.start()
            page.wait_for_function(
                "document.querySelectorAll('#live-calls li.caller').length >= 1", timeout=60000
            )
            page.wait_for_timeout(1500)
            shoot(page, out, "live", full=False)
            worker.join(180)

            # Gọi thử: a call from the browser, photographed after the menu.
            page.goto("/console/try")
            page.click("#call-start")
            page.wait_for_function(
                "document.getElementById('call-transcript').textContent.includes('bấm phím 1')"
                " && Number(document.getElementById('marks-echoed').textContent) >= 2",
                timeout=60000,
            )
            page.click(".key[data-digit='1']")
            page.wait_for_function(
                "document.getElementById('call-transcript').textContent.includes('lĩnh vực')",
                timeout=60000,
            )
            page.wait_for_timeout(1500)
            shoot(page, out, "try")
            page.click("#call-stop")
            page.context.close()

            page = login(browser, server, "quantri")
            page.goto("/console/operators")
            shoot(page, out, "operators")
            page.context.close()

            page = login(browser, server, "hung", width=390)
            page.goto("/console/calls")
            shoot(page, out, "calls-phone", full=False)
            page.goto(f"/console/calls/{power['call_sid']}")
            shoot(page, out, "call-phone", full=False)
            page.goto(f"/console/tickets/{power['ticket']['code']}")
            shoot(page, out, "ticket-phone", full=False)
            page.context.close()
            page = login(browser, server, "lan", width=390)
            page.goto("/console/dashboard")
            shoot(page, out, "dashboard-phone", full=False)
            page.context.close()
            browser.close()
    finally:
        server.stop()
        rest.stop()


if __name__ == "__main__":
    main()
