"""NLU against the real Rasa server (started once per session by tests/nlu_fixtures.py).

The utterances here are neither in the training data nor in the held-out set.
"""

from __future__ import annotations

import socket
import threading
import time
import unicodedata
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from hotline.nlu.client import NLUClient, NLUResult, NLUUnavailable, SyncNLUClient
from hotline.nlu.server import free_port
from tests.nlu_fixtures import *  # noqa: F403 - session fixtures (rasa_server, nlu_settings, ...)
from tests.nlu_fixtures import ThreadedRasaServer

pytestmark = pytest.mark.nlu


@pytest.fixture(scope="module")
def client(rasa_server: ThreadedRasaServer) -> Iterator[SyncNLUClient]:
    with SyncNLUClient(rasa_server.url, rasa_server.token, timeout_s=5.0) as c:
        yield c


EVERY_INTENT = [
    ("report_utilities", "xóm tui bị cúp điện từ chiều hôm qua tới chừ"),
    ("report_infrastructure", "đoạn đường trước ủy ban có cái ổ gà sâu lắm"),
    ("report_environment", "xưởng mộc bên cạnh làm bụi bay vô nhà suốt"),
    ("report_public_order", "mấy đứa thanh niên đua xe ầm ầm mỗi đêm"),
    ("report_disaster", "bờ sông sau nhà bị sạt lở mất một đoạn vườn"),
    ("report_administration", "hồ sơ làm sổ đỏ của tui trễ hẹn hai tháng rồi"),
    ("report_health", "ngoài chợ có người bán thịt heo không kiểm dịch"),
    ("ask_public_service", "cho tui hỏi làm khai sinh cho con thì cần giấy chi"),
    ("ask_ticket_status", "phản ánh tui gửi tuần trước chừ xử lý tới mô rồi"),
    ("ask_hotline_info", "tổng đài ni làm việc mấy giờ rứa"),
    ("greet", "alo chào tổng đài nghe"),
    ("goodbye", "thôi cảm ơn em nghe chào"),
    ("affirm", "dạ đúng rồi đó"),
    ("deny", "không phải rứa em"),
    ("request_human", "cho tui gặp cán bộ trực giùm"),
    ("repeat", "em nói lại giùm tui chưa nghe rõ"),
    ("emergency", "cứu với nhà tui đang cháy lớn"),
    ("out_of_scope", "cho tui hỏi giá vàng hôm ni"),
]


def test_server_status_is_ready(rasa_server: ThreadedRasaServer) -> None:
    status = rasa_server.status()
    assert status["state"] == "ready"
    assert isinstance(status["pid"], int)
    assert status["model"].endswith(".tar.gz")
    assert isinstance(status["restarts"], int)


@pytest.mark.parametrize(("intent", "text"), EVERY_INTENT, ids=[i for i, _ in EVERY_INTENT])
def test_every_intent(client: SyncNLUClient, intent: str, text: str) -> None:
    result = client.parse(text)
    assert result.intent == intent, result.intent_ranking[:3]
    assert result.confidence >= 0.45
    assert result.intent_ranking[0]["name"] == intent


@pytest.mark.parametrize(
    ("intent", "text"),
    [
        ("report_utilities", "răng mà điện cứ chập chờn hoài rứa hè"),
        ("report_public_order", "nhà tê hát karaoke tới khuya mà chừ vẫn chưa thôi"),
        ("ask_public_service", "làm căn cước cho mạ tui thì lên mô làm rứa"),
        ("repeat", "chi rứa o nói lại coi"),
        ("deny", "nỏ phải mô"),
        ("request_human", "cho tui nói chuyện với eng cán bộ nghe"),
    ],
)
def test_central_dialect(client: SyncNLUClient, intent: str, text: str) -> None:
    assert client.parse(text).intent == intent


@pytest.mark.parametrize(
    ("intent", "text"),
    [
        ("report_utilities", "nha tui mat dien ca ngay roi"),
        ("report_infrastructure", "cong thoat nuoc bi nghet mua la ngap"),
        ("report_disaster", "lu lon ngap het nha cua"),
        ("ask_ticket_status", "phan anh cua tui xu ly toi dau roi"),
        ("emergency", "cuu voi co nguoi bi dien giat"),
        ("goodbye", "thoi cam on em nghe"),
    ],
)
def test_unaccented(client: SyncNLUClient, intent: str, text: str) -> None:
    assert client.parse(text).intent == intent


def test_input_is_nfc_normalised(client: SyncNLUClient) -> None:
    text = "Cho Tui Hỏi Làm Căn Cước Ở Mô"
    nfd = client.parse(unicodedata.normalize("NFD", text))
    nfc = client.parse(text)
    assert unicodedata.is_normalized("NFC", nfd.text)
    assert nfd.text == "cho tui hỏi làm căn cước ở mô"
    assert nfd.intent == nfc.intent == "ask_public_service"
    assert abs(nfd.confidence - nfc.confidence) < 1e-6


def test_location_entity_is_normalised(client: SyncNLUClient) -> None:
    result = client.parse("mất điện ở thôn an mỹ xã hải phú huyện hải lăng từ sáng")
    assert result.intent == "report_utilities"
    loc_entity = result.first("location")
    assert loc_entity is not None
    assert "xã hải phú" in loc_entity.text
    loc = result.location
    assert loc is not None and loc.matched
    assert loc.legacy_commune == "Xã Hải Phú"
    assert loc.new_unit == "Xã Hải Lăng" and loc.new_unit_code == 19702
    as_json = result.to_parse_json()["entities"][0]
    assert as_json["entity"] == "location"
    assert as_json["normalized"]["new_unit"] == "Xã Hải Lăng"


def test_location_new_unit_and_unaccented(client: SyncNLUClient) -> None:
    new = client.parse("đèn đường ở phường nam đông hà tắt hết rồi")
    assert new.location is not None and new.location.new_unit_code == 19351
    bare = client.parse("sat lo dat o xa ba long")
    assert bare.location is not None, bare.entities
    assert bare.location.new_unit == "Xã Ba Lòng"


def test_location_central_spelling(client: SyncNLUClient) -> None:
    result = client.parse("đường lên đakrông bị sạt lở đất đá lấp hết")
    assert result.intent == "report_disaster"
    assert result.location is not None
    assert result.location.legacy_district == "Huyện Đa Krông"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("mã phản ánh của tui là một hai ba bốn năm sáu", "123456"),
        ("kiểm tra giùm tui mã bẩy lăm tư mốt chín không", "754190"),
        ("phản ánh số 570318 của tui xử lý chưa", "570318"),
        ("ma phan anh cua tui la chin tam bay sau nam bon", "987654"),
    ],
)
def test_ticket_code_digits(client: SyncNLUClient, text: str, code: str) -> None:
    result = client.parse(text)
    assert result.intent == "ask_ticket_status"
    assert result.ticket_code == code, result.entities


def test_seven_spoken_digits_are_a_code_not_a_phone_number(client: SyncNLUClient) -> None:
    """Phone numbers have 10 or 11 digits: a seven-digit run is a ticket code, even when the
    model tags it as a phone number (a caller reading a misheard code at the code prompt)."""
    result = client.parse("hai tám hai bảy không bốn bốn")
    assert result.ticket_code == "2827044", result.entities
    assert result.phone_number is None


def test_phone_number_digits(client: SyncNLUClient) -> None:
    result = client.parse(
        "mất nước cả tuần rồi có chi gọi lại số không chín một hai ba bốn năm sáu bảy tám"
    )
    assert result.intent == "report_utilities"
    assert result.phone_number == "0912345678", result.entities


def test_nonsense_falls_back(client: SyncNLUClient) -> None:
    nonsense = ["xờ lờ pắc pắc tờ rờ", "ba lăng nhăng", "con mèo đen", "bla bla bla", "ờ thì"]
    results = [client.parse(t) for t in nonsense]
    fallbacks = [r for r in results if r.is_fallback]
    assert len(fallbacks) >= 3, [(r.text, r.intent, r.confidence) for r in results]
    for r in fallbacks:
        assert r.intent_ranking[0]["name"] == "nlu_fallback"
        # The real guesses stay in the ranking for the flow to log.
        assert len(r.intent_ranking) > 1


async def test_async_client(rasa_server: ThreadedRasaServer) -> None:
    async with NLUClient(rasa_server.url, rasa_server.token, timeout_s=5.0) as c:
        result = await c.parse("cho tui gặp người thật")
        status = await c.status()
    assert isinstance(result, NLUResult)
    assert result.intent == "request_human"
    assert result.latency_ms > 0
    assert status["model_file"]


async def test_wrong_token_is_unavailable(rasa_server: ThreadedRasaServer) -> None:
    async with NLUClient(rasa_server.url, "wrong-token", timeout_s=5.0) as c:
        with pytest.raises(NLUUnavailable, match="HTTP 401"):
            await c.parse("alo")


# --- NLU server down, slow or wrong ---------------------------------------------------------


async def test_server_down_raises_quickly() -> None:
    port = free_port()  # nothing listens here
    async with NLUClient(f"http://127.0.0.1:{port}", "t", timeout_s=1.5) as c:
        t0 = time.monotonic()
        with pytest.raises(NLUUnavailable, match="unreachable"):
            await c.parse("mất điện")
        assert time.monotonic() - t0 < 1.0


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A socket that accepts connections and never answers (a hung server)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock.getsockname()[1]
    sock.close()


async def test_slow_server_times_out(silent_port: int) -> None:
    async with NLUClient(f"http://127.0.0.1:{silent_port}", "t", timeout_s=0.3) as c:
        t0 = time.monotonic()
        with pytest.raises(NLUUnavailable, match="slower"):
            await c.parse("mất điện")
        assert time.monotonic() - t0 < 1.5


class _BadHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = b"<html>proxy error</html>" if "/model/parse" in self.path else b""
        self.send_response(200 if self.server.server_port % 2 else 502)  # type: ignore[attr-defined]
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_bad_answers_raise() -> None:
    for _ in range(2):  # one odd port (200 + HTML), one even port (502)
        server = HTTPServer(("127.0.0.1", 0), _BadHandler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            with (
                SyncNLUClient(f"http://127.0.0.1:{server.server_port}", "t", 1.0) as c,
                pytest.raises(NLUUnavailable),
            ):
                c.parse("alo")
        finally:
            server.shutdown()
            server.server_close()
