"""Supervise a local `rasa run --enable-api` process for the hotline.

`hotline serve` starts one `RasaServer` (when settings.nlu_manage) and stops it on shutdown.
The supervisor task restarts Rasa when it exits or stops answering, with exponential backoff,
and `status()` feeds GET /healthz. While Rasa is starting or down, calls keep working: the NLU
client raises NLUUnavailable and the flow degrades.

What makes it survive a bad day:
- The child dies with its parent: its own process group (stop() reaches every child) and a
  parent-death signal (prctl PR_SET_DEATHSIG), so a `kill -9` of `hotline serve` leaves no Rasa
  holding the port.
- Before spawning, whoever listens on the port is looked up in /proc. A Rasa of ours left over
  from a killed supervisor (same rasa binary, `run`, a model from our model directory) is ended;
  anything else is reported and nothing is spawned (no 1.2 GB load only to fail to bind).
- "Ready" means a real POST /model/parse answered in time by a listener that is our child (the
  socket's inode is among the child's file descriptors), so an orphan or a stopped (SIGSTOP)
  Rasa never reads as ready. A hung Rasa reads as down after one failed probe and is killed
  after `probe_failures`.
- An attempt that never became ready, whatever its exit code ("address already in use" exits 0),
  is a failure: restarts back off exponentially up to `max_backoff_s`.

`--enable-api` also exposes /model/train and friends, hence 127.0.0.1 and `--auth-token`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
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


PR_SET_DEATHSIG = 1
# Looked up once in the parent: the child, between fork and exec, only makes the call (no
# dlopen there, whose lock another thread may have held at fork time).
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent(parent: int) -> None:
    """In the child, before exec: SIGKILL when the parent goes, even by kill -9."""
    _prctl(PR_SET_DEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the prctl: too late for the signal
        os._exit(1)


def _listen_inodes(port: int) -> set[int]:
    """Inodes of the TCP sockets listening on `port` (IPv4 and IPv6), from /proc/net."""
    inodes: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            # local_address is HEX_IP:HEX_PORT; state 0A is LISTEN.
            if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(int(f[9]))
    return inodes


def _socket_inodes(pid: int) -> set[int]:
    out: set[int] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for fd in fds:
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                out.add(int(target[8:-1]))
    return out


def listeners(port: int) -> list[int]:
    """PIDs of the processes holding a listening socket on `port` (needs /proc; root sees all)."""
    inodes = _listen_inodes(port)
    if not inodes:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _socket_inodes(int(entry)) & inodes:
            pids.append(int(entry))
    return pids


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


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
        max_backoff_s: float = 120.0,
        probe_interval_s: float = 2.0,
        probe_timeout_s: float = 3.0,
        probe_failures: int = 3,
        hung_kill_s: float = 30.0,
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
        self.probe_timeout_s = probe_timeout_s
        self.hung_kill_s = hung_kill_s
        self.cwd = cwd
        self.state: State = "stopped"
        self.restarts = 0
        self.model: Path | None = None
        self.last_exit: int | None = None
        self.last_error: str | None = None
        self.load_seconds: float | None = None  # spawn -> model loaded, last start
        self.failures = 0  # attempts in a row that never became ready
        self.backoff_s = 0.0  # the wait before the next attempt
        self.stale_killed: list[int] = []  # orphaned Rasa processes of ours ended at start
        self.last_probe: float | None = None  # monotonic time of the last good parse
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
            "failures": self.failures,
            "backoff_s": self.backoff_s,
            "stale_killed": self.stale_killed,
        }

    @property
    def ready(self) -> bool:
        return self.state == "ready"

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
                preexec_fn=functools.partial(_die_with_parent, os.getpid()),
            )
        finally:
            if out is not asyncio.subprocess.DEVNULL:
                out.close()
        log.info("rasa started (pid %s) with %s on %s", proc.pid, self.model.name, self.url)
        return proc

    def is_ours(self, pid: int) -> bool:
        """A `rasa run` of this installation: our rasa binary, serving a model of our model
        directory on our port. Only such a process may be ended as a stale leftover."""
        args = cmdline(pid)
        if len(args) < 3 or "run" not in args:
            return False
        rasa = str(self.rasa_bin)
        # A console-script runs as `python .../bin/rasa run ...`.
        if not any(
            a == rasa or (a.endswith("/rasa") and Path(a).parent == self.rasa_bin.parent)
            for a in args[:2]
        ):
            return False
        try:
            model = Path(args[args.index("-m") + 1])
            port = int(args[args.index("-p") + 1])
            if not model.is_absolute():  # relative to the process's own directory
                model = Path(os.readlink(f"/proc/{pid}/cwd")) / model
        except (ValueError, IndexError, OSError):
            return False
        model = model.resolve()
        return model.parent == self.model_dir.resolve() and port == self.port

    async def _clear_port(self) -> bool:
        """End a stale Rasa of ours on the port. False when someone else holds it."""
        holders = [p for p in listeners(self.port) if p != os.getpid()]
        if not holders:
            return True
        foreign = [p for p in holders if not self.is_ours(p)]
        if foreign:
            self.last_error = (
                f"port {self.port} is taken by pid {foreign[0]} "
                f"({' '.join(cmdline(foreign[0]))[:120] or 'unknown'}), not a Rasa of ours; "
                "free it or set HOTLINE_NLU_URL to another port"
            )
            return False
        for pid in holders:
            log.warning(
                "ending a stale rasa (pid %s: %s) left on port %s",
                pid,
                " ".join(cmdline(pid))[:160],
                self.port,
            )
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGTERM)
            self.stale_killed.append(pid)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in holders):
            await asyncio.sleep(0.1)
        for pid in holders:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _listen_inodes(self.port):
            await asyncio.sleep(0.1)
        return not _listen_inodes(self.port)

    def _listener_is_child(self) -> bool:
        """The socket on our port belongs to the process we spawned (not an orphan)."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return False
        inodes = _listen_inodes(self.port)
        return bool(inodes) and bool(_socket_inodes(proc.pid) & inodes)

    async def _probe(self, client: httpx.AsyncClient) -> bool:
        """True when our child answers a real parse in time."""
        try:
            resp = await client.post(
                f"{self.url}/model/parse",
                params={"token": self.token},
                json={"text": "alo"},
                timeout=self.probe_timeout_s,
            )
            ok = resp.status_code == 200 and "intent" in resp.json()
        except (httpx.HTTPError, ValueError):
            return False
        if ok and not self._listener_is_child():
            self.last_error = f"the server answering on port {self.port} is not our child"
            return False
        if ok:
            self.last_probe = time.monotonic()
        return ok

    async def _backoff(self) -> None:
        self.failures += 1
        self.backoff_s = min(2.0 ** (self.failures - 1), self.max_backoff_s)
        log.warning(
            "rasa attempt failed %d time(s) in a row (%s); next attempt in %.0f s",
            self.failures,
            self.last_error,
            self.backoff_s,
        )
        await asyncio.sleep(self.backoff_s)

    async def _supervise(self) -> None:
        async with httpx.AsyncClient(timeout=self.probe_timeout_s, trust_env=False) as client:
            while not self._stopping:
                self.state = "starting"
                self._ready.clear()
                t0 = time.monotonic()
                try:
                    if not await self._clear_port():
                        raise RuntimeError(self.last_error)
                    self._proc = await self._spawn()
                except Exception as exc:  # port taken, missing model, exec failure...
                    self.last_error = str(exc)
                    self.state = "down"
                    log.error("rasa not started: %s", exc)
                    await self._backoff()
                    continue
                proc = self._proc
                exited = asyncio.create_task(proc.wait())
                ready = False
                self.last_error = None
                while not exited.done() and time.monotonic() - t0 < self.ready_timeout_s:
                    if await self._probe(client):
                        ready = True
                        break
                    await asyncio.wait({exited}, timeout=0.5)
                if ready:
                    self.load_seconds = time.monotonic() - t0
                    self.state = "ready"
                    self.last_error = None
                    self.failures = 0
                    self.backoff_s = 0.0
                    self._ready.set()
                    log.info("rasa ready in %.1f s (pid %s)", self.load_seconds, proc.pid)
                    await self._watch(client, exited)
                elif not exited.done():
                    self.last_error = self.last_error or (
                        f"not ready after {self.ready_timeout_s:.0f} s"
                    )
                    await self._terminate(5.0)
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
                if ready:
                    # It served; a crash after a good run restarts at once.
                    self.failures = 0
                    await asyncio.sleep(0.5)
                else:
                    # Exit code 0 included: Rasa exits 0 on "address already in use".
                    await self._backoff()

    async def _watch(self, client: httpx.AsyncClient, exited: asyncio.Task[int]) -> None:
        """While up: return when the process exits, or kill it when it stops answering.

        One failed parse marks it down at once (callers should not wait on it); it is killed
        after `probe_failures` in a row spanning at least `hung_kill_s`."""
        failures = 0
        first_failure = time.monotonic()
        while not exited.done():
            await asyncio.wait({exited}, timeout=self.probe_interval_s)
            if exited.done() or self._stopping:
                return
            if await self._probe(client):
                if failures:
                    log.info("rasa answers again")
                failures = 0
                self.state = "ready"
                self._ready.set()
                continue
            failures += 1
            if failures == 1:
                first_failure = time.monotonic()
            self.state = "down"
            self._ready.clear()
            self.last_error = self.last_error or "no answer to a parse"
            # Down at once, but killed (and 1.2 GB reloaded) only when hung for a while: a
            # Rasa that is merely slow on a busy machine answers again.
            hung_s = time.monotonic() - first_failure
            if failures >= self.probe_failures and hung_s >= self.hung_kill_s:
                self.last_error = (
                    f"no answer to a parse within {self.probe_timeout_s:.0f} s, {failures} times"
                )
                log.warning("rasa stopped answering; killing pid %s", self.pid)
                await self._terminate(2.0)
                return
            self.last_error = f"no answer to a parse within {self.probe_timeout_s:.0f} s"

    async def _terminate(self, timeout: float) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
            os.killpg(proc.pid, signal.SIGCONT)  # a stopped process acts on SIGTERM only now
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has exited: its port is free.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
