"""The one SQLite file behind the hotline, opened with sqlite-utils.

Each domain module declares its tables with `Table` specs and registers them through
`register_schema` when it is imported; this module knows no domain. `hotline.schema` imports
them all, for the entry points that open the database. `open_db` creates missing tables and adds
missing columns, so a database written by an older version is migrated at start without losing
rows.

Writes go through `Store`, which serialises them on one connection and runs them off the
event loop (a call never waits on another call's disk write).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

T = TypeVar("T")


@dataclass(frozen=True)
class Table:
    name: str
    columns: dict[str, type]
    pk: str | tuple[str, ...] = "id"
    not_null: frozenset[str] = field(default_factory=frozenset)
    defaults: dict[str, Any] = field(default_factory=dict)
    indexes: tuple[tuple[str, ...], ...] = ()
    unique_indexes: tuple[tuple[str, ...], ...] = ()


_SCHEMAS: list[Table] = []


def register_schema(*tables: Table) -> None:
    for t in tables:
        if all(existing.name != t.name for existing in _SCHEMAS):
            _SCHEMAS.append(t)


def now_iso() -> str:
    """UTC timestamp with milliseconds; sorts as text."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ensure_table(db: sqlite_utils.Database, spec: Table) -> None:
    table = db.table(spec.name)
    if not table.exists():
        table.create(
            spec.columns,
            pk=spec.pk,
            not_null=set(spec.not_null),
            defaults=spec.defaults,
        )
    else:
        existing = table.columns_dict
        for col, typ in spec.columns.items():
            if col not in existing:
                table.add_column(col, typ, not_null_default=spec.defaults.get(col))
    have = {tuple(ix.columns) for ix in table.indexes}
    for cols in spec.indexes:
        if tuple(cols) not in have:
            table.create_index(list(cols), if_not_exists=True)
    for cols in spec.unique_indexes:
        if tuple(cols) not in have:
            table.create_index(list(cols), unique=True, if_not_exists=True)


def open_db(path: Path | str, *, migrate: bool = True) -> sqlite_utils.Database:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=10.0)
    db = sqlite_utils.Database(conn)
    db.execute("PRAGMA busy_timeout = 10000")
    db.execute("PRAGMA foreign_keys = ON")
    if db.journal_mode != "wal":
        db.enable_wal()
    # NORMAL is durable in WAL mode across application crashes (only a power cut can lose the
    # last commits); FULL would fsync every commit. Confirmed reports need more than NORMAL:
    # see Store.write(durable=True).
    db.execute("PRAGMA synchronous = NORMAL")
    if migrate:
        with db.atomic():
            for spec in _SCHEMAS:
                _ensure_table(db, spec)
    return db


class Store:
    """One connection, one lock; blocking calls run in a worker thread."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.db = open_db(self.path)
        self._lock = threading.RLock()

    def run(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        """Run `fn(db)` in one transaction, holding the lock (blocking)."""
        with self._lock, self.db.atomic():
            return fn(self.db)

    def run_durable(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        """Like run, but the commit is fsynced before returning (for confirmed reports)."""
        with self._lock:
            self.db.execute("PRAGMA synchronous = FULL")
            try:
                with self.db.atomic():  # COMMIT happens on exit, under synchronous=FULL
                    return fn(self.db)
            finally:
                self.db.execute("PRAGMA synchronous = NORMAL")

    async def arun(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        return await asyncio.to_thread(self.run, fn)

    async def arun_durable(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        return await asyncio.to_thread(self.run_durable, fn)

    def query(self, sql: str, params: Iterable[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.db.query(sql, params))

    async def aquery(
        self, sql: str, params: Iterable[Any] | dict[str, Any] = ()
    ) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.query, sql, params)

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()
