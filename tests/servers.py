"""Real processes for the tests: the hotline (`hotline serve`) and a stand-in for Twilio's REST API."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response

from hotline.replay import Recording, ReplayResult, TwilioStandIn

ROOT = Path(__file__).resolve().parent.parent
HOTLINE = Path(sys.executable).parent / "hotline"
TEST_ACCOUNT_SID = "AC" + "1" * 32
TEST_AUTH_TOKEN = "test-auth-token-0123456789abcdef"
TEST_HEALTH_TOKEN = "test-health-token"
# Debian's chromium, started the way this machine's closed network needs.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class HotlineServer:
    """`hotline serve` in a subprocess, on its own port and data directory."""

    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def public_url(self) -> str:
        return self.env.get("HOTLINE_PUBLIC_URL") or self.url

    @property
    def auth_token(self) -> str:
        return self.env.get("TWILIO_AUTH_TOKEN", TEST_AUTH_TOKEN)

    def full_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HOTLINE_", "TWILIO_"))}
        env.update(
            {
                "HOTLINE_DATA_DIR": str(self.data_dir),
                "HOTLINE_PORT": str(self.port),
                "HOTLINE_HOST": "127.0.0.1",
                "TWILIO_AUTH_TOKEN": TEST_AUTH_TOKEN,
                "HOTLINE_NLU_MANAGE": "false",
                "HOTLINE_HEALTH_TOKEN": TEST_HEALTH_TOKEN,
                "HOTLINE_LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.env)
        return env

    def start(self, timeout: float = 120.0) -> HotlineServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(HOTLINE), "serve"],
            env=self.full_env(),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hotline serve exited {self.proc.returncode}:\n{self.log()}")
            try:
                # Taking calls: components loaded (the NLU may still be loading).
                if self.health(timeout=1)[1].get("accepting_calls"):
                    return self
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"hotline serve not ready after {timeout} s:\n{self.log()}")

    def twilio(self, *, fast: bool = True) -> TwilioStandIn:
        """A Twilio stand-in that calls this server and signs with its token."""
        return TwilioStandIn(self.url, self.auth_token, public_url=self.public_url, fast=fast)

    async def replay(
        self, rec: Recording, *, fast: bool = True, timeout: float = 180.0
    ) -> ReplayResult:
        return await asyncio.wait_for(self.twilio(fast=fast).call(rec), timeout)

    def health(self, timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
        """/healthz with the details (as the health token sees them)."""
        token = self.env.get("HOTLINE_HEALTH_TOKEN", TEST_HEALTH_TOKEN)
        r = httpx.get(
            self.url + "/healthz", headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )
        return r.status_code, r.json()

    def wait_for_nlu(self, timeout: float = 180.0) -> None:
        """Wait for the Rasa server `hotline serve` supervises to have loaded its model."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code, health = self.health()
            if health.get("nlu", {}).get("state") == "ready" or code == 200:
                return
            time.sleep(1)
        raise RuntimeError(f"Rasa not ready after {timeout} s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 45.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(HOTLINE), *args],
            env=self.full_env(),
            cwd=ROOT,
            text=True,
            capture_output=True,
            input=input,
            timeout=300,
        )

    def db(self) -> Any:
        from hotline.store import open_db

        return open_db(self.data_dir / "hotline.db", migrate=False)


class TwilioRestStandIn:
    """Records what the hotline asks of api.twilio.com: call updates (<Dial>) and SMS."""

    def __init__(self, account_sid: str = TEST_ACCOUNT_SID, token: str = TEST_AUTH_TOKEN) -> None:
        self.account_sid = account_sid
        self.token = token
        self.requests: list[dict[str, Any]] = []
        self.port = free_port()
        app = FastAPI()

        @app.post("/2010-04-01/Accounts/{account}/Calls/{call_sid}.json")
        async def update_call(account: str, call_sid: str, request: Request) -> Response:
            return await self._record("call_update", account, request, call_sid=call_sid)

        @app.post("/2010-04-01/Accounts/{account}/Messages.json")
        async def send_message(account: str, request: Request) -> Response:
            return await self._record("sms", account, request)

        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _record(self, kind: str, account: str, request: Request, **extra: str) -> Response:
        auth = request.headers.get("authorization", "")
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.token}".encode()).decode()
        if auth != expected or account != self.account_sid:
            return Response(
                json.dumps({"code": 20003, "message": "Authenticate"}),
                401,
                media_type="application/json",
            )
        form = dict((await request.form()).items())
        self.requests.append({"kind": kind, "form": form, **extra})
        sid = ("SM" if kind == "sms" else "CA") + "f" * 32
        body = {
            "sid": extra.get("call_sid", sid),
            "account_sid": account,
            "status": "queued",
            "to": form.get("To"),
            "from": form.get("From"),
            "body": form.get("Body"),
        }
        return Response(
            json.dumps(body), 201 if kind == "sms" else 200, media_type="application/json"
        )

    def start(self) -> TwilioRestStandIn:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(5)

    def of_kind(self, kind: str, call_sid: str | None = None) -> list[dict[str, Any]]:
        return [
            r
            for r in self.requests
            if r["kind"] == kind and (call_sid is None or r.get("call_sid") == call_sid)
        ]
