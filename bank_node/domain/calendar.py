"""The consortium's calendar: days begin and end in Brasília's time zone (America/Sao_Paulo),
whatever the zone of the machine a bank runs on. A statement's ``from``/``to`` dates, its days
and the dates on a receipt are all read in this zone."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta
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
