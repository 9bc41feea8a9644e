"""The console's privacy pages (permission `privacy`: supervisors and admins): a person's
requests about their data, tracked against the legal deadlines, with find, export (zip) and
erase for the request's number; and the logged reveal of a full caller number (permission
`reveal_number`). The rules themselves live in hotline/privacy.py."""

from __future__ import annotations

import io
import re
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from hotline import privacy
from hotline.calls import mask_number
from hotline.console.store import PERMISSIONS, audit
from hotline.console.web import BadRequest, Console, NotFound

OK = {
    "created": "Đã ghi nhận yêu cầu.",
    "ack": "Đã ghi nhận việc phản hồi tiếp nhận.",
    "erased": "Đã xoá dữ liệu cá nhân của số này.",
    "closed": "Đã đóng yêu cầu.",
}


class PrivacyPages:
    def __init__(self, console: Console) -> None:
        self.c = console
        self.settings = console.settings

    def router(self) -> APIRouter:
        r = APIRouter(prefix="/console/privacy")
        add = r.add_api_route
        add("", self.requests_page, methods=["GET"])
        add("/requests", self.request_add, methods=["POST"])
        add("/requests/{rid}", self.request_page, methods=["GET"])
        add("/requests/{rid}/ack", self.request_ack, methods=["POST"])
        add("/requests/{rid}/export.zip", self.request_export, methods=["GET"])
        add("/requests/{rid}/erase", self.erase_page, methods=["GET"])
        add("/requests/{rid}/erase", self.erase_submit, methods=["POST"])
        add("/requests/{rid}/close", self.request_close, methods=["POST"])
        add("/reveal/call/{call_sid}", self.reveal_call, methods=["POST"])
        add("/reveal/ticket/{code}", self.reveal_ticket, methods=["POST"])
        return r

    # --- helpers ------------------------------------------------------------------------------

    def today(self) -> date:
        return datetime.now(ZoneInfo(self.settings.timezone)).date()

    async def _request(self, rid: str) -> dict[str, Any]:
        if not rid.isdigit() or len(rid) > 12:
            raise NotFound("Không có yêu cầu này")
        row = await self.c.db(lambda db: privacy.get_request(db, int(rid)))
        if row is None:
            raise NotFound("Không có yêu cầu này")
        return privacy.decorate_request(row, self.today())

    def _find(self, db: Any, number: str) -> privacy.SubjectData:
        return privacy.find(
            db,
            number,
            secret=self.settings.session_secret,
            recordings_dir=self.settings.recordings_dir,
        )

    def _render(self, request: Request, template: str, status: int = 200, **ctx: Any) -> Response:
        ctx.setdefault("notice", OK.get(request.query_params.get("ok", ""), ""))
        return self.c.render(
            request,
            template,
            status,
            KINDS=privacy.REQUEST_KINDS,
            STATUS=privacy.REQUEST_STATUS,
            DAYS=privacy.REQUEST_DAYS,
            **ctx,
        )

    # --- requests -----------------------------------------------------------------------------

    async def requests_page(self, request: Request) -> Response:
        # Only a route's own path arguments: the view's extras would become query parameters
        # (attacker-chosen text on the page).
        return await self._requests_page_view(request)

    async def _requests_page_view(
        self, request: Request, *, error: str = "", status: int = 200, form: Any = None
    ) -> Response:
        await self.c.user(request, PERMISSIONS["privacy"])
        today = self.today()
        rows = await self.c.db(lambda db: privacy.list_requests(db, today=today))
        return self._render(
            request,
            "privacy/requests.html",
            status,
            rows=rows,
            today=today.isoformat(),
            error=error,
            form=form or {},
        )

    async def request_add(self, request: Request) -> Response:
        op = await self.c.user(request, PERMISSIONS["privacy"])
        form = await self.c.form(request, op)
        ip = self.c.ip(request)
        try:
            received = date.fromisoformat(form.get("received_on", ""))
        except ValueError:
            return await self._requests_page_view(
                request, error="Ngày nhận yêu cầu không hợp lệ", status=400, form=form
            )
        try:
            rid = await self.c.db(
                lambda db: privacy.add_request(
                    db,
                    kind=form.get("kind", ""),
                    number=form.get("number", ""),
                    received_on=received,
                    secret=self.settings.session_secret,
                    requester=form.get("requester", ""),
                    channel=form.get("channel", ""),
                    note=form.get("note", ""),
                    actor=op.username,
                    ip=ip,
                    today=self.today(),
                )
            )
        except privacy.PrivacyError as exc:
            return await self._requests_page_view(request, error=str(exc), status=400, form=form)
        return RedirectResponse(f"/console/privacy/requests/{rid}?ok=created", status_code=303)

    async def request_page(self, request: Request, rid: str) -> Response:
        op = await self.c.user(request, PERMISSIONS["privacy"])
        req = await self._request(rid)
        found = None
        if req.get("number"):
            ip = self.c.ip(request)

            def read(db: Any) -> privacy.SubjectData:
                data = self._find(db, req["number"])
                audit(db, op.username, "privacy_find", f"request:{req['id']}", data.counts(), ip)
                return data

            found = await self.c.db(read)
        return self._render(request, "privacy/request.html", req=req, found=found)

    async def request_ack(self, request: Request, rid: str) -> Response:
        op = await self.c.user(request, PERMISSIONS["privacy"])
        await self.c.form(request, op)
        req = await self._request(rid)
        ip = self.c.ip(request)
        await self.c.db(
            lambda db: privacy.acknowledge_request(db, req["id"], actor=op.username, ip=ip)
        )
        return RedirectResponse(f"/console/privacy/requests/{req['id']}?ok=ack", status_code=303)

    async def request_export(self, request: Request, rid: str) -> Response:
        op = await self.c.user(request, PERMISSIONS["privacy"], api=True)
        req = await self._request(rid)
        if not req.get("number"):
            raise BadRequest("Yêu cầu đã đóng: không còn số để xuất dữ liệu")
        ip = self.c.ip(request)

        def read(db: Any) -> privacy.SubjectData:
            data = self._find(db, req["number"])
            audit(db, op.username, "privacy_export", f"request:{req['id']}", data.counts(), ip)
            return data

        data = await self.c.db(read)
        buf = io.BytesIO()
        privacy.export_zip(data, buf)
        return Response(
            buf.getvalue(),
            media_type="application/zip",
            headers={
                "Content-Disposition": f'attachment; filename="du-lieu-yeu-cau-{req["id"]}.zip"'
            },
        )

    async def erase_page(self, request: Request, rid: str) -> Response:
        # Only a route's own path arguments: the view's extras would become query parameters
        # (attacker-chosen text on the page).
        return await self._erase_page_view(request, rid)

    async def _erase_page_view(
        self, request: Request, rid: str, *, error: str = "", status: int = 200
    ) -> Response:
        await self.c.user(request, PERMISSIONS["privacy"])
        req = await self._request(rid)
        if not req.get("number"):
            raise BadRequest("Yêu cầu đã đóng: không còn số để xoá dữ liệu")
        found = await self.c.db(lambda db: self._find(db, req["number"]))
        open_tickets = [
            t
            for t in found.tickets
            if t.get("confirmed") and t.get("status") not in privacy.CLOSED_STATUSES
        ]
        return self._render(
            request,
            "privacy/erase.html",
            status,
            req=req,
            found=found,
            open_tickets=open_tickets,
            error=error,
        )

    async def erase_submit(self, request: Request, rid: str) -> Response:
        op = await self.c.user(request, PERMISSIONS["privacy"])
        form = await self.c.form(request, op)
        req = await self._request(rid)
        if not req.get("number"):
            raise BadRequest("Yêu cầu đã đóng: không còn số để xoá dữ liệu")
        try:
            same = privacy.normalize_phone(form.get("confirm", "")) == req["number"]
        except privacy.PrivacyError:
            same = False
        if not same:
            return await self._erase_page_view(
                request,
                rid,
                error="Số nhập lại không khớp với số của yêu cầu: chưa xoá gì.",
                status=400,
            )
        ip = self.c.ip(request)

        def write(db: Any) -> dict[str, int]:
            data = self._find(db, req["number"])
            return privacy.erase(db, data, actor=op.username, ip=ip, request_id=req["id"])

        await self.c.db(write)
        return RedirectResponse(f"/console/privacy/requests/{req['id']}?ok=erased", status_code=303)

    async def request_close(self, request: Request, rid: str) -> Response:
        op = await self.c.user(request, PERMISSIONS["privacy"])
        form = await self.c.form(request, op)
        req = await self._request(rid)
        ip = self.c.ip(request)
        try:
            await self.c.db(
                lambda db: privacy.close_request(
                    db,
                    req["id"],
                    form.get("status", ""),
                    form.get("note", ""),
                    actor=op.username,
                    ip=ip,
                )
            )
        except privacy.PrivacyError as exc:
            raise BadRequest(str(exc)) from None
        return RedirectResponse(f"/console/privacy/requests/{req['id']}?ok=closed", status_code=303)

    # --- revealing a number -------------------------------------------------------------------

    async def _reveal(self, request: Request, kind: str, key: str, sql: str, back: str) -> Response:
        op = await self.c.user(request, PERMISSIONS["reveal_number"])
        await self.c.form(request, op)
        rows = await self.c.sv.store.aquery(sql, [key])
        number = rows[0]["caller"] if rows else None
        if not self.c.can_reveal(op, number):
            raise NotFound("Không có số điện thoại để hiện")
        ip = self.c.ip(request)
        target = f"{kind}:{key}"
        await self.c.db(
            lambda db: privacy.audit_access(
                db, op.username, "reveal_number", target, ip, dedupe=False
            )
        )
        return self._render(
            request, "privacy/reveal.html", number=number, masked=mask_number(number), back=back
        )

    async def reveal_call(self, request: Request, call_sid: str) -> Response:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", call_sid):
            raise NotFound("Không có cuộc gọi này")
        return await self._reveal(
            request,
            "call",
            call_sid,
            "SELECT caller FROM calls WHERE call_sid = ?",
            f"/console/calls/{call_sid}",
        )

    async def reveal_ticket(self, request: Request, code: str) -> Response:
        if not code.isdigit() or len(code) > 12:
            raise NotFound("Không có phiếu này")
        return await self._reveal(
            request,
            "ticket",
            code,
            "SELECT caller FROM tickets WHERE code = ?",
            f"/console/tickets/{code}",
        )
