"""The call flow engine, on its own: events in, actions out, no server."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hotline.dialogue import engine as fe
from hotline.dialogue.flow import FlowError, load_flow, load_flows
from hotline.dialogue.knowledge import KnowledgeBase

FLOWS = Path(__file__).resolve().parent.parent / "call_flows"
PLACE = {"raw": "thôn an hưng xã triệu long", "name": "Xã Triệu Phong", "code": "19501"}


@pytest.fixture(scope="module")
def flow():
    return load_flows(FLOWS)


@pytest.fixture(scope="module")
def kb():
    return KnowledgeBase.load(FLOWS / "knowledge.yml")


def convo(flow, kb, **env) -> fe.Conversation:
    c = fe.Conversation(flow, kb, env=env)
    c.start()
    return c


def says(actions) -> list[fe.Say]:
    return [a for a in actions if isinstance(a, fe.Say)]


def said(actions) -> str:
    return " ".join(a.text for a in says(actions))


def of(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


def utter(text: str, intent: str | None, conf: float = 0.95, **kw) -> fe.Utterance:
    return fe.Utterance(text=text, intent=intent, confidence=conf, **kw)


# --- greeting --------------------------------------------------------------------------------


def test_greeting_gives_the_recording_notice_and_an_open_question(flow, kb) -> None:
    actions = fe.Conversation(flow, kb).start()
    text = said(actions)
    assert "ghi âm" in text
    assert "trợ lý tự động" in text.lower()  # the AI Law: callers know they talk to a machine
    assert "Quý vị cần phản ánh hay hỏi gì?" in text
    assert "bấm phím 1" not in text  # the keypad hint waits for a silence or a miss
    assert isinstance(actions[-1], fe.Listen) and actions[-1].mode == "speech"


# --- field report ----------------------------------------------------------------------------


def test_report_with_a_place_is_confirmed_then_opened_and_its_code_read_twice(flow, kb) -> None:
    c = convo(flow, kb)
    a = c.handle(utter("mất điện từ sáng tới chừ", "report_utilities", location=PLACE))
    draft = of(a, fe.SaveDraft)[0].fields
    assert draft["category"] == "report_utilities"
    assert draft["description"] == "mất điện từ sáng tới chừ"
    assert c.state == "report_confirm"
    assert "Xã Triệu Phong" in said(a) and "điện, nước" in said(a)
    assert of(a, fe.Listen)[0].grammar == "yes_no"

    a = c.handle(utter("đúng rồi", "affirm"))
    assert of(a, fe.OpenTicket)[0].fields["location"] == PLACE
    assert not says(a)  # nothing is said before the ticket is on disk
    assert c.listen_mode() == "none"

    a = c.handle(fe.TicketOpened("4821937", "Công ty Điện lực Quảng Trị"))
    code_say = [s for s in says(a) if s.prompt == "ticket_code"][0]
    assert not code_say.interruptible
    assert code_say.text.count("4 8 2, 1 9 3 7") == 2
    assert "Công ty Điện lực Quảng Trị" in code_say.text
    assert of(a, fe.SendSms)[0].code == "4821937"
    assert c.state == "anything_else" and c.outcome == "ticket"

    a = c.handle(utter("nói lại cái mã", "repeat"))
    assert "4 8 2, 1 9 3 7" in said(a)
    a = c.handle(utter("thôi không cần", "deny"))
    assert of(a, fe.Hangup) and c.outcome == "ticket"


def test_report_without_a_place_asks_for_it(flow, kb) -> None:
    c = convo(flow, kb)
    a = c.handle(utter("nước ngập hết đường rồi", "report_disaster"))
    assert c.state == "report_ask_place" and "địa điểm" in said(a)
    # Whatever the caller says next is the place, even if the classifier is unsure of it.
    a = c.handle(utter("ở thôn phước mỹ", "nlu_fallback", 0.3))
    assert c.state == "report_confirm"
    assert of(a, fe.SaveDraft)[0].fields["location_raw"] == "ở thôn phước mỹ"
    assert "ở thôn phước mỹ" in said(a)


def test_report_denied_then_start_again_is_taken_again(flow, kb) -> None:
    c = convo(flow, kb)
    c.handle(utter("đường bị sụt lún", "report_infrastructure", location=PLACE))
    a = c.handle(fe.Digit("2"))
    assert c.state == "report_fix" and not of(a, fe.OpenTicket)
    a = c.handle(fe.Digit("3"))
    assert c.state == "report_redo" and not of(a, fe.OpenTicket)
    a = c.handle(utter("đèn đường hư cả tuần ở khu phố 3", "report_infrastructure", location=PLACE))
    assert c.state == "report_confirm"
    assert "đèn đường hư" in said(a) and "sụt lún" not in said(a)
    assert of(c.handle(fe.Digit("1")), fe.OpenTicket)


def test_hangup_in_the_middle_of_a_report_leaves_a_draft_and_no_ticket(flow, kb) -> None:
    c = convo(flow, kb)
    a = c.handle(utter("rác đổ đầy ven đường", "report_environment", location=PLACE))
    assert of(a, fe.SaveDraft)
    a = c.handle(fe.HungUp("caller"))
    assert of(a, fe.SetOutcome)[0].outcome == "abandoned"
    assert not of(a, fe.OpenTicket)
    assert c.handle(utter("đúng", "affirm")) == []  # nothing happens after the end


# --- enquiries -------------------------------------------------------------------------------


def test_enquiry_is_answered_from_the_knowledge_base(flow, kb) -> None:
    c = convo(flow, kb)
    a = c.handle(utter("cho tui hỏi làm giấy khai sinh cho cháu thì đi mô", "ask_public_service"))
    assert c.ctx["answer_id"] == "khai_sinh"
    assert kb.entry("khai_sinh").spoken in said(a)
    assert c.outcome == "answered"
    # The answer offers a related one (the online portal); yes reads it, then "anything else?".
    followup = kb.entry("khai_sinh").followup
    assert c.state == "answer_followup" and followup.prompt in said(a)
    a = c.handle(fe.Digit("1"))
    assert kb.entry(followup.entry_id).spoken in said(a)
    assert "Quý vị còn cần hỗ trợ gì nữa không?" in said(a)


def test_an_answer_without_followup_asks_if_anything_else(flow, kb) -> None:
    c = convo(flow, kb)
    a = c.handle(utter("gọi số ni có mất tiền không", "ask_hotline_info"))
    assert kb.entry(c.ctx["answer_id"]).followup is None
    assert says(a)[-1].text == "Quý vị còn cần hỗ trợ gì nữa không?"
    assert c.state == "anything_else"


def test_keypad_procedures_menu(flow, kb) -> None:
    c = convo(flow, kb)
    a = c.handle(fe.Digit("2"))
    assert c.state == "procedures_menu" and "bấm phím" in said(a)
    a = c.handle(fe.Digit("2"))
    assert c.ctx["answer_id"] == kb.menu.entry_id("2")
    assert kb.entry(kb.menu.entry_id("2")).spoken in said(a)
    c = convo(flow, kb)
    c.handle(fe.Digit("2"))
    a = c.handle(fe.Utterance("", None))  # noise: asked again, not an answer
    assert c.state == "procedures_menu"


# --- ticket status ---------------------------------------------------------------------------


def test_ticket_status_by_keypad(flow, kb) -> None:
    c = convo(flow, kb)
    c.handle(fe.Digit("3"))
    assert c.state == "status_ask_code" and c.listen_mode() == "digits"
    for d in "2827043":
        assert c.handle(fe.Digit(d)) == []  # digits are data here, not the menu
    a = c.handle(fe.Digit("#"))
    assert of(a, fe.LookupTicket)[0].code == "2827043"
    a = c.handle(fe.TicketLookup("ok", "2827043", "đang xử lý", "Đội điện đang sửa"))
    assert "đang xử lý" in said(a) and "Đội điện đang sửa" in said(a)
    assert c.outcome == "status_given"


def test_ticket_status_by_voice_uses_the_recognised_code(flow, kb) -> None:
    c = convo(flow, kb)
    a = c.handle(
        utter(
            "phản ánh mã hai tám hai bảy không bốn ba tới đâu rồi",
            "ask_ticket_status",
            ticket_code="2827043",
        )
    )
    assert of(a, fe.LookupTicket)[0].code == "2827043"


def test_a_misheard_code_is_asked_again_then_a_person_takes_over(flow, kb) -> None:
    c = convo(flow, kb, operators_available=True)
    c.handle(fe.Digit("3"))
    for d in "2827044#":
        a = c.handle(fe.Digit(d))
    a = c.handle(fe.TicketLookup("invalid_code", "2827044"))
    assert "không hợp lệ" in said(a) and c.state == "status_ask_code"
    for d in "2827045#":
        a = c.handle(fe.Digit(d))
    a = c.handle(fe.TicketLookup("invalid_code", "2827045"))
    assert of(a, fe.Transfer)[0].to == "operator"


# --- emergencies and people ------------------------------------------------------------------


def test_emergency_from_any_state_says_the_numbers_at_once(flow, kb) -> None:
    c = convo(flow, kb)
    c.handle(utter("cây đổ chắn đường", "report_disaster", location=PLACE))
    assert c.state == "report_confirm"
    a = c.handle(utter("cháy nhà hàng xóm rồi cứu với", "emergency"))
    first = says(a)[0]
    assert not first.interruptible
    assert "1 1 4" in first.text and "1 1 3" in first.text and "1 1 5" in first.text
    assert first.text.startswith("Có cháy")  # the number for this emergency comes first
    assert not of(a, fe.Transfer)  # no emergency transfer configured


def test_emergency_is_transferred_where_configured(flow, kb) -> None:
    c = convo(flow, kb, emergency_transfer=True)
    a = c.handle(utter("có người đuối nước", "emergency"))
    assert of(a, fe.Transfer)[0].to == "emergency"
    a = c.handle(fe.TransferResult(True))
    assert of(a, fe.Hangup)


def test_request_human_transfers_in_operator_hours(flow, kb) -> None:
    c = convo(flow, kb, operators_available=True)
    a = c.handle(utter("cho tui gặp người thật", "request_human"))
    assert of(a, fe.Transfer)[0].to == "operator"
    assert says(a)[-1].prompt == "transfer_operator"


def test_outside_operator_hours_a_voice_message_becomes_a_ticket(flow, kb) -> None:
    c = convo(flow, kb, operators_available=False)
    a = c.handle(fe.Digit("0"))
    assert of(a, fe.Listen)[0].mode == "message"
    a = c.handle(fe.MessageRecorded("nhà tui bị mất nước ba ngày", 1000, 5000))
    fields = of(a, fe.OpenTicket)[0].fields
    assert fields["category"] == "voice_message" and fields["channel"] == "voice_message"
    assert fields["message_span"] == [1000, 5000]
    a = c.handle(fe.TicketOpened("2827043"))
    assert c.outcome == "message"


def test_failed_transfer_falls_back_to_a_message(flow, kb) -> None:
    c = convo(flow, kb, operators_available=True)
    c.handle(utter("gặp tổng đài viên", "request_human"))
    a = c.handle(fe.TransferResult(False))
    assert of(a, fe.Listen)[0].mode == "message"


def test_two_misunderstandings_in_a_row_go_to_a_person(flow, kb) -> None:
    c = convo(flow, kb, operators_available=True)
    a = c.handle(utter("ờ thì cái chuyện đó", "nlu_fallback", 0.2))
    assert "chưa hiểu" in said(a) and c.state == "greeting"
    a = c.handle(utter("cái kia kìa", "out_of_scope", 0.3))  # below min_confidence
    assert of(a, fe.Transfer)


def test_nlu_down_goes_to_a_person(flow, kb) -> None:
    c = convo(flow, kb, operators_available=True)
    a = c.handle(fe.Utterance("mất điện", nlu_down=True))
    assert of(a, fe.Transfer)


def test_digits_still_work_when_nlu_is_down(flow, kb) -> None:
    c = convo(flow, kb)
    c.handle(fe.Digit("3"))
    a = c.handle(fe.Utterance("2827043", nlu_down=True))
    assert of(a, fe.LookupTicket)[0].code == "2827043"


# --- silence and goodbye ---------------------------------------------------------------------


def test_silence_reprompts_then_says_goodbye_and_hangs_up(flow, kb) -> None:
    c = convo(flow, kb)
    a = c.handle(fe.Silence())
    assert "chưa nghe thấy" in said(a) and of(a, fe.Listen)
    assert "ghi âm" not in said(a)  # the reprompt is shorter than the greeting
    c.handle(fe.Silence())
    a = c.handle(fe.Silence())
    assert of(a, fe.Hangup)[0].reason == "no_input"
    assert c.outcome == "no_input"


def test_goodbye_ends_the_call_politely(flow, kb) -> None:
    c = convo(flow, kb)
    a = c.handle(utter("thôi cảm ơn nghe", "goodbye"))
    assert "Cảm ơn" in said(a)
    assert isinstance(a[-1], fe.Hangup)


# --- keypad-only report ----------------------------------------------------------------------


def test_a_report_made_entirely_by_keypad(flow, kb) -> None:
    c = convo(flow, kb)
    c.handle(fe.Digit("1"))
    assert c.state == "keypad_report"
    a = c.handle(fe.Digit("2"))
    assert c.state == "keypad_record" and of(a, fe.Listen)[0].mode == "message"
    c.handle(fe.MessageRecorded("", 3000, 9000))  # the recogniser made nothing of it
    a = c.handle(fe.Digit("1"))
    fields = of(a, fe.OpenTicket)[0].fields
    assert fields["category"] == "report_infrastructure"
    assert fields["channel"] == "keypad" and fields["message_span"] == [3000, 9000]


# --- loading and validation ------------------------------------------------------------------


def write_flow(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load((FLOWS / "main.yml").read_text(encoding="utf-8"))
    mutate(data)
    path = tmp_path / "main.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (
            lambda d: d["states"]["greeting"].update(say=["no_such_prompt"]),
            "unknown prompt 'no_such_prompt'",
        ),
        (lambda d: d["states"]["report_place"].update(next="nowhere"), "unknown state 'nowhere'"),
        # (YAML 1.1 reads the bare key `on` as true; the loader accepts both.)
        (
            lambda d: d["states"]["greeting"][True].update(report_weather="answer"),
            "unknown event or intent",
        ),
        (lambda d: d["states"]["answer"].update(do=["fly"]), "unknown operation 'fly'"),
        (
            lambda d: d["states"]["report_place"]["next"][0].update({"if": "is_raining"}),
            "unknown condition",
        ),
        (lambda d: d["states"]["greeting"].update(listen="telepathy"), "listen must be one of"),
        (lambda d: d.update(start="nowhere"), "start state 'nowhere'"),
        (
            lambda d: d["states"].update(
                orphan={"say": ["goodbye"], "do": ["hangup"], "listen": "none"}
            ),
            "unreachable states ['orphan']",
        ),
        (lambda d: d["states"]["report_confirm"].update(grammar="klingon"), "unknown grammar"),
        (lambda d: d["states"]["report_open"].update(listen="speech"), "waits for an answer"),
    ],
)
def test_a_bad_flow_file_fails_fast_naming_the_file_and_problem(tmp_path, mutate, problem) -> None:
    path = write_flow(tmp_path, mutate)
    with pytest.raises(FlowError) as err:
        load_flow(path)
    assert str(path) in str(err.value)
    assert problem in str(err.value)


def test_broken_yaml_is_named(tmp_path) -> None:
    path = tmp_path / "main.yml"
    path.write_text("states: [unclosed", encoding="utf-8")
    with pytest.raises(FlowError, match="not valid YAML"):
        load_flow(path)


def test_every_fixed_prompt_is_nfc_and_rendered_at_start(flow) -> None:
    import unicodedata

    for text in flow.prompts.values():
        assert unicodedata.is_normalized("NFC", text)
    assert "Quý vị còn cần hỗ trợ gì nữa không?" in flow.fixed_texts()
    assert all("{" not in t for t in flow.fixed_texts())
