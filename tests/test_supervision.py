"""Rasa supervision and readiness, with a hotline that spawns its own Rasa.

The module fixture leaves a real Rasa of ours on the port first, detached as a `kill -9` of an
older supervisor used to leave it, then starts `hotline serve` managing Rasa on that port. The
tests then run in order on that one hotline (one Rasa load for all of them): the orphan was
ended, /healthz said 503 while the new Rasa loaded and 200 once it parsed, a call that came
during the load was held and then went on, a SIGSTOP'd Rasa reads as down, and a `kill -9` of
`hotline serve` leaves no Rasa behind.

The cheap cases run a supervisor in-process: a foreign server on the port is left alone and
never reads as ready, and attempts that exit 0 at once back off.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hotline import replay
from hotline.config import Settings
from hotline.nlu.server import RasaServer, cmdline, free_port, listeners
from hotline.nlu.train import TrainResult, latest_model, rasa_env
from tests.conftest import base_env
from tests.fault_calls import ObservedStandIn, report_recording
from tests.servers import HotlineServer, TwilioRestStandIn

pytestmark = pytest.mark.nlu

TOKEN = "supervision-test-token"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait(cond: Any, timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())


def _parses(port: int, token: str = TOKEN) -> bool:
    try:
        r = httpx.post(
            f"http://127.0.0.1:{port}/model/parse",
            params={"token": token},
            json={"text": "alo"},
            timeout=2,
        )
        return r.status_code == 200
    except httpx.HTTPError:
        return False


def _spawn_orphan(settings: Settings, port: int, log: Path) -> int:
    """A real `rasa run` of ours, in its own session and re-parented to init, as the old
    supervisor's child was after a `kill -9`. Returns its pid."""
    model = latest_model(settings.nlu_model_dir.resolve())
    args = [
        str(settings.rasa_bin),
        "run",
        "--enable-api",
        "-m",
        str(model),
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        "--auth-token",
        TOKEN,
    ]
    quoted = " ".join(f"'{a}'" for a in args)
    out = subprocess.run(
        ["sh", "-c", f"setsid {quoted} >'{log}' 2>&1 </dev/null & echo $!"],
        env=rasa_env(),
        cwd=str(settings.nlu_model_dir),
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip())


class Managed:
    def __init__(self, server: HotlineServer, port: int, orphan: int) -> None:
        self.server = server
        self.port = port
        self.orphan = orphan
        self.samples: list[tuple[int, dict[str, Any], str, str]] = []
        self.held_call: dict[str, Any] = {}
        self._stop = threading.Event()
        self.poller = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        """Anonymous /healthz and the details, every half second, until the end."""
        while not self._stop.wait(0.5):
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                anon = httpx.get(self.server.url + "/healthz", timeout=5)
                body = self.server.health()[1]
                self.samples.append(
                    (anon.status_code, anon.json(), body["status"], body["nlu"]["state"])
                )

    def details(self) -> dict[str, Any]:
        return self.server.health()[1]

    def wait_healthz(self, code: int, timeout: float) -> float | None:
        t0 = time.monotonic()
        ok = _wait(
            lambda: httpx.get(self.server.url + "/healthz", timeout=10).status_code == code,
            timeout,
        )
        return time.monotonic() - t0 if ok else None


@pytest.fixture(scope="module")
def managed(
    tmp_path_factory: pytest.TempPathFactory,
    nlu_settings: Settings,
    nlu_model: TrainResult,
    twilio_rest: TwilioRestStandIn,
) -> Iterator[Managed]:
    tmp = tmp_path_factory.mktemp("supervision")
    port = free_port()
    orphan = _spawn_orphan(nlu_settings, port, tmp / "orphan.log")
    try:
        assert _wait(lambda: _parses(port), 300, 1.0), (tmp / "orphan.log").read_text()[-2000:]
        sidecars = tmp / "sidecars"
        report_recording(sidecars)
        env = base_env(twilio_rest) | {
            "HOTLINE_NLU_MANAGE": "true",
            "HOTLINE_NLU_URL": f"http://127.0.0.1:{port}",
            "HOTLINE_NLU_TOKEN": TOKEN,
            "HOTLINE_NLU_MODEL_DIR": str(nlu_settings.nlu_model_dir),
            "HOTLINE_SIDECAR_DIR": str(sidecars),
            "HOTLINE_START_HOLD_S": "400",
            # Whether the caller is transferred or leaves a message is not what is tested.
            "HOTLINE_OPERATOR_HOURS": "never",
        }
        server = HotlineServer(tmp / "data", env).start()
        m = Managed(server, port, orphan)
        m.poller.start()
        try:
            yield m
        finally:
            m._stop.set()
            server.stop()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(orphan, signal.SIGKILL)


def test_a_stale_rasa_of_ours_is_ended_at_start(managed: Managed) -> None:
    assert _wait(lambda: not _alive(managed.orphan), 30), "the orphan still runs"
    assert f"ending a stale rasa (pid {managed.orphan}: " in managed.server.log()
    nlu = managed.details()["nlu"]
    assert nlu["stale_killed"] == [managed.orphan]


def test_a_call_during_start_is_held_and_goes_on(
    managed: Managed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Placed while Rasa loads: greeted and held, then the normal flow and a ticket."""
    assert managed.details()["nlu"]["state"] in ("starting", "down")
    original = replay._Sender.run_script

    async def held_run_script(self: Any, rec: Any) -> None:
        # A caller who waits as asked: silence until the flow's greeting starts.
        deadline = time.monotonic() + 400
        while not self.closed and time.monotonic() < deadline:
            if any(not m.endswith("-start_hold") for m in self.result.marks_received):
                break
            await self.send_frame()
        await original(self, rec)

    monkeypatch.setattr(replay._Sender, "run_script", held_run_script)
    rec = report_recording(Path(managed.server.env["HOTLINE_SIDECAR_DIR"]))
    standin = ObservedStandIn(
        managed.server.url,
        managed.server.auth_token,
        public_url=managed.server.public_url,
        fast=False,
    )

    async def place() -> Any:
        result = await asyncio.wait_for(standin.observed_call(rec), 420)
        async with httpx.AsyncClient(timeout=10) as client:  # a fresh connection after the wait
            for _ in range(50):
                result.call = await standin.fetch_call(client, result.call_sid)
                if result.call and result.call.get("outcome"):
                    break
                await asyncio.sleep(0.2)
        return result

    result = asyncio.run(place())
    marks = [m.split("-", 1)[1] for m in result.marks_received]
    assert marks[0] == "start_hold", marks
    assert "greeting" in marks and marks.index("greeting") > 0
    assert "nlu_down" not in marks
    summary = result.summary()
    assert summary["outcome"] == "ticket", summary
    events = [e["kind"] for e in result.call["events"]]
    assert "start_hold" in events and "start_hold_end" in events
    end = next(e for e in result.call["events"] if e["kind"] == "start_hold_end")
    assert end["detail"]["nlu_ready"] is True
    managed.held_call = summary


def test_healthz_is_503_while_rasa_loads_and_200_once_it_parses(managed: Managed) -> None:
    assert managed.wait_healthz(200, 300) is not None, managed.server.log()[-3000:]
    time.sleep(1)
    samples = list(managed.samples)
    assert all(set(anon) == {"status"} for _, anon, _, _ in samples), "anonymous details"
    first_ok = next(i for i, s in enumerate(samples) if s[0] == 200)
    before = samples[:first_ok]
    assert before, "no sample while Rasa was loading"
    assert all(code == 503 and anon["status"] == "starting" for code, anon, _, _ in before)
    assert any(nlu == "starting" for *_, nlu in before), before[:5]
    assert samples[first_ok][3] == "ready"
    anon = httpx.get(managed.server.url + "/healthz").json()
    assert anon == {"status": "ready"}
    nlu = managed.details()["nlu"]
    assert nlu["state"] == "ready" and nlu["pid"] and nlu["pid"] != managed.orphan
    assert "rasa" in " ".join(cmdline(nlu["pid"]))
    assert listeners(managed.port) == [nlu["pid"]]


def test_a_stopped_rasa_reads_as_down_within_seconds(managed: Managed) -> None:
    assert managed.wait_healthz(200, 120) is not None
    pid = managed.details()["nlu"]["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        down_after = managed.wait_healthz(503, 15)
    finally:
        os.kill(pid, signal.SIGCONT)
    print(f"\nSIGSTOP'd Rasa read as down after {down_after} s")
    assert down_after is not None and down_after < 8
    # Continued before the supervisor gave up on it: the same process is ready again.
    assert managed.wait_healthz(200, 20) is not None
    assert managed.details()["nlu"]["pid"] == pid


def test_kill_9_of_hotline_serve_leaves_no_rasa(managed: Managed) -> None:
    pid = managed.details()["nlu"]["pid"]
    assert _alive(pid)
    managed.server.proc.kill()
    managed.server.proc.wait(10)
    assert _wait(lambda: not _alive(pid), 10), "Rasa outlived hotline serve"
    assert _wait(lambda: not listeners(managed.port), 5)


# --- supervisor cases without a Rasa load ----------------------------------------------------


def test_a_foreign_server_on_the_port_is_left_alone_and_never_ready(
    nlu_settings: Settings, nlu_model: TrainResult, tmp_path: Path
) -> None:
    port = free_port()
    script = (
        "import http.server, json, sys\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_POST(self):\n"
        "        b = json.dumps({'text': 'alo', 'intent': {'name': 'greet'}}).encode()\n"
        "        self.send_response(200); self.end_headers(); self.wfile.write(b)\n"
        f"http.server.HTTPServer(('127.0.0.1', {port}), H).serve_forever()\n"
    )
    foreign = subprocess.Popen(["python3", "-c", script])
    try:
        assert _wait(lambda: _parses(port), 10)
        server = RasaServer.from_settings(
            nlu_settings, port=port, log_path=tmp_path / "rasa.log", max_backoff_s=4
        )

        async def run() -> dict[str, Any]:
            await server.start(wait=False)
            await asyncio.sleep(6)
            status = server.status()
            await server.stop()
            return status

        status = asyncio.run(run())
        assert foreign.poll() is None, "a process that is not ours was killed"
        assert status["state"] == "down" and status["pid"] is None
        assert f"taken by pid {foreign.pid}" in status["last_error"]
        assert status["failures"] >= 2 and status["backoff_s"] >= 2
        assert not (tmp_path / "rasa.log").exists(), "Rasa was spawned onto a taken port"
    finally:
        foreign.kill()
        foreign.wait()


def test_attempts_that_exit_0_back_off(nlu_settings: Settings, nlu_model: TrainResult) -> None:
    # What Rasa does on "address already in use": exit 0 before ever answering.
    fake = nlu_settings.data_dir / "fake-bin" / "rasa"
    fake.parent.mkdir(parents=True, exist_ok=True)
    fake.write_text("#!/bin/sh\necho 'OSError: [Errno 98] address already in use'\nexit 0\n")
    fake.chmod(0o755)
    server = RasaServer(
        rasa_bin=fake,
        model_dir=nlu_settings.nlu_model_dir,
        token="t",
        port=free_port(),
        log_path=nlu_settings.data_dir / "fake-rasa.log",
    )

    async def run() -> dict[str, Any]:
        await server.start(wait=False)
        await asyncio.sleep(8)
        status = server.status()
        await server.stop()
        return status

    status = asyncio.run(run())
    # 1 + 2 + 4 s of backoff fit in 8 s: three or four attempts, not one every quarter second.
    assert 2 <= status["restarts"] <= 4, status
    assert status["last_exit"] == 0 and status["failures"] == status["restarts"]
    assert status["backoff_s"] >= 4
    assert status["state"] in ("down", "stopped")
