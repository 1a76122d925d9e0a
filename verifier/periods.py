"""Periods counted as 民诉法 §85 says, on Beijing dates (events.md "How the rules read time").

民诉法(2023) §85: a period counted in days, months or years does not count its start day; it
ends at the end of its last day; a last day that is a rest day (a statutory holiday or a weekend,
with the official swapped working days) rolls to the next working day. Months add calendar
months, keeping the day number and clamping to the month's end.

Rest days come from the maintained ``chinese_calendar`` package (official State Council
notices), never a list typed by hand. For a year the package does not cover yet, weekends alone
decide and the result is marked ``provisional``; the finding carries that flag and the report
names the package version, so an inspection re-run after an update can differ only there.

A deadline is returned as a :class:`Due`: the last day (a date) and ``at``, the instant the
period ends (Beijing midnight after the last day, in ms). An act done at any time before ``at``
is in time.
"""

from __future__ import annotations

import calendar as _calendar
import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

import chinese_calendar

BEIJING = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")
DAY_MS = 86_400_000
HOUR_MS = 3_600_000

#: Names the holiday data in reports: the package and version whose rest days were used.
CALENDAR_ID = f"chinese_calendar=={getattr(chinese_calendar, '__version__', 'unknown')}"


@dataclass(frozen=True, slots=True)
class Due:
    """The end of a period: its last day, the instant it ends, whether the calendar was partial."""

    last_day: dt.date
    at: int  # ms: Beijing midnight after last_day; an act before this is in time
    provisional: bool = False


def beijing_date(ms: int) -> dt.date:
    """The Beijing (UTC+8) calendar date of an instant in ms."""
    return (dt.datetime.fromtimestamp(ms / 1000, dt.UTC) + dt.timedelta(hours=8)).date()


def day_start(day: dt.date) -> int:
    """Beijing midnight at the start of ``day``, in ms since the epoch."""
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=BEIJING).timestamp() * 1000)


def day_end(day: dt.date) -> int:
    """The instant ``day`` ends in Beijing (midnight after it), in ms."""
    return day_start(day + dt.timedelta(days=1))


@lru_cache(maxsize=8192)
def rest_day(day: dt.date) -> tuple[bool, bool]:
    """(is a rest day, provisional). Provisional when the package does not cover the year."""
    try:
        return (not chinese_calendar.is_workday(day), False)
    except NotImplementedError:
        return (day.weekday() >= 5, True)


def roll_to_workday(day: dt.date) -> tuple[dt.date, bool]:
    """The first working day on or after ``day`` (§85), and whether any step was provisional."""
    provisional = False
    while True:
        rest, prov = rest_day(day)
        provisional = provisional or prov
        if not rest:
            return day, provisional
        day += dt.timedelta(days=1)


def add_months(day: dt.date, months: int) -> dt.date:
    """Add calendar months, keeping the day number and clamping to the month's end."""
    total = day.year * 12 + (day.month - 1) + months
    year, month = divmod(total, 12)
    month += 1
    last = _calendar.monthrange(year, month)[1]
    return dt.date(year, month, min(day.day, last))


def _due(last: dt.date, roll: bool) -> Due:
    if roll:
        last, prov = roll_to_workday(last)
    else:
        prov = False
    return Due(last, day_end(last), prov)


def due_after_days(start_ms: int, days: int, *, roll: bool = True) -> Due:
    """A period of ``days`` days from the instant ``start_ms`` (start day not counted, §85)."""
    return _due(beijing_date(start_ms) + dt.timedelta(days=days), roll)


def due_after_months(start_ms: int, months: int, *, roll: bool = True) -> Due:
    """A period of ``months`` calendar months from ``start_ms`` (§85; day clamped)."""
    return _due(add_months(beijing_date(start_ms), months), roll)


def due_on(ms: int, *, roll: bool = True) -> Due:
    """A deadline given as an instant (e.g. ``expires_at``): ends with that Beijing day (§85)."""
    return _due(beijing_date(ms), roll)


def more_than_months(start_ms: int, months: int, later_ms: int) -> bool:
    """"More than N months" (ZB-01): later's date is after start's date plus N months.

    events.md: no holiday roll for a "more than" condition.
    """
    return beijing_date(later_ms) > add_months(beijing_date(start_ms), months)


def parse_now(text: str) -> int:
    """Parse ``--now``: integer ms, ISO 8601 with an offset, or a bare date (Beijing midnight)."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        if len(text) == 10:
            return day_start(dt.date.fromisoformat(text))
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(
            f"--now {text!r}: expected ms, YYYY-MM-DD or ISO 8601 with an offset") from exc
    if when.tzinfo is None:
        raise ValueError(f"--now {text!r}: a date-time needs an offset (e.g. +08:00)")
    return int(when.timestamp() * 1000)


def iso(ms: int) -> str:
    """Beijing ISO 8601 rendering of an instant (for people)."""
    return dt.datetime.fromtimestamp(ms / 1000, BEIJING).isoformat(timespec="seconds")
