"""The console's incidents page: reports grouped by category and commune/ward, which operators
merge, split and resolve together (hotline/tickets/incidents.py holds the rules)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from hotline.console.store import audit
from hotline.console.web import Console, NotFound
from hotline.tickets import incidents

OK = {
    "merged": "Đã gộp hai sự việc.",
    "split": "Đã tách phiếu khỏi sự việc.",
    "resolved": "Đã báo xử lý xong cả sự việc; mọi người phản ánh được nhắn tin.",
}


class IncidentPages:
    def __init__(self, console: Console) -> None:
        self.c = console

    def router(self) -> APIRouter:
        r = APIRouter(prefix="/console/incidents")
        add = r.add_api_route
        add("", self.list_page, methods=["GET"])
        add("/{iid}", self.incident_page, methods=["GET"])
        add("/{iid}/{action}", self.act, methods=["POST"])
        return r

    async def list_page(self, request: Request) -> Response:
        await self.c.user(request)
        rows = await self.c.db(incidents.list_open)
        return self.c.render(
            request,
            "incidents.html",
            rows=rows,
            incident=None,
            error="",
            notice=OK.get(request.query_params.get("ok", ""), ""),
        )

    async def _incident(self, iid: str) -> dict[str, Any]:
        if not iid.isdigit() or len(iid) > 12:
            raise NotFound("Không có sự việc này")
        incident = await self.c.db(lambda db: incidents.get(db, int(iid)))
        if incident is None:
            raise NotFound("Không có sự việc này")
        return incident

    async def incident_page(self, request: Request, iid: str) -> Response:
        # Only a route's own path arguments: the view's extras would become query parameters
        # (attacker-chosen text on the page).
        return await self._incident_page_view(request, iid)

    async def _incident_page_view(
        self, request: Request, iid: str, *, error: str = "", status: int = 200
    ) -> Response:
        await self.c.user(request)
        incident = await self._incident(iid)
        others = [r for r in await self.c.db(incidents.list_open) if r["id"] != incident["id"]]
        return self.c.render(
            request,
            "incidents.html",
            status,
            rows=others,
            incident=incident,
            error=error,
            notice=OK.get(request.query_params.get("ok", ""), ""),
        )

    async def act(self, request: Request, iid: str, action: str) -> Response:
        op = await self.c.user(request)
        incident = await self._incident(iid)
        form = await self.c.form(request, op)
        ip = self.c.ip(request)
        if action == "merge":
            other = (form.get("other") or "").strip()
            if not other.isdigit() or int(other) == incident["id"]:
                return await self._incident_page_view(
                    request, iid, error="Chọn sự việc để gộp", status=400
                )
            try:
                await self.c.db(lambda db: incidents.merge(db, incident["id"], int(other)))
            except KeyError:
                return await self._incident_page_view(
                    request, iid, error="Không có sự việc đó", status=400
                )
        elif action == "split":
            code = (form.get("code") or "").strip()
            if code not in {t["code"] for t in incident["tickets"]}:
                return await self._incident_page_view(
                    request, iid, error="Phiếu không thuộc sự việc này", status=400
                )
            await self.c.db(lambda db: incidents.split(db, code))
        elif action == "resolve":
            note = (form.get("note") or "").strip()[:1000]
            if not note:
                return await self._incident_page_view(
                    request,
                    iid,
                    error="Cần ghi kết quả: mọi người phản ánh sẽ nhận được",
                    status=400,
                )
            await self.c.db(
                lambda db: incidents.resolve(db, incident["id"], note=note, actor=op.username)
            )
        else:
            raise NotFound("Không có thao tác này")
        await self.c.db(
            lambda db: audit(db, op.username, f"incident_{action}", str(incident["id"]), None, ip)
        )
        done = {"merge": "merged", "split": "split", "resolve": "resolved"}[action]
        target = "/console/incidents" if action == "resolve" else f"/console/incidents/{iid}"
        return RedirectResponse(f"{target}?ok={done}", status_code=303)
