"""Ticket deadlines: working days per category (call_flows/deadlines.yml), shorter when urgent.

`Deadlines.due_at(category, priority, confirmed_at)` gives the due time as a UTC ISO string,
like every other timestamp in the database; `hotline.workdays` knows weekends and holidays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from hotline.intents import REPORT_INTENTS
from hotline.workdays import working_deadline

CATEGORIES = frozenset({*REPORT_INTENTS, "voice_message", "keypad_report"})
TZ = ZoneInfo("Asia/Ho_Chi_Minh")


class DeadlineError(ValueError):
    """deadlines.yml is wrong; the message names the file and the problem."""


@dataclass(frozen=True)
class Deadlines:
    default: int = 3
    urgent: int = 1
    categories: dict[str, int] = field(default_factory=dict)
    end_of_day: time = time(17, 0)

    @classmethod
    def load(cls, path: Path | str) -> Deadlines:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise DeadlineError(f"{path}: cannot read: {exc}") from None
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: Any, *, source: str = "<deadlines>") -> Deadlines:
        if not isinstance(raw, dict):
            raise DeadlineError(f"{source}: a mapping with default, urgent and categories")

        def days(where: str, value: Any) -> int:
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 60:
                raise DeadlineError(f"{source}: {where}: a number of working days (1-60)")
            return value

        cats = raw.get("categories") or {}
        if not isinstance(cats, dict):
            raise DeadlineError(f"{source}: categories: a mapping of category -> days")
        unknown = set(cats) - CATEGORIES
        if unknown:
            raise DeadlineError(f"{source}: categories: unknown {sorted(unknown)}")
        try:
            h, m = (int(x) for x in str(raw.get("end_of_day", "17:00")).split(":"))
            eod = time(h, m)
        except ValueError:
            raise DeadlineError(f"{source}: end_of_day: a time like 17:00") from None
        return cls(
            default=days("default", raw.get("default", 3)),
            urgent=days("urgent", raw.get("urgent", 1)),
            categories={k: days(f"categories.{k}", v) for k, v in cats.items()},
            end_of_day=eod,
        )

    def days_for(self, category: str | None, priority: str | None = "normal") -> int:
        days = self.categories.get(category or "", self.default)
        return min(days, self.urgent) if priority == "urgent" else days

    def due_at(self, category: str | None, priority: str | None, start_iso: str) -> str:
        """The due time (UTC ISO, like every timestamp we store) of a report confirmed at
        `start_iso`."""
        start = datetime.fromisoformat(start_iso.replace("Z", "+00:00")).astimezone(TZ)
        due = working_deadline(start, self.days_for(category, priority), end_of_day=self.end_of_day)
        return due.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
