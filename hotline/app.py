"""The FastAPI app: Twilio webhooks, the Media Streams WebSocket, health, and the console.

The lifespan checks the data directory, closes what a crash left (hotline.recovery), loads
everything a call needs once per process (recognizer model, synthesizer with every fixed prompt
rendered, call flows, knowledge base, routing table), starts and supervises the Rasa server, and
on shutdown waits for calls in progress to end before closing the store.

Two levels of "up": calls are taken as soon as the components are loaded (`Services.ready`; a
call that comes while Rasa still loads is greeted and held), and /healthz says 200 only when a
call can be taken end to end (`Services.state() == "ready"`): recogniser loaded, prompts
rendered, NLU answering a parse, database and disk writable. A monitor task re-checks those
every HOTLINE_HEALTH_INTERVAL_S and sweeps `ringing` calls that never opened a stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, RedirectResponse

import hotline.schema  # noqa: F401  (registers every table)
from hotline import recovery
from hotline.config import Settings
from hotline.live import LiveHub
from hotline.speech.scheduler import DecodeScheduler
from hotline.speech.turns import prewarm_vad
from hotline.store import Store
from hotline.telephony.admission import Admission
from hotline.telephony.rest import TwilioRest
from hotline.telephony.signature import SignatureChecker
from hotline.telephony.stream import MediaStreamServer, TwilioCall

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 30.0
# Said to a call that arrives while the NLU is still loading; main.yml may override it
# with a prompt named `start_hold`.
START_HOLD_TEXT = "Xin chào quý vị. Xin quý vị chờ trong giây lát."
SWEEP_EVERY_S = 60.0

HealthState = Literal["starting", "ready", "degraded"]


@dataclass
class Services:
    settings: Settings
    store: Store
    checker: SignatureChecker
    rest: TwilioRest
    live: LiveHub
    media: MediaStreamServer | None = None
    admission: Admission | None = None
    asr: Any = None
    decoder: Any = None  # hotline.speech.scheduler.DecodeScheduler, shared by every call
    turn_model: Any = None  # hotline.speech.endpoint.EndOfTurnModel when HOTLINE_TURN=smart
    tts: Any = None
    flow: Any = None
    kb: Any = None
    router: Any = None
    nlu: Any = None
    nlu_server: Any = None
    started_at: float = field(default_factory=time.time)
    errors: dict[str, str] = field(default_factory=dict)
    # Results of the readiness monitor: check name -> None (fine) or what is wrong.
    checks: dict[str, str | None] = field(
        default_factory=lambda: {
            "nlu": "not checked yet",
            "disk": "not checked yet",
            "database": "not checked yet",
        }
    )
    nlu_ever_ready: bool = False
    checked_at: float | None = None
    recovered: dict[str, int] = field(default_factory=dict)

    def ready(self) -> bool:
        """Calls can be answered (components loaded); the NLU may still be loading."""
        return all(x is not None for x in (self.media, self.asr, self.tts, self.flow))

    @property
    def nlu_ok(self) -> bool:
        return self.checks.get("nlu") is None

    def nlu_starting(self) -> bool:
        """The NLU has not answered since this process started, and may still: a call is held
        rather than told the system is broken."""
        if self.nlu_ever_ready or self.errors.get("nlu"):
            return False
        if self.nlu_server is not None:
            return self.nlu_server.state in ("starting", "stopped") or (
                self.nlu_server.failures == 0 and self.nlu_server.restarts == 0
            )
        # An external NLU (HOTLINE_NLU_MANAGE=false) is someone else's to start: not answering
        # once checked means down.
        return self.checked_at is None

    def state(self) -> HealthState:
        if not self.ready():
            return "starting"
        if all(v is None for v in self.checks.values()):
            return "ready"
        if (
            not self.nlu_ok
            and self.nlu_starting()
            and all(v is None for k, v in self.checks.items() if k != "nlu")
        ):
            return "starting"
        return "degraded"

    def health(self) -> dict[str, Any]:
        """Everything, for a console login or the health token."""
        nlu_state = self.nlu_server.status() if self.nlu_server else {"state": "external"}
        return {
            "status": self.state(),
            "accepting_calls": self.ready() and bool(self.media and self.media.accepting),
            "calls_active": len(self.media.active) if self.media else 0,
            "admission": self.admission.status() if self.admission else None,
            "asr": getattr(self.asr, "name", None),
            "tts": self.tts is not None,
            "flows": self.flow is not None,
            "nlu": nlu_state,
            "checks": self.checks,
            "checked_s_ago": round(time.monotonic() - self.checked_at, 1)
            if self.checked_at
            else None,
            "recovered": self.recovered,
            "signatures": "verified" if self.checker.enabled else "NOT VERIFIED (development)",
            "errors": self.errors,
        }

    async def check(self) -> None:
        """One round of the readiness checks: a real parse, a file write, a commit."""
        nlu_error: str | None = None
        if self.nlu is None:
            nlu_error = "NLU client not created yet"
        elif self.nlu_server is not None and not self.nlu_server.ready:
            nlu_error = f"rasa {self.nlu_server.state}: {self.nlu_server.last_error or ''}"
        else:
            try:
                await self.nlu.parse("alo")
            except Exception as exc:  # NLUUnavailable, or anything else from the client
                nlu_error = str(exc) or type(exc).__name__
        self.checks["nlu"] = nlu_error
        if nlu_error is None and not self.nlu_ever_ready:
            self.nlu_ever_ready = True
            log.info("NLU answers: the hotline is ready end to end")
        self.checks["disk"] = await asyncio.to_thread(recovery.disk_check, self.settings)
        try:
            await self.store.arun(recovery.db_check)
            self.checks["database"] = None
        except Exception as exc:  # sqlite3.OperationalError: disk full, read-only, locked
            self.checks["database"] = f"{type(exc).__name__}: {exc}"
        self.checked_at = time.monotonic()


async def monitor(services: Services) -> None:
    """Keep the readiness checks fresh; sweep ringing calls that never streamed."""
    last_sweep = time.monotonic()
    state = None
    while True:
        try:
            await services.check()
            if time.monotonic() - last_sweep >= SWEEP_EVERY_S:
                last_sweep = time.monotonic()
                after = services.settings.ringing_timeout_s
                swept = await services.store.arun(
                    lambda db, after=after: recovery.sweep_ringing(db, after)
                )
                if swept:
                    log.info("closed %d ringing call(s) that never opened a stream", len(swept))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("readiness check failed")
        if services.state() != state:
            state = services.state()
            problems = {k: v for k, v in services.checks.items() if v}
            log.log(
                logging.INFO if state == "ready" else logging.WARNING,
                "health: %s%s",
                state,
                f" ({problems})" if problems else "",
            )
        # While the NLU loads, check often so held calls go on as soon as it answers.
        await asyncio.sleep(0.5 if services.nlu_starting() else services.settings.health_interval_s)


async def _may_see_details(request: Request, services: Services) -> bool:
    token = services.settings.health_token
    auth = request.headers.get("authorization", "")
    if (
        token
        and auth.lower().startswith("bearer ")
        and hmac.compare_digest(auth[7:].strip().encode(), token.encode())
    ):
        return True
    try:
        from hotline.console import accounts
        from hotline.console.web import COOKIE
    except ImportError:
        return False
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return False
    try:
        return (
            await services.store.arun(lambda db: accounts.session_operator(db, cookie)) is not None
        )
    except Exception:
        return False


async def drain_calls(services: Services, timeout: float = SHUTDOWN_GRACE_S) -> None:
    """Stop taking calls; tell callers in progress and hang up, keeping every record."""
    media = services.media
    if media is None:
        return
    media.accepting = False
    log.info("shutting down: ending %d call(s) in progress", len(media.active))
    for call in list(media.active.values()):
        handler = call.extra.get("handler")
        if handler is not None and hasattr(handler, "shutdown"):
            asyncio.get_running_loop().create_task(handler.shutdown())
        else:
            await call.hangup("shutdown")
    deadline = time.monotonic() + timeout
    while media.active and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


class DrainingServer(uvicorn.Server):
    """On SIGTERM/SIGINT, first let calls in progress end politely, then stop uvicorn (which
    would otherwise close their sockets at once)."""

    def __init__(self, config: uvicorn.Config, services: Services) -> None:
        super().__init__(config)
        self.services = services
        self._draining = False

    def handle_exit(self, sig: int, frame: Any) -> None:
        media = self.services.media
        if self._draining or media is None or not media.active:
            super().handle_exit(sig, frame)
            return
        self._draining = True
        loop = asyncio.get_event_loop()
        loop.call_soon_threadsafe(lambda: loop.create_task(self._drain(sig, frame)))

    async def _drain(self, sig: int, frame: Any) -> None:
        await drain_calls(self.services)
        super().handle_exit(sig, frame)


def hold_text(flow: Any) -> str:
    return (getattr(flow, "prompts", None) or {}).get("start_hold") or START_HOLD_TEXT


def _load_components(services: Services) -> None:
    """Blocking loads, run in a worker thread at start."""
    from hotline.dialogue.flow import load_flows
    from hotline.dialogue.knowledge import KnowledgeBase
    from hotline.speech.recognizer import load_engine
    from hotline.speech.tts import Synthesizer
    from hotline.tickets.routing import Router

    s = services.settings
    services.kb = KnowledgeBase.load(s.call_flows_dir / "knowledge.yml")
    services.router = Router.load(s.call_flows_dir / "routing.yml")
    flow = load_flows(s.call_flows_dir)
    if services.admission is not None and "overflow" not in flow.entries:
        # No way into the flow for an overflow stream: past the limit, the <Say> busy message.
        log.warning("call flow has no 'overflow' entry: calls past HOTLINE_MAX_CALLS hear busy")
        services.admission.max_overflow = 0
    services.asr = load_engine(s)
    services.decoder = DecodeScheduler(s.decode_workers or None)
    if s.turn == "smart":
        from hotline.speech.endpoint import load_model

        services.turn_model = load_model()
    tts = Synthesizer(s.tts_cache_dir, voice=s.tts_voice, rate=s.tts_rate, volume=s.tts_volume)
    tts.start()
    texts = [hold_text(flow), *flow.fixed_texts(), *services.kb.all_spoken_texts()]
    t0 = time.monotonic()
    rendered = tts.prerender(texts)
    log.info(
        "rendered %d fixed prompts (%d new) in %.1f s", len(texts), rendered, time.monotonic() - t0
    )
    services.tts = tts
    services.flow = flow


async def _prewarm_vad(calls: int) -> None:
    t0 = time.monotonic()
    made = await asyncio.to_thread(prewarm_vad, calls)
    log.info(
        "voice activity detectors ready for %d calls (%d built in %.1f s)",
        calls,
        made,
        time.monotonic() - t0,
    )


def create_app(settings: Settings) -> FastAPI:
    """Raises ConfigError (one line naming the setting) when the data directory is unusable."""
    recovery.check_data_dir(settings)
    settings.recordings_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.db_path)
    services = Services(
        settings=settings,
        store=store,
        checker=SignatureChecker(
            settings.auth_token, settings.base_url, enabled=settings.verify_signatures
        ),
        rest=TwilioRest(
            settings.twilio_account_sid,
            settings.twilio_auth_token,
            settings.twilio_api_base,
            settings.twilio_sms_from,
        ),
        live=LiveHub(),
        admission=Admission.from_settings(settings),
    )

    def make_handler(call: TwilioCall) -> Any:
        from hotline.dialogue.session import CallSession

        return CallSession(call, services)

    async def transfer(call_sid: str, twiml_text: str) -> bool:
        return await services.rest.redirect_call(call_sid, twiml_text)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not settings.verify_signatures:
            log.warning(
                "HOTLINE_VERIFY_SIGNATURES=false: Twilio signatures are NOT checked. "
                "Use this only on a development machine."
            )
        elif settings.using_dev_token:
            log.warning(
                "TWILIO_AUTH_TOKEN is not set: using the local development token in %s; "
                "real Twilio requests will be refused until it is set.",
                settings.data_dir / "dev-twilio-auth-token",
            )
        found = await store.arun(lambda db: recovery.recover_at_start(db, settings))
        services.recovered = {
            "interrupted": len(found.interrupted),
            "wav_repaired": len(found.repaired),
            "mixed": len(found.mixed),
            "ringing_swept": len(found.swept),
        }
        await asyncio.to_thread(_load_components, services)
        services.media = MediaStreamServer(
            checker=services.checker,
            stream_url=settings.media_stream_url,
            store=store,
            recordings_dir=settings.recordings_dir,
            handler_factory=make_handler,
            caller_secret=settings.session_secret,
            transfer_fn=transfer,
            settings=settings,
        )
        services.media.admission = services.admission
        from hotline.nlu.client import NLUClient

        services.nlu = NLUClient(
            settings.nlu_url, settings.nlu_auth_token, timeout_s=settings.nlu_timeout_s
        )
        if settings.nlu_manage:
            from hotline.nlu.server import RasaServer

            services.nlu_server = RasaServer.from_settings(settings)
            try:
                # Rasa takes ~20 s to load; calls are taken meanwhile and degrade to the keypad
                # and operators until it answers.
                await services.nlu_server.start(wait=False)
            except Exception as exc:
                services.errors["nlu"] = str(exc)
                log.error("NLU server not started: %s", exc)
        # While Rasa loads: one VAD per call the server admits, so a call's start does not
        # build one on the event loop (see prewarm_vad).
        adm = services.admission
        admitted = adm.max_calls + adm.max_overflow if adm else settings.max_calls
        warm = asyncio.create_task(_prewarm_vad(admitted), name="vad-prewarm")
        from hotline.privacy import start_retention_task

        retention = start_retention_task(services)  # the retention settings, applied daily
        from hotline import outbox

        sender = asyncio.get_running_loop().create_task(
            outbox.run(store, services.rest, base_backoff_s=settings.outbox_retry_s)
        )
        monitor_task = asyncio.create_task(monitor(services), name="readiness-monitor")
        log.info(
            "hotline taking calls on %s (stream URL %s); ready end to end once NLU answers",
            settings.base_url,
            settings.media_stream_url,
        )
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                await warm  # a thread: it cannot be cancelled, and takes about a second
            retention.cancel()
            sender.cancel()
            monitor_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await monitor_task
            await drain_calls(services, timeout=5)
            if services.decoder:
                services.decoder.shutdown()
            if services.nlu_server:
                await services.nlu_server.stop()
            if services.nlu:
                await services.nlu.aclose()
            if services.tts:
                services.tts.close()
            store.close()

    app = FastAPI(
        title="Quảng Trị hotline",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.services = services

    from hotline.telephony.webhooks import router as twilio_router

    app.include_router(twilio_router)
    from hotline.open311 import router as open311_router

    app.include_router(open311_router)

    @app.websocket("/twilio/media")
    async def media_stream(ws: WebSocket) -> None:
        if services.media is None:
            await ws.close(code=1013)
            return
        await services.media.handle(ws)

    @app.get("/healthz")
    async def healthz(request: Request) -> JSONResponse:
        """200 only when a call can be taken end to end; details for a login or the token."""
        state = services.state()
        code = 200 if state == "ready" else 503
        if await _may_see_details(request, services):
            return JSONResponse(services.health(), status_code=code)
        return JSONResponse({"status": state}, status_code=code)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/console/")

    try:
        from hotline.console import mount_console
    except ImportError:  # the console lands in its own issue
        mount_console = None
    if mount_console is not None:
        mount_console(app, services)
    return app
