"""Table tests for Vietnamese text normalisation before speech synthesis."""

from __future__ import annotations

import unicodedata

import pytest

from hotline.speech.normalize import (
    digits_words,
    grouped_digits,
    normalize_for_speech,
    number_words,
)

NUMBERS = [
    (0, "không"),
    (1, "một"),
    (4, "bốn"),
    (5, "năm"),
    (10, "mười"),
    (11, "mười một"),
    (14, "mười bốn"),
    (15, "mười lăm"),
    (20, "hai mươi"),
    (21, "hai mươi mốt"),
    (25, "hai mươi lăm"),
    (31, "ba mươi mốt"),
    (55, "năm mươi lăm"),
    (100, "một trăm"),
    (101, "một trăm linh một"),
    (105, "một trăm linh năm"),
    (110, "một trăm mười"),
    (111, "một trăm mười một"),
    (115, "một trăm mười lăm"),
    (121, "một trăm hai mươi mốt"),
    (1000, "một nghìn"),
    (1005, "một nghìn không trăm linh năm"),
    (1010, "một nghìn không trăm mười"),
    (1975, "một nghìn chín trăm bảy mươi lăm"),
    (2000, "hai nghìn"),
    (2005, "hai nghìn không trăm linh năm"),
    (2026, "hai nghìn không trăm hai mươi sáu"),
    (10000, "mười nghìn"),
    (15000, "mười lăm nghìn"),
    (21000, "hai mươi mốt nghìn"),
    (50000, "năm mươi nghìn"),
    (105000, "một trăm linh năm nghìn"),
    (1_000_000, "một triệu"),
    (1_000_500, "một triệu năm trăm"),
    (1_000_005, "một triệu không trăm linh năm"),
    (1_500_000, "một triệu năm trăm nghìn"),
    (2_050_000, "hai triệu không trăm năm mươi nghìn"),
    (1_000_000_000, "một tỷ"),
    (3_000_000_005, "ba tỷ không trăm linh năm"),
    (1_000_000_000_000, "một nghìn tỷ"),
]


@pytest.mark.parametrize(("n", "words"), NUMBERS)
def test_number_words(n: int, words: str) -> None:
    assert number_words(n) == words


def test_digits_and_groups() -> None:
    assert digits_words("0905") == "không chín không năm"
    assert grouped_digits("1900868674") == "một chín không không, tám sáu tám, sáu bảy bốn"
    assert grouped_digits("4821937") == "bốn tám hai, một chín ba bảy"
    assert grouped_digits("123456") == "một hai ba, bốn năm sáu"


CASES = [
    # --- phone numbers: digit by digit, in natural groups ---
    (
        "Gọi 1900868674.",
        "Gọi một chín không không, tám sáu tám, sáu bảy bốn.",
    ),
    (
        "Đường dây nóng 1900 868 674",
        "Đường dây nóng một chín không không, tám sáu tám, sáu bảy bốn",
    ),
    (
        "Số 0905123456",
        "Số không chín không năm, một hai ba, bốn năm sáu",
    ),
    (
        "gọi 0905.123.456",
        "gọi không chín không năm, một hai ba, bốn năm sáu",
    ),
    (
        "gọi +84 905 123 456",
        "gọi cộng tám bốn, chín không năm, một hai ba, bốn năm sáu",
    ),
    (
        "gọi +84905123456",
        "gọi cộng tám bốn, chín không năm, một hai ba, bốn năm sáu",
    ),
    (
        "máy bàn 02333852123",
        "máy bàn không hai ba ba, ba tám năm, hai một hai ba",
    ),
    (
        "SĐT: 0905123456",
        "số điện thoại: không chín không năm, một hai ba, bốn năm sáu",
    ),
    # --- ticket codes: digit by digit ---
    ("mã 4821937", "mã bốn tám hai, một chín ba bảy"),
    ("Mã số 4821937.", "Mã số bốn tám hai, một chín ba bảy."),
    ("mã: 4821937", "mã: bốn tám hai, một chín ba bảy"),
    (
        "Mã phản ánh của bạn là 4821937.",
        "Mã phản ánh của bạn là bốn tám hai, một chín ba bảy.",
    ),
    ("mã 482 1937", "mã bốn tám hai, một chín ba bảy"),
    ("mã 123", "mã một hai ba"),
    # a number after "mã" with words between that is not code-sized stays a quantity
    ("mã sẽ gửi trong 15 phút", "mã sẽ gửi trong mười lăm phút"),
    # --- dates ---
    (
        "15/11/2026",
        "ngày mười lăm tháng mười một năm hai nghìn không trăm hai mươi sáu",
    ),
    (
        "Hạn chót ngày 15/11/2026.",
        "Hạn chót ngày mười lăm tháng mười một năm hai nghìn không trăm hai mươi sáu.",
    ),
    (
        "ngày 1/4/2025",
        "ngày một tháng tư năm hai nghìn không trăm hai mươi lăm",
    ),
    (
        "01-07-2025",
        "ngày một tháng bảy năm hai nghìn không trăm hai mươi lăm",
    ),
    ("từ 15/11 đến 20/11", "từ ngày mười lăm tháng mười một đến ngày hai mươi tháng mười một"),
    ("tháng 4/2026", "tháng tư năm hai nghìn không trăm hai mươi sáu"),
    ("tháng 4", "tháng tư"),
    ("tháng 11 năm nay", "tháng mười một năm nay"),
    ("năm 2026", "năm hai nghìn không trăm hai mươi sáu"),
    # an impossible date is not read as one
    ("32/13/2026", "ba mươi hai / mười ba / hai nghìn không trăm hai mươi sáu"),
    # --- times ---
    ("7h30", "bảy giờ ba mươi phút"),
    ("7h", "bảy giờ"),
    ("07:30", "bảy giờ ba mươi phút"),
    ("17:00", "mười bảy giờ"),
    ("17 giờ", "mười bảy giờ"),
    ("lúc 8g15 sáng", "lúc tám giờ mười lăm phút sáng"),
    ("7h05", "bảy giờ năm phút"),
    (
        "từ 7h30-17h",
        "từ bảy giờ ba mươi phút đến mười bảy giờ",
    ),
    (
        "07:30-11:30",
        "bảy giờ ba mươi phút đến mười một giờ ba mươi phút",
    ),
    # --- amounts ---
    ("50.000 đồng", "năm mươi nghìn đồng"),
    ("50.000đ", "năm mươi nghìn đồng"),
    ("phí 50.000 VNĐ", "phí năm mươi nghìn đồng"),
    ("1.500.000đ", "một triệu năm trăm nghìn đồng"),
    ("1,5 triệu", "một phẩy năm triệu"),
    ("1,5 triệu đồng", "một phẩy năm triệu đồng"),
    ("2 tỷ đồng", "hai tỷ đồng"),
    ("25.000 đồng", "hai mươi lăm nghìn đồng"),
    ("105.000 đồng", "một trăm linh năm nghìn đồng"),
    ("21.000đ", "hai mươi mốt nghìn đồng"),
    ("50k", "năm mươi nghìn"),
    ("1,5tr", "một phẩy năm triệu"),
    ("50.000-100.000 đồng", "năm mươi nghìn đến một trăm nghìn đồng"),
    # --- decimals, percentages, units ---
    ("3,14", "ba phẩy mười bốn"),
    ("0,05", "không phẩy không năm"),
    ("tăng 15%", "tăng mười lăm phần trăm"),
    ("2,5%", "hai phẩy năm phần trăm"),
    ("cách 12 km", "cách mười hai ki lô mét"),
    ("12km", "mười hai ki lô mét"),
    ("60 km/h", "sáu mươi ki lô mét một giờ"),
    ("50 m2", "năm mươi mét vuông"),
    ("3 ha", "ba héc ta"),
    ("mưa 120 mm", "mưa một trăm hai mươi mi li mét"),
    ("30°C", "ba mươi độ xê"),
    # --- abbreviations ---
    ("UBND tỉnh Quảng Trị", "ủy ban nhân dân tỉnh Quảng Trị"),
    ("TP. Đông Hà", "thành phố Đông Hà"),
    ("TP Đông Hà", "thành phố Đông Hà"),
    ("TX. Quảng Trị", "thị xã Quảng Trị"),
    ("TT. Khe Sanh", "thị trấn Khe Sanh"),
    ("mang theo CCCD", "mang theo căn cước công dân"),
    ("CMND cũ", "chứng minh nhân dân cũ"),
    ("HĐND tỉnh", "hội đồng nhân dân tỉnh"),
    ("thẻ BHYT", "thẻ bảo hiểm y tế"),
    ("sổ BHXH", "sổ bảo hiểm xã hội"),
    ("P. Đông Lương", "phường Đông Lương"),
    ("P.5", "phường năm"),
    ("Q.1", "quận một"),
    ("H. Gio Linh", "huyện Gio Linh"),
    ("quốc lộ QL9", "quốc lộ quốc lộ chín"),
    ("đường QL1A", "đường quốc lộ một A"),
    ("UBND TP.HCM", "ủy ban nhân dân thành phố Hồ Chí Minh"),
    ("CSGT", "cảnh sát giao thông"),
    ("PCCC", "phòng cháy chữa cháy"),
    ("T2-T6", "thứ hai đến thứ sáu"),
    ("T7", "thứ bảy"),
    # a lone capital P at a sentence end is not a ward
    ("Khu vực P.", "Khu vực P."),
    # --- ordinary numbers, ordinals, ranges, addresses ---
    ("số 12", "số mười hai"),
    ("số 12 Lê Lợi", "số mười hai Lê Lợi"),
    ("kiệt 12/4 Lê Lợi", "kiệt mười hai xuyệt bốn Lê Lợi"),
    ("lần thứ 1", "lần thứ nhất"),
    ("thứ 4", "thứ tư"),
    ("thứ 2", "thứ hai"),
    ("trong 2-3 ngày", "trong hai đến ba ngày"),
    ("có 1.234 hộ", "có một nghìn hai trăm ba mươi bốn hộ"),
    ("tổ 05", "tổ năm"),
    ("bấm phím 1", "bấm phím một"),
    ("bấm phím #", "bấm phím thăng"),
    ("phím *", "phím sao"),
    # --- service numbers and the 1900 prefix (from the call flows' own prompts) ---
    (
        "Khẩn cấp: 113 công an; 114 cháy nổ; 115 cấp cứu.",
        "Khẩn cấp: một một ba công an; một một bốn cháy nổ; một một năm cấp cứu.",
    ),
    ("xin gọi ngay số 114.", "xin gọi ngay số một một bốn."),
    ("có 113 hộ dân", "có một trăm mười ba hộ dân"),
    ("cước dịch vụ 1900", "cước dịch vụ một chín không không"),
    ("năm 1900", "năm một nghìn chín trăm"),
    ("giá 1.900 đồng", "giá một nghìn chín trăm đồng"),
    ("trả lời 24/7", "trả lời hai mươi bốn trên bảy"),
    ("nhập mã số rồi bấm #.", "nhập mã số rồi bấm thăng."),
    ("bấm * để nghe lại", "bấm sao để nghe lại"),
    # --- brackets and slashes ---
    ("quyền sử dụng đất (sổ đỏ).", "quyền sử dụng đất, sổ đỏ."),
    ("Sổ đỏ (giấy chứng nhận): cấp", "Sổ đỏ, giấy chứng nhận: cấp"),
    ("vợ/chồng đã mất", "vợ hoặc chồng đã mất"),
    # --- domains ---
    ("dichvucong.gov.vn", "dịch vụ công chấm gốp chấm vê en"),
    # --- text without anything to do is unchanged ---
    ("Xin chào, quý vị cần hỗ trợ gì?", "Xin chào, quý vị cần hỗ trợ gì?"),
]


@pytest.mark.parametrize(("text", "spoken"), CASES)
def test_normalize_for_speech(text: str, spoken: str) -> None:
    assert normalize_for_speech(text) == spoken


def test_nfd_input_comes_out_nfc() -> None:
    nfd = unicodedata.normalize("NFD", "Quảng Trị, ngày 15/11/2026")
    out = normalize_for_speech(nfd)
    assert out == unicodedata.normalize("NFC", out)
    assert out == "Quảng Trị, ngày mười lăm tháng mười một năm hai nghìn không trăm hai mươi sáu"


def test_a_full_prompt_has_no_digits_left() -> None:
    prompt = (
        "Cảm ơn quý vị đã gọi 1900868674 của UBND tỉnh Quảng Trị. Mã phản ánh của quý vị là "
        "4821937, tiếp nhận lúc 07:30 ngày 15/11/2026. Phí 50.000đ, thời gian 2-3 ngày, "
        "giờ làm việc 7h30-17h T2-T6."
    )
    out = normalize_for_speech(prompt)
    assert not any(c.isdigit() for c in out), out
    assert "ủy ban nhân dân" in out
    assert "bốn tám hai, một chín ba bảy" in out
