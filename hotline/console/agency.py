"""The console for an agency's staff (a commune's People's Committee, the power company): they
see and work only the tickets routed to their agency, from a phone in the field.

Accept, add an internal note, resolve with the result (the resident is texted), refuse with a
reason, or hand the ticket back to the operations centre with a reason. Another agency's
ticket, by code or id, is "not found": its existence is not revealed either.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from hotline.console.accounts import Operator
from hotline.console.store import AGENCY, audit
from hotline.console.web import Console, NotFound, RoleForbidden
from hotline.store import now_iso
from hotline.tickets import store as tickets
from hotline.tickets.codes import clean_code, is_valid

OK = {
    "accepted": "Đã tiếp nhận phiếu. Người phản ánh được nhắn tin.",
    "resolved": "Đã báo xử lý xong. Người phản ánh được nhắn tin kết quả.",
    "refused": "Đã từ chối phiếu. Người phản ánh được nhắn lý do.",
    "returned": "Đã trả phiếu về Trung tâm điều hành.",
    "noted": "Đã thêm ghi chú nội bộ.",
}
OPEN = (tickets.NEW, tickets.RECEIVED, tickets.IN_PROGRESS)


def belongs(ticket: dict[str, Any], agency_code: str) -> bool:
    """Does the ticket belong to this agency account? A commune's account ("ubnd_xa:19333")
    matches its own tickets; an account for the agency as a whole ("ubnd_xa") all of its units."""
    code = ticket.get("agency_code") or ""
    return bool(agency_code) and (code == agency_code or code.startswith(agency_code + ":"))


class AgencyPages:
    def __init__(self, console: Console) -> None:
        self.c = console

    def router(self) -> APIRouter:
        r = APIRouter(prefix="/console/agency")
        add = r.add_api_route
        add("", self.list_page, methods=["GET"])
        add("/tickets/{code}", self.ticket_page, methods=["GET"])
        add("/tickets/{code}/{action}", self.act, methods=["POST"])
        return r

    async def _agent(self, request: Request) -> Operator:
        """The signed-in agency account. Centre staff have their own, wider pages."""
        try:
            op = await self.c.user(request)
        except RoleForbidden:
            op = request.state.operator  # signed in, but outside the centre's ladder
        if op.role != AGENCY or not op.agency_code:
            raise NotFound("Trang này dành cho cán bộ cơ quan xử lý")
        return op

    async def _ticket(self, op: Operator, code: str) -> dict[str, Any]:
        cleaned = clean_code(code)
        if not is_valid(cleaned):
            raise NotFound("Không có phiếu này")
        t = await self.c.db(lambda db: tickets.get_ticket(db, cleaned))
        if t is None or not belongs(t, op.agency_code):
            raise NotFound("Không có phiếu này")  # another agency's ticket: not even "exists"
        return t

    async def list_page(self, request: Request) -> Response:
        op = await self._agent(request)

        def read(db: Any) -> list[dict[str, Any]]:
            rows = tickets.list_tickets(db, agency=op.agency_code, limit=500)
            return [r for r in rows if r["status"] in OPEN] + [
                r for r in rows if r["status"] not in OPEN
            ][:50]

        rows = await self.c.db(read)
        return self.c.render(
            request,
            "agency/list.html",
            rows=rows,
            open_count=sum(1 for r in rows if r["status"] in OPEN),
            now_iso=now_iso(),
            notice=OK.get(request.query_params.get("ok", ""), ""),
        )

    async def ticket_page(self, request: Request, code: str) -> Response:
        # Only a route's own path arguments: the view's extras would become query parameters
        # (attacker-chosen text on the page).
        return await self._ticket_page_view(request, code)

    async def _ticket_page_view(
        self, request: Request, code: str, *, error: str = "", status: int = 200
    ) -> Response:
        op = await self._agent(request)
        t = await self._ticket(op, code)
        return self.c.render(
            request,
            "agency/ticket.html",
            status,
            t=t,
            latest=tickets.latest_note(t),
            error=error,
            notice=OK.get(request.query_params.get("ok", ""), ""),
        )

    async def act(self, request: Request, code: str, action: str) -> Response:
        op = await self._agent(request)
        t = await self._ticket(op, code)
        form = await self.c.form(request, op)
        note = (form.get("note") or "").strip()[:1000]
        who = op.username
        router = self.c.sv.router

        def resolve(db: Any) -> None:
            status = t["status"]
            for step in (tickets.RECEIVED, tickets.IN_PROGRESS, tickets.RESOLVED):
                if tickets.STATUSES.index(step) <= tickets.STATUSES.index(status):
                    continue
                last = step == tickets.RESOLVED
                tickets.set_status(
                    db, t["code"], step, note=note if last else None, actor=who, notify=last
                )

        handlers = {
            "accept": lambda db: tickets.set_status(
                db, t["code"], tickets.RECEIVED, note=note or None, actor=who
            ),
            "note": lambda db: tickets.add_comment(db, t["code"], note, actor=who),
            "resolve": resolve,
            "refuse": lambda db: tickets.set_status(
                db, t["code"], tickets.REJECTED, note=note, actor=who
            ),
            "return": lambda db: tickets.assign_agency(
                db,
                t["code"],
                router.default,
                router.agency(router.default).name,
                actor=who,
                note=f"Trả về Trung tâm: {note}",
            ),
        }
        needs_note = {
            "note": "Ghi chú không được để trống",
            "resolve": "Cần ghi kết quả xử lý: người phản ánh sẽ nhận được",
            "refuse": "Cần ghi lý do từ chối: người phản ánh sẽ nhận được",
            "return": "Cần ghi lý do trả phiếu về Trung tâm",
        }
        if action not in handlers:
            raise NotFound("Không có thao tác này")
        if action in needs_note and not note:
            return await self._ticket_page_view(request, code, error=needs_note[action], status=400)
        if action == "resolve" and t["status"] not in OPEN:
            return await self._ticket_page_view(request, code, error="Phiếu đã đóng", status=400)
        try:
            await self.c.db(handlers[action])
        except tickets.TicketError as exc:
            return await self._ticket_page_view(request, code, error=exc.message_vi, status=400)
        ip = self.c.ip(request)
        await self.c.db(lambda db: audit(db, who, f"agency_{action}", t["code"], None, ip))
        done = {
            "accept": "accepted",
            "resolve": "resolved",
            "refuse": "refused",
            "return": "returned",
            "note": "noted",
        }
        if action == "return":
            return RedirectResponse(f"/console/agency?ok={done[action]}", status_code=303)
        return RedirectResponse(
            f"/console/agency/tickets/{t['code']}?ok={done[action]}", status_code=303
        )
