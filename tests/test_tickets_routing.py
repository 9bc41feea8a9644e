"""The routing table: category and place to agency, first match wins, mistakes fail at load."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hotline.tickets.routing import DEFAULT_PATH, Agency, Router, RoutingError, place_key

DONG_HA = {"name": "Phường Đông Hà", "code": "19333"}
DONG_HOI = {"name": "Phường Đồng Hới", "code": "18880"}  # former Quảng Bình
KHE_SANH = {"name": "Xã Khe Sanh", "code": "19429"}  # former Hướng Hóa district


@pytest.fixture(scope="module")
def router() -> Router:
    return Router.load(DEFAULT_PATH)


def test_shipped_table_loads_and_names_real_agencies(router: Router) -> None:
    assert router.route("report_utilities", DONG_HA, "mất điện từ sáng") == Agency(
        "dien_luc_quang_tri", "Công ty Điện lực Quảng Trị"
    )
    assert router.route("report_disaster", None, "lũ ngập") == Agency(
        "pthds", "Ban Chỉ huy Phòng thủ dân sự tỉnh Quảng Trị"
    )
    assert router.route("report_health", DONG_HA, "").name == "Sở Y tế tỉnh Quảng Trị"
    assert router.route("report_environment", None, "khói bụi").name.startswith(
        "Sở Nông nghiệp và Môi trường"
    )


@pytest.mark.parametrize(
    ("description", "agency"),
    [
        ("mất nước sinh hoạt ba ngày nay", "nuoc_sach_quang_tri"),
        ("đường ống nước bị vỡ", "nuoc_sach_quang_tri"),
        ("MẤT NƯỚC", "nuoc_sach_quang_tri"),
        ("mất điện nên máy bơm không có nước", "dien_luc_quang_tri"),
        ("cột điện bị nghiêng", "dien_luc_quang_tri"),
        # "điện thoại" is not about power: the water report stays with the water company.
        ("gọi điện thoại mãi không ai nghe, nhà tôi mất nước", "nuoc_sach_quang_tri"),
        ("", "dien_luc_quang_tri"),  # utilities without a water word: power
    ],
)
def test_utilities_split_power_and_water(router: Router, description: str, agency: str) -> None:
    assert router.route("report_utilities", DONG_HA, description).code == agency


def test_place_overrides(router: Router) -> None:
    # Former Quảng Bình has its own power and water companies.
    assert router.route("report_utilities", DONG_HOI, "mất điện").code == "dien_luc_quang_binh"
    assert router.route("report_utilities", DONG_HOI, "mất nước").code == "cap_nuoc_quang_binh"
    # A district-level branch, matched through the unit's former district.
    assert router.route("report_utilities", KHE_SANH, "mất điện").code == "dien_luc_huong_hoa"
    # The same report with only a unit code, or only a name, routes the same way.
    assert (
        router.route("report_utilities", {"code": 18880}, "mất điện").code == "dien_luc_quang_binh"
    )
    assert router.route("report_utilities", {"name": "Khe Sanh"}, "").code == "dien_luc_huong_hoa"


def test_commune_level_agencies_are_named_after_the_unit(router: Router) -> None:
    agency = router.route("report_public_order", {"code": 19742}, "đánh nhau")
    assert agency == Agency("cong_an_xa:19742", "Công an đặc khu Cồn Cỏ")
    # Spelt the callers' way ("Đa Krông", "đakrông"), named the gazetteer's way.
    for spelling in ("Xã Đa Krông", "đakrông", "xa Đakrông"):
        agency = router.route("report_infrastructure", {"name": spelling}, "đường hư hỏng")
        assert agency == Agency("ubnd_xa:19564", "UBND xã Đakrông"), spelling
    # Without a place the provincial agency gets it.
    assert router.route("report_public_order", None, "đánh nhau").code == "cong_an_tinh"
    assert router.route("report_administration", None, "").code == "so_noi_vu"
    assert router.route("report_administration", DONG_HA, "").name == "UBND phường Đông Hà"


def test_keyword_rule_beats_place_rule_above_it(router: Router) -> None:
    # A national road is the province's even when the place is known (the rule comes first).
    assert (
        router.route("report_infrastructure", DONG_HA, "Quốc lộ 9 bị sạt lở").code == "so_xay_dung"
    )
    assert (
        router.route("report_environment", {"name": "Xã Phong Nha"}, "có người chặt phá rừng").code
        == "vqg_pnkb"
    )
    assert router.route("report_environment", DONG_HA, "có người chặt phá rừng").code == "kiem_lam"


@pytest.mark.parametrize("category", ["keypad_report", "voice_message", "ask_weather", "", None])
def test_other_categories_go_to_the_operations_centre(router: Router, category: str | None) -> None:
    agency = router.route(category, DONG_HA, "mất điện")  # type: ignore[arg-type]
    assert agency.code == "ioc"
    assert agency.name == "Trung tâm Giám sát, điều hành đô thị thông minh tỉnh Quảng Trị"


def _table(**over: object) -> dict:
    data: dict = {
        "version": 1,
        "default": "ioc",
        "agencies": {
            "ioc": "Trung tâm IOC",
            "a": "Cơ quan A",
            "b": "Cơ quan B",
            "ubnd": "UBND {unit}",
        },
        "rules": [{"category": "report_health", "agency": "a"}],
    }
    data.update(over)
    return data


def test_first_matching_rule_wins() -> None:
    rules = [
        {"category": "report_health", "keywords": ["ngộ độc"], "agency": "b"},
        {"category": "report_health", "agency": "a"},
        {"category": "report_health", "keywords": ["ngộ độc"], "agency": "ioc"},
    ]
    r = Router.from_dict(_table(rules=rules))
    assert r.explain("report_health", None, "ngộ độc thực phẩm") == (Agency("b", "Cơ quan B"), 0)
    assert r.explain("report_health", None, "ho sốt") == (Agency("a", "Cơ quan A"), 1)
    assert r.explain("report_disaster", None, "") == (Agency("ioc", "Trung tâm IOC"), None)


def test_keywords_whole_words_and_diacritics() -> None:
    rules = [
        {"category": "*", "keywords": ["nuoc"], "agency": "a"},  # no accents: matches any accents
        {"category": "*", "keywords": ["rác thải"], "agency": "b"},  # accented: exact spelling
    ]
    r = Router.from_dict(_table(rules=rules))
    assert r.route("report_utilities", None, "Mất NƯỚC").code == "a"
    assert r.route("report_utilities", None, "nướcmắm").code == "ioc"  # not a whole word
    assert r.route("report_environment", None, "đổ  rác   thải bừa bãi").code == "b"
    assert r.route("report_environment", None, "rac thai").code == "ioc"


def test_templated_agency_needs_a_place() -> None:
    rules = [{"category": "*", "agency": "ubnd"}, {"category": "*", "agency": "a"}]
    r = Router.from_dict(_table(rules=rules))
    assert r.route("report_health", {"location_raw": "ở đâu đó"}, "").code == "a"
    assert r.route("report_health", {"name": "Phường Nam Đông Hà"}, "") == Agency(
        "ubnd:19351", "UBND phường Nam Đông Hà"
    )


def test_place_keys_combine() -> None:
    rules = [
        {
            "category": "*",
            "place": {"legacy_province": 44, "unit": "Phường Đồng Sơn"},
            "agency": "a",
        },
        {"category": "*", "place": {"legacy_district": ["Huyện Vĩnh Linh", 465]}, "agency": "b"},
        {"category": "*", "place": {"code": [19333]}, "agency": "ubnd"},
    ]
    r = Router.from_dict(_table(rules=rules))
    assert r.route("x", {"name": "Phường Đồng Sơn"}, "").code == "a"
    assert r.route("x", {"name": "Phường Đồng Hới"}, "").code == "ioc"  # province yes, unit no
    assert r.route("x", {"name": "Xã Cửa Tùng"}, "").code == "b"  # former Vĩnh Linh
    assert r.route("x", {"name": "Xã Lao Bảo"}, "").code == "b"  # former Hướng Hóa (465)
    # A caller who names only the old district.
    assert r.route("x", {"district": "huyện Vĩnh Linh"}, "").code == "b"
    assert r.route("x", {"code": "19333"}, "").code == "ubnd:19333"


def test_place_key() -> None:
    assert place_key("Xã Đa Krông") == place_key("đakrông") == "đakrông"
    assert place_key("Thị xã Quảng Trị") == place_key("Quảng Trị")
    assert place_key("Phường Đông Hà") != place_key("Phường Đồng Hới")


BAD_TABLES = [
    (
        _table(rules=[{"category": "report_health", "agency": "aa"}]),
        "rules[0].agency",
        "unknown agency 'aa'",
    ),
    (
        _table(rules=[{"category": "report_helth", "agency": "a"}]),
        "rules[0].category",
        "did you mean 'report_health'",
    ),
    (
        _table(rules=[{"category": "*", "place": {"unit": "Phường Đong Hà"}, "agency": "a"}]),
        "rules[0].place.unit",
        "did you mean 'Phường Đông Hà'",
    ),
    (
        _table(rules=[{"category": "*", "place": {"code": 1}, "agency": "a"}]),
        "rules[0].place.code",
        "no unit",
    ),
    (
        _table(rules=[{"category": "*", "place": {"ward": "x"}, "agency": "a"}]),
        "rules[0].place",
        "unknown key",
    ),
    (
        _table(
            rules=[
                {
                    "category": "*",
                    "place": {"legacy_district": "Huyện Hướng Hoá Mới"},
                    "agency": "a",
                }
            ]
        ),
        "rules[0].place.legacy_district",
        "no former district",
    ),
    (
        _table(rules=[{"category": "*", "keywords": [], "agency": "a"}]),
        "rules[0].keywords",
        "never matches",
    ),
    (_table(rules=[{"agency": "a"}]), "rules[0]", "needs 'category'"),
    (_table(rules=[{"category": "*", "agency": "a", "agencyy": "b"}]), "rules[0]", "unknown key"),
    (_table(default="ubnd"), "default", "templated"),
    (_table(default="nobody"), "default", "must name one of the agencies"),
    (_table(rules=[]), "rules", "non-empty list"),
    (_table(agencies={"ioc": "IOC {district}"}), "agencies.ioc", "placeholder"),
    (_table(agencies={"IOC": "x"}), "agencies.IOC", "lower-case"),
    (_table(extra=1), "top level", "unknown key"),
    (_table(version=2), "version", "unsupported"),
]


@pytest.mark.parametrize(("data", "where", "problem"), BAD_TABLES)
def test_bad_tables_fail_naming_file_and_problem(
    tmp_path: Path, data: dict, where: str, problem: str
) -> None:
    path = tmp_path / "routing.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(RoutingError) as err:
        Router.load(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {where}"), message
    assert problem in message, message


def test_unreadable_or_broken_yaml(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    with pytest.raises(RoutingError, match="nope.yml: cannot read"):
        Router.load(missing)
    broken = tmp_path / "broken.yml"
    broken.write_text("agencies: [\n", encoding="utf-8")
    with pytest.raises(RoutingError, match="broken.yml: not valid YAML"):
        Router.load(broken)
    empty = tmp_path / "empty.yml"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(RoutingError, match="empty.yml: top level"):
        Router.load(empty)
