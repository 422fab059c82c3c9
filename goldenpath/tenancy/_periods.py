"""Budget periods: calendar day, ISO week and month, in UTC."""

from __future__ import annotations

import calendar
import datetime as dt
import functools

from goldenpath.store import BudgetPeriod


def period_bounds(period: BudgetPeriod, now: float) -> tuple[str, float, float]:
    """The period's id (e.g. ``2026-11``), and its start and end as Unix times."""
    day = dt.datetime.fromtimestamp(now, dt.UTC).date()
    if period == "day":
        start = day
        end = day + dt.timedelta(days=1)
        label = day.isoformat()
    elif period == "week":
        start = day - dt.timedelta(days=day.weekday())
        end = start + dt.timedelta(days=7)
        year, week, _ = day.isocalendar()
        label = f"{year}-W{week:02d}"
    else:
        start = day.replace(day=1)
        end = start + dt.timedelta(days=calendar.monthrange(day.year, day.month)[1])
        label = f"{day.year}-{day.month:02d}"
    return label, _ts(start), _ts(end)


def _ts(day: dt.date) -> float:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()


def utc_day(now: float) -> str:
    return _day_label(int(now // 86400))


@functools.lru_cache(maxsize=8)
def _day_label(day_number: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day_number)).isoformat()
