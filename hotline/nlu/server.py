"""Supervise a local `rasa run --enable-api` process for the hotline.

`hotline serve` starts one `RasaServer` (when settings.nlu_manage) and stops it on shutdown.
The supervisor task restarts Rasa when it exits or stops answering, with exponential backoff,
and `status()` feeds GET /healthz. While Rasa is starting or down, calls keep working: the NLU
client raises NLUUnavailable and the flow degrades.

`--enable-api` also exposes /model/train and friends, hence 127.0.0.1 and `--auth-token`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from hotline.config import Settings, load_settings
from hotline.nlu.train import check_rasa, rasa_env, require_model

log = logging.getLogger(__name__)

State = Literal["stopped", "starting", "ready", "down"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _rss_bytes(pid: int) -> int | None:
    """Resident memory of a process (Linux /proc), None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


class RasaServer:
    """One supervised `rasa run` process.

    Usage::

        server = RasaServer.from_settings(settings)
        await server.start()          # returns when the model is loaded (or raises)
        ...
        server.status()               # {"state": "ready", "pid": ..., "restarts": 0, ...}
        await server.stop()
    """

    def __init__(
        self,
        *,
        rasa_bin: Path,
        model_dir: Path,
        token: str,
        host: str = "127.0.0.1",
        port: int = 5005,
        log_path: Path | None = None,
        ready_timeout_s: float = 180.0,
        max_backoff_s: float = 30.0,
        probe_interval_s: float = 5.0,
        probe_failures: int = 3,
        cwd: Path | None = None,
    ) -> None:
        self.rasa_bin = rasa_bin
        self.model_dir = model_dir
        self.token = token
        self.host = host
        self.port = port
        self.log_path = log_path
        self.ready_timeout_s = ready_timeout_s
        self.max_backoff_s = max_backoff_s
        self.probe_interval_s = probe_interval_s
        self.probe_failures = probe_failures
        self.cwd = cwd
        self.state: State = "stopped"
        self.restarts = 0
        self.model: Path | None = None
        self.last_exit: int | None = None
        self.last_error: str | None = None
        self.load_seconds: float | None = None  # spawn -> model loaded, last start
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._stopping = False

    @classmethod
    def from_settings(
        cls,
        settings: Settings | None = None,
        *,
        port: int | None = None,
        log_path: Path | None = None,
        **kwargs: Any,
    ) -> RasaServer:
        settings = settings or load_settings()
        url = urlsplit(settings.nlu_url)
        return cls(
            rasa_bin=settings.rasa_bin,
            model_dir=settings.nlu_model_dir,
            token=settings.nlu_auth_token,
            host=url.hostname or "127.0.0.1",
            port=port or url.port or 5005,
            log_path=log_path or settings.data_dir / "logs" / "rasa.log",
            **kwargs,
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc and self._proc.returncode is None else None

    def status(self) -> dict[str, Any]:
        """For /healthz: state starting|ready|down (or stopped), pid, restarts, model."""
        pid = self.pid
        return {
            "state": self.state,
            "pid": pid,
            "restarts": self.restarts,
            "model": self.model.name if self.model else None,
            "url": self.url,
            "load_seconds": round(self.load_seconds, 1) if self.load_seconds else None,
            "rss_mb": round(rss / 2**20) if pid and (rss := _rss_bytes(pid)) else None,
            "last_exit": self.last_exit,
            "last_error": self.last_error,
        }

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self, *, wait: bool = True, timeout: float | None = None) -> None:
        """Spawn Rasa under supervision; with wait, return once the model is loaded.

        Raises NLUSetupError at once when the Rasa venv or the model is missing, and
        TimeoutError when Rasa is not ready in time (the supervisor keeps trying).
        """
        check_rasa(self.rasa_bin)
        require_model(self.model_dir)
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.create_task(self._supervise(), name="rasa-supervisor")
        if wait:
            await self.wait_ready(timeout or self.ready_timeout_s)

    async def wait_ready(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"Rasa not ready after {timeout:.0f} s (state {self.state}, last error: "
                f"{self.last_error}); see {self.log_path}"
            ) from None

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL after `timeout`; stop supervising."""
        self._stopping = True
        await self._terminate(timeout)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self._ready.clear()
        self.state = "stopped"

    async def __aenter__(self) -> RasaServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- internals ---------------------------------------------------------------------------

    async def _spawn(self) -> asyncio.subprocess.Process:
        self.model = require_model(self.model_dir)
        cmd = [
            str(self.rasa_bin),
            "run",
            "--enable-api",
            "-m",
            str(self.model),
            "-i",
            self.host,
            "-p",
            str(self.port),
            "--auth-token",
            self.token,
        ]
        out: int | Any = asyncio.subprocess.DEVNULL
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            out = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env=rasa_env(),
                # Its own directory (no stray endpoints.yml/credentials.yml) and its own
                # process group, so stop() reaches every child.
                cwd=str(self.cwd or self.model_dir),
                start_new_session=True,
            )
        finally:
            if out is not asyncio.subprocess.DEVNULL:
                out.close()
        log.info("rasa started (pid %s) with %s on %s", proc.pid, self.model.name, self.url)
        return proc

    async def _probe(self, client: httpx.AsyncClient) -> bool:
        """True when /status answers with a loaded model."""
        try:
            resp = await client.get(f"{self.url}/status", params={"token": self.token})
        except httpx.HTTPError:
            return False
        if resp.status_code != 200:
            return False
        try:
            return bool(resp.json().get("model_file"))
        except ValueError:
            return False

    async def _supervise(self) -> None:
        backoff = 1.0
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
            while not self._stopping:
                self.state = "starting"
                self._ready.clear()
                t0 = time.monotonic()
                try:
                    self._proc = await self._spawn()
                except Exception as exc:  # missing model after a cleanup, exec failure...
                    self.last_error = str(exc)
                    self.state = "down"
                    log.error("rasa failed to start: %s", exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.max_backoff_s)
                    continue
                proc = self._proc
                exited = asyncio.create_task(proc.wait())
                ready = False
                while not exited.done() and time.monotonic() - t0 < self.ready_timeout_s:
                    if await self._probe(client):
                        ready = True
                        break
                    await asyncio.wait({exited}, timeout=0.25)
                if ready:
                    self.load_seconds = time.monotonic() - t0
                    self.state = "ready"
                    self.last_error = None
                    self._ready.set()
                    log.info("rasa ready in %.1f s", self.load_seconds)
                    await self._watch(client, exited)
                elif not exited.done():
                    self.last_error = f"not ready after {self.ready_timeout_s:.0f} s"
                    await self._terminate(5.0)
                ran = time.monotonic() - t0
                with contextlib.suppress(Exception):
                    self.last_exit = await exited
                self._ready.clear()
                if self._stopping:
                    break
                self.state = "down"
                self.restarts += 1
                if self.last_error is None:
                    self.last_error = f"rasa exited with code {self.last_exit}"
                log.warning("rasa down (%s); restart #%d", self.last_error, self.restarts)
                # A process that ran a while gets an immediate restart; a crash loop backs off.
                backoff = 1.0 if ran > 60 else min(backoff * 2, self.max_backoff_s)
                await asyncio.sleep(backoff)

    async def _watch(self, client: httpx.AsyncClient, exited: asyncio.Task[int]) -> None:
        """While ready: return when the process exits, or kill it if it stops answering."""
        failures = 0
        while not exited.done():
            await asyncio.wait({exited}, timeout=self.probe_interval_s)
            if exited.done() or self._stopping:
                return
            if await self._probe(client):
                failures = 0
                continue
            failures += 1
            if failures >= self.probe_failures:
                self.last_error = f"no answer from /status {failures} times"
                log.warning("rasa stopped answering; killing pid %s", self.pid)
                await self._terminate(5.0)
                return

    async def _terminate(self, timeout: float) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
