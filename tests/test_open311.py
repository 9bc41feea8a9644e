"""The Open311 GeoReport v2 API, exercised with a third-party client (PyPI `georeport`) against
a real server, and with plain HTTP for what that client lacks (POST, errors, tokens)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from georeport import GeoReport

from tests.conftest import base_env
from tests.servers import HotlineServer, TwilioRestStandIn, free_port

JURISDICTION = "quangtri.gov.vn"


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, twilio_rest: TwilioRestStandIn
) -> Iterator[HotlineServer]:
    env = base_env(twilio_rest) | {"HOTLINE_NLU_URL": f"http://127.0.0.1:{free_port()}"}
    s = HotlineServer(tmp_path_factory.mktemp("open311"), env).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def key(server: HotlineServer) -> str:
    r = server.cli("open311", "keys", "add", "cong-phan-anh")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture(scope="module")
def filed(server: HotlineServer, key: str) -> dict[str, Any]:
    """Two reports filed by the portal; the second is then resolved by an operator."""
    out = {}
    for name, code, text in (
        (
            "light",
            "report_infrastructure",
            "Đèn đường ở ngã tư Lê Duẩn tắt cả tuần, gọi 0905123456",
        ),
        ("trash", "report_environment", "Rác đổ bên bờ sông Hiếu"),
    ):
        r = httpx.post(
            f"{server.url}/open311/v2/requests.json",
            data={
                "api_key": key,
                "jurisdiction_id": JURISDICTION,
                "service_code": code,
                "description": text,
                "address_string": "phường Đông Hà",
                "phone": "+84905123456",
            },
        )
        assert r.status_code == 201, r.text
        out[name] = r.json()[0]
    code = out["trash"]["service_request_id"]
    for status in ("đã tiếp nhận", "đang xử lý"):
        assert server.cli("tickets", "set-status", code, status).returncode == 0
    r = server.cli("tickets", "set-status", code, "đã xử lý", "--note", "Đã thu gom rác")
    assert r.returncode == 0, r.stderr + r.stdout
    return out


def client(server: HotlineServer, fmt: str = "json") -> GeoReport:
    return GeoReport(f"{server.url}/open311/v2", jurisdiction=JURISDICTION, output_format=fmt)


def test_services_list_our_categories(server: HotlineServer) -> None:
    services = client(server).get_service_list()
    codes = {s["service_code"] for s in services}
    assert {"report_utilities", "report_infrastructure", "voice_message"} <= codes
    power = next(s for s in services if s["service_code"] == "report_utilities")
    assert power["service_name"] == "điện, nước" and power["type"] == "realtime"
    assert power["metadata"] is False
    xml = client(server, "xml").get_service_list()
    assert {s["service_code"] for s in xml} == codes


def test_posted_reports_are_tickets_in_the_same_queue(server: HotlineServer, filed: dict) -> None:
    code = filed["light"]["service_request_id"]
    assert len(code) == 7 and filed["light"]["token"]
    shown = server.cli("tickets", "show", code, "--json")
    assert shown.returncode == 0, shown.stderr
    assert '"channel": "portal"' in shown.stdout and "UBND" in shown.stdout


def test_requests_are_read_with_the_spec_filters_and_no_personal_data(
    server: HotlineServer, filed: dict
) -> None:
    light, trash = (filed[k]["service_request_id"] for k in ("light", "trash"))
    geo = client(server)
    every = geo.get_service_requests()
    assert {light, trash} <= {r["service_request_id"] for r in every}
    open_ = {r["service_request_id"] for r in geo.get_service_requests(status="open")}
    closed = {r["service_request_id"] for r in geo.get_service_requests(status="closed")}
    assert light in open_ and trash in closed and trash not in open_
    by_code = geo.get_service_requests(service_code="report_environment")
    assert {r["service_code"] for r in by_code} == {"report_environment"}
    one = geo.get_service_request(trash)
    assert one["status"] == "closed"
    assert one["status_notes"] == "đã xử lý: Đã thu gom rác"  # our finer status and note
    assert one["agency_responsible"] and one["expected_datetime"].endswith("+07:00")
    # Nothing personal: no number, no caller's words.
    light_row = geo.get_service_request(light)
    text = str(every)
    assert "0905123456" not in text and "+84905" not in text
    assert "Lê Duẩn" not in str(light_row)
    xml = client(server, "xml").get_service_request(light)
    assert xml["service_request_id"] == light and xml["status"] == "open"


def test_tokens_point_at_their_request(server: HotlineServer, filed: dict) -> None:
    token = filed["light"]["token"]
    r = httpx.get(f"{server.url}/open311/v2/tokens/{token}.json")
    assert r.status_code == 200
    assert r.json() == [
        {"service_request_id": filed["light"]["service_request_id"], "token": token}
    ]


@pytest.mark.parametrize(
    ("method", "path", "data", "status"),
    [
        ("POST", "/requests.json", {"service_code": "report_utilities", "description": "x"}, 403),
        (
            "POST",
            "/requests.json",
            {"api_key": "wrong", "service_code": "report_utilities", "description": "x"},
            403,
        ),
        (
            "POST",
            "/requests.json",
            {"api_key": "KEY", "service_code": "weather", "description": "x"},
            400,
        ),
        ("POST", "/requests.json", {"api_key": "KEY", "service_code": "report_utilities"}, 400),
        ("GET", "/requests.json?status=pending", None, 400),
        ("GET", "/requests.json?start_date=yesterday", None, 400),
        (
            "GET",
            "/requests.json?start_date=2026-01-01T00:00:00Z&end_date=2026-12-01T00:00:00Z",
            None,
            400,
        ),
        ("GET", "/requests/0000000.json", None, 404),
        ("GET", "/services.json?jurisdiction_id=hanoi.gov.vn", None, 404),
        ("GET", "/tokens/nope.json", None, 404),
        ("GET", "/services.csv", None, 404),
    ],
)
def test_errors_have_the_spec_shape_and_never_a_500(
    server: HotlineServer, key: str, method: str, path: str, data: Any, status: int
) -> None:
    if data and data.get("api_key") == "KEY":
        data = {**data, "api_key": key}
    r = httpx.request(method, f"{server.url}/open311/v2{path}", data=data)
    assert r.status_code == status, r.text
    body = r.json()
    assert body[0]["code"] == status and body[0]["description"]


def test_a_revoked_key_files_nothing(server: HotlineServer) -> None:
    new = server.cli("open311", "keys", "add", "old-portal").stdout.strip()
    assert server.cli("open311", "keys", "revoke", "old-portal").returncode == 0
    r = httpx.post(
        f"{server.url}/open311/v2/requests.json",
        data={"api_key": new, "service_code": "report_health", "description": "ngộ độc"},
    )
    assert r.status_code == 403
