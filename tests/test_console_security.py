"""The console's low findings (issue 10, "Console, low"): lockout by name and address with
backoff, Secure cookies on an https public URL, no handler argument as a query parameter, and
the OpenAPI document served."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

import hotline.schema  # noqa: F401
from hotline.console import accounts
from hotline.store import open_db
from tests.servers import HotlineServer

ADMIN, PASSWORD = "quantri", "mật-khẩu-quản-trị-1"
ATTACKER_IP, ADMIN_IP = "203.0.113.66", "198.51.100.7"


def ensure_admin(server: HotlineServer) -> None:
    done = server.cli(
        "operators", "add", ADMIN, "--role", "admin", "--password-stdin", input=PASSWORD + "\n"
    )
    assert done.returncode == 0 or "Đã có" in done.stderr + done.stdout, done.stderr


def login(server: HotlineServer, user: str, password: str, ip: str | None = None) -> httpx.Response:
    """One login through the form. `ip` is the client address, as the reverse proxy in front
    of the console reports it (X-Forwarded-For, trusted from loopback only)."""
    headers = {"X-Forwarded-For": ip} if ip else {}
    with httpx.Client(base_url=server.url, follow_redirects=False, headers=headers) as c:
        page = c.get("/console/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        cookie = page.cookies.get("hotline_login_csrf") or re.search(
            r"hotline_login_csrf=([^;]+)", page.headers["set-cookie"]
        ).group(1)  # type: ignore[union-attr]
        return c.post(
            "/console/login",
            data={"csrf": token, "username": user, "password": password},
            headers={"Cookie": f"hotline_login_csrf={cookie}"},
        )


def session_cookie(server: HotlineServer) -> str:
    r = login(server, ADMIN, PASSWORD, ADMIN_IP)
    assert r.status_code == 303, r.text
    return re.search(r"hotline_session=([^;]+)", r.headers["set-cookie"]).group(1)  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def admin_server(plain_server: HotlineServer) -> HotlineServer:
    ensure_admin(plain_server)
    return plain_server


def test_an_admin_cannot_be_locked_out_from_elsewhere(admin_server: HotlineServer) -> None:
    codes = [login(admin_server, ADMIN, "sai-mật-khẩu", ATTACKER_IP).status_code for _ in range(6)]
    assert codes == [401, 401, 401, 401, 429, 429]
    # Locked from the attacker's address, even with the right password...
    assert login(admin_server, ADMIN, PASSWORD, ATTACKER_IP).status_code == 429
    # ...but the admin at their own desk signs in.
    assert login(admin_server, ADMIN, PASSWORD, ADMIN_IP).status_code == 303


def test_lockouts_back_off(tmp_path: Any) -> None:
    db = open_db(tmp_path / "h.db")
    accounts.add_operator(db, "lan", "operator", "đúng-mật-khẩu", actor="test")
    lengths = []
    for _ in range(3):
        results = [accounts.authenticate(db, "lan", "sai", ip=ATTACKER_IP) for _ in range(5)]
        until = results[-1].locked_until
        assert until is not None
        lengths.append(until - datetime.now(UTC))
        past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
        db.execute("UPDATE console_login_throttle SET locked_until = ?", [past])
    minutes = [round(d.total_seconds() / 60) for d in lengths]
    assert minutes == [15, 30, 60]
    # A success from that address resets the backoff; other addresses never had one.
    assert accounts.authenticate(db, "lan", "đúng-mật-khẩu", ip=ATTACKER_IP).ok
    assert accounts.locked_until(db, "lan", client=ADMIN_IP) is None


def test_cookies_are_secure_when_the_public_url_is_https(admin_server: HotlineServer) -> None:
    assert admin_server.public_url.startswith("https://")
    page = httpx.get(admin_server.url + "/console/login")
    assert "secure" in page.headers["set-cookie"].lower()
    r = login(admin_server, ADMIN, PASSWORD, ADMIN_IP)
    session = [c for c in r.headers.get_list("set-cookie") if c.startswith("hotline_session=")]
    assert session and "secure" in session[0].lower() and "httponly" in session[0].lower()


def test_no_handler_argument_is_a_query_parameter(admin_server: HotlineServer) -> None:
    cookie = {"Cookie": f"hotline_session={session_cookie(admin_server)}"}
    evil = "Tài khoản đã bị xoá, hãy gọi 0999999999"
    with httpx.Client(base_url=admin_server.url, headers=cookie) as c:
        r = c.get("/console/operators", params={"status_code": "0"})
        assert r.status_code == 200 and "<html" in r.text  # the connection is not dropped
        r = c.get("/console/operators", params={"error": evil})
        assert r.status_code == 200 and evil not in r.text
    # Nowhere else either: the schema lists every route's parameters.
    schema = httpx.get(admin_server.url + "/openapi.json").json()
    exposed = {
        (path, p["name"])
        for path, ops in schema["paths"].items()
        for op in ops.values()
        for p in op.get("parameters", [])
        if p["in"] == "query"
    }
    # Open311's query parameters are the GeoReport v2 spec's own filters, and nothing else.
    open311 = {name for path, name in exposed if path.startswith("/open311/")}
    assert open311 <= {
        "jurisdiction_id",
        "service_request_id",
        "service_code",
        "start_date",
        "end_date",
        "status",
    }, open311
    assert {(p, n) for p, n in exposed if not p.startswith("/open311/")} == set(), exposed


def test_the_openapi_document_is_served(admin_server: HotlineServer) -> None:
    r = httpx.get(admin_server.url + "/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    assert {"/twilio/voice", "/twilio/status", "/console/calls", "/console/login"} <= set(paths)
    voice = paths["/twilio/voice"]["post"]
    assert "application/x-www-form-urlencoded" in voice["requestBody"]["content"]
