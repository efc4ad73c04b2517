"""Schedules of the scheduler activity (once, daily, weekly, cron) in a time zone, and durations."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lxml import etree

from ..model import DefinitionError

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_ISO = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$", re.I)
_SHORT = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$", re.I)


def parse_duration(text: str) -> float:
    """Seconds: '30', '30s', '5m', '2h', '1d', '250ms' or ISO 8601 'PT1H30M'."""
    text = (text or "0").strip()
    m = _SHORT.match(text)
    if m:
        unit = (m.group(2) or "s").lower()
        return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    m = _ISO.match(text)
    if m and text.upper() != "P":
        d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
        return d * 86400 + h * 3600 + mi * 60 + s
    raise DefinitionError(f"invalid duration '{text}'")


@dataclass
class Schedule:
    tz: ZoneInfo | timezone
    once: datetime | None = None
    minutes: set[int] | None = None
    hours: set[int] | None = None
    days: set[int] | None = None  # day of month
    months: set[int] | None = None
    weekdays: set[int] | None = None  # 0 = Monday


def _field(text: str, low: int, high: int, names: list[str] | None = None) -> set[int] | None:
    if text == "*":
        return None
    values: set[int] = set()
    for part in text.split(","):
        part = part.strip().lower()
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
        if part in ("*", ""):
            start, end = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = _value(a, names, low), _value(b, names, low)
        else:
            start = end = _value(part, names, low)
        if not (low <= start <= high and low <= end <= high) or step <= 0:
            raise DefinitionError(f"cron field '{text}' is out of range {low}-{high}")
        values.update(range(start, end + 1, step))
    return values


def _value(text: str, names: list[str] | None, low: int) -> int:
    if names and text[:3] in names:
        return names.index(text[:3]) + low
    return int(text)


def parse_schedule(elem: etree._Element) -> Schedule:
    tz_name = elem.get("timezone") or elem.get("timeZone") or "UTC"
    try:
        tz: ZoneInfo | timezone = UTC if tz_name.upper() == "UTC" else ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise DefinitionError(f"unknown time zone '{tz_name}'") from None
    try:
        if elem.get("once"):
            when = datetime.fromisoformat(elem.get("once", "").replace("Z", "+00:00"))
            return Schedule(tz, once=when if when.tzinfo else when.replace(tzinfo=tz))
        cron = elem.get("cron")
        if elem.get("daily"):
            hh, mm = elem.get("daily", "").split(":")
            cron = f"{int(mm)} {int(hh)} * * *"
        elif elem.get("weekly"):
            days, _, at = elem.get("weekly", "").strip().partition(" ")
            hh, mm = (at or "00:00").split(":")
            cron = f"{int(mm)} {int(hh)} * * {days}"
        if not cron:
            raise DefinitionError("a scheduler needs 'once', 'daily', 'weekly' or 'cron'")
        parts = cron.split()
        if len(parts) != 5:
            raise DefinitionError(f"cron '{cron}' needs 5 fields")
        weekdays = _field(parts[4].replace("7", "0"), 0, 6, ["sun", "mon", "tue", "wed", "thu", "fri", "sat"])
        return Schedule(tz, minutes=_field(parts[0], 0, 59), hours=_field(parts[1], 0, 23), days=_field(parts[2], 1, 31),
                        months=_field(parts[3], 1, 12, [d for d in ["jan", "feb", "mar", "apr", "may", "jun", "jul",
                                                                      "aug", "sep", "oct", "nov", "dec"]]),
                        weekdays=None if weekdays is None else {(d - 1) % 7 for d in weekdays})
    except ValueError as exc:
        raise DefinitionError(f"invalid schedule: {exc}") from None


def next_run(s: Schedule, after_ms: int) -> int | None:
    """Epoch ms of the first occurrence at or after `after_ms` (None: a past 'once')."""
    after = datetime.fromtimestamp(after_ms / 1000, UTC)
    if s.once is not None:
        return int(s.once.timestamp() * 1000) if s.once >= after - timedelta(seconds=1) else int(after_ms)
    local = after.astimezone(s.tz)
    t = local.replace(second=0, microsecond=0)
    if t < local:
        t += timedelta(minutes=1)
    limit = t + timedelta(days=400)
    while t < limit:
        if (s.months is not None and t.month not in s.months) or (s.days is not None and t.day not in s.days) or \
                (s.weekdays is not None and t.weekday() not in s.weekdays):
            t = (t + timedelta(days=1)).replace(hour=0, minute=0)
            continue
        if s.hours is not None and t.hour not in s.hours:
            t = (t + timedelta(hours=1)).replace(minute=0)
            continue
        if s.minutes is not None and t.minute not in s.minutes:
            t += timedelta(minutes=1)
            continue
        # wall-clock arithmetic in the zone: normalise through UTC for DST gaps
        return int(t.replace(tzinfo=s.tz).astimezone(UTC).timestamp() * 1000)
    return None
