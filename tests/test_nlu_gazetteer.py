"""Gazetteer normalisation and digit words: real names from the `vietnam-provinces` data."""

from __future__ import annotations

import unicodedata

import pytest

from hotline.nlu.gazetteer import convert_legacy_ward, normalize_location
from hotline.text import clean_utterance, digits_from_speech, fold, strip_diacritics


def test_old_address_converts_to_new_unit_by_code() -> None:
    loc = normalize_location("thôn an mỹ xã hải phú huyện hải lăng")
    assert loc.matched and loc.level == "commune"
    assert loc.village == "thôn An Mỹ"
    assert (loc.legacy_commune, loc.legacy_commune_code) == ("Xã Hải Phú", 19702)
    assert (loc.legacy_district, loc.legacy_district_code) == ("Huyện Hải Lăng", 470)
    assert (loc.new_unit, loc.new_unit_code) == ("Xã Hải Lăng", 19702)
    assert (loc.province, loc.province_code) == ("Tỉnh Quảng Trị", 44)
    assert "Xã Hải Lăng" in loc.label and "Xã Hải Phú" in loc.label


def test_same_name_in_old_quang_binh_is_resolved_by_the_district() -> None:
    # There was a Xã Hải Phú in Bố Trạch (old Quảng Bình) too; it went to Xã Đông Trạch.
    loc = normalize_location("xã hải phú huyện bố trạch")
    assert loc.legacy_district == "Huyện Bố Trạch"
    assert loc.new_unit == "Xã Đông Trạch"
    # Without a district, old Quảng Trị wins and the other candidate is counted.
    alone = normalize_location("xã hải phú")
    assert alone.new_unit == "Xã Hải Lăng" and alone.alternatives == 1


@pytest.mark.parametrize(
    ("legacy_code", "new_name", "new_code"),
    [
        (19333, "Phường Đông Hà", 19333),  # Phường 1, Đông Hà
        (19357, "Phường Quảng Trị", 19360),  # Phường 1, thị xã Quảng Trị
        (19363, "Xã Vĩnh Linh", 19363),  # Thị trấn Hồ Xá
        (19426, "Xã Bến Quan", 19366),  # Xã Vĩnh Ô
        (19564, "Xã Đakrông", 19564),  # Xã Đa Krông
    ],
)
def test_convert_legacy_ward_by_code(legacy_code: int, new_name: str, new_code: int) -> None:
    ward = convert_legacy_ward(legacy_code)
    assert ward is not None
    assert (ward.name, ward.code.value) == (new_name, new_code)


def test_numbered_wards_need_their_town() -> None:
    dong_ha = normalize_location("phường một đông hà")  # ASR writes the number as a word
    assert dong_ha.legacy_commune == "Phường 1"
    assert dong_ha.legacy_district == "Thành phố Đông Hà"
    assert dong_ha.new_unit == "Phường Đông Hà"
    town = normalize_location("phường 1 thị xã quảng trị")
    assert town.legacy_district == "Thị xã Quảng Trị"
    assert town.new_unit == "Phường Quảng Trị"
    quarter = normalize_location("khu phố 3 phường 5 đông hà")
    assert quarter.village == "khu phố 3"
    assert quarter.new_unit == "Phường Nam Đông Hà"


@pytest.mark.parametrize(
    "spelling", ["đakrông", "Đakrông", "đa krông", "dakrong", "huyện đa krông"]
)
def test_dakrong_spellings(spelling: str) -> None:
    loc = normalize_location(spelling)
    assert loc.level == "district"
    assert loc.legacy_district == "Huyện Đa Krông"
    assert "Xã Đakrông" in loc.new_unit_candidates
    assert len(loc.new_unit_candidates) == 5


def test_commune_named_like_its_old_district() -> None:
    assert normalize_location("xã đakrông").new_unit_code == 19564
    assert normalize_location("xã vĩnh linh").new_unit == "Xã Vĩnh Linh"
    district = normalize_location("vĩnh linh")
    assert district.level == "district" and district.legacy_district == "Huyện Vĩnh Linh"


@pytest.mark.parametrize(
    ("said", "new_unit"),
    [
        ("thi tran ho xa", "Xã Vĩnh Linh"),
        ("ho xa vinh linh", "Xã Vĩnh Linh"),
        ("xa vinh o", "Xã Bến Quan"),  # unaccented "o" here is Ô, not "ở"
        ("hai phu hai lang", "Xã Hải Lăng"),  # no unit words at all
        ("thon 3 xa hai duong hai lang", "Xã Mỹ Thủy"),  # "duong" is Dương, not "đường"
        ("phuong dong luong dong ha", "Phường Nam Đông Hà"),
        ("nam hai lang", "Xã Nam Hải Lăng"),
    ],
)
def test_unaccented_places(said: str, new_unit: str) -> None:
    assert normalize_location(said).new_unit == new_unit


def test_new_units_and_special_zone() -> None:
    assert normalize_location("phường nam đông hà").new_unit_code == 19351
    assert normalize_location("xã cửa tùng").new_unit == "Xã Cửa Tùng"
    con_co = normalize_location("cồn cỏ")
    assert con_co.legacy_district == "Huyện Cồn Cỏ"
    assert con_co.new_unit == "Đặc khu Cồn Cỏ"


def test_district_only_lists_new_units() -> None:
    loc = normalize_location("huyện cam lộ")
    assert loc.level == "district" and loc.new_unit is None
    assert loc.new_unit_candidates == ("Xã Cam Lộ", "Xã Hiếu Giang")


def test_province_street_village_and_unknown() -> None:
    assert normalize_location("tỉnh quảng trị").level == "province"
    assert normalize_location("ở quảng trị").level == "province"
    street = normalize_location("đường lê duẩn")
    assert street.level == "street" and street.street == "đường Lê Duẩn" and not street.matched
    village = normalize_location("thôn tân hòa")
    assert village.level == "village" and village.village == "thôn Tân Hòa"
    unknown = normalize_location("ngã tư sòng")
    assert unknown.level == "unknown" and not unknown.matched
    both = normalize_location("đường lê duẩn phường đông lương")
    assert both.street == "đường Lê Duẩn" and both.new_unit == "Phường Nam Đông Hà"


@pytest.mark.parametrize(
    ("said", "digits"),
    [
        ("một hai ba bốn năm sáu", "123456"),
        ("không chín một 2 3", "09123"),
        ("bẩy lăm tư mốt chín không", "754190"),
        ("mot hai ba bon nam sau bay tam chin khong", "1234567890"),
        ("mã số là 4 5 6", "456"),
        ("mười hai", "12"),
        ("hai mươi lăm", "25"),
        ("không chín không năm một linh năm", "0905105"),
        ("0386 512 447", "0386512447"),
        ("không có số", "0"),  # "không" is zero: only call this on a code or phone span
        ("chẳng có gì", ""),
    ],
)
def test_digits_from_speech(said: str, digits: str) -> None:
    assert digits_from_speech(said) == digits


def test_text_normalisation() -> None:
    nfd = unicodedata.normalize("NFD", "Mất  Điện ở Đông Hà ")
    cleaned = clean_utterance(nfd)
    assert cleaned == "mất điện ở đông hà"
    assert unicodedata.is_normalized("NFC", cleaned)
    assert len(cleaned) == len("mất điện ở đông hà")
    assert strip_diacritics("Đakrông hỉ") == "Dakrong hi"
    assert fold("Hướng Hoá") == fold("huong hóa") == "huong hoa"
