"""The consortium's calendar: days begin and end in Brasília's time zone (America/Sao_Paulo),
whatever the zone of the machine a bank runs on. A statement's ``from``/``to`` dates, its days
and the dates on a receipt are all read in this zone."""
from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

CONSORTIUM_TZ = ZoneInfo("America/Sao_Paulo")


def day_start(day: date) -> float:
    """The instant (epoch seconds) the consortium's ``day`` begins."""
    return datetime.combine(day, time.min, tzinfo=CONSORTIUM_TZ).timestamp()


def day_end(day: date) -> float:
    """The instant the day after ``day`` begins: an exclusive upper bound."""
    return day_start(day + timedelta(days=1))


def parse_day(text: object) -> date | None:
    """``2026-03-05`` -> a date; anything else (or an impossible date) -> None."""
    if not isinstance(text, str) or len(text) != 10 or not text.isascii():
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


_iso_second: tuple[int, str] = (-1, "")   # (second, its text): one object, so a reader never mixes two


def iso(ts: float) -> str:
    """``ts`` in UTC, to the millisecond, as datetime's ``isoformat`` gives it (rounded to the
    microsecond, then cut to the millisecond): how the API and the logs write an instant. The
    second's text is formatted once per second: an answer to a transfer writes about a dozen
    instants, and every log line one (3.7 -> 1.3 µs each)."""
    global _iso_second
    frac, whole = math.modf(ts)
    us = round(frac * 1e6)
    if us >= 1_000_000:
        whole, us = whole + 1, us - 1_000_000
    elif us < 0:
        whole, us = whole - 1, us + 1_000_000
    second, cached = int(whole), _iso_second
    if cached[0] != second:
        cached = _iso_second = (second, datetime.fromtimestamp(second, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{cached[1]}.{us // 1000:03d}Z"
