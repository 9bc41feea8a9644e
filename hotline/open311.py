"""Open311 GeoReport v2 under /open311/v2/: the province's field-report portal reads our tickets
and files reports into the same queue (https://wiki.open311.org/GeoReport_v2).

- `GET services.json|xml`: our categories (service_code = the category, names in Vietnamese).
- `GET requests.json|xml`: tickets, with the spec's filters (service_request_id, service_code,
  start_date, end_date at most 90 days apart, status open|closed).
- `GET requests/{id}.json|xml`, `GET tokens/{token}.json|xml`.
- `POST requests.json|xml`: needs an `api_key` (`hotline open311 keys add NAME`); the report is
  confirmed at once and gets its own ticket code, agency and deadline.

The spec's status is open/closed; our finer status and its latest public note are in
`status_notes`. Nothing personal goes out: no caller number, no caller's words (a description
can hold names and numbers), only the category, the administrative unit and the agency.
Errors use the spec's shape: `[{"code": 400, "description": "..."}]`.
"""

from __future__ import annotations

import hashlib
import secrets
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlite_utils
from fastapi import APIRouter, Request
from fastapi.responses import Response

from hotline.nlu.gazetteer import normalize_location, place_of
from hotline.store import Table, now_iso, register_schema
from hotline.tickets import store as tickets
from hotline.tickets.routing import CATEGORIES, CATEGORY_LABELS

API_KEYS = Table(
    "open311_keys",
    {"id": int, "name": str, "key_hash": str, "created_at": str, "revoked_at": str},
    pk="id",
    unique_indexes=(("key_hash",),),
)
TOKENS = Table(
    "open311_tokens",
    {"token": str, "ticket_id": int, "key_name": str, "created_at": str},
    pk="token",
)
register_schema(API_KEYS, TOKENS)

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
MAX_RANGE = timedelta(days=90)
SERVICE_GROUP = "Phản ánh hiện trường"

router = APIRouter(prefix="/open311/v2", tags=["open311"])


class Open311Error(Exception):
    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


# --- keys --------------------------------------------------------------------------------------


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def add_key(db: sqlite_utils.Database, name: str) -> str:
    """A new API key for `name`; only its hash is stored, so it is shown once."""
    name = name.strip()
    if not name:
        raise ValueError("a key needs a name (who uses it)")
    key = secrets.token_urlsafe(24)
    db.table("open311_keys").insert({"name": name, "key_hash": _hash(key), "created_at": now_iso()})
    return key


def revoke_key(db: sqlite_utils.Database, name: str) -> int:
    cur = db.execute(
        "UPDATE open311_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
        [now_iso(), name],
    )
    return cur.rowcount


def list_keys(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    return list(db.query("SELECT id, name, created_at, revoked_at FROM open311_keys ORDER BY id"))


def _key_name(db: sqlite_utils.Database, key: str | None) -> str | None:
    if not key:
        return None
    rows = list(
        db.query(
            "SELECT name FROM open311_keys WHERE key_hash = ? AND revoked_at IS NULL", [_hash(key)]
        )
    )
    return rows[0]["name"] if rows else None


# --- representation ----------------------------------------------------------------------------


def _w3(ts: str | None) -> str | None:
    """Our UTC ISO timestamps as the spec's W3C datetimes, in Vietnam's time."""
    if not ts:
        return None
    moment = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return moment.astimezone(TZ).isoformat(timespec="seconds")


def _parse_w3(value: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Open311Error(
            400, f"{name} must be a W3C datetime, e.g. 2026-12-01T00:00:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=TZ)


def services_list() -> list[dict[str, Any]]:
    return [
        {
            "service_code": code,
            "service_name": CATEGORY_LABELS.get(code, code),
            "description": f"Phản ánh hiện trường: {CATEGORY_LABELS.get(code, code)}",
            "metadata": False,
            "type": "realtime",
            "keywords": "",
            "group": SERVICE_GROUP,
        }
        for code in sorted(CATEGORIES)
    ]


def as_request(t: dict[str, Any]) -> dict[str, Any]:
    """A ticket as a GeoReport service request: no number, no caller's words."""
    note = tickets.latest_note(t) if t.get("history") else None
    finer = t.get("status") or ""
    return {
        "service_request_id": t["code"],
        "status": "closed" if finer in tickets.CLOSED else "open",
        "status_notes": f"{finer}: {note}" if note else finer,
        "service_name": CATEGORY_LABELS.get(t.get("category") or "", t.get("category")),
        "service_code": t.get("category"),
        "description": CATEGORY_LABELS.get(t.get("category") or "", t.get("category")),
        "agency_responsible": t.get("agency_name"),
        "service_notice": "",
        "requested_datetime": _w3(t.get("confirmed_at") or t.get("created_at")),
        "updated_datetime": _w3(t.get("updated_at")),
        "expected_datetime": _w3(t.get("due_at")),
        "address": t.get("location_unit") or "",
        "address_id": t.get("location_code") or "",
        "zipcode": None,
        "lat": None,
        "long": None,
        "media_url": None,
    }


def _xml(root: str, item: str, rows: list[dict[str, Any]]) -> bytes:
    top = ET.Element(root)
    for row in rows:
        el = ET.SubElement(top, item)
        for key, value in row.items():
            ET.SubElement(el, key).text = (
                ""
                if value is None
                else str(value).lower()
                if isinstance(value, bool)
                else str(value)
            )
    return ET.tostring(top, encoding="utf-8", xml_declaration=True)


_XML_NAMES = {
    "services": ("services", "service"),
    "requests": ("service_requests", "request"),
    "errors": ("errors", "error"),
}


def _answer(kind: str, rows: list[dict[str, Any]], fmt: str, status: int = 200) -> Response:
    if fmt == "xml":
        root, item = _XML_NAMES[kind]
        return Response(_xml(root, item, rows), status_code=status, media_type="text/xml")
    import json

    body = json.dumps(rows, ensure_ascii=False)
    return Response(body, status_code=status, media_type="application/json; charset=utf-8")


def _error(exc: Open311Error, fmt: str) -> Response:
    return _answer("errors", [{"code": exc.code, "description": exc.description}], fmt, exc.code)


def _format(fmt: str) -> str:
    if fmt not in ("json", "xml"):
        raise Open311Error(404, "format must be json or xml")
    return fmt


def _out_format(fmt: str) -> str:
    """The format an answer (or its error) is given in: JSON unless XML was asked for."""
    return fmt if fmt in ("json", "xml") else "json"


def _check(request: Request, fmt: str, jurisdiction_id: str | None) -> None:
    _format(fmt)
    _jurisdiction(request, jurisdiction_id)


def _jurisdiction(request: Request, value: str | None) -> None:
    ours = request.app.state.services.settings.open311_jurisdiction
    if value and value != ours:
        raise Open311Error(404, f"unknown jurisdiction_id {value!r}; this is {ours!r}")


# --- queries -----------------------------------------------------------------------------------


def find_requests(
    db: sqlite_utils.Database,
    *,
    ids: list[str] | None = None,
    codes: list[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    status: list[str] | None = None,
    now: datetime | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    where, params = ["confirmed = 1", "code IS NOT NULL"], []
    if ids:
        where.append(f"code IN ({', '.join('?' for _ in ids)})")
        params += ids
    else:
        now = now or datetime.now(UTC)
        if start and end and end - start > MAX_RANGE:
            raise Open311Error(400, "start_date and end_date may not be more than 90 days apart")
        end = end or (start + MAX_RANGE if start else now)
        start = start or end - MAX_RANGE
        iso = [
            x.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            for x in (start, end)
        ]
        where.append("confirmed_at >= ? AND confirmed_at <= ?")
        params += iso
        if codes:
            where.append(f"category IN ({', '.join('?' for _ in codes)})")
            params += codes
        if status:
            closed = sorted(tickets.CLOSED)
            marks = ", ".join("?" for _ in closed)
            if status == ["open"]:
                where.append(f"status NOT IN ({marks})")
                params += closed
            elif status == ["closed"]:
                where.append(f"status IN ({marks})")
                params += closed
    sql = f"SELECT * FROM tickets WHERE {' AND '.join(where)} ORDER BY confirmed_at DESC LIMIT ?"
    rows = list(db.query(sql, [*params, limit]))
    out = []
    for row in rows:
        history = list(
            db.query("SELECT * FROM ticket_history WHERE ticket_id = ? ORDER BY id", [row["id"]])
        )
        out.append(as_request({**row, "history": history}))
    return out


def _list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


# --- routes ------------------------------------------------------------------------------------


@router.get("/services.{fmt}")
async def get_services(request: Request, fmt: str, jurisdiction_id: str | None = None) -> Response:
    try:
        _check(request, fmt, jurisdiction_id)
    except Open311Error as exc:
        return _error(exc, _out_format(fmt))
    return _answer("services", services_list(), fmt)


@router.get("/requests.{fmt}")
async def get_requests(
    request: Request,
    fmt: str,
    jurisdiction_id: str | None = None,
    service_request_id: str | None = None,
    service_code: str | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
    status: str | None = None,
) -> Response:
    out_fmt = _out_format(fmt)
    try:
        _check(request, fmt, jurisdiction_id)
        statuses = _list(status)
        if set(statuses) - {"open", "closed"}:
            raise Open311Error(400, "status is open, closed, or both (comma separated)")
        unknown = set(_list(service_code)) - CATEGORIES
        if unknown:
            raise Open311Error(400, f"unknown service_code {sorted(unknown)}")
        start = _parse_w3(start_date, "start_date") if start_date else None
        end = _parse_w3(end_date, "end_date") if end_date else None
        store = request.app.state.services.store
        rows = await store.arun(
            lambda db: find_requests(
                db,
                ids=_list(service_request_id),
                codes=_list(service_code),
                start=start,
                end=end,
                status=statuses if len(statuses) == 1 else None,
            )
        )
    except Open311Error as exc:
        return _error(exc, out_fmt)
    return _answer("requests", rows, out_fmt)


@router.get("/requests/{request_id}.{fmt}")
async def get_request(
    request: Request, request_id: str, fmt: str, jurisdiction_id: str | None = None
) -> Response:
    out_fmt = _out_format(fmt)
    try:
        _check(request, fmt, jurisdiction_id)
        store = request.app.state.services.store
        rows = await store.arun(lambda db: find_requests(db, ids=[request_id]))
        if not rows:
            raise Open311Error(404, f"no service request {request_id!r}")
    except Open311Error as exc:
        return _error(exc, out_fmt)
    return _answer("requests", rows, out_fmt)


@router.get("/tokens/{token}.{fmt}")
async def get_token(
    request: Request, token: str, fmt: str, jurisdiction_id: str | None = None
) -> Response:
    out_fmt = _out_format(fmt)
    try:
        _check(request, fmt, jurisdiction_id)

        def read(db: sqlite_utils.Database) -> list[dict[str, Any]]:
            return list(
                db.query(
                    "SELECT t.code AS service_request_id, k.token FROM open311_tokens k"
                    " JOIN tickets t ON t.id = k.ticket_id WHERE k.token = ?",
                    [token],
                )
            )

        rows = await request.app.state.services.store.arun(read)
        if not rows:
            raise Open311Error(404, f"no token {token!r}")
    except Open311Error as exc:
        return _error(exc, out_fmt)
    return _answer("requests", rows, out_fmt)


@router.post("/requests.{fmt}")
async def post_request(request: Request, fmt: str) -> Response:
    out_fmt = _out_format(fmt)
    services = request.app.state.services
    try:
        _format(fmt)
        try:
            form = await request.form()
        except Exception:
            raise Open311Error(400, "send the fields form-encoded, as the spec says") from None
        f = {k: str(v).strip() for k, v in form.items() if isinstance(v, str)}
        _jurisdiction(request, f.get("jurisdiction_id"))
        key_name = await services.store.arun(lambda db: _key_name(db, f.get("api_key")))
        if key_name is None:
            raise Open311Error(403, "a valid api_key is required to create service requests")
        code = f.get("service_code", "")
        if code not in CATEGORIES:
            raise Open311Error(400, f"service_code must be one of {sorted(CATEGORIES)}")
        description = f.get("description", "")
        if not description or len(description) > 4000:
            raise Open311Error(400, "description is required (at most 4000 characters)")
        phone = f.get("phone") or None
        address = f.get("address_string") or ""
        # The portal's address goes through the same gazetteer as a caller's words, so the
        # report is routed to the commune's agency like a phoned-in one.
        place = place_of(normalize_location(address)) if address else None

        def create(db: sqlite_utils.Database) -> dict[str, Any]:
            tid = tickets.create_draft(
                db,
                call_sid=None,
                caller=phone,
                category=code,
                description=description,
                location_raw=address or None,
                location=place if place and place.get("code") else None,
                channel="portal",
                actor=f"open311:{key_name}",
            )
            ticket = tickets.confirm_ticket(db, tid, services.router, actor=f"open311:{key_name}")
            token = secrets.token_urlsafe(12)
            db.table("open311_tokens").insert(
                {"token": token, "ticket_id": tid, "key_name": key_name, "created_at": now_iso()}
            )
            return {
                "service_request_id": ticket["code"],
                "token": token,
                "service_notice": "",
                "account_id": None,
            }

        row = await services.store.arun_durable(create)
    except Open311Error as exc:
        return _error(exc, out_fmt)
    except tickets.TicketError as exc:
        return _error(Open311Error(400, str(exc)), out_fmt)
    return _answer("requests", [row], out_fmt, 201)
