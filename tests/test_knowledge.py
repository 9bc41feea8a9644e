"""The enquiry knowledge base: call_flows/knowledge.yml and hotline.dialogue.knowledge.

Utterances are written the way they reach the matcher: recognised speech (no punctuation,
sometimes no tones), Central dialect ("mô", "ni", "răng", "chi", "tui", "mạ", "bọ", "mần",
"chừ"), fillers and fragments.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import unicodedata
import wave
from pathlib import Path
from typing import Any

import pytest
import yaml

from hotline.config import Settings, load_settings
from hotline.dialogue.knowledge import (
    INTENTS,
    KnowledgeBase,
    KnowledgeBaseError,
    fold,
)

KB_PATH = Path(__file__).resolve().parent.parent / "call_flows" / "knowledge.yml"
PUB = "ask_public_service"
INFO = "ask_hotline_info"


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return KnowledgeBase.load(KB_PATH)


# (intent from the NLU, what the caller said, entry expected)
CASES: list[tuple[str | None, str, str]] = [
    # khai sinh
    (PUB, "cho tui hỏi làm giấy khai sinh cho cháu nội thì đi mô", "khai_sinh"),
    (PUB, "dạ cho tui hỏi con dâu tui mới đẻ thì làm giấy tờ chi cho cháu", "khai_sinh"),
    (PUB, "khai sanh cho con thì mang theo cái chi", "khai_sinh"),
    (PUB, "lam giay khai sinh co mat tien khong", "khai_sinh"),
    (PUB, "cháu nội tui sinh được hai tháng rồi chưa làm khai sinh có bị phạt không", "khai_sinh"),
    (PUB, "rứa thì đi mô mà làm khai sinh", "khai_sinh"),
    (PUB, "tui bị mất giấy khai sinh làm lại ở mô", "khai_sinh"),
    # khai tử
    (PUB, "ông nội tui mất rồi thì làm giấy chi", "khai_tu"),
    (PUB, "mạ tui mới mất thì đi mô làm giấy chứng tử", "khai_tu"),
    (PUB, "bà nội qua đời rồi giờ làm thủ tục chi", "khai_tu"),
    (PUB, "khai tu o dau", "khai_tu"),
    (PUB, "hắn chết rồi thì làm giấy chi", "khai_tu"),
    (PUB, "bọ tui mất rồi làm khai tử ở mô", "khai_tu"),
    # cư trú
    (PUB, "tui đi làm ăn xa muốn đăng ký tạm trú", "cu_tru"),
    (PUB, "nhap ho khau cho con dau", "cu_tru"),
    (PUB, "sổ hộ khẩu giờ còn dùng không", "cu_tru"),
    (PUB, "con tui đi làm ở thành phố phải khai báo tạm trú không", "cu_tru"),
    (PUB, "tui ở trọ đăng ký tạm trú ở đâu", "cu_tru"),
    # căn cước, định danh điện tử
    (PUB, "lam can cuoc o dau", "can_cuoc"),
    (PUB, "con tui đủ mười bốn tuổi rồi làm căn cước ở mô", "can_cuoc"),
    (PUB, "mất chứng minh nhân dân rồi làm răng", "can_cuoc"),
    (PUB, "thẻ căn cước bị mất rồi làm răng", "can_cuoc"),
    (PUB, "chừ tui muốn mần cái căn cước thì mần răng", "can_cuoc"),
    (PUB, "cấp lại căn cước mất bao nhiêu tiền", "can_cuoc"),
    (INFO, "làm căn cước ở mô", "can_cuoc"),  # the NLU picked the wrong enquiry intent
    (PUB, "cài vneid như thế nào", "dinh_danh_dien_tu"),
    (PUB, "làm định danh mức hai ở mô", "dinh_danh_dien_tu"),
    (PUB, "tài khoản định danh điện tử làm răng", "dinh_danh_dien_tu"),
    # đất đai
    (PUB, "làm sổ đỏ mất bao lâu", "dat_dai"),
    (PUB, "muốn tách thửa đất cho con thì làm răng", "dat_dai"),
    (PUB, "giấy đất nhà tui bị sai tên", "dat_dai"),
    (PUB, "so do o dau lam", "dat_dai"),
    (PUB, "mua đất rồi sang tên ở mô", "dat_dai"),
    # kinh doanh
    (PUB, "tui muốn mở quán tạp hóa có phải đăng ký không", "kinh_doanh"),
    (PUB, "đăng ký hộ kinh doanh ở đâu", "kinh_doanh"),
    (PUB, "thành lập công ty thì nộp ở mô", "kinh_doanh"),
    (PUB, "mở tiệm bán hàng có cần giấy phép không", "kinh_doanh"),
    # hôn nhân
    (PUB, "con tui sắp cưới thì làm giấy kết hôn ở mô", "ket_hon"),
    (PUB, "dang ky ket hon can giay to gi", "ket_hon"),
    (PUB, "con gái tui lấy chồng thì đăng ký ở xã mô", "ket_hon"),
    (PUB, "xin giấy xác nhận độc thân ở đâu", "xac_nhan_hon_nhan"),
    (PUB, "giấy xác nhận tình trạng hôn nhân có giá trị bao lâu", "xac_nhan_hon_nhan"),
    (PUB, "xin giấy độc thân để đi làm", "xac_nhan_hon_nhan"),
    # hộ chiếu
    (PUB, "tui muốn đi xuất khẩu lao động làm hộ chiếu ở mô", "ho_chieu"),
    (PUB, "lam ho chieu mat bao lau", "ho_chieu"),
    (PUB, "hộ chiếu hết hạn thì đổi ở mô", "ho_chieu"),
    (PUB, "đi nước ngoài làm giấy chi", "ho_chieu"),
    # lệ phí, nơi nộp, trực tuyến, chứng thực
    (PUB, "làm giấy tờ có mất tiền không", "le_phi"),
    (PUB, "lệ phí bao nhiêu", "le_phi"),
    (PUB, "hộ nghèo có phải nộp tiền không", "le_phi"),
    (PUB, "giờ không còn huyện thì lên mô nộp hồ sơ", "noi_nop_ho_so"),
    (PUB, "nộp hồ sơ ở đâu", "noi_nop_ho_so"),
    (PUB, "bộ phận một cửa ở mô", "noi_nop_ho_so"),
    (PUB, "trung tâm hành chính công tỉnh ở mô", "noi_nop_ho_so"),
    (PUB, "nộp hồ sơ trên mạng được không", "dich_vu_cong"),
    (PUB, "dich vu cong truc tuyen la gi", "dich_vu_cong"),
    (PUB, "làm online được không", "dich_vu_cong"),
    (PUB, "chứng thực bản sao ở đâu", "chung_thuc"),
    (PUB, "photo công chứng giấy tờ ở mô", "chung_thuc"),
    # the hotline itself
    (INFO, "đường dây ni làm chi", "hotline_gioi_thieu"),
    (INFO, "số ni là số chi rứa", "hotline_gioi_thieu"),
    (INFO, "đây có phải máy trả lời tự động không", "hotline_gioi_thieu"),
    (INFO, "tổng đài ni làm việc mấy giờ", "hotline_gio"),
    (INFO, "ban đêm có ai nghe máy không", "hotline_gio"),
    (INFO, "thứ bảy chủ nhật có làm không", "hotline_gio"),
    (INFO, "gọi số ni có mất tiền không", "hotline_cuoc_goi"),
    (PUB, "gọi số ni có mất tiền không", "hotline_cuoc_goi"),  # wrong intent, still the call
    (INFO, "gọi đây có mất tiền không", "hotline_cuoc_goi"),
    (INFO, "goi so nay co ton tien khong", "hotline_cuoc_goi"),
    (INFO, "cuộc gọi tính tiền răng", "hotline_cuoc_goi"),
    (INFO, "gọi một chín không không có đắt không", "hotline_cuoc_goi"),
    (INFO, "có zalo không", "hotline_kenh_khac"),
    (INFO, "phản ánh bằng cách khác được không", "hotline_kenh_khac"),
    (INFO, "tui nhắn tin được không", "hotline_kenh_khac"),
    (INFO, "tui phản ánh rồi thì bao lâu có kết quả", "hotline_ma_phan_anh"),
    (INFO, "quên mã phản ánh rồi", "hotline_ma_phan_anh"),
    (INFO, "số cứu hỏa là số mấy", "khan_cap"),
    (INFO, "gọi cấp cứu số mấy", "khan_cap"),
    (INFO, "một một năm là số chi", "khan_cap"),
    # no intent at all (NLU down): matching alone still works
    (None, "làm giấy khai sinh ở mô", "khai_sinh"),
    (None, "gọi số ni có mất tiền không", "hotline_cuoc_goi"),
]

UNRELATED = [
    "trời hôm nay mưa to quá",
    "con trâu nhà tui bị lạc",
    "hôm qua nhà tui bị mất điện",
    "đường trước nhà bị ngập nước",
    "cần giấy tờ chi",
    "tiền trợ cấp người già bao giờ có",
    "xin chào",
    "cho tui hỏi chút",
    "dạ ạ",
    "ờ ờ ờ",
    "",
]


@pytest.mark.parametrize(("intent", "text", "expected"), CASES)
def test_caller_utterance_finds_entry(
    kb: KnowledgeBase, intent: str | None, text: str, expected: str
) -> None:
    answer = kb.answer(intent, text)
    assert (answer.entry_id, answer.matched) == (expected, True), kb.rank(intent, text)[:3]
    entry = kb.entry(expected)
    assert answer.spoken == entry.spoken and answer.title == entry.title
    assert answer.score >= kb.threshold


@pytest.mark.parametrize(("intent", "text", "expected"), CASES)
def test_tones_case_punctuation_and_unicode_form_do_not_matter(
    kb: KnowledgeBase, intent: str | None, text: str, expected: str
) -> None:
    variants = [
        fold(text),  # typed or recognised without tones
        text.upper() + "?",
        "Dạ, alo! " + text.capitalize() + ", ạ.",  # fillers around it
        unicodedata.normalize("NFD", text),  # decomposed input
    ]
    for variant in variants:
        assert kb.answer(intent, variant).entry_id == expected, variant


@pytest.mark.parametrize("text", UNRELATED)
def test_unrelated_text_gets_the_fallback(kb: KnowledgeBase, text: str) -> None:
    answer = kb.answer(PUB, text)
    assert answer.matched is False
    assert answer.entry_id == kb.fallback.id
    assert answer.spoken == kb.fallback.spoken
    assert answer.score < kb.threshold


def test_hotline_question_without_match_gets_the_intent_default(kb: KnowledgeBase) -> None:
    answer = kb.answer(INFO, "đây là số của ai")
    assert (answer.entry_id, answer.matched) == (kb.intent_defaults[INFO], False)
    assert answer.entry_id == "hotline_gioi_thieu"
    # The default is per intent: the same words as a public-service question fall back.
    assert kb.answer(PUB, "đây là số của ai").entry_id == kb.fallback.id


def test_every_keyword_alone_answers_its_own_entry(kb: KnowledgeBase) -> None:
    # A keyword that another entry outscores is dead weight or, worse, a wrong answer.
    wrong = [
        (e.id, kw, kb.answer(e.intent, kw).entry_id)
        for e in kb.entries
        for kw in e.keywords
        if kb.answer(e.intent, kw).entry_id != e.id
    ]
    assert wrong == []


def test_fold() -> None:
    assert fold("Đăng ký KHAI SINH, ạ!") == "dang ky khai sinh a"
    assert fold(unicodedata.normalize("NFD", "Quảng Trị")) == "quang tri"
    assert fold("dịch vụ công: dichvucong.gov.vn") == "dich vu cong dichvucong gov vn"
    assert fold("  \t ") == ""


# ------------------------------------------------------------------ the real file's content
def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in _strings(k) + _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def test_every_text_in_the_file_is_nfc() -> None:
    raw = KB_PATH.read_text(encoding="utf-8")
    assert unicodedata.is_normalized("NFC", raw)
    strings = _strings(yaml.safe_load(raw))
    assert len(strings) > 300
    assert [s for s in strings if not unicodedata.is_normalized("NFC", s)] == []


def test_topics_of_the_issue_are_covered(kb: KnowledgeBase) -> None:
    ids = {e.id for e in kb.entries}
    assert {
        "khai_sinh",
        "khai_tu",
        "cu_tru",
        "can_cuoc",
        "dinh_danh_dien_tu",
        "dat_dai",
        "kinh_doanh",
        "xac_nhan_hon_nhan",
        "ket_hon",
        "ho_chieu",
        "le_phi",
        "noi_nop_ho_so",
        "dich_vu_cong",
        "hotline_gioi_thieu",
        "hotline_gio",
        "hotline_cuoc_goi",
        "hotline_kenh_khac",
        "khan_cap",
    } <= ids
    assert {e.intent for e in kb.entries} == set(INTENTS)


DIGIT_WORDS = {
    "0": "không",
    "1": "một",
    "2": "hai",
    "3": "ba",
    "4": "bốn",
    "5": "năm",
    "6": "sáu",
    "7": "bảy",
    "8": "tám",
    "9": "chín",
}


def test_menu_digits_point_at_entries_and_are_announced(kb: KnowledgeBase) -> None:
    assert sorted(kb.menu.items) == [str(d) for d in range(1, 10)]
    prompt = kb.menu.prompt.lower()
    for digit, entry_id in kb.menu.items.items():
        entry = kb.menu_entry(digit)
        assert entry is not None and entry.id == entry_id
        assert entry.intent == PUB  # key 2 is "procedures"
        assert f"bấm phím {DIGIT_WORDS[digit]}." in prompt, digit
    assert "bấm phím không" in prompt  # 0 stays the operator
    assert kb.menu_entry("0") is None and kb.menu_entry("#") is None
    assert len(set(kb.menu.items.values())) == 9


def test_followups_offer_another_existing_entry(kb: KnowledgeBase) -> None:
    followups = [e for e in kb.entries if e.followup]
    assert followups
    for e in followups:
        assert e.followup is not None
        assert kb.entry(e.followup.entry_id).id != e.id
        assert "bấm phím một" in e.followup.prompt


def test_all_spoken_texts_cover_every_fixed_text_once(kb: KnowledgeBase) -> None:
    texts = kb.all_spoken_texts()
    assert len(texts) == len(set(texts))
    expected = {e.spoken for e in kb.entries}
    expected |= {e.followup.prompt for e in kb.entries if e.followup}
    expected |= {kb.fallback.spoken, kb.menu.prompt, kb.menu.invalid}
    assert set(texts) == expected


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.?!])\s+", text.strip()) if s]


def test_answers_are_short_spoken_sentences(kb: KnowledgeBase) -> None:
    for e in (*kb.entries, kb.fallback):
        sentences = _sentences(e.spoken)
        assert 2 <= len(sentences) <= 5, (e.id, len(sentences))
        for s in sentences:
            assert len(s.split()) <= 30, (e.id, s)  # syllables: one breath for an old listener
        # The loader keeps the voice's text free of what espeak-ng cannot say.
        assert not re.search(r"\d|https?:|\w\.\w|UBND|VNeID", e.spoken), e.id


def test_answers_fit_in_forty_seconds_of_the_configured_voice(kb: KnowledgeBase) -> None:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    settings = load_settings()
    for text in kb.all_spoken_texts():
        wav = subprocess.run(
            [espeak, "-v", settings.tts_voice, "-s", str(settings.tts_rate), "--stdout", text],
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout
        with wave.open(io.BytesIO(wav)) as w:
            # --stdout writes a streaming header with no frame count: measure the data.
            seconds = (len(wav) - 44) / w.getsampwidth() / w.getframerate()
        assert 2.0 < seconds <= 40.0, (seconds, text[:50])


def test_only_known_numbers_appear_in_the_file() -> None:
    # No invented phone numbers, addresses or prices: any run of three or more digits must be
    # the hotline, the national emergency numbers or the year of the reform.
    allowed = {"1900868674", "1900", "113", "114", "115", "2025"}
    runs = set(re.findall(r"\d{3,}", KB_PATH.read_text(encoding="utf-8")))
    assert runs <= allowed, runs - allowed


def test_operator_hours_match_the_default_setting(kb: KnowledgeBase) -> None:
    default = Settings.model_fields["operator_hours"].default
    m = re.fullmatch(r"mon-fri (\d\d):(\d\d)-(\d\d):(\d\d)", default)
    assert m, f"operator_hours default changed to {default!r}: update hotline_gio"
    start_h, start_m, end_h, end_m = (int(g) for g in m.groups())
    hours = kb.entry("hotline_gio")
    assert f"từ {start_h} giờ {start_m} đến {end_h} giờ" in hours.text
    assert "thứ Hai đến thứ Sáu" in hours.text and "thứ Hai đến thứ Sáu" in hours.spoken
    assert "24 giờ" in hours.text and "hai mươi bốn giờ" in hours.spoken


def test_emergency_answer_names_the_three_numbers(kb: KnowledgeBase) -> None:
    e = kb.entry("khan_cap")
    for digits, words in (("113", "một một ba"), ("114", "một một bốn"), ("115", "một một năm")):
        assert digits in e.text and words in e.spoken
    assert "một chín không không, tám sáu tám, sáu bảy bốn" in kb.entry("hotline_gioi_thieu").spoken


def test_entry_lookup(kb: KnowledgeBase) -> None:
    assert kb.entry(kb.fallback.id) is kb.fallback
    with pytest.raises(KeyError):
        kb.entry("khong_co")


# ------------------------------------------------------------------ the loader refuses bad files
def _valid() -> dict[str, Any]:
    return {
        "version": 1,
        "entries": [
            {
                "id": "khai_sinh",
                "intent": PUB,
                "title": "Khai sinh",
                "keywords": ["khai sinh", "giấy khai sinh"],
                "spoken": "Đăng ký khai sinh tại xã. Không mất lệ phí.",
                "followup": {"prompt": "Nghe thêm không? Bấm phím một.", "entry": "gioi_thieu"},
            },
            {
                "id": "gioi_thieu",
                "intent": INFO,
                "title": "Đường dây",
                "keywords": ["đường dây nóng"],
                "spoken": "Đây là đường dây nóng. Xin cảm ơn.",
                "text": "Đường dây nóng 1900868674.",
            },
        ],
        "fallback": {"id": "khong_ro", "title": "Không rõ", "spoken": "Xin hỏi xã. Cảm ơn."},
        "intent_defaults": {INFO: "gioi_thieu"},
        "menu": {
            "prompt": "Khai sinh, bấm phím một.",
            "invalid": "Phím không đúng.",
            "items": {"1": "khai_sinh"},
        },
    }


def _write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "knowledge.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def test_minimal_valid_file_loads(tmp_path: Path) -> None:
    kb = KnowledgeBase.load(_write(tmp_path, _valid()))
    assert [e.id for e in kb.entries] == ["khai_sinh", "gioi_thieu"]
    assert kb.entry("gioi_thieu").text == "Đường dây nóng 1900868674."
    assert kb.entry("khai_sinh").text == kb.entry("khai_sinh").spoken  # text defaults to spoken
    assert kb.answer(PUB, "lam giay khai sinh").entry_id == "khai_sinh"
    assert kb.menu.entry_id("1") == "khai_sinh"


def _del(key: str) -> Any:
    def mutate(d: dict[str, Any]) -> None:
        del d["entries"][0][key]

    return mutate


def _set(path: tuple[Any, ...], value: Any) -> Any:
    def mutate(d: dict[str, Any]) -> None:
        node = d
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = value

    return mutate


BROKEN = [
    pytest.param(_del("spoken"), "entries[0] (khai_sinh): missing field 'spoken'", id="missing"),
    pytest.param(_del("intent"), "missing field 'intent'", id="missing-intent"),
    pytest.param(_set(("entries", 1, "id"), "khai_sinh"), "duplicate id 'khai_sinh'", id="dup-id"),
    pytest.param(_set(("fallback", "id"), "gioi_thieu"), "duplicate id 'gioi_thieu'", id="dup-fb"),
    pytest.param(
        _set(("entries", 0, "intent"), "report_power"), "unknown intent 'report_power'", id="intent"
    ),
    pytest.param(
        _set(("entries", 0, "title"), unicodedata.normalize("NFD", "Khai sinh mới")),
        "entries[0].title: text is not NFC-normalised",
        id="nfd",
    ),
    pytest.param(
        _set(("entries", 0, "keywords"), ["khai sinh", unicodedata.normalize("NFD", "đẻ")]),
        "entries[0].keywords[1]: text is not NFC-normalised",
        id="nfd-keyword",
    ),
    pytest.param(_set(("entries", 0, "spokn"), "x"), ".spokn: unknown field", id="typo"),
    pytest.param(_set(("entries", 0, "keywords"), []), "must be a non-empty list", id="no-kw"),
    pytest.param(
        _set(("entries", 0, "keywords"), ["cho tui hỏi"]), "can never match", id="filler-kw"
    ),
    pytest.param(
        _set(("entries", 1, "keywords"), ["giay khai sinh"]),
        "'giay khai sinh' is the same words as 'giấy khai sinh' of entry 'khai_sinh'",
        id="shared-kw",
    ),
    pytest.param(_set(("entries", 0, "keywords"), [113]), "quote it", id="number-kw"),
    pytest.param(
        _set(("entries", 0, "spoken"), "Gọi 113 ngay. Cảm ơn."), "a digit", id="digit-spoken"
    ),
    pytest.param(
        _set(("entries", 0, "spoken"), "Đến UBND xã. Cảm ơn."), "abbreviation 'UBND'", id="abbr"
    ),
    pytest.param(
        _set(("entries", 0, "spoken"), "Vào dichvucong.gov.vn nhé. Cảm ơn."),
        "web address",
        id="url",
    ),
    pytest.param(_set(("entries", 0, "spoken"), "   "), "is empty", id="empty"),
    pytest.param(
        _set(("entries", 0, "followup"), {"prompt": "Nghe thêm?", "entry": "khong_co"}),
        "followup.entry: no entry with id 'khong_co'",
        id="followup",
    ),
    pytest.param(_set(("menu", "items"), {"1": "khong_co"}), "menu.items.1: no entry", id="menu"),
    pytest.param(_set(("menu", "items"), {"0": "khai_sinh"}), "digits 1-9", id="menu-0"),
    pytest.param(_set(("menu", "items"), {1: "khai_sinh", "1": "khai_sinh"}), "twice", id="1+'1'"),
    pytest.param(_set(("menu", "prompt"), None), "menu.prompt: missing", id="menu-prompt"),
    pytest.param(
        _set(("intent_defaults",), {INFO: "khai_sinh"}), "belongs to ask_public_service", id="def"
    ),
    pytest.param(lambda d: d.pop("fallback"), "fallback: missing", id="no-fallback"),
    pytest.param(lambda d: d.pop("menu"), "menu: missing", id="no-menu"),
    pytest.param(_set(("entries",), []), "entries: must be a non-empty list", id="no-entries"),
    pytest.param(_set(("version",), 2), "unsupported version 2", id="version"),
    pytest.param(_set(("extra",), 1), "extra: unknown field", id="top-typo"),
]


@pytest.mark.parametrize(("mutate", "message"), BROKEN)
def test_loader_rejects_broken_content(tmp_path: Path, mutate: Any, message: str) -> None:
    data = _valid()
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(KnowledgeBaseError) as err:
        KnowledgeBase.load(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)


def test_loader_lists_every_problem_at_once(tmp_path: Path) -> None:
    data = _valid()
    del data["entries"][0]["spoken"]
    data["entries"][1]["intent"] = "nope"
    data["menu"]["items"] = {"9": "khong_co"}
    with pytest.raises(KnowledgeBaseError) as err:
        KnowledgeBase.load(_write(tmp_path, data))
    text = str(err.value)
    assert "3 problem(s)" in text
    assert "missing field 'spoken'" in text and "'nope'" in text and "menu.items.9" in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("entries: [\n  - id: x\n", "invalid YAML", id="syntax"),
        pytest.param(
            "menu:\n  items:\n    '1': a\n    '1': b\n", "found duplicate key '1'", id="dup-key"
        ),
        pytest.param("- just\n- a list\n", "must be a mapping", id="not-mapping"),
        pytest.param("", "must be a mapping", id="empty-file"),
    ],
)
def test_loader_rejects_broken_yaml(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "knowledge.yml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(KnowledgeBaseError) as err:
        KnowledgeBase.load(path)
    assert str(err.value).startswith(str(path)) and message in str(err.value)


def test_loader_rejects_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeBaseError, match="file not found"):
        KnowledgeBase.load(tmp_path / "nope.yml")
    path = tmp_path / "latin1.yml"
    path.write_bytes("title: Khai sinh cho cháu".encode("cp1258"))
    with pytest.raises(KnowledgeBaseError, match="not UTF-8"):
        KnowledgeBase.load(path)
