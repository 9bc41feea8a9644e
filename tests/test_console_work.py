"""The console's daily work in a real Chromium, at laptop (1366 px) and phone (390 px) width:
search, complete lists, category changes that re-route, drafts, test calls, the containment
figure and the two kinds of ticket notes.

Each width gets its own `hotline serve` (no Rasa: these pages do not need it) and its own copy
of a known mix of calls and tickets (tests/console_seed.py), written with the hotline's own
functions after the server has created its tables and search triggers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from tests import console_seed
from tests.conftest import base_env
from tests.servers import CHROMIUM, CHROMIUM_ARGS, ROOT, HotlineServer, TwilioRestStandIn, free_port

PASSWORD = "mật-khẩu-thử-456"
WIDTHS = {"laptop": (1366, 800), "phone": (390, 844)}

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module", params=list(WIDTHS))
def site(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    twilio_rest: TwilioRestStandIn,
) -> Iterator[dict[str, Any]]:
    env = base_env(twilio_rest) | {"HOTLINE_NLU_URL": f"http://127.0.0.1:{free_port()}"}
    server = HotlineServer(tmp_path_factory.mktemp(f"work-{request.param}"), env).start()
    try:
        for user, role in (("alice", "supervisor"), ("olga", "operator")):
            done = server.cli(
                "operators", "add", user, "--role", role, "--password-stdin", input=PASSWORD + "\n"
            )
            assert done.returncode == 0, done.stderr
        db = server.db()
        with db.conn:
            seeded = console_seed.seed(db)
        db.conn.close()
        yield {"server": server, "seed": seeded, "viewport": WIDTHS[request.param]}
    finally:
        server.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def login(chromium: Any, site: dict[str, Any], user: str = "olga") -> Any:
    width, height = site["viewport"]
    ctx = chromium.new_context(
        base_url=site["server"].url,
        viewport={"width": width, "height": height},
        locale="vi-VN",
        timezone_id="Asia/Ho_Chi_Minh",
        bypass_csp=True,
    )
    page = ctx.new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto("/console/login")
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/calls")
    return page


def today_range() -> str:
    today = datetime.now(console_seed.VN).date().isoformat()
    return f"from={today}&to={today}"


def header_search(page: Any, text: str) -> None:
    page.fill("header #q", text)
    page.press("header #q", "Enter")
    page.wait_for_load_state()


def no_sideways_scroll(page: Any) -> None:
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, (page.url, overflow)


def test_search_by_code_number_and_words(chromium: Any, site: dict[str, Any]) -> None:
    s = site["seed"]
    page = login(chromium, site)
    assert page.locator("header #q").is_visible()
    # A valid code jumps to its ticket.
    header_search(page, s.power_code)
    assert page.url.endswith(f"/console/tickets/{s.power_code}")
    # A code whose check digit is wrong is explained, not silently searched.
    wrong = s.power_code[:-1] + str((int(s.power_code[-1]) + 1) % 10)
    header_search(page, wrong)
    assert "/console/search" in page.url
    assert "sai chữ số kiểm tra" in page.inner_text("#search-message")
    # The last digits of a phone number list that caller's call and ticket.
    header_search(page, "345678")
    assert page.inner_text("#search-tickets-count") == "1"
    assert s.power_code in page.inner_text("#search-tickets")
    assert page.inner_text("#search-calls-count") == "1"
    assert "+84912***678" in page.inner_text("#search-calls")  # still masked for an operator
    # Words, with or without diacritics: power cuts in Triệu Phong, not the water cut there.
    for words in ("mất điện Triệu Phong", "mat dien trieu phong"):
        header_search(page, words)
        found = page.inner_text("#search-tickets")
        assert s.power_code in found and s.water_code not in found, words
        assert "nhà tui ở triệu phong mất điện" in page.inner_text("#search-calls")
        assert "mất nước" not in page.inner_text("#search-calls")
    # A ticket changed after it was indexed is found by its new words (the triggers).
    db = site["server"].db()
    with db.conn:
        db.execute(
            "UPDATE tickets SET description = 'cột điện nghiêng sắp đổ' WHERE code = ?",
            [s.water_code],
        )
    db.conn.close()
    header_search(page, "cot dien nghieng")
    assert s.water_code in page.inner_text("#search-tickets")
    no_sideways_scroll(page)
    assert page.errors == []
    page.context.close()


def test_lists_page_with_counts_dates_and_mine(chromium: Any, site: dict[str, Any]) -> None:
    s = site["seed"]
    page = login(chromium, site)
    page.goto("/console/tickets")
    total = s.confirmed_total
    assert page.inner_text("#tickets-count") == f"1–50 / {total}"
    assert page.locator("#tickets-list tbody tr").count() == 50
    page.click("nav.pager a[rel=next]")
    assert page.inner_text("#tickets-count") == f"51–{total} / {total}"
    assert page.locator("#tickets-list tbody tr").count() == total - 50
    # The oldest, most overdue tickets are reachable (the queue no longer stops at 300 rows).
    page.goto("/console/tickets?sort=oldest")
    assert "ổ gà" in page.locator("#tickets-list tbody tr").first.inner_text()
    # Date shortcuts: today's calls only (19 plus the two test calls, labelled).
    page.goto("/console/calls")
    page.click(".shortcuts a:text-is('Hôm nay')")
    today_calls = console_seed.TOTAL + 2
    assert page.inner_text("#calls-count") == f"1–{today_calls} / {today_calls}"
    page.click(".shortcuts a:text-is('7 ngày')")
    week = today_calls + 5  # and yesterday's five
    assert page.inner_text("#calls-count") == f"1–{week} / {week}"
    # The calls list says what a call was about, in Vietnamese, not intent codes.
    page.goto("/console/calls?tests=hide&outcome=ticket&from=2000-01-01")
    rows = page.inner_text("#calls-list")
    assert "Điện, nước" in rows and "nhà tui ở triệu phong mất điện" in rows
    assert "Xã Triệu Phong" in rows and "Tạo phản ánh" in rows
    assert "report_" not in rows and "affirm" not in rows
    # "Của tôi": the tickets olga touched (she confirmed one draft in the seed).
    page.goto("/console/tickets")
    page.click("#mine-link")
    assert page.inner_text("#tickets-count") == "1–1 / 1"
    assert "Môi trường" in page.inner_text("#tickets-list")
    # At phone width the rows are cards, labelled; the active menu item and the user show.
    display = page.evaluate(
        "getComputedStyle(document.querySelector('#tickets-list tbody tr')).display"
    )
    assert (display == "block") == (site["viewport"][0] < 600)
    assert page.locator("header nav a[aria-current=page]").is_visible()
    assert page.locator("header .me .who").is_visible()
    no_sideways_scroll(page)
    assert page.errors == []
    page.context.close()


def test_category_change_reroutes_with_history(chromium: Any, site: dict[str, Any]) -> None:
    from hotline.tickets.routing import Router

    s = site["seed"]
    router = Router.load(ROOT / "call_flows" / "routing.yml")
    location = {"unit": "Xã Triệu Phong"}
    before = router.route("report_public_order", location, "con chó dại cắn người")
    after = router.route("report_health", location, "con chó dại cắn người")
    assert before.name != after.name  # the table routes the two differently
    page = login(chromium, site)
    page.goto(f"/console/tickets/{s.dog_code}")
    assert page.inner_text("#agency") == before.name
    # The operator corrects the call's intent; the call page offers to fix the ticket too.
    page.goto(f"/console/calls/{s.dog_call}")
    turn = page.locator(f"#turn-{s.dog_turn}")
    turn.locator("summary").click()
    turn.locator("select[name=intent]").select_option("report_health")
    turn.locator("button[type=submit]").click()
    page.wait_for_selector("form.offer")
    assert "Trật tự công cộng" in page.inner_text("form.offer")
    page.click("form.offer button[type=submit]")
    page.wait_for_selector("p.notice")
    assert page.locator("form.offer").count() == 0  # nothing left to apply
    page.goto(f"/console/tickets/{s.dog_code}")
    assert page.inner_text("#category") == "Y tế"
    assert page.inner_text("#agency") == after.name
    history = page.inner_text("#history")
    assert "đổi lĩnh vực: Trật tự công cộng → Y tế" in history
    assert f"{before.name} → {after.name}" in history
    # And straight from the ticket page, back again.
    page.select_option("#new-category", "report_public_order")
    page.click("#category-form button[type=submit]")
    page.wait_for_selector("p.notice")
    assert page.inner_text("#agency") == before.name
    assert page.inner_text("#history").count("đổi lĩnh vực") == 2
    no_sideways_scroll(page)
    assert page.errors == []
    page.context.close()


def test_draft_actions(chromium: Any, site: dict[str, Any]) -> None:
    s = site["seed"]
    server = site["server"]
    page = login(chromium, site)
    page.goto("/console/tickets?drafts=1")
    assert page.locator(f"a[href='/console/drafts/{s.draft_id}']").count() == 1
    # "Gọi lại" shows the whole number, and the audit log says who saw it.
    page.goto(f"/console/drafts/{s.draft2_id}")
    assert "+84987000111" not in page.inner_text("main")
    page.click("#draft-callback button[type=submit]")
    page.wait_for_selector("#caller-number .revealed")
    assert page.inner_text("#caller-number") == "+84987000111"
    assert "xem số để gọi lại" in page.inner_text("#history")
    # "Đóng" needs a reason, shown beside the field; with one, the draft leaves the list.
    page.click("#draft-close button[type=submit]")
    assert "lý do" in page.inner_text("#err-reason")
    assert page.get_attribute("#close-reason", "aria-invalid") == "true"
    page.fill("#close-reason", "Người dân gọi lại báo đã sửa xong")
    page.click("#draft-close button[type=submit]")
    page.wait_for_selector("p.notice")
    assert page.locator(f"a[href='/console/drafts/{s.draft2_id}']").count() == 0
    # "Tạo phiếu" asks for the operator's confirmation, then gives a code and an agency.
    page.goto(f"/console/drafts/{s.draft_id}")
    page.click("#draft-confirm button[type=submit]")
    assert "xác nhận" in page.inner_text("#err-sure")
    page.check("#draft-sure")
    page.click("#draft-confirm button[type=submit]")
    page.wait_for_url(re.compile(r".*/console/tickets/\d{7}.*"))
    code = re.search(r"/tickets/(\d{7})", page.url).group(1)  # type: ignore[union-attr]
    assert page.inner_text("#agency") not in ("", "—")
    assert "xác nhận" in page.inner_text("#history")
    db = server.db()
    actions = [
        (r["action"], r["target"])
        for r in db.query("SELECT action, target FROM audit_log WHERE actor = 'olga'")
    ]
    db.conn.close()
    assert ("caller_number_shown", f"draft:{s.draft2_id}") in actions
    assert ("draft_close", f"draft:{s.draft2_id}") in actions
    assert ("draft_confirm", code) in actions
    no_sideways_scroll(page)
    assert page.errors == []
    page.context.close()


def test_test_calls_are_labelled_and_left_out(chromium: Any, site: dict[str, Any]) -> None:
    s = site["seed"]
    page = login(chromium, site, "alice")
    page.goto("/console/calls?from=2000-01-01")
    for sid in (s.test_call, s.replay_test_call):
        row = page.locator(f"tr[data-call-sid='{sid}']")
        assert "Gọi thử" in row.inner_text()
    page.goto("/console/calls?tests=hide&from=2000-01-01")
    assert page.locator(f"tr[data-call-sid='{s.test_call}']").count() == 0
    # Not in the queue unless asked for; never routed to an agency.
    page.goto("/console/tickets?status=open")
    assert page.locator(f"a[href='/console/tickets/{s.test_code}']").count() == 0
    page.goto("/console/tickets?status=open&tests=1")
    assert page.locator(f"a[href='/console/tickets/{s.test_code}']").count() == 1
    page.goto(f"/console/tickets/{s.test_code}")
    assert "cuộc gọi thử" in page.inner_text("#agency")
    assert "Gọi thử" in page.inner_text(".test-note")
    page.goto(f"/console/dashboard?{today_range()}")
    assert page.inner_text("#kpi-calls") == str(console_seed.TOTAL)
    assert "Không tính 2 cuộc gọi thử" in page.inner_text("main")
    assert page.errors == []
    page.context.close()


def test_containment_figure_on_a_known_mix(chromium: Any, site: dict[str, Any]) -> None:
    page = login(chromium, site, "alice")
    page.goto(f"/console/dashboard?{today_range()}")
    expected = round(100 * console_seed.CONTAINED / console_seed.TOTAL)
    assert page.inner_text("#kpi-containment") == f"{expected}%"
    box = page.inner_text("#containment")
    assert f"({console_seed.CONTAINED}/{console_seed.TOTAL})" in box
    definition = page.inner_text("#containment-definition")
    assert "không cần người" in definition and "khẩn cấp" in definition.lower()
    # Today's column is labelled, and a click on it opens that day's calls.
    assert page.locator("svg.columns text.today-label").count() == 1
    page.locator("svg.columns a:has(rect.today)").first.click()
    page.wait_for_url("**/console/calls?**")
    assert page.inner_text("#calls-count").endswith(f"/ {console_seed.TOTAL}")
    page.go_back()
    # Charts open on their recent end when they scroll (phone width).
    page.goto("/console/dashboard")
    ends = page.evaluate(
        """() => Array.from(document.querySelectorAll('.chart-scroll')).map(
              (b) => b.scrollWidth - b.clientWidth - b.scrollLeft)"""
    )
    assert all(gap <= 1 for gap in ends), ends
    # Open tickets by how long they have waited.
    assert page.locator("svg.chart", has_text="thời gian chờ").count() == 1
    no_sideways_scroll(page)
    assert page.errors == []
    page.context.close()


def test_internal_and_status_notes_look_different(chromium: Any, site: dict[str, Any]) -> None:
    s = site["seed"]
    page = login(chromium, site)
    page.goto(f"/console/tickets/{s.power_code}")
    # The status dropdown does not choose the next status for the operator.
    assert page.input_value("#new-status") == ""
    assert "Người gọi sẽ nghe" in page.inner_text("#status-form")
    assert "Chỉ cán bộ thấy" in page.inner_text("#comment-form")
    colours = page.evaluate(
        """() => ['#status-form', '#comment-form'].map(
              (s) => getComputedStyle(document.querySelector(s)).backgroundColor)"""
    )
    assert colours[0] != colours[1]
    # An internal note goes in without a question.
    page.fill("#comment-note", "Đã gọi điện lực, chờ phản hồi")
    page.click("#comment-form button[type=submit]")
    page.wait_for_selector("p.notice")
    # A status note warns first; declining keeps it unsaved.
    page.select_option("#new-status", "đã tiếp nhận")
    page.fill("#status-note", "Điện lực đang cử người tới")
    page.once("dialog", lambda d: d.dismiss())
    page.click("#status-form button[type=submit]")
    page.wait_for_timeout(300)
    assert "Điện lực đang cử người tới" not in page.inner_text("#history")
    messages: list[str] = []

    def accept(dialog: Any) -> None:
        messages.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.click("#status-form button[type=submit]")
    page.wait_for_selector("p.notice")
    assert messages and "ĐỌC TO" in messages[0]
    public = page.locator("#history .note.public")
    internal = page.locator("#history .note.internal")
    assert "Báo người gọi: Điện lực đang cử người tới" in public.inner_text()
    assert "Nội bộ: Đã gọi điện lực, chờ phản hồi" in internal.inner_text()
    styles = page.evaluate(
        """() => ['#history .note.public', '#history .note.internal'].map(
              (s) => getComputedStyle(document.querySelector(s)).backgroundColor)"""
    )
    assert styles[0] != styles[1]
    # A refusal without a reason: the message sits beside the note, the choice is kept.
    page.select_option("#new-status", "từ chối")
    page.click("#status-form button[type=submit]")
    page.wait_for_selector("#err-note")
    assert "lý do" in page.inner_text("#err-note") and "--note" not in page.inner_text("main")
    assert page.input_value("#new-status") == "từ chối"
    assert page.get_attribute("#status-note", "aria-invalid") == "true"
    no_sideways_scroll(page)
    assert page.errors == []
    page.context.close()


def test_supervisor_edits_status_templates(chromium: Any, site: dict[str, Any]) -> None:
    s = site["seed"]
    page = login(chromium, site, "alice")
    page.goto("/console/templates")
    field = page.locator("#templates-form textarea").first  # "đã tiếp nhận"
    field.fill("x" * 600)
    page.click("#templates-form button[type=submit]")
    assert "dài quá" in page.inner_text("#templates-form .field-error")  # beside the field
    assert page.get_attribute("#t-0", "aria-invalid") == "true"
    field = page.locator("#t-0")
    field.fill("Đã nhận phản ánh, cán bộ sẽ tới trong hôm nay.")
    page.click("#templates-form button[type=submit]")
    page.wait_for_selector("p.notice")
    # The ticket page offers it for the status note; choosing it fills the note.
    page.goto(f"/console/tickets/{s.water_code}")
    page.select_option("#status-template", "Đã nhận phản ánh, cán bộ sẽ tới trong hôm nay.")
    assert page.input_value("#status-note") == "Đã nhận phản ánh, cán bộ sẽ tới trong hôm nay."
    assert page.errors == []
    page.context.close()


def test_status_enquiry_links_call_and_ticket(chromium: Any, site: dict[str, Any]) -> None:
    s = site["seed"]
    page = login(chromium, site)
    page.goto(f"/console/tickets/{s.power_code}")
    assert page.inner_text("#asked").startswith("Người dân gọi hỏi")
    assert "1 lần" in page.inner_text("#asked")
    page.click("#asked a")
    page.wait_for_url(f"**/console/calls/{s.enquiry_call}")
    page.click(f".lookup a[href='/console/tickets/{s.power_code}']")
    page.wait_for_url(f"**/console/tickets/{s.power_code}")
    assert page.errors == []
    page.context.close()
