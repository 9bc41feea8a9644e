"""Vietnam's working calendar: Saturdays, Sundays and public holidays (Tết included, from the
`holidays` package's lunar dates) are not working days. Used for ticket deadlines and for the
legal deadlines of data-subject requests."""

from __future__ import annotations

import functools
from datetime import date, datetime, time, timedelta
from typing import Any


@functools.lru_cache(maxsize=32)
def _holidays(year: int) -> Any:
    import holidays

    return holidays.country_holidays("VN", years=[year])


def is_working_day(d: date) -> bool:
    return d.weekday() < 5 and d not in _holidays(d.year)


def add_working_days(start: date, n: int) -> date:
    """The n-th working day after `start`."""
    d = start
    while n > 0:
        d += timedelta(days=1)
        if is_working_day(d):
            n -= 1
    return d


def working_deadline(start: datetime, days: int, *, end_of_day: time = time(17, 0)) -> datetime:
    """When something received at `start` (an aware local datetime) is due: the end of the
    working day `days` working days later (a report on Friday evening with 1 day is due Monday
    17:00; one made during Tết waits for the first day back)."""
    due = add_working_days(start.date(), days)
    return datetime.combine(due, end_of_day, tzinfo=start.tzinfo)
