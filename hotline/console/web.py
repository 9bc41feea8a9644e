"""The console's pages and endpoints under /console.

Every route starts with `await self.user(request, ...)`: pages redirect to the login page, APIs
(JSON, server-sent events, audio, CSV) answer 401. Every POST checks the form's CSRF token
(403 without it). Anything an operator types or a caller said reaches the page through Jinja2
autoescaping or, in the browser, through textContent: never as HTML.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlencode, urlsplit
from zoneinfo import ZoneInfo

import jinja2
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from markupsafe import Markup
from starlette.websockets import WebSocket

from hotline import privacy
from hotline.calls import get_call, mask_number
from hotline.console import accounts, charts, corrections, queries, search
from hotline.console.accounts import AccountError, Operator
from hotline.console.corrections import INTENT_LABELS, CorrectionError
from hotline.console.store import (
    AGENCY,
    ROLE_LABELS,
    ROLES,
    audit,
    can,
    list_audit,
    role_at_least,
)
from hotline.nlu.train import INTENTS
from hotline.tickets import store as tickets
from hotline.tickets.codes import clean_code, is_valid
from hotline.tickets.store import TRANSITIONS, TicketError

log = logging.getLogger(__name__)
T = TypeVar("T")

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
COOKIE = "hotline_session"
LOGIN_CSRF_COOKIE = "hotline_login_csrf"
LIVE_STREAM_MAX_S = 25.0  # an open event stream delays a server restart; browsers reconnect
LIVE_PING_S = 10.0

OK_MESSAGES = {
    "corrected": "Đã lưu nhãn sửa. Máy sẽ học theo ở lần huấn luyện tới.",
    "category": "Đã đổi lĩnh vực và giao lại phiếu theo bảng phân công.",
    "draft_confirmed": "Đã tạo phiếu từ bản nháp.",
    "draft_closed": "Đã đóng phiếu nháp.",
    "templates": "Đã lưu các mẫu câu.",
    "retrain_started": "Đã bắt đầu huấn luyện lại (vài phút). Mô hình mới được dùng sau khi"
    " khởi động lại dịch vụ.",
    "retrain_running": "Đang huấn luyện lại, hãy chờ lần trước xong.",
    "status": "Đã đổi trạng thái phiếu.",
    "comment": "Đã thêm ghi chú.",
    "assigned": "Đã giao phiếu cho cơ quan mới.",
    "operator_added": "Đã tạo tài khoản.",
    "operator_changed": "Đã cập nhật tài khoản.",
    "bye": "Bạn đã đăng xuất.",
}


class LoginRequired(Exception):
    def __init__(self, api: bool) -> None:
        self.api = api


class RoleForbidden(Exception):
    def __init__(self, api: bool, minimum: str) -> None:
        self.api = api
        self.minimum = minimum


class CsrfRefused(Exception):
    pass


class NotFound(Exception):
    def __init__(self, message: str, api: bool = False) -> None:
        self.message = message
        self.api = api


class BadRequest(Exception):
    def __init__(self, message: str, api: bool = False) -> None:
        self.message = message
        self.api = api


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _display_unit(name: str) -> str:
    """'Xã Triệu Phong' -> 'xã Triệu Phong', as it reads after 'UBND' or 'Công an'."""
    for prefix in ("Xã", "Phường", "Thị trấn", "Đặc khu"):
        if name.startswith(prefix + " "):
            return prefix.lower() + name[len(prefix) :]
    return name


class Console:
    def __init__(self, services: Any) -> None:
        self.sv = services
        self.settings = services.settings
        try:
            self.tz = ZoneInfo(self.settings.timezone)
        except Exception:
            self.tz = ZoneInfo("Asia/Ho_Chi_Minh")
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(TEMPLATES)),
            autoescape=True,  # every template, whatever its extension
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["localtime"] = self._localtime
        self.env.filters["ms"] = _fmt_ms
        self.env.filters["pct"] = lambda v: "—" if v is None else f"{float(v):.0%}"
        self.env.filters["jsontext"] = lambda v: (
            json.dumps(v, ensure_ascii=False, sort_keys=True) if v not in (None, "") else ""
        )
        self.env.globals.update(
            static=self._static_url,
            ROLE_LABELS=ROLE_LABELS,
            INTENT_LABELS=INTENT_LABELS,
            OUTCOME_LABELS=queries.OUTCOME_LABELS,
            HANGUP_LABELS=queries.HANGUP_LABELS,
            CATEGORY_LABELS=queries.CATEGORY_LABELS,
            AUDIT_LABELS=queries.AUDIT_LABELS,
            role_at_least=role_at_least,
        )
        self._static_version = self._compute_static_version()
        services.store.run(search.ensure_index)

    # --- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _compute_static_version() -> str:
        newest = max((p.stat().st_mtime_ns for p in STATIC.iterdir() if p.is_file()), default=0)
        return format(newest // 1_000_000 % 10**10, "x")

    def _static_url(self, name: str) -> str:
        return f"/console/static/{name}?v={self._static_version}"

    def _localtime(self, iso: str | None, fmt: str = "%d/%m/%Y %H:%M:%S") -> str:
        dt = queries.to_local(iso, self.tz)
        return dt.strftime(fmt) if dt else ""

    async def db(self, fn: Callable[[Any], T]) -> T:
        return await self.sv.store.arun(fn)

    @staticmethod
    def ip(request: Request | WebSocket) -> str | None:
        return request.client.host if request.client else None

    async def user(
        self, request: Request, minimum: str = "operator", *, api: bool = False
    ) -> Operator:
        token = request.cookies.get(COOKIE)
        op = await self.db(lambda db: accounts.session_operator(db, token)) if token else None
        if op is None:
            raise LoginRequired(api)
        request.state.operator = op
        if not role_at_least(op.role, minimum):
            raise RoleForbidden(api, minimum)
        return op

    def same_origin(self, origin: str | None, host: str | None) -> bool:
        if not origin or origin == "null" or not host:
            return False
        allowed = {f"http://{host}".lower(), f"https://{host}".lower()}
        if self.settings.public_url:
            allowed.add(_origin(self.settings.public_url))
        return origin.lower().rstrip("/") in allowed

    async def form(self, request: Request, op: Operator) -> dict[str, str]:
        """The POSTed form, once its CSRF token matched the session's (else 403)."""
        origin = request.headers.get("origin")
        if origin is not None and not self.same_origin(origin, request.headers.get("host")):
            raise CsrfRefused()
        try:
            raw = await request.form()
        except Exception:
            raise BadRequest("Dữ liệu gửi lên không đọc được") from None
        form = {k: v for k, v in raw.items() if isinstance(v, str)}
        token = form.get("csrf", "")
        if not token or not hmac.compare_digest(token.encode(), op.csrf_token.encode()):
            raise CsrfRefused()
        return form

    def show_caller(self, op: Operator | None, number: str | None) -> str:
        """Masked for everyone: a full number is shown only through the logged reveal
        (hotline/console/privacy.py)."""
        if not number:
            return ""
        if number.startswith("console:"):
            return "Gọi thử: " + number.removeprefix("console:")
        if number.startswith(privacy.PSEUDONYM_PREFIX) or number == privacy.ERASED:
            return "Số đã ẩn (hết thời hạn lưu)" if number != privacy.ERASED else "Số đã xoá"
        return mask_number(number)

    @staticmethod
    def can_reveal(op: Operator | None, number: str | None) -> bool:
        return bool(
            op is not None
            and can(op.role, "reveal_number")
            and number
            and not number.startswith(("console:", privacy.PSEUDONYM_PREFIX, privacy.ERASED))
        )

    def render(
        self,
        request: Request,
        template: str,
        status_code: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        op: Operator | None = getattr(request.state, "operator", None)
        ok = request.query_params.get("ok", "")
        context.setdefault("notice", OK_MESSAGES.get(ok, ""))
        html = self.env.get_template(template).render(
            request_path=request.url.path,
            op=op,
            csrf=op.csrf_token if op else "",
            show_caller=lambda n: self.show_caller(op, n),
            can_reveal=lambda n: self.can_reveal(op, n),
            **context,
        )
        return HTMLResponse(html, status_code=status_code)

    def agencies(self) -> dict[str, str]:
        router = self.sv.router
        if router is None:
            return {}
        out = {}
        for code, spec in router.agencies.items():
            name = spec.name.replace("{unit}", "(xã/phường)") if spec.templated else spec.name
            out[code] = name
        return out

    def assignable(self, ticket: dict[str, Any]) -> list[tuple[str, str]]:
        """Agencies a ticket can go to: the routing table's, the templated ones for its unit."""
        router = self.sv.router
        options: list[tuple[str, str]] = []
        if router is not None:
            for code, spec in router.agencies.items():
                if not spec.templated:
                    options.append((code, spec.name))
                elif ticket.get("location_code") and ticket.get("location_unit"):
                    unit = _display_unit(ticket["location_unit"])
                    options.append(
                        (f"{code}:{ticket['location_code']}", spec.name.replace("{unit}", unit))
                    )
        if ticket.get("agency_code") and all(c != ticket["agency_code"] for c, _ in options):
            options.insert(0, (ticket["agency_code"], ticket.get("agency_name") or ""))
        return options

    # --- routes -------------------------------------------------------------------------------

    def router(self) -> APIRouter:
        r = APIRouter(prefix="/console")
        add = r.add_api_route
        add("", self.index, methods=["GET"], include_in_schema=False)
        add("/", self.index, methods=["GET"], include_in_schema=False)
        add("/login", self.login_page, methods=["GET"])
        add("/login", self.login_submit, methods=["POST"])
        add("/logout", self.logout, methods=["POST"])
        add("/calls", self.calls_page, methods=["GET"])
        add("/calls/{call_sid}", self.call_page, methods=["GET"])
        add("/calls/{call_sid}/audio", self.call_audio, methods=["GET"])
        add("/calls/{call_sid}/audio.ogg", self.call_audio_compressed, methods=["GET"])
        add("/turns/{turn_id}/correct", self.correct_turn, methods=["POST"])
        add("/tickets", self.tickets_page, methods=["GET"])
        add("/tickets.csv", self.tickets_csv, methods=["GET"])
        add("/tickets.xlsx", self.tickets_xlsx, methods=["GET"])
        add("/tickets/{code}", self.ticket_page, methods=["GET"])
        add("/tickets/{code}/status", self.ticket_status, methods=["POST"])
        add("/tickets/{code}/comment", self.ticket_comment, methods=["POST"])
        add("/tickets/{code}/assign", self.ticket_assign, methods=["POST"])
        add("/drafts/{ticket_id}", self.draft_page, methods=["GET"])
        add("/corrections", self.corrections_page, methods=["GET"])
        add("/corrections.yml", self.corrections_yaml, methods=["GET"])
        add("/dashboard", self.dashboard_page, methods=["GET"])
        add("/live", self.live_page, methods=["GET"])
        add("/api/live", self.live_events, methods=["GET"])
        add("/api/live/active", self.live_active, methods=["GET"])
        add("/api/me", self.me, methods=["GET"])
        add("/try", self.try_page, methods=["GET"])
        add("/api/test-call", self.test_call, methods=["POST"])
        add("/operators", self.operators_page, methods=["GET"])
        add("/operators", self.operator_add, methods=["POST"])
        add("/operators/{username}", self.operator_change, methods=["POST"])
        add("/audit", self.audit_page, methods=["GET"])
        return r

    async def index(self, request: Request) -> Response:
        await self.user(request)
        return RedirectResponse("/console/calls", status_code=303)

    # --- login --------------------------------------------------------------------------------

    def _login_response(
        self,
        request: Request,
        *,
        error: str = "",
        status_code: int = 200,
        username: str = "",
        nxt: str | None = None,
    ) -> HTMLResponse:
        token = secrets.token_urlsafe(24)
        nxt = self._safe_next(nxt if nxt is not None else request.query_params.get("next") or "")
        resp = self.render(
            request,
            "login.html",
            status_code,
            login_csrf=token,
            error=error,
            next=nxt,
            username=username,
        )
        resp.set_cookie(
            LOGIN_CSRF_COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=self.settings.secure_cookies,
            path="/console/login",
            max_age=3600,
        )
        return resp

    @staticmethod
    def _safe_next(value: str) -> str:
        # Only back into the console: an open redirect would let a phishing link borrow our name.
        if value.startswith("/console") and not value.startswith("//") and "\\" not in value:
            return value
        return "/console/calls"

    async def login_page(self, request: Request) -> Response:
        token = request.cookies.get(COOKIE)
        if token and await self.db(lambda db: accounts.session_operator(db, token)):
            return RedirectResponse(self._safe_next(request.query_params.get("next") or ""), 303)
        return self._login_response(request)

    async def login_submit(self, request: Request) -> Response:
        try:
            raw = await request.form()
        except Exception:
            raise BadRequest("Dữ liệu gửi lên không đọc được") from None
        form = {k: v for k, v in raw.items() if isinstance(v, str)}
        cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        sent = form.get("csrf", "")
        if not cookie or not sent or not hmac.compare_digest(cookie.encode(), sent.encode()):
            raise CsrfRefused()
        origin = request.headers.get("origin")
        if origin is not None and not self.same_origin(origin, request.headers.get("host")):
            raise CsrfRefused()
        username = form.get("username", "")[:64]
        password = form.get("password", "")[: accounts.MAX_PASSWORD]
        ip = self.ip(request)
        result = await self.db(lambda db: accounts.authenticate(db, username, password, ip=ip))
        if not result.ok:
            if result.locked_until is not None:
                until = result.locked_until.astimezone(self.tz).strftime("%H:%M")
                msg = (
                    f"Tài khoản tạm khóa đến {until} vì đăng nhập sai {accounts.MAX_FAILURES} "
                    f"lần liên tiếp. Vui lòng thử lại sau."
                )
                return self._login_response(
                    request, error=msg, status_code=429, username=username, nxt=form.get("next", "")
                )
            return self._login_response(
                request,
                error="Sai tên đăng nhập hoặc mật khẩu.",
                status_code=401,
                username=username,
                nxt=form.get("next", ""),
            )
        name = result.operator["username"]  # type: ignore[index]
        agent = request.headers.get("user-agent")
        token = await self.db(lambda db: accounts.create_session(db, name, ip=ip, user_agent=agent))
        resp = RedirectResponse(self._safe_next(form.get("next", "")), status_code=303)
        resp.set_cookie(
            COOKIE,
            token,
            httponly=True,
            samesite="lax",
            secure=self.settings.secure_cookies,
            path="/",  # the Gọi thử page's WebSocket (/twilio/media) needs it too
            max_age=int(accounts.SESSION_TTL.total_seconds()),
        )
        resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/console/login")
        return resp

    async def logout(self, request: Request) -> Response:
        op = await self.user(request)
        await self.form(request, op)
        token = request.cookies.get(COOKIE)
        ip = self.ip(request)
        await self.db(lambda db: accounts.end_session(db, token, ip=ip))
        resp = RedirectResponse("/console/login?ok=bye", status_code=303)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    async def me(self, request: Request) -> Response:
        op = await self.user(request, api=True)
        return JSONResponse(
            {"username": op.username, "role": op.role, "display_name": op.display_name}
        )

    # --- calls --------------------------------------------------------------------------------

    async def calls_page(self, request: Request) -> Response:
        await self.user(request)
        params = dict(request.query_params)
        f = queries.parse_call_filter(params)
        rows, total = await self.db(lambda db: queries.list_calls(db, f, self.tz))
        more = f.page * queries.PAGE_SIZE < total
        return self.render(
            request,
            "calls.html",
            calls=rows,
            f=f,
            more=more,
            total=total,
            range_text=queries.range_text(f.page, total),
            shortcuts=queries.shortcuts(self.tz),
            intents=queries.FILTER_INTENTS,
            outcomes=queries.OUTCOME_LABELS,
            next_qs=f.query_string(page=f.page + 1),
            prev_qs=f.query_string(page=f.page - 1) if f.page > 1 else "",
        )

    @staticmethod
    def _check_sid(call_sid: str, api: bool = False) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", call_sid or ""):
            raise NotFound("Không có cuộc gọi này", api)
        return call_sid

    async def call_page(self, request: Request, call_sid: str) -> Response:
        await self.user(request)
        sid = self._check_sid(call_sid)

        def read(db: Any) -> dict[str, Any] | None:
            call = get_call(db, sid)
            if call is None:
                return None
            call["fixes"] = corrections.corrections_for_call(db, sid)
            call["tickets"] = list(
                db.query(
                    "SELECT id, code, confirmed, status, category, agency_name FROM tickets"
                    " WHERE call_sid = ? ORDER BY id",
                    [sid],
                )
            )
            return call

        call = await self.db(read)
        if call is None:
            raise NotFound(f"Không có cuộc gọi {sid}")
        has_audio = self._recording(call) is not None
        dtmf = [t for t in call["turns"] if t.get("kind") == "dtmf"]
        from hotline.console.transcript import played_turns

        is_test = (call.get("caller") or "").startswith("console:") or bool(
            await self.sv.store.aquery("SELECT 1 FROM test_calls WHERE call_sid = ?", [sid])
        )
        return self.render(
            request,
            "call.html",
            call=call,
            turns=played_turns(call),
            offers=_category_offers(call),
            is_test=is_test,
            has_audio=has_audio,
            dtmf=dtmf,
            intents=INTENTS,
            threshold=queries.DEFAULT_LOW_CONFIDENCE,
            event_detail=lambda e: (
                json.dumps(e.get("detail"), ensure_ascii=False) if e.get("detail") else ""
            ),
        )

    def _recording(self, call: dict[str, Any]) -> Path | None:
        """The call's own recording, if it lies under the recordings directory: never any
        other path, whatever the database says."""
        root = self.settings.recordings_dir.resolve()
        for key in ("mixed_recording_path", "recording_path"):
            stored = call.get(key)
            if not stored:
                continue
            try:
                path = Path(stored).resolve()
            except (OSError, RuntimeError):
                continue
            if path.is_relative_to(root) and path.suffix == ".wav" and path.is_file():
                return path
        return None

    async def call_audio(self, request: Request, call_sid: str) -> Response:
        op = await self.user(request, api=True)
        sid = self._check_sid(call_sid, api=True)
        rows = await self.sv.store.aquery(
            "SELECT mixed_recording_path, recording_path FROM calls WHERE call_sid = ?", [sid]
        )
        path = self._recording(rows[0]) if rows else None
        if path is None:
            raise NotFound("Cuộc gọi này không có bản ghi âm", api=True)
        download = request.query_params.get("download") == "1"
        action = "recording_download" if download else "recording_listen"
        ip = self.ip(request)
        await self.db(lambda db: privacy.audit_access(db, op.username, action, sid, ip))
        # FileResponse answers Range requests (206), so the player can seek.
        return FileResponse(
            path,
            media_type="audio/wav",
            headers={"Cache-Control": "private, max-age=0"},
            content_disposition_type="attachment" if download else "inline",
            filename=f"{sid}.wav",
        )

    async def call_audio_compressed(self, request: Request, call_sid: str) -> Response:
        """The recording as Ogg Vorbis for listening (about 1/20 of the WAV), made once with
        sox next to the WAV, which stays for export. 404 while the call is going on or if sox
        fails: the page's player then falls back to the WAV. Listening is audited like the WAV."""
        op = await self.user(request, api=True)
        sid = self._check_sid(call_sid, api=True)
        rows = await self.sv.store.aquery(
            "SELECT mixed_recording_path, recording_path, ended_at FROM calls WHERE call_sid = ?",
            [sid],
        )
        path = self._recording(rows[0]) if rows and rows[0].get("ended_at") else None
        if path is None:
            raise NotFound("Cuộc gọi này không có bản ghi âm", api=True)
        ogg = await asyncio.to_thread(listening_copy, path)
        if ogg is None:
            raise NotFound("Không tạo được bản nghe nén", api=True)
        ip = self.ip(request)
        await self.db(lambda db: privacy.audit_access(db, op.username, "recording_listen", sid, ip))
        return FileResponse(
            ogg,
            media_type="audio/ogg",
            headers={"Cache-Control": "private, max-age=0"},
            content_disposition_type="inline",
            filename=f"{sid}.ogg",
        )

    async def correct_turn(self, request: Request, turn_id: str) -> Response:
        op = await self.user(request)
        form = await self.form(request, op)
        if not turn_id.isdigit() or len(turn_id) > 12:
            raise NotFound("Không có lượt nói này")
        tid = int(turn_id)
        ip = self.ip(request)
        rows = await self.sv.store.aquery("SELECT call_sid FROM turns WHERE id = ?", [tid])
        if not rows:
            raise NotFound("Không có lượt nói này")
        sid = rows[0]["call_sid"]
        try:
            await self.db(
                lambda db: corrections.add_correction(
                    db,
                    tid,
                    form.get("intent", ""),
                    form.get("location", ""),
                    actor=op.username,
                    ip=ip,
                )
            )
        except CorrectionError as exc:
            raise BadRequest(str(exc)) from None
        return RedirectResponse(
            f"/console/calls/{quote(sid)}?ok=corrected#turn-{tid}", status_code=303
        )

    # --- tickets ------------------------------------------------------------------------------

    async def tickets_page(self, request: Request) -> Response:
        op = await self.user(request)
        agencies = self.agencies()
        f = queries.parse_ticket_filter(dict(request.query_params), agencies)

        def read(db: Any) -> tuple[list[dict[str, Any]], int]:
            rows = queries.list_tickets(db, f, tz=self.tz, actor=op.username)
            return rows, queries.count_tickets(db, f, tz=self.tz, actor=op.username)

        rows, total = await self.db(read)
        now = datetime.now(UTC)
        for r in rows:
            r["age"] = queries.age_text(r.get("confirmed_at") or r.get("created_at"), now)
            r["due_text"], r["overdue"] = queries.due_text(r, now)
        return self.render(
            request,
            "tickets.html",
            tickets=rows,
            total=total,
            range_text=queries.range_text(f.page, total),
            shortcuts=queries.shortcuts(self.tz),
            more=f.page * queries.PAGE_SIZE < total,
            next_qs=f.query_string(page=f.page + 1),
            prev_qs=f.query_string(page=f.page - 1) if f.page > 1 else "",
            f=f,
            agencies=agencies,
            statuses=queries.status_options(),
            categories=queries.CATEGORY_LABELS,
            ages=queries.AGES,
        )

    async def tickets_csv(self, request: Request) -> Response:
        return await self._tickets_export(request, "csv")

    async def tickets_xlsx(self, request: Request) -> Response:
        return await self._tickets_export(request, "xlsx")

    async def _tickets_export(self, request: Request, fmt: str) -> Response:
        from hotline.console import export

        op = await self.user(request, api=True)
        agencies = self.agencies()
        try:
            f = queries.parse_ticket_filter(dict(request.query_params), agencies)
        except queries.BadInput as exc:
            raise BadRequest(str(exc), api=True) from None
        ip = self.ip(request)

        def read(db: Any) -> list[dict[str, Any]]:
            listed = queries.list_tickets(
                db, f, limit=1_000_000, offset=0, tz=self.tz, actor=op.username
            )
            ids = {t["id"] for t in listed}
            rows = [r for r in tickets.export_rows(db, include_drafts=f.drafts) if r["id"] in ids]
            detail = {"rows": len(rows), "format": fmt, **f.as_dict()}
            audit(db, op.username, "tickets_export", None, detail, ip)
            return rows

        rows = await self.db(read)
        for row in rows:
            if not role_at_least(op.role, "supervisor"):
                row["caller"] = mask_number(row.get("caller"))
        stamp = datetime.now(self.tz).strftime("%Y%m%d-%H%M")
        if fmt == "xlsx":
            body = await asyncio.to_thread(export.to_xlsx, rows, self.tz)
            media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        else:
            body = export.to_csv(rows, self.tz)
            media = "text/csv; charset=utf-8"
        return Response(
            body,
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="phan-anh-{stamp}.{fmt}"'},
        )

    async def _ticket_context(self, ticket: dict[str, Any]) -> dict[str, Any]:
        sid = ticket.get("call_sid")

        def read(db: Any) -> dict[str, Any]:
            call = None
            words: list[dict[str, Any]] = []
            if sid:
                rows = list(db.query("SELECT * FROM calls WHERE call_sid = ?", [sid]))
                call = rows[0] if rows else None
                words = list(
                    db.query(
                        "SELECT id, text, start_ms, intent, kind FROM turns WHERE call_sid = ?"
                        " AND speaker = 'caller' ORDER BY seq",
                        [sid],
                    )
                )
            from hotline import outbox
            from hotline.tickets import incidents

            messages = outbox.for_ticket(db, ticket["id"]) if ticket.get("id") else []
            incident = (
                incidents.get(db, ticket["incident_id"]) if ticket.get("incident_id") else None
            )
            return {"call": call, "words": words, "messages": messages, "incident": incident}

        extra = await self.db(read)
        call = extra["call"]
        extra["has_audio"] = bool(call) and self._recording(call) is not None
        extra["location_pretty"] = queries.pretty_json(ticket.get("location_json"))
        extra["transitions"] = [
            s for s in tickets.STATUSES if s in TRANSITIONS.get(ticket.get("status") or "", ())
        ]
        extra["assignable"] = self.assignable(ticket)
        extra["age"] = queries.age_text(ticket.get("confirmed_at") or ticket.get("created_at"))
        extra["categories"] = queries.CATEGORY_LABELS
        names = await self.db(accounts.list_operators)
        extra["names"] = {o["username"]: o.get("display_name") or o["username"] for o in names}
        extra["names"]["hotline"] = "Tổng đài tự động"
        from hotline.console.work import is_test_ticket

        extra["is_test"] = await self.db(lambda db: is_test_ticket(db, ticket))
        code = ticket.get("code")
        extra["asked"] = (
            await self.sv.store.aquery(
                "SELECT call_sid, at FROM events WHERE kind = 'ticket_lookup'"
                " AND json_extract(detail, '$.code') = ? ORDER BY id",
                [code],
            )
            if code
            else []
        )
        from hotline.console.store import status_templates

        templates = await self.db(status_templates)
        allowed = set(extra["transitions"])
        extra["status_templates"] = {k: v for k, v in templates.items() if k in allowed}
        return extra

    async def ticket_page(self, request: Request, code: str) -> Response:
        return await self.ticket_view(request, code)

    async def ticket_view(
        self,
        request: Request,
        code: str,
        *,
        error: str = "",
        errors: dict[str, str] | None = None,
        values: dict[str, dict[str, str]] | None = None,
    ) -> Response:
        # Not a route: only a handler's own arguments may become query parameters (an `error`
        # one would put attacker-chosen text on the page).
        await self.user(request)
        cleaned = clean_code(code)
        if not is_valid(cleaned):
            raise BadRequest(
                f"Mã phiếu “{code[:20]}” không hợp lệ (7 chữ số, chữ số cuối là số kiểm tra)"
            )
        ticket = await self.db(lambda db: tickets.get_ticket(db, cleaned))
        if ticket is None:
            raise NotFound(f"Không tìm thấy phiếu {cleaned}")
        ctx = await self._ticket_context(ticket)
        return self.render(
            request,
            "ticket.html",
            400 if error or errors else 200,
            ticket=ticket,
            error=error,
            errors=errors or {},
            values=values or {},
            **ctx,
        )

    async def draft_page(self, request: Request, ticket_id: str) -> Response:
        return await self.draft_view(request, ticket_id)

    async def draft_view(
        self,
        request: Request,
        ticket_id: str,
        *,
        errors: dict[str, str] | None = None,
        revealed: str = "",
    ) -> Response:
        await self.user(request)
        if not ticket_id.isdigit() or len(ticket_id) > 12:
            raise NotFound("Không có phiếu nháp này")
        ticket = await self.db(lambda db: tickets.get_ticket_by_id(db, int(ticket_id)))
        if ticket is None:
            raise NotFound("Không có phiếu nháp này")
        if ticket["confirmed"]:
            return RedirectResponse(f"/console/tickets/{ticket['code']}", status_code=303)
        ctx = await self._ticket_context(ticket)
        ctx["transitions"], ctx["assignable"] = [], []
        return self.render(
            request,
            "ticket.html",
            400 if errors else 200,
            ticket=ticket,
            error="",
            errors=errors or {},
            revealed=revealed,
            **ctx,
        )

    async def _ticket_change(
        self,
        request: Request,
        code: str,
        action: str,
        fn: Callable[[Any, str, Operator, dict[str, str]], Any],
    ) -> Response:
        op = await self.user(request)
        form = await self.form(request, op)
        cleaned = clean_code(code)
        if not is_valid(cleaned):
            raise BadRequest("Mã phiếu không hợp lệ")
        ip = self.ip(request)

        def write(db: Any) -> None:
            fn(db, cleaned, op, form)
            detail = {k: v for k, v in form.items() if k != "csrf" and v}
            audit(db, op.username, f"ticket_{action}", cleaned, detail, ip)

        try:
            await self.db(write)
        except TicketError as exc:
            if exc.kind in ("not_found", "invalid_code"):
                raise NotFound(exc.message_vi) from None
            # CLI hints such as "(--note)" mean nothing on a web page.
            message = exc.message_vi.replace(" (--note)", "")
            field = {"status": "status", "comment": "comment", "assign": "agency"}[action]
            if action == "status" and exc.kind == "bad_input":
                field = "note"
            # The form comes back as typed, the message beside the field it is about.
            return await self.ticket_view(
                request, cleaned, errors={field: message}, values={action: form}
            )
        ok = {"status": "status", "comment": "comment", "assign": "assigned"}[action]
        return RedirectResponse(f"/console/tickets/{cleaned}?ok={ok}#history", status_code=303)

    async def ticket_status(self, request: Request, code: str) -> Response:
        def change(db: Any, cleaned: str, op: Operator, form: dict[str, str]) -> None:
            tickets.set_status(
                db,
                cleaned,
                form.get("status", ""),
                note=form.get("note", "")[:2000],
                actor=op.username,
            )

        return await self._ticket_change(request, code, "status", change)

    async def ticket_comment(self, request: Request, code: str) -> Response:
        def change(db: Any, cleaned: str, op: Operator, form: dict[str, str]) -> None:
            tickets.add_comment(db, cleaned, form.get("note", "")[:2000], actor=op.username)

        return await self._ticket_change(request, code, "comment", change)

    async def ticket_assign(self, request: Request, code: str) -> Response:
        def change(db: Any, cleaned: str, op: Operator, form: dict[str, str]) -> None:
            ticket = tickets.require_ticket(db, cleaned)
            options = dict(self.assignable(ticket))
            agency = form.get("agency", "")
            if agency not in options:
                raise TicketError(
                    "bad_input", "Hãy chọn một cơ quan trong danh sách", "unknown agency"
                )
            tickets.assign_agency(
                db,
                cleaned,
                agency,
                options[agency],
                actor=op.username,
                note=form.get("note", "")[:2000],
            )

        return await self._ticket_change(request, code, "assign", change)

    # --- NLU corrections ----------------------------------------------------------------------

    async def corrections_page(self, request: Request) -> Response:
        await self.user(request, "supervisor")

        def read(db: Any) -> dict[str, Any]:
            return {
                "pairs": corrections.confusion(db),
                "recent": corrections.recent_corrections(db, 100),
                "places": corrections.location_only(db),
            }

        data = await self.db(read)
        pairs = data["pairs"]
        label = lambda i: INTENT_LABELS.get(i, i)  # noqa: E731
        rows = sorted({label(a) for a, _, _ in pairs})
        cols = sorted({label(b) for _, b, _ in pairs})
        heat = (
            charts.heatmap(
                rows,
                cols,
                {(label(a), label(b)): n for a, b, n in pairs},
                "Máy hiểu là → điều hành viên sửa thành",
            )
            if pairs
            else Markup("")
        )
        by_original: dict[str, int] = {}
        for a, _, n in pairs:
            by_original[label(a)] = by_original.get(label(a), 0) + n
        most = charts.bar_chart(
            sorted(by_original.items(), key=lambda kv: -kv[1])[:12],
            "Máy hay hiểu sai nhất",
        )
        from hotline.console.work import Work

        return self.render(
            request,
            "corrections.html",
            retrain=Work(self).retrain_state(),
            pairs=pairs,
            heat=heat,
            most=most,
            recent=data["recent"],
            places=data["places"],
        )

    async def corrections_yaml(self, request: Request) -> Response:
        op = await self.user(request, "supervisor", api=True)
        ip = self.ip(request)

        def read(db: Any) -> corrections.ExportResult:
            result = corrections.render_corrections(db)
            audit(db, op.username, "corrections_export", None, {"examples": result.examples}, ip)
            return result

        result = await self.db(read)
        return PlainTextResponse(
            result.yaml,
            media_type="application/x-yaml; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="corrections.yml"'},
        )

    # --- dashboard ----------------------------------------------------------------------------

    async def dashboard_page(self, request: Request) -> Response:
        # Operators see a simplified dashboard (the day's figures); supervisors all of it.
        op = await self.user(request)
        simple = not role_at_least(op.role, "supervisor")
        d_from, d_to = queries.parse_range(dict(request.query_params), self.tz)
        data = await self.db(lambda db: queries.dashboard(db, d_from, d_to, self.tz))
        today = datetime.now(self.tz).date()
        days = [d_from + timedelta(days=i) for i in range((d_to - d_from).days + 1)]
        day_links = [f"/console/calls?from={d}&to={d}&tests=hide" for d in days]
        range_qs = f"from={d_from}&to={d_to}"
        outcome_items = list(data.outcomes.items())
        return self.render(
            request,
            "dashboard.html",
            d=data,
            simple=simple,
            median=queries.duration_text(data.median_resolution_s),
            definition=queries.CONTAINMENT_DEFINITION,
            per_day_chart=charts.column_chart(
                data.calls_per_day,
                "Số cuộc gọi mỗi ngày",
                links=day_links,
                highlight=days.index(today) if today in days else None,
            ),
            per_hour_chart=charts.column_chart(
                [(f"{h}h", n) for h, n in enumerate(data.per_hour)],
                "Số cuộc gọi theo giờ trong ngày",
                height=220,
            ),
            groups_chart=charts.bar_chart(
                [(queries.OUTCOME_LABELS.get(k, k), n) for k, n in outcome_items],
                "Kết quả cuộc gọi",
                total=data.total_calls or None,
                links=[
                    f"/console/calls?{range_qs}&outcome={k}&tests=hide" for k, _ in outcome_items
                ],
            ),
            categories_chart=charts.bar_chart(
                data.categories,
                "Lĩnh vực phản ánh nhiều nhất",
                links=[f"/console/tickets?{range_qs}&category={c}" for c in data.category_codes],
            ),
            agency_chart=charts.bar_chart(
                data.open_by_agency,
                "Phiếu chưa xong theo cơ quan",
                width=960,
                links=[
                    f"/console/tickets?status=open&agency={c}" if c in self.agencies() else None
                    for c in data.open_agency_codes
                ],
            ),
            age_chart=charts.bar_chart(
                [(label, n) for label, n, _ in data.age_bands],
                "Phiếu chưa xong theo thời gian chờ",
                links=[
                    "/console/tickets?status=open&sort=oldest" + (f"&age={k}" if k else "")
                    for _, _, k in data.age_bands
                ],
            ),
        )

    # --- live calls ---------------------------------------------------------------------------

    async def _callers(self, sids: list[str]) -> dict[str, str]:
        if not sids:
            return {}
        marks = ",".join("?" for _ in sids)
        rows = await self.sv.store.aquery(
            f"SELECT call_sid, caller FROM calls WHERE call_sid IN ({marks})", sids
        )
        return {r["call_sid"]: r["caller"] or "" for r in rows}

    async def _snapshot(self, op: Operator) -> dict[str, Any]:
        active = [dict(v) for v in list(self.sv.live.active.values())]
        callers = await self._callers([a["call_sid"] for a in active])
        for a in active:
            a["caller"] = self.show_caller(op, callers.get(a["call_sid"])) or a.get("caller", "")
        return {"type": "snapshot", "calls": active}

    async def live_page(self, request: Request) -> Response:
        await self.user(request)
        return self.render(request, "live.html")

    async def live_active(self, request: Request) -> Response:
        op = await self.user(request, api=True)
        return Response(
            json.dumps(await self._snapshot(op), ensure_ascii=False, default=str),
            media_type="application/json",
        )

    async def live_events(self, request: Request) -> Response:
        op = await self.user(request, api=True)
        hub = self.sv.live

        async def stream() -> AsyncIterator[str]:
            queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(512)

            async def pump() -> None:
                async for event in hub.subscribe():
                    with contextlib.suppress(asyncio.QueueFull):
                        queue.put_nowait(event)

            task = asyncio.create_task(pump())
            try:
                await asyncio.sleep(0)  # subscribed before the snapshot: no event falls between
                yield "retry: 1000\n\n"
                yield _sse(await self._snapshot(op))
                loop = asyncio.get_running_loop()
                deadline = loop.time() + LIVE_STREAM_MAX_S
                while loop.time() < deadline:
                    try:
                        event = await asyncio.wait_for(queue.get(), LIVE_PING_S)
                    except TimeoutError:
                        if await request.is_disconnected():
                            return
                        yield ": ping\n\n"
                        continue
                    event = dict(event)
                    if event.get("type") == "call_started":
                        callers = await self._callers([event.get("call_sid", "")])
                        shown = self.show_caller(op, callers.get(event.get("call_sid", "")))
                        event["caller"] = shown or event.get("caller", "")
                    yield _sse(event)
            finally:
                task.cancel()

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def try_page(self, request: Request) -> Response:
        op = await self.user(request)
        return self.render(request, "try.html", caller=f"console:{op.username}")

    async def test_call(self, request: Request) -> Response:
        """Place a "Gọi thử" call: what Twilio's signed voice webhook does for a phone call,
        for the signed-in operator. The browser gets the call's id and its single-use stream
        credential, and the call is on record (ringing, caller console:<name>) before the
        stream opens; the stream is then bound to it exactly as a phone call's is."""
        from hotline.calls import caller_hash, ring_call
        from hotline.telephony.credentials import PARAMETER, StreamCredentials

        op = await self.user(request, api=True)
        await self.form(request, op)
        if self.sv.media is None or not self.sv.media.accepting:
            return JSONResponse({"error": "Tổng đài chưa sẵn sàng"}, status_code=503)
        call_sid = "CA" + secrets.token_hex(16)
        caller = f"console:{op.username}"
        secret = self.settings.session_secret
        await self.db(
            lambda db: ring_call(
                db,
                call_sid,
                caller=caller,
                caller_hash=caller_hash(caller, secret),
                called="console",
                account_sid="",
            )
        )
        token = StreamCredentials.from_settings(self.settings).issue(call_sid)
        return JSONResponse(
            {"callSid": call_sid, "parameters": {"callSid": call_sid, PARAMETER: token}},
            headers={"Cache-Control": "no-store"},
        )

    async def stream_auth(self, ws: WebSocket) -> str | None:
        """Admits the Gọi thử page's WebSocket on /twilio/media: a live console session, from
        a page served by this server (the Origin check stops other sites using the cookie)."""
        if not self.same_origin(ws.headers.get("origin"), ws.headers.get("host")):
            return None
        token = ws.cookies.get(COOKIE)
        if not token:
            return None
        ip = self.ip(ws)

        def check(db: Any) -> Operator | None:
            op = accounts.session_operator(db, token)
            if op is not None:
                audit(db, op.username, "test_call", None, None, ip)
            return op

        op = await self.db(check)
        return f"console:{op.username}" if op else None

    # --- operators (admin) --------------------------------------------------------------------

    async def operators_page(self, request: Request) -> Response:
        return await self._operators_view(request)

    async def _operators_view(
        self, request: Request, error: str = "", status_code: int = 200
    ) -> Response:
        await self.user(request, "admin")
        rows = await self.db(accounts.list_operators)
        return self.render(
            request, "operators.html", status_code, operators=rows, roles=ROLES, error=error
        )

    async def operator_add(self, request: Request) -> Response:
        op = await self.user(request, "admin")
        form = await self.form(request, op)
        ip = self.ip(request)
        if form.get("password", "") != form.get("password2", ""):
            return await self._operators_view(request, "Hai lần nhập mật khẩu không khớp", 400)
        try:
            await self.db(
                lambda db: accounts.add_operator(
                    db,
                    form.get("username", ""),
                    form.get("role", ""),
                    form.get("password", ""),
                    actor=op.username,
                    display_name=form.get("display_name", ""),
                    ip=ip,
                )
            )
        except AccountError as exc:
            return await self._operators_view(request, str(exc), 400)
        return RedirectResponse("/console/operators?ok=operator_added", status_code=303)

    async def operator_change(self, request: Request, username: str) -> Response:
        op = await self.user(request, "admin")
        form = await self.form(request, op)
        ip = self.ip(request)
        action = form.get("action", "")
        name = accounts.clean_username(username)

        def write(db: Any) -> None:
            if action == "role":
                accounts.set_role(db, name, form.get("role", ""), actor=op.username, ip=ip)
            elif action in ("disable", "enable"):
                if action == "disable" and name == op.username:
                    raise AccountError("Không thể tự khóa tài khoản của chính mình")
                accounts.set_disabled(db, name, action == "disable", actor=op.username, ip=ip)
            elif action == "password":
                accounts.set_password(db, name, form.get("password", ""), actor=op.username, ip=ip)
            else:
                raise AccountError("Thao tác không hợp lệ")

        try:
            await self.db(write)
        except AccountError as exc:
            return await self._operators_view(request, str(exc), 400)
        return RedirectResponse("/console/operators?ok=operator_changed", status_code=303)

    AUDIT_KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
        "": ("Tất cả", ()),
        "access": (
            "Nghe, tải ghi âm và xem số đầy đủ",
            ("recording_listen", "recording_download", "reveal_number"),
        ),
        "privacy": (
            "Dữ liệu cá nhân (yêu cầu, xuất, xoá, thời hạn lưu)",
            tuple(privacy.PRIVACY_ACTIONS),
        ),
    }

    async def audit_page(self, request: Request) -> Response:
        await self.user(request, "admin")
        q = request.query_params
        actor = (q.get("actor") or "").strip()[:64]
        target = (q.get("target") or "").strip()[:80]
        kind = q.get("kind") or ""
        actions = self.AUDIT_KINDS.get(kind, ("", ()))[1]
        rows = await self.db(
            lambda db: list_audit(
                db, limit=300, actor=actor or None, actions=actions, target=target or None
            )
        )
        kinds = {k: v[0] for k, v in self.AUDIT_KINDS.items()}
        return self.render(
            request, "audit.html", rows=rows, actor=actor, target=target, kind=kind, kinds=kinds
        )


def listening_copy(wav: Path) -> Path | None:
    """An Ogg Vorbis copy of a finished recording, made once (sox, quality 0)."""
    import subprocess

    ogg = wav.with_suffix(".ogg")
    if ogg.is_file() and ogg.stat().st_mtime >= wav.stat().st_mtime:
        return ogg
    tmp = ogg.with_name(f".{ogg.stem}.{secrets.token_hex(4)}.ogg")
    try:
        subprocess.run(
            ["sox", str(wav), "-C", "0", str(tmp)], check=True, capture_output=True, timeout=60
        )
        tmp.replace(ogg)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("could not make a listening copy of %s: %s", wav.name, exc)
        tmp.unlink(missing_ok=True)
        return None
    return ogg


def _category_offers(call: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """Tickets of this call whose category an operator's NLU correction contradicts: the page
    offers to apply the corrected category (which re-routes the ticket)."""
    fixes = sorted(call.get("fixes", {}).values(), key=lambda f: f.get("id") or 0)
    wanted = [
        f["corrected_intent"] for f in fixes if f.get("corrected_intent") in queries.REPORT_INTENTS
    ]
    if not wanted:
        return []
    target = wanted[-1]
    return [
        (t, target)
        for t in call.get("tickets", [])
        if t.get("category") != target and not (not t.get("confirmed") and t.get("status"))
    ]


def _sse(event: dict[str, Any]) -> str:
    data = json.dumps(event, ensure_ascii=False, default=str)
    return f"data: {data}\n\n"


def _fmt_ms(value: Any) -> str:
    try:
        ms = int(value or 0)
    except (TypeError, ValueError):
        return ""
    s = ms // 1000
    return f"{s // 60}:{s % 60:02d}"


# --- wiring -----------------------------------------------------------------------------------


class SecurityHeaders:
    """Headers on every /console response: a strict CSP (no inline script, nothing from other
    hosts), no framing, no sniffing, and no caching of pages with callers' data."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/console"):
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/console/static/")
        host = ""
        for k, v in scope.get("headers", []):
            if k == b"host":
                host = v.decode("latin-1")
        ws = f" ws://{host} wss://{host}" if host and re.fullmatch(r"[\w.\-:\[\]]+", host) else ""

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = {
                    b"content-security-policy": (
                        "default-src 'self'; script-src 'self'; style-src 'self'; "
                        "img-src 'self' data:; media-src 'self' blob:; "
                        f"connect-src 'self'{ws}; worker-src 'self'; frame-ancestors 'none'; "
                        "form-action 'self'; base-uri 'none'; object-src 'none'"
                    ).encode(),
                    b"x-content-type-options": b"nosniff",
                    b"x-frame-options": b"DENY",
                    b"referrer-policy": b"same-origin",
                    b"permissions-policy": b"microphone=(self), camera=(), geolocation=()",
                }
                if not static:
                    extra[b"cache-control"] = b"no-store"
                for k, v in extra.items():
                    if k not in names:
                        headers.append((k, v))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_wrapper)


def install(app: FastAPI, services: Any) -> Console:
    from fastapi.exception_handlers import (
        http_exception_handler,
        request_validation_exception_handler,
    )
    from fastapi.exceptions import RequestValidationError
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from hotline.console.work import Work

    console = Console(services)
    app.include_router(console.router())
    from hotline.console.privacy import PrivacyPages

    app.include_router(PrivacyPages(console).router())
    app.include_router(Work(console).router())
    from hotline.console.agency import AgencyPages
    from hotline.console.incidents import IncidentPages

    app.include_router(IncidentPages(console).router())
    app.include_router(AgencyPages(console).router())

    async def openapi_json() -> JSONResponse:
        # The schema names routes and parameters only (all in the open source anyway), so it
        # is public: clients and fuzzers (tests/test_schemathesis.py) read it from the server.
        return JSONResponse(app.openapi())

    app.add_api_route("/openapi.json", openapi_json, methods=["GET"], include_in_schema=False)
    app.mount("/console/static", StaticFiles(directory=str(STATIC)), name="console-static")
    app.add_middleware(SecurityHeaders)

    def page(request: Request, status: int, title: str, message: str) -> Response:
        return console.render(
            request, "error.html", status, title=title, message=message, code=status
        )

    def is_api(request: Request, exc: Any) -> bool:
        return bool(getattr(exc, "api", False)) or request.url.path.startswith("/console/api/")

    async def on_login(request: Request, exc: LoginRequired) -> Response:
        if is_api(request, exc):
            return JSONResponse(
                {"error": "Cần đăng nhập", "login": "/console/login"}, status_code=401
            )
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/console/login?" + urlencode({"next": target}), status_code=303)

    async def on_role(request: Request, exc: RoleForbidden) -> Response:
        msg = f"Trang này dành cho {ROLE_LABELS.get(exc.minimum, exc.minimum).lower()} trở lên."
        if is_api(request, exc):
            return JSONResponse({"error": msg}, status_code=403)
        op = getattr(request.state, "operator", None)
        if op is not None and op.role == AGENCY and request.method == "GET":
            # An agency's staff land on their own tickets, whatever console link they followed.
            return RedirectResponse("/console/agency", status_code=303)
        return page(request, 403, "Không có quyền", msg)

    async def on_csrf(request: Request, exc: CsrfRefused) -> Response:
        return page(
            request,
            403,
            "Yêu cầu bị từ chối",
            "Biểu mẫu thiếu hoặc sai mã chống giả mạo (CSRF). Hãy tải lại trang rồi thử lại.",
        )

    async def on_not_found(request: Request, exc: NotFound) -> Response:
        if is_api(request, exc):
            return JSONResponse({"error": exc.message}, status_code=404)
        return page(request, 404, "Không tìm thấy", exc.message)

    async def on_bad(request: Request, exc: Exception) -> Response:
        message = getattr(exc, "message", None) or str(exc)
        if is_api(request, exc):
            return JSONResponse({"error": message}, status_code=400)
        return page(request, 400, "Dữ liệu không hợp lệ", message)

    async def on_http(request: Request, exc: StarletteHTTPException) -> Response:
        if not request.url.path.startswith("/console"):
            return await http_exception_handler(request, exc)
        messages = {404: "Không có trang này.", 405: "Phương thức không được hỗ trợ."}
        if request.url.path.startswith("/console/api/") or request.url.path.startswith(
            "/console/static/"
        ):
            return JSONResponse(
                {"error": messages.get(exc.status_code, "Lỗi yêu cầu")},
                status_code=exc.status_code,
            )
        return page(
            request,
            exc.status_code,
            "Không tìm thấy" if exc.status_code == 404 else "Lỗi yêu cầu",
            messages.get(exc.status_code, "Yêu cầu không thực hiện được."),
        )

    async def on_validation(request: Request, exc: RequestValidationError) -> Response:
        if not request.url.path.startswith("/console"):
            return await request_validation_exception_handler(request, exc)
        return page(request, 400, "Dữ liệu không hợp lệ", "Tham số không hợp lệ.")

    async def on_error(request: Request, exc: Exception) -> Response:
        log.exception("console error on %s", request.url.path, exc_info=exc)
        if not request.url.path.startswith("/console"):
            return PlainTextResponse("Internal Server Error", status_code=500)
        return page(
            request, 500, "Lỗi máy chủ", "Đã có lỗi ở máy chủ; lỗi đã được ghi lại. Hãy thử lại."
        )

    app.add_exception_handler(Exception, on_error)
    app.add_exception_handler(LoginRequired, on_login)  # type: ignore[arg-type]
    app.add_exception_handler(RoleForbidden, on_role)  # type: ignore[arg-type]
    app.add_exception_handler(CsrfRefused, on_csrf)  # type: ignore[arg-type]
    app.add_exception_handler(NotFound, on_not_found)  # type: ignore[arg-type]
    app.add_exception_handler(BadRequest, on_bad)
    app.add_exception_handler(queries.BadInput, on_bad)
    app.add_exception_handler(StarletteHTTPException, on_http)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, on_validation)  # type: ignore[arg-type]
    return console
