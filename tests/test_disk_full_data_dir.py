"""A full or read-only data directory, on a real small tmpfs (needs root and mount).

- At start: `hotline serve` stops with one line naming HOTLINE_DATA_DIR, no traceback.
- While serving: /healthz turns 503 when the disk fills and 200 again once there is room.
- Mid-call: a caller who confirms a report when the disk is full is told it could not be
  saved and is offered a person, and never hears a code that is not on disk.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import OPERATOR_NUMBER, base_env
from tests.fault_calls import ObservedStandIn, fill, report_recording, tmpfs, told_a_code
from tests.servers import HOTLINE, ROOT, HotlineServer, TwilioRestStandIn

pytestmark = pytest.mark.nlu


def _serve_once(data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = HotlineServer(data_dir).full_env()
    return subprocess.run(
        [str(HOTLINE), "serve"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def _one_line_error(r: subprocess.CompletedProcess[str], data_dir: Path) -> str:
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("hotline:")]
    assert len(errors) == 1, r.stderr
    assert f"HOTLINE_DATA_DIR={data_dir}" in errors[0]
    return errors[0]


def test_start_with_a_full_or_read_only_data_dir_is_one_line(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "full", "4m") as mnt:
        data = mnt / "data"
        data.mkdir()
        fill(mnt)
        line = _one_line_error(_serve_once(data), data)
        assert "No space left on device" in line
    with tmpfs(tmp_path / "ro", "4m") as mnt:
        (mnt / "data").mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        line = _one_line_error(_serve_once(mnt / "data"), mnt / "data")
        assert "Read-only file system" in line


@dataclass
class LogElsewhere(HotlineServer):
    """The server's own log on the real disk, as a journal would keep it."""

    log_file: Path = Path("server.log")

    @property
    def log_path(self) -> Path:
        return self.log_file


@pytest.fixture
def small_disk_server(
    tmp_path: Path, nlu_env: dict[str, str], twilio_rest: TwilioRestStandIn
) -> Iterator[HotlineServer]:
    with tmpfs(tmp_path / "disk", "48m") as mnt:
        sidecars = tmp_path / "sidecars"  # on the real disk: the recogniser's input
        report_recording(sidecars)
        env = (
            base_env(twilio_rest)
            | nlu_env
            | {"HOTLINE_SIDECAR_DIR": str(sidecars), "HOTLINE_HEALTH_INTERVAL_S": "1"}
        )
        server = LogElsewhere(mnt / "data", env, log_file=tmp_path / "server.log")
        try:
            server.start()
            server.wait_for_nlu(120)
            yield server
        finally:
            server.stop()


def test_healthz_is_503_while_the_disk_is_full(small_disk_server: HotlineServer) -> None:
    server = small_disk_server
    assert httpx.get(server.url + "/healthz").status_code == 200
    filler = fill(server.data_dir.parent)
    t0 = time.monotonic()
    while httpx.get(server.url + "/healthz").status_code != 503 and time.monotonic() - t0 < 10:
        time.sleep(0.2)
    code, body = server.health()
    assert code == 503 and body["status"] == "degraded"
    assert body["checks"]["disk"]
    assert httpx.get(server.url + "/healthz").json() == {"status": "degraded"}
    filler.unlink()
    t0 = time.monotonic()
    while httpx.get(server.url + "/healthz").status_code != 200 and time.monotonic() - t0 < 10:
        time.sleep(0.2)
    assert httpx.get(server.url + "/healthz").status_code == 200


def test_a_report_confirmed_on_a_full_disk_is_not_given_a_code(
    small_disk_server: HotlineServer, twilio_rest: TwilioRestStandIn
) -> None:
    server = small_disk_server
    fillers: list[Path] = []

    def on_mark(_sid: str, name: str) -> None:
        # The caller is about to press 1: the disk fills now.
        if name.endswith("-confirm_report") and not fillers:
            fillers.append(fill(server.data_dir.parent))

    standin = ObservedStandIn(
        server.url, server.auth_token, public_url=server.public_url, fast=True, on_mark=on_mark
    )
    rec = report_recording(Path(server.env["HOTLINE_SIDECAR_DIR"]))
    result = asyncio.run(asyncio.wait_for(standin.observed_call(rec), 120))
    assert result is not None and fillers, "the call never reached the confirmation"
    marks = [m.split("-", 1)[1] for m in result.marks_received]
    for f in fillers:
        f.unlink()
    time.sleep(1)
    db = server.db()
    try:
        confirmed = list(
            db.query(
                "SELECT code FROM tickets WHERE call_sid = ? AND confirmed = 1", [result.call_sid]
            )
        )
    finally:
        db.conn.close()
    if told_a_code(result):
        # SQLite found room (its WAL) and fsynced the ticket: then it must be there.
        assert confirmed, "a code was read out for a ticket that is not on disk"
        return
    assert not confirmed or "ticket_code" in marks
    # Not saved: the caller hears so, and is offered a person (operators are on duty).
    assert "ticket_failed" in marks, f"the caller was cut off without a word: {marks}"
    assert "transfer_operator" in marks, marks
    transfers = twilio_rest.of_kind("call_update", result.call_sid)
    assert transfers and OPERATOR_NUMBER in transfers[-1]["form"]["Twiml"]
