"""What operators do all day beyond reading: search, re-categorise a ticket, work a draft.

Routes of their own (a second router under /console) so web.py stays the pages' frame. Every
route checks the session like the others (Console.user) and every POST its CSRF token
(Console.form); every write leaves an audit line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from hotline.console import queries, search, store
from hotline.console.store import audit
from hotline.tickets import store as tickets
from hotline.tickets.store import TicketError

if TYPE_CHECKING:
    from hotline.console.web import Console

# The categories an operator may give a ticket (the flow's report intents and the two channels
# that have no intent).
CATEGORY_CHOICES = queries.CATEGORY_LABELS


def is_test_ticket(db: Any, ticket: dict[str, Any]) -> bool:
    if (ticket.get("caller") or "").startswith("console:"):
        return True
    sid = ticket.get("call_sid")
    if not sid:
        return False
    return bool(
        db.execute(
            f"SELECT 1 FROM calls c WHERE c.call_sid = ? AND {search.TEST_CALL_SQL}", [sid]
        ).fetchone()
        or db.execute("SELECT 1 FROM test_calls WHERE call_sid = ?", [sid]).fetchone()
    )


_RUNNING: dict[str, Any] = {}  # the retraining process this server started, if any


class Work:
    def __init__(self, console: Console) -> None:
        self.c = console

    def router(self) -> APIRouter:
        r = APIRouter(prefix="/console")
        add = r.add_api_route
        add("/search", self.search_page, methods=["GET"])
        add("/tickets/{code}/category", self.ticket_category, methods=["POST"])
        add("/drafts/{ticket_id}/category", self.draft_category, methods=["POST"])
        add("/drafts/{ticket_id}/confirm", self.draft_confirm, methods=["POST"])
        add("/drafts/{ticket_id}/callback", self.draft_callback, methods=["POST"])
        add("/drafts/{ticket_id}/close", self.draft_close, methods=["POST"])
        add("/corrections/retrain", self.retrain, methods=["POST"])
        add("/templates", self.templates_page, methods=["GET"])
        add("/templates", self.templates_save, methods=["POST"])
        return r

    # --- retraining from the corrections page (supervisors) -----------------------------

    def retrain_state(self) -> dict[str, Any]:
        """The last retraining started from the console: running, finished or failed."""
        import json

        path = self.c.settings.data_dir / "retrain.json"
        try:
            state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        proc = _RUNNING.get("proc")
        if proc is not None and proc.poll() is None:
            state["state"] = "running"
        elif proc is not None:
            state["state"] = "done" if proc.returncode == 0 else "failed"
        return state

    async def retrain(self, request: Request) -> Response:
        """Write the corrections into the training data and start `hotline nlu train` in the
        background. The new model is used once the service restarts."""
        import json
        import subprocess
        import sys
        from pathlib import Path

        from hotline.console.corrections import render_corrections, write_export
        from hotline.nlu.train import DATA_DIR
        from hotline.store import now_iso

        op = await self.c.user(request, "supervisor")
        await self.c.form(request, op)
        ip = self.c.ip(request)
        if self.retrain_state().get("state") == "running":
            return RedirectResponse("/console/corrections?ok=retrain_running", status_code=303)
        out = DATA_DIR / "corrections.yml"

        def export(db: Any) -> int:
            result = render_corrections(db, exclude=out)
            write_export(result, out)
            audit(db, op.username, "retrain", None, {"examples": result.examples}, ip)
            return result.examples

        examples = await self.c.db(export)
        data_dir = self.c.settings.data_dir
        hotline_bin = Path(sys.executable).with_name("hotline")
        log = (data_dir / "retrain.log").open("ab")
        _RUNNING["proc"] = subprocess.Popen(
            [str(hotline_bin), "nlu", "train"], stdout=log, stderr=subprocess.STDOUT
        )
        (data_dir / "retrain.json").write_text(
            json.dumps({"started_at": now_iso(), "by": op.username, "examples": examples}),
            encoding="utf-8",
        )
        return RedirectResponse("/console/corrections?ok=retrain_started", status_code=303)

    # --- response templates (supervisors) -------------------------------------------------

    async def templates_page(self, request: Request) -> Response:
        # Only a route's own path arguments: the view's extras would become query parameters
        # (attacker-chosen text on the page).
        return await self._templates_page_view(request)

    async def _templates_page_view(
        self, request: Request, *, errors: dict[str, str] | None = None, values: Any = None
    ) -> Response:
        await self.c.user(request, "supervisor")
        saved = await self.c.db(store.status_templates)
        return self.c.render(
            request,
            "templates.html",
            400 if errors else 200,
            templates={**store.DEFAULT_TEMPLATES, **saved, **(values or {})},
            errors=errors or {},
        )

    async def templates_save(self, request: Request) -> Response:
        op = await self.c.user(request, "supervisor")
        form = await self.c.form(request, op)
        ip = self.c.ip(request)
        values = {s: form.get(f"t-{i}", "") for i, s in enumerate(store.DEFAULT_TEMPLATES)}
        errors = {
            s: f"Mẫu câu dài quá {store.MAX_TEMPLATE} ký tự"
            for s, text in values.items()
            if len(text) > store.MAX_TEMPLATE
        }
        if errors:
            return await self._templates_page_view(request, errors=errors, values=values)

        def write(db: Any) -> None:
            for status, text in values.items():
                store.set_status_template(db, status, text, op.username)
            audit(db, op.username, "templates_save", None, None, ip)

        await self.c.db(write)
        return RedirectResponse("/console/templates?ok=templates", status_code=303)

    # --- search ---------------------------------------------------------------------------

    async def search_page(self, request: Request) -> Response:
        await self.c.user(request)
        q = request.query_params.get("q", "")
        res = await self.c.db(lambda db: search.search(db, q))
        if res.kind == "code":
            return RedirectResponse(f"/console/tickets/{res.code}", status_code=303)
        return self.c.render(request, "search.html", res=res, q=res.query)

    # --- category -------------------------------------------------------------------------

    async def _category(self, request: Request, ref: str | int) -> Response:
        op = await self.c.user(request)
        form = await self.c.form(request, op)
        category = form.get("category", "")
        ip = self.c.ip(request)
        router = self.c.sv.router

        def write(db: Any) -> dict[str, Any]:
            if category not in CATEGORY_CHOICES:
                raise TicketError("bad_input", "Hãy chọn một lĩnh vực trong danh sách", "category")
            row = (
                tickets.get_ticket_by_id(db, ref)
                if isinstance(ref, int)
                else tickets.require_ticket(db, ref)
            )
            if row is None:
                raise TicketError("not_found", "Không có phiếu này", "no such ticket")
            t = tickets.change_category(
                db,
                ref,
                category,
                router,
                actor=op.username,
                note=form.get("note", "")[:2000],
                is_test=is_test_ticket(db, row),
            )
            audit(
                db,
                op.username,
                "ticket_category",
                t.get("code") or f"draft:{t['id']}",
                {"from": row.get("category"), "to": category, "agency": t.get("agency_name")},
                ip,
            )
            return t

        try:
            t = await self.c.db(write)
        except TicketError as exc:
            return await self._back_with_error(request, ref, exc, field="category")
        back = form.get("back", "")
        if back.startswith("/console/calls/") and "//" not in back:
            return RedirectResponse(f"{back}?ok=category", status_code=303)
        return RedirectResponse(self._ticket_url(t) + "?ok=category#history", status_code=303)

    @staticmethod
    def _ticket_url(t: dict[str, Any]) -> str:
        return (
            f"/console/tickets/{t['code']}" if t.get("confirmed") else f"/console/drafts/{t['id']}"
        )

    async def _back_with_error(
        self, request: Request, ref: str | int, exc: TicketError, *, field: str
    ) -> Response:
        if exc.kind in ("not_found", "invalid_code"):
            from hotline.console.web import NotFound

            raise NotFound(exc.message_vi)
        if isinstance(ref, int):
            return await self.c.draft_view(request, str(ref), errors={field: exc.message_vi})
        return await self.c.ticket_view(request, ref, errors={field: exc.message_vi})

    async def ticket_category(self, request: Request, code: str) -> Response:
        from hotline.tickets.codes import clean_code, is_valid

        cleaned = clean_code(code)
        if not is_valid(cleaned):
            from hotline.console.web import BadRequest

            raise BadRequest("Mã phiếu không hợp lệ")
        return await self._category(request, cleaned)

    @staticmethod
    def _draft_id(ticket_id: str) -> int:
        if not ticket_id.isdigit() or len(ticket_id) > 12:
            from hotline.console.web import NotFound

            raise NotFound("Không có phiếu nháp này")
        return int(ticket_id)

    async def draft_category(self, request: Request, ticket_id: str) -> Response:
        return await self._category(request, self._draft_id(ticket_id))

    # --- drafts ---------------------------------------------------------------------------

    async def draft_confirm(self, request: Request, ticket_id: str) -> Response:
        tid = self._draft_id(ticket_id)
        op = await self.c.user(request)
        form = await self.c.form(request, op)
        ip = self.c.ip(request)
        router = self.c.sv.router
        if form.get("sure") != "1":
            exc = TicketError(
                "bad_input", "Hãy đánh dấu ô xác nhận trước khi tạo phiếu", "not confirmed"
            )
            return await self._back_with_error(request, tid, exc, field="sure")

        def write(db: Any) -> dict[str, Any]:
            row = tickets.get_ticket_by_id(db, tid)
            if row is None:
                raise TicketError("not_found", "Không có phiếu nháp này", "no such draft")
            if router is None:
                raise TicketError("bad_input", "Bảng phân công chưa nạp xong", "router")
            t = tickets.confirm_draft_by_operator(
                db, tid, router, actor=op.username, is_test=is_test_ticket(db, row)
            )
            audit(db, op.username, "draft_confirm", t["code"], {"draft": tid}, ip)
            return t

        try:
            t = await self.c.db(write)
        except TicketError as exc:
            return await self._back_with_error(request, tid, exc, field="sure")
        return RedirectResponse(f"/console/tickets/{t['code']}?ok=draft_confirmed", 303)

    async def draft_callback(self, request: Request, ticket_id: str) -> Response:
        tid = self._draft_id(ticket_id)
        op = await self.c.user(request)
        await self.c.form(request, op)
        ip = self.c.ip(request)

        def write(db: Any) -> dict[str, Any]:
            t = tickets.record_callback(db, tid, actor=op.username)
            audit(db, op.username, "caller_number_shown", f"draft:{tid}", None, ip)
            return t

        try:
            t = await self.c.db(write)
        except TicketError as exc:
            return await self._back_with_error(request, tid, exc, field="callback")
        # The number is shown on this response only (never in a URL or a cached page).
        return await self.c.draft_view(request, str(tid), revealed=t.get("caller") or "")

    async def draft_close(self, request: Request, ticket_id: str) -> Response:
        tid = self._draft_id(ticket_id)
        op = await self.c.user(request)
        form = await self.c.form(request, op)
        ip = self.c.ip(request)
        reason = form.get("reason", "")[:2000]

        def write(db: Any) -> None:
            tickets.close_draft(db, tid, reason, actor=op.username)
            audit(db, op.username, "draft_close", f"draft:{tid}", {"reason": reason}, ip)

        try:
            await self.c.db(write)
        except TicketError as exc:
            return await self._back_with_error(request, tid, exc, field="reason")
        return RedirectResponse(
            "/console/tickets?" + urlencode({"drafts": "1", "ok": "draft_closed"}), 303
        )
