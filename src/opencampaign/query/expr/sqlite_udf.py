"""Python implementations of the functions SQLite lacks, registered per connection.

Call `register_sqlite_functions(dbapi_connection)` from the engine's "connect" event. All
helpers are prefixed `oc_` so they never shadow SQLite built-ins, return NULL for NULL input
(like SQL functions), and mirror the PostgreSQL/DuckDB semantics chosen in sql_functions.py.
Timestamps are text in SQLAlchemy's SQLite format `YYYY-MM-DD HH:MM:SS.ffffff` (dates
`YYYY-MM-DD`), naive UTC.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import math
import statistics
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

_EPOCH = dt.datetime(1970, 1, 1)
_US = dt.timedelta(microseconds=1)
_UTC = dt.UTC


def _nullsafe(func: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any) -> Any:
        return None if any(a is None for a in args) else func(*args)

    wrapper.__name__ = func.__name__
    return wrapper


# -- timestamps ----------------------------------------------------------------------------------


def parse_timestamp(value: Any) -> dt.datetime:
    """ISO text (date only, ' ' or 'T' separator, 1-6 fraction digits) -> naive; a zone is ignored
    like PostgreSQL and DuckDB do when casting text to TIMESTAMP."""
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    if not isinstance(value, str):
        raise ValueError(f"not a timestamp: {value!r}")
    return dt.datetime.fromisoformat(value.strip()).replace(tzinfo=None)


def format_timestamp(value: dt.datetime) -> str:
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}"
    )


def format_date(value: dt.date) -> str:
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"


def _epoch_us(value: dt.datetime) -> int:
    return (value - _EPOCH) // _US


def _from_epoch_us(us: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=us)


def add_months(value: dt.datetime, months: int) -> dt.datetime:
    """Calendar month arithmetic clamped to the end of month (as PostgreSQL intervals)."""
    year, month0 = divmod(value.year * 12 + value.month - 1 + months, 12)
    day = min(value.day, calendar.monthrange(year, month0 + 1)[1])
    return value.replace(year=year, month=month0 + 1, day=day)


def months_diff(end: dt.datetime, start: dt.datetime) -> int:
    """Whole months from start to end: month count, minus one if the end's position in its month
    (day + time) has not reached the start's."""
    months = (end.year - start.year) * 12 + end.month - start.month
    rest_end = end - end.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    rest_start = start - start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if months > 0 and rest_end < rest_start:
        return months - 1
    if months < 0 and rest_end > rest_start:
        return months + 1
    return months


def trunc_unit(value: dt.datetime, unit: str) -> dt.datetime:
    day = value.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "day":
        return day
    if unit == "week":
        return day - dt.timedelta(days=day.weekday())
    if unit == "month":
        return day.replace(day=1)
    if unit == "quarter":
        return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    if unit == "year":
        return day.replace(month=1, day=1)
    raise ValueError(f"unknown unit {unit!r}")


def trunc_seconds(value: dt.datetime, seconds: int, tz: str | None) -> dt.datetime | None:
    """Floor to a multiple of `seconds` since 1970-01-01, optionally in local time of `tz`."""
    if seconds <= 0:
        return None
    if tz is not None:
        zone = ZoneInfo(tz)
        value = value.replace(tzinfo=_UTC).astimezone(zone).replace(tzinfo=None)
    us = _epoch_us(value)
    result = _from_epoch_us(us - us % (seconds * 1_000_000))
    if tz is not None:
        result = _localize(result, zone).astimezone(_UTC).replace(tzinfo=None)
    return result


def _localize(local: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """Attach a zone the way PostgreSQL and ICU read wall times: an ambiguous time (clocks set back)
    is the later, standard-time instant; a skipped time uses the offset from before the jump."""
    first, second = local.replace(tzinfo=zone, fold=0), local.replace(tzinfo=zone, fold=1)
    offset0, offset1 = first.utcoffset(), second.utcoffset()
    if offset0 is not None and offset1 is not None and offset0 > offset1:
        return second
    return first


def _part(value: dt.datetime, part: str) -> int:
    if part == "doy":
        return value.timetuple().tm_yday
    if part == "weekday":
        return value.weekday()
    if part == "yearmonth":
        return value.year * 100 + value.month
    return int(getattr(value, part))


# -- numbers and strings -----------------------------------------------------------------------


def pg_float_text(value: float) -> str:
    """PostgreSQL's float8 output: shortest round-trip digits, exponent form below 1e-4 or from 1e15."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    value = value + 0.0  # no negative zero
    if value == 0:
        return "0"
    sign, digits_t, exponent = Decimal(repr(value)).normalize().as_tuple()
    digits = "".join(map(str, digits_t))
    e10 = len(digits) + int(exponent) - 1  # decimal exponent of the first digit
    prefix = "-" if sign else ""
    if e10 < -4 or e10 >= 15:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if e10 < 0 else '+'}{abs(e10):02d}"
    if e10 < 0:
        return f"{prefix}0.{'0' * (-e10 - 1)}{digits}"
    if len(digits) <= e10 + 1:
        return prefix + digits + "0" * (e10 + 1 - len(digits))
    return f"{prefix}{digits[: e10 + 1]}.{digits[e10 + 1 :]}"


def _simple_case(text: str, upper: bool) -> str:
    # Unicode simple case mapping (one character to one), as PostgreSQL and DuckDB apply it.
    # Python applies the full mapping; where it expands, the simple mapping is the title case
    # form (Greek with ypogegrammeni) or, for 'İ', a plain 'i', else the character itself.
    out = []
    for ch in text:
        mapped = ch.upper() if upper else ch.lower()
        if len(mapped) != 1:
            title = ch.title()
            mapped = title if upper and len(title) == 1 else _SPECIAL_SIMPLE.get(ch, ch)
        out.append(mapped)
    return "".join(out)


_SPECIAL_SIMPLE = {"\u0130": "i"}


def initcap(text: str) -> str:
    out, prev_alnum = [], False
    for ch in text:
        out.append(_simple_case(ch, upper=not prev_alnum))
        prev_alnum = ch.isalnum()
    return "".join(out)


def pad(text: str, length: int, fill: str, left: bool) -> str:
    length = int(length)
    if length <= 0:
        return ""
    if len(text) >= length or not fill:
        return text[:length]
    filler = (fill * (length // len(fill) + 1))[: length - len(text)]
    return filler + text if left else text + filler


def split_part(text: str, sep: str, index: int) -> str:
    index = int(index)
    if index < 1:
        return ""
    parts = text.split(sep) if sep else [text]
    return parts[index - 1] if index <= len(parts) else ""


def distance_km(lon_a: float, lat_a: float, lon_b: float, lat_b: float) -> float:
    # Same operations, in the same order, as the PostgreSQL/DuckDB SQL (bit-identical inputs).
    k = math.pi / 180
    dlat = (lat_b - lat_a) * k
    dlon = (lon_b - lon_a) * k
    h = math.sin(dlat / 2) * math.sin(dlat / 2) + math.cos(lat_a * k) * math.cos(lat_b * k) * (
        math.sin(dlon / 2) * math.sin(dlon / 2)
    )
    return 12742 * math.asin(math.sqrt(min(h, 1.0)))


def _floor(x: float) -> float:
    return float(math.floor(x)) if math.isfinite(x) else x


def round_double(v: float, digits: int | None, half: bool) -> float:
    """Round (half away from zero) or Trunc to `digits` decimals with the IEEE double operations of
    sql_functions._round on PostgreSQL and DuckDB, in one call (the SQL form uses its argument
    several times)."""
    mag = abs(v)
    bump = 0.5 if half else 0.0
    if digits is None:
        r = _floor(mag + bump)
    else:
        p = math.pow(10.0, float(abs(digits)))
        r = _floor(mag * p + bump) / p if digits >= 0 else _floor(mag / p + bump) * p
    return (-r if v < 0.0 else r) + 0.0


def _ceil(x: float) -> float:
    return float(math.ceil(x)) if math.isfinite(x) else x


class _StdDev:
    """Sample standard deviation aggregate (null for fewer than two values)."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def step(self, value: Any) -> None:
        if value is not None:
            self.values.append(float(value))

    def finalize(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None


_SCALARS: dict[str, tuple[int, Callable[..., Any]]] = {
    "oc_ascii": (1, lambda s: ord(s[0]) if s else 0),
    "oc_lower": (1, lambda s: _simple_case(s, upper=False)),
    "oc_upper": (1, lambda s: _simple_case(s, upper=True)),
    "oc_initcap": (1, initcap),
    "oc_md5": (1, lambda s: hashlib.md5(str(s).encode("utf-8")).hexdigest()),
    "oc_lpad": (3, lambda s, n, c: pad(s, n, c, left=True)),
    "oc_rpad": (3, lambda s, n, c: pad(s, n, c, left=False)),
    "oc_split_part": (3, split_part),
    "oc_email_domain": (1, lambda s: s.rsplit("@", 1)[1] if "@" in s else None),
    "oc_float_text": (1, lambda x: pg_float_text(float(x))),
    "oc_floor": (1, lambda x: _floor(float(x))),
    "oc_ceil": (1, lambda x: _ceil(float(x))),
    "oc_power": (2, lambda x, y: math.pow(float(x), float(y))),
    "oc_round1": (2, lambda x, half: round_double(float(x), None, bool(half))),
    "oc_round2": (3, lambda x, d, half: round_double(float(x), int(d), bool(half))),
    "oc_distance": (4, lambda a, b, c, d: distance_km(float(a), float(b), float(c), float(d))),
    # timestamps
    "oc_to_datetime": (1, lambda s: format_timestamp(parse_timestamp(s))),
    "oc_to_date": (1, lambda s: format_date(parse_timestamp(s))),
    "oc_add_us": (2, lambda s, us: format_timestamp(parse_timestamp(s) + dt.timedelta(microseconds=int(us)))),
    "oc_add_months": (2, lambda s, n: format_timestamp(add_months(parse_timestamp(s), int(n)))),
    "oc_part": (2, lambda s, part: _part(parse_timestamp(s), part)),
    "oc_trunc": (2, lambda s, unit: format_timestamp(trunc_unit(parse_timestamp(s), unit))),
    "oc_diff_us": (2, lambda e, s: (parse_timestamp(e) - parse_timestamp(s)) // _US),
    "oc_months_diff": (2, lambda e, s: months_diff(parse_timestamp(e), parse_timestamp(s))),
}


def _trunc_secs(s: Any, n: Any, tz: Any) -> str | None:
    if s is None or n is None:
        return None
    result = trunc_seconds(parse_timestamp(s), int(n), tz)
    return None if result is None else format_timestamp(result)


def _trunc_time(s: Any, n: Any) -> str | None:
    if s is None or n is None or int(n) <= 0:
        return None
    value = parse_timestamp(s)
    day = trunc_unit(value, "day")
    offset = (value - day) // _US
    return format_timestamp(day + dt.timedelta(microseconds=offset - offset % (int(n) * 1_000_000)))


def register_sqlite_functions(dbapi_connection: Any) -> None:
    """Register every `oc_*` helper on a sqlite3 connection (idempotent)."""
    for name, (nargs, func) in _SCALARS.items():
        dbapi_connection.create_function(name, nargs, _nullsafe(func), deterministic=True)
    # TruncDateTZ passes NULL as zone for plain TruncDate, so this one handles NULLs itself.
    dbapi_connection.create_function("oc_trunc_secs", 3, _trunc_secs, deterministic=True)
    dbapi_connection.create_function("oc_trunc_time", 2, _trunc_time, deterministic=True)
    dbapi_connection.create_function("oc_newuuid", 0, lambda: str(uuid.uuid4()), deterministic=False)
    dbapi_connection.create_aggregate("oc_stddev", 1, _StdDev)
