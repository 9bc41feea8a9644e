# ruff: noqa: F811  (pytest fixtures imported from test_flow_engine are parameters here)
"""Conversation repair in the pure flow engine: callers who change their mind.

Several reports in one call, corrections at a read-back, cancellation, digressions, an
emergency in the middle of a report, clarification between two close intents, and repeating
or slowing down. Events in, actions out: no server, no NLU, no audio.
"""

from __future__ import annotations

import pytest

from hotline.dialogue import engine as fe
from hotline.dialogue.flow import FlowError, load_flow

# The engine tests' fixtures (flow, kb) and helpers, shared rather than copied.
from tests.test_flow_engine import FLOWS, convo, flow, kb, of, said, utter  # noqa: F401

TRIEU_PHONG = {"raw": "thôn an hưng xã triệu phong", "name": "Xã Triệu Phong", "code": "19501"}
GIO_LINH = {"raw": "xã gio linh", "name": "Xã Gio Linh", "code": "19318"}


def at_read_back(flow, kb, text="mất điện từ sáng tới chừ") -> fe.Conversation:
    c = convo(flow, kb)
    c.handle(utter(text, "report_utilities", location=TRIEU_PHONG))
    assert c.state == "report_confirm"
    return c


def correction(flow, text, fragment_intent=None, **kw) -> fe.Utterance:
    """What the session builds: the whole utterance, and the words after the marker parsed."""
    rest = fe.split_correction(text, flow.repairs["correction_markers"], flow.repairs["fillers"])
    frag = utter(rest, fragment_intent, 0.8, **kw) if rest else None
    return utter(text, "deny", 0.9, fragment=frag)


# --- one ticket per report -------------------------------------------------------------------


def test_after_a_ticket_the_next_report_starts_a_fresh_draft(flow, kb) -> None:
    c = at_read_back(flow, kb)
    assert of(c.handle(utter("đúng rồi", "affirm")), fe.OpenTicket)
    a = c.handle(fe.TicketOpened("4821937", "Điện lực Quảng Trị"))
    assert c.state == "anything_else" and "4 8 2, 1 9 3 7" in said(a)

    a = c.handle(utter("với lại rác đổ đầy đầu kiệt", "report_environment"))
    draft = of(a, fe.SaveDraft)[0].fields
    # Nothing of the first report leaks into the second.
    assert draft["category"] == "report_environment"
    assert draft["description"] == "với lại rác đổ đầy đầu kiệt"
    assert draft["location"] is None and draft["location_raw"] is None
    assert c.state == "report_ask_place"
    c.handle(utter("ở phường đông hà", None, location={"raw": "phường đông hà", "name": "P"}))
    opened = of(c.handle(fe.Digit("1")), fe.OpenTicket)
    assert opened and opened[0].fields["category"] == "report_environment"
    c.handle(fe.TicketOpened("5930218", "UBND phường"))
    assert c.ctx["codes"] == ["4821937", "5930218"]


def test_a_voice_message_after_a_ticket_is_its_own_report(flow, kb) -> None:
    c = at_read_back(flow, kb)
    c.handle(fe.Digit("1"))
    c.handle(fe.TicketOpened("4821937", "Điện lực"))
    c.handle(utter("cho tui gặp cán bộ", "request_human"))
    assert c.state == "leave_message"
    a = c.handle(fe.MessageRecorded("cống thoát nước bị tắc", 1000, 4000))
    fields = of(a, fe.SaveDraft)[0].fields
    assert fields["category"] == "voice_message" and fields["channel"] == "voice_message"
    assert fields["description"] == "cống thoát nước bị tắc"
    assert of(a, fe.OpenTicket)


# --- corrections -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rest"),
    [
        ("không, ở xã Gio Linh", "ở xã Gio Linh"),
        ("Không phải, ở phường Nam Đông Hà", "ở phường Nam Đông Hà"),
        ("à nhầm, ở thôn Tân An", "ở thôn Tân An"),
        ("dạ không phải mất điện, là mất nước", "mất nước"),
        ("không", ""),
        ("sai rồi ạ", ""),
        ("mất điện ở thôn Tân An", None),
        ("đúng rồi", None),
    ],
)
def test_split_correction_finds_the_new_value(flow, text, rest) -> None:
    r = flow.repairs
    assert fe.split_correction(text, r["correction_markers"], r["fillers"]) == rest


def test_no_with_a_new_place_replaces_only_the_place(flow, kb) -> None:
    c = at_read_back(flow, kb)
    a = c.handle(correction(flow, "không, ở xã Gio Linh", location=GIO_LINH))
    assert c.state == "report_confirm"
    fields = of(a, fe.SaveDraft)[0].fields
    assert fields["location"] == GIO_LINH
    assert fields["description"] == "mất điện từ sáng tới chừ"  # kept
    assert fields["category"] == "report_utilities"  # kept
    assert "Xã Gio Linh" in said(a) and "Triệu Phong" not in said(a)
    assert "mất điện từ sáng" in said(a)


def test_a_place_the_gazetteer_does_not_know_is_kept_as_said(flow, kb) -> None:
    c = at_read_back(flow, kb)
    a = c.handle(correction(flow, "à nhầm, ở thôn Tân An"))
    fields = of(a, fe.SaveDraft)[0].fields
    assert fields["location_raw"] == "thôn Tân An" and fields["location"] is None
    assert "tại thôn Tân An" in said(a)


def test_no_with_new_content_replaces_only_the_content(flow, kb) -> None:
    c = at_read_back(flow, kb)
    a = c.handle(correction(flow, "không phải mất điện, là mất nước", "report_utilities"))
    fields = of(a, fe.SaveDraft)[0].fields
    assert fields["description"] == "mất nước"
    assert fields["location"] == TRIEU_PHONG  # kept
    assert c.state == "report_confirm" and "Nội dung: mất nước" in said(a)


def test_new_content_of_another_kind_changes_the_category(flow, kb) -> None:
    c = at_read_back(flow, kb)
    a = c.handle(correction(flow, "không phải, là cây đổ chắn đường", "report_infrastructure"))
    fields = of(a, fe.SaveDraft)[0].fields
    assert fields["category"] == "report_infrastructure"
    assert "đường sá" in said(a)


def test_a_correction_needs_no_no_first(flow, kb) -> None:
    c = at_read_back(flow, kb)
    a = c.handle(utter("ở thôn Tân An", "report_utilities", 0.6))
    assert of(a, fe.SaveDraft)[0].fields["location_raw"] == "thôn Tân An"
    assert c.state == "report_confirm"


def test_a_bare_no_asks_what_to_change_and_takes_the_keypad(flow, kb) -> None:
    c = at_read_back(flow, kb)
    a = c.handle(utter("không", "deny"))
    assert c.state == "report_fix" and "phím 1" in said(a)
    a = c.handle(fe.Digit("1"))
    assert c.state == "report_ask_place"
    a = c.handle(utter("xã gio linh", None, location=GIO_LINH))
    assert c.state == "report_confirm"
    fields = of(a, fe.SaveDraft)[0].fields
    assert fields["location"] == GIO_LINH and fields["description"] == "mất điện từ sáng tới chừ"


def test_a_bare_no_then_content_by_voice(flow, kb) -> None:
    c = at_read_back(flow, kb)
    c.handle(utter("không", "deny"))
    a = c.handle(utter("nội dung", None))
    assert c.state == "report_ask_content"
    a = c.handle(utter("mất nước hai ngày rồi", "report_utilities"))
    assert c.state == "report_confirm" and "mất nước hai ngày" in said(a)
    assert of(a, fe.SaveDraft)[0].fields["location"] == TRIEU_PHONG


def test_a_code_read_back_can_be_corrected(flow, kb) -> None:
    c = convo(flow, kb)
    c.handle(fe.Digit("3"))
    for d in "4821937#":
        a = c.handle(fe.Digit(d))
    assert of(a, fe.LookupTicket)
    c.handle(fe.TicketLookup("ok", "4821937", "mới", "", "report_utilities"))
    assert c.state == "anything_else"
    frag = utter("mã 5930218", None, ticket_code="5930218")
    a = c.handle(utter("không phải, mã 5930218", "deny", fragment=frag))
    assert of(a, fe.LookupTicket) == [fe.LookupTicket("5930218")]


# --- cancellation ----------------------------------------------------------------------------


def test_cancel_drops_the_draft_says_so_and_asks_again(flow, kb) -> None:
    c = at_read_back(flow, kb)
    a = c.handle(utter("thôi khỏi, không phản ánh nữa", "cancel"))
    assert of(a, fe.CancelDraft) == [fe.CancelDraft("caller")]
    assert "đã hủy" in said(a)
    assert c.state == "open_again" and not of(a, fe.OpenTicket)
    a = c.handle(utter("đèn đường hư", "report_infrastructure"))
    assert of(a, fe.SaveDraft)[0].fields["description"] == "đèn đường hư"  # a fresh report


def test_cancel_with_nothing_in_progress_cancels_nothing(flow, kb) -> None:
    c = convo(flow, kb)
    a = c.handle(utter("hủy", "cancel"))
    assert not of(a, fe.CancelDraft) and c.state == "open_again"


# --- digression ------------------------------------------------------------------------------


def test_a_question_mid_report_is_answered_then_the_report_resumes(flow, kb) -> None:
    c = at_read_back(flow, kb)
    a = c.handle(utter("mà đường dây này làm việc giờ nào", "ask_hotline_info"))
    text = said(a)
    assert "Quay lại phản ánh của quý vị" in text
    assert text.index("Quay lại") > 0  # the answer comes first
    assert c.state == "report_confirm" and "mất điện từ sáng" in text.split("Quay lại")[1]
    assert of(c.handle(fe.Digit("1")), fe.OpenTicket)


def test_a_question_while_the_place_is_asked_returns_to_the_place(flow, kb) -> None:
    c = convo(flow, kb)
    c.handle(utter("rác đổ đầy đường", "report_environment"))
    assert c.state == "report_ask_place"
    a = c.handle(utter("đường dây này có mất tiền không", "ask_hotline_info"))
    assert c.state == "report_ask_place" and "địa điểm" in said(a).split("Quay lại")[1]


# --- emergency mid-report --------------------------------------------------------------------


def test_emergency_mid_report_says_the_numbers_first_and_keeps_the_report(flow, kb) -> None:
    c = at_read_back(flow, kb)
    a = c.handle(utter("ối có cháy nhà hàng xóm rồi", "emergency"))
    says = of(a, fe.Say)
    assert "1 1 4" in says[0].text and says[0].interruptible is False
    assert c.state == "emergency_keep_report"
    assert of(a, fe.SaveDraft)[0].fields["priority"] == "urgent"
    assert c.outcome == "emergency"
    # Silence files it, urgent.
    a = c.handle(fe.Silence())
    opened = of(a, fe.OpenTicket)
    assert opened and opened[0].fields["priority"] == "urgent"
    assert opened[0].fields["description"] == "mất điện từ sáng tới chừ"


def test_emergency_mid_report_no_cancels_the_report(flow, kb) -> None:
    c = at_read_back(flow, kb)
    c.handle(utter("có người đuối nước", "emergency"))
    a = c.handle(fe.Digit("2"))
    assert of(a, fe.CancelDraft) and c.state == "open_again"


def test_emergency_without_a_report_asks_nothing_about_one(flow, kb) -> None:
    c = convo(flow, kb)
    c.handle(utter("cháy nhà", "emergency"))
    assert c.state == "anything_else"


# --- clarification ---------------------------------------------------------------------------


def close(text, a, b, ca=0.48, cb=0.40) -> fe.Utterance:
    return utter(text, a, ca, ranking=((a, ca), (b, cb), ("greet", 0.02)))


def test_two_close_intents_are_asked_about_not_guessed(flow, kb) -> None:
    c = convo(flow, kb)
    a = c.handle(close("cái giấy tờ đất đai", "report_administration", "ask_public_service"))
    assert c.state == "clarify" and not of(a, fe.SaveDraft)
    assert "thủ tục, thái độ cán bộ, hay hỏi thủ tục hành chính" in said(a)
    a = c.handle(fe.Digit("2"))
    assert c.state in ("answer", "anything_else", "answer_followup")


def test_clarification_is_answered_by_voice_with_the_label_words(flow, kb) -> None:
    c = convo(flow, kb)
    c.handle(close("đèn đường với nước", "report_utilities", "report_infrastructure"))
    a = c.handle(utter("điện nước", None))
    draft = of(a, fe.SaveDraft)[0].fields
    assert draft["category"] == "report_utilities"
    assert draft["description"] == "đèn đường với nước"  # the original words, not the answer


def test_clarification_by_the_answer_intent(flow, kb) -> None:
    c = convo(flow, kb)
    c.handle(close("cái giấy tờ đất đai", "report_administration", "ask_public_service"))
    a = c.handle(utter("tui muốn hỏi thủ tục", "ask_public_service"))
    assert not of(a, fe.SaveDraft) and c.state != "clarify"


def test_a_clear_winner_is_not_asked_about(flow, kb) -> None:
    c = convo(flow, kb)
    c.handle(close("mất điện", "report_utilities", "report_infrastructure", 0.9, 0.05))
    assert c.state == "report_ask_place"


def test_an_emergency_while_clarifying_still_wins(flow, kb) -> None:
    c = convo(flow, kb)
    c.handle(close("cái giấy tờ đất đai", "report_administration", "ask_public_service"))
    c.handle(utter("cháy rồi", "emergency"))
    assert "emergency" in c.path


# --- repeat and slow down --------------------------------------------------------------------


def test_star_repeats_the_last_prompt(flow, kb) -> None:
    c = at_read_back(flow, kb)
    a = c.handle(fe.Digit("*"))
    assert "Tôi xin nhắc lại" in said(a) and c.state == "report_confirm"


def test_slow_down_slows_speech_for_the_rest_of_the_call_and_repeats(flow, kb) -> None:
    c = at_read_back(flow, kb)
    a = c.handle(utter("nói chậm thôi", "slow_down"))
    assert of(a, fe.SetPace) == [fe.SetPace("slow")]
    assert a.index(of(a, fe.SetPace)[0]) < a.index(of(a, fe.Say)[0])  # before the repeat
    assert "Tôi xin nhắc lại" in said(a)


# --- NLU down at a yes/no step ---------------------------------------------------------------


def test_a_yes_still_confirms_when_nlu_is_down(flow, kb) -> None:
    c = at_read_back(flow, kb)
    a = c.handle(fe.Utterance("dạ đúng rồi", nlu_down=True))
    assert of(a, fe.OpenTicket)


def test_a_no_still_works_when_nlu_is_down(flow, kb) -> None:
    c = at_read_back(flow, kb)
    c.handle(fe.Utterance("dạ không", nlu_down=True))
    assert c.state == "report_fix"


# --- validation ------------------------------------------------------------------------------


def test_unknown_repair_keys_and_missing_clarify_state_fail_at_load(tmp_path) -> None:
    base = (FLOWS / "main.yml").read_text(encoding="utf-8")
    bad = tmp_path / "main.yml"
    bad.write_text(base.replace("  fillers:", "  filers:"), encoding="utf-8")
    with pytest.raises(FlowError, match="repairs: unknown key 'filers'"):
        load_flow(bad)
    bad.write_text(base.replace("  clarify_state: clarify\n", ""), encoding="utf-8")
    with pytest.raises(FlowError, match="clarify_margin needs clarify_state"):
        load_flow(bad)
    bad.write_text(base.replace("goto: report_ask_content}", "goto: nowhere}"), encoding="utf-8")
    with pytest.raises(FlowError, match="unknown state 'nowhere'"):
        load_flow(bad)


def test_a_ticket_that_could_not_be_saved_is_said_and_no_code_is_read(flow, kb) -> None:
    c = at_read_back(flow, kb)
    c.handle(fe.Digit("1"))
    a = c.handle(fe.TicketFailed("database or disk is full"))
    assert "chưa lưu được phản ánh" in said(a)
    assert "Mã phản ánh" not in said(a)
    assert c.state in ("leave_message", "operator_transfer")
    assert c.ctx.get("description") == "mất điện từ sáng tới chừ"  # kept for the next try


# --- rating a resolved ticket ----------------------------------------------------------------


def looked_up(flow, kb, resolved: bool) -> tuple[fe.Conversation, list]:
    c = convo(flow, kb)
    c.handle(fe.Digit("3"))
    for d in "6152040#":
        c.handle(fe.Digit(d))
    status = "đã xử lý" if resolved else "đang xử lý"
    return c, c.handle(fe.TicketLookup("ok", "6152040", status, "Đã thay bóng", "", resolved))


def test_a_resolved_ticket_is_rated_satisfied_by_key(flow, kb) -> None:
    c, a = looked_up(flow, kb, resolved=True)
    assert c.state == "rate_ask" and "hài lòng" in said(a)
    a = c.handle(fe.Digit("1"))
    assert of(a, fe.RateTicket) == [fe.RateTicket("6152040", True)]
    assert c.state == "anything_else"


def test_not_satisfied_reopens_with_the_callers_words(flow, kb) -> None:
    c, _ = looked_up(flow, kb, resolved=True)
    a = c.handle(utter("chưa hài lòng", "deny"))
    assert c.state == "rate_unhappy"
    a = c.handle(utter("đèn lại tắt rồi", "report_infrastructure"))
    assert of(a, fe.RateTicket) == [fe.RateTicket("6152040", False, "đèn lại tắt rồi")]
    assert "mở lại" in said(a)


def test_an_open_ticket_is_not_rated(flow, kb) -> None:
    c, _ = looked_up(flow, kb, resolved=False)
    assert c.state == "anything_else" and "rate_ask" not in c.path
