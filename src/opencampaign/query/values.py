"""Typed XTK values: parsing and formatting, for documents and for SOAP parameters.

Two textual forms exist. Documents (queryDef output, entities, Write input) use Campaign's own
forms, e.g. ``created="2022-09-26 03:13:36.480Z"`` (data-model.md §1.5). SOAP parameters use the
forms acc-js-sdk 1.2.0 writes and checks, e.g. ``xsd:dateTime`` ``2020-12-31T12:34:56.789Z``
(soap-protocol.md §5.1).

Python values: strings ``str`` (``None`` for empty), boolean ``bool``, integer types ``int``,
float types ``float`` (timespan in seconds), ``date``, datetimes as naive UTC ``datetime``
(datetimenotz as naive wall-clock time), ``time``, uuid as a lower-case ``str``.
"""

from __future__ import annotations

import math
import re
import struct
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from opencampaign.schema.types import normalize_type

XtkValue = str | bool | int | float | date | datetime | time | None

STRING_TYPES = frozenset({"string", "memo", "html", "CDATA", "blob", "primarykey"})
# byte follows xsd:byte and the SDK (docs: "[-128, 128["; XtkCaster.asByte clamps there),
# although Campaign stores it in a SMALLINT; short/long/int64 follow SMALLINT/INTEGER/BIGINT.
INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "byte": (-128, 127),
    "short": (-(2**15), 2**15 - 1),
    "long": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
}
FLOAT_TYPES = frozenset({"float", "double", "percent", "money", "timespan"})
DATETIME_TYPES = frozenset({"datetime", "datetimetz", "datetimenotz"})
DOM_TYPES = frozenset({"DOMElement", "DOMDocument"})
_SCALAR_TYPES = (
    STRING_TYPES | FLOAT_TYPES | DATETIME_TYPES | set(INTEGER_RANGES) | {"uuid", "boolean", "date", "time"}
)

# Literal xsi:type the SDK requires on each output (soap-protocol.md §5.1; float/double per soap.js).
_SOAP_XSI_TYPES = {
    **dict.fromkeys(("string", "memo", "html", "CDATA", "uuid"), "xsd:string"),
    "primarykey": "xsd:primarykey",
    "boolean": "xsd:boolean",
    "byte": "xsd:byte",
    "short": "xsd:short",
    "long": "xsd:int",
    "int64": "xsd:long",
    "float": "xsd:float",
    "double": "xsd:double",
    **dict.fromkeys(DATETIME_TYPES, "xsd:dateTime"),
    "date": "xsd:date",
    **dict.fromkeys(DOM_TYPES, "ns:Element"),
}
# What clients send besides the response literal: the SDK writes primary keys as xsd:string,
# datetimes as xsd:datetime (lower-case t) and DOMDocument with an empty xsi:type.
_SOAP_REQUEST_EXTRA = {
    "primarykey": "xsd:string",
    **dict.fromkeys(DATETIME_TYPES, "xsd:datetime"),
    "DOMDocument": "",
}

_INT_RE = re.compile(r"[+-]?[0-9]+(?:\.0*)?")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_TIME_PART = r"([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:[.,]([0-9]{1,9}))?)?"
# 2020-12-31, 1956/05/04, 2020-12-31T12:34:56.789Z, 2022-09-26 03:13:36.480Z, ...+02:00, ...-07
_TIMESTAMP_RE = re.compile(
    r"([0-9]{4})([-/])([0-9]{1,2})\2([0-9]{1,2})"
    rf"(?:[Tt ]{_TIME_PART}([Zz]|[+-][0-9]{{2}}(?::?[0-9]{{2}})?)?)?"
)
_TIME_RE = re.compile(_TIME_PART)


def xtk_type_name(xtk_type: str | None) -> str:
    """Canonical type name ("" -> string, int -> long, cdata -> CDATA); ValueError if unknown."""
    name = normalize_type(xtk_type)
    if name not in _SCALAR_TYPES and name not in DOM_TYPES:
        raise ValueError(f"unknown XTK type {xtk_type!r}")
    return name


def _invalid(xtk_type: str, value: object, why: str = "") -> ValueError:
    """The message names the type and the value; callers add the field."""
    if isinstance(value, str) and len(value) > 60:
        value = value[:57] + "..."  # hostile input must not produce a huge message
    return ValueError(f"invalid {xtk_type} value {repr(value)[:80]}" + (f": {why}" if why else ""))


def _scalar(xtk_type: str | None) -> str:
    name = xtk_type_name(xtk_type)
    if name in DOM_TYPES:
        raise ValueError(f"{name} is an XML type, not a scalar value")
    return name


# --- parsing -------------------------------------------------------------------------------------


def parse_value(xtk_type: str | None, text: str | None) -> XtkValue:
    """Parse a value written in a document (Write input, queryDef output) into its Python value.

    Empty text gives None for strings, dates and times, 0/False for numbers and booleans
    (Campaign numbers and booleans are never null).
    """
    name = _scalar(xtk_type)
    text = "" if text is None else text
    if name in STRING_TYPES:
        return text or None
    s = text.strip()
    if name == "uuid":
        return _parse_uuid(s, text)
    if name == "boolean":
        lowered = s.lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0", ""):
            return False
        raise _invalid(name, text, "expected true, false, 1 or 0")
    if name in INTEGER_RANGES:
        return _parse_int(name, s, text)
    if name in FLOAT_TYPES:
        return _parse_float(name, s, text)
    if not s:
        return None
    if name == "time":
        m = _TIME_RE.fullmatch(s)
        if not m:
            raise _invalid(name, text, "expected HH:MM[:SS[.mmm]]")
        try:
            return time(int(m[1]), int(m[2]), int(m[3] or 0), _micros(m[4]))
        except ValueError as exc:
            raise _invalid(name, text, str(exc)) from None
    wall, offset = _parse_timestamp(name, s, text)
    if name == "datetimenotz" or offset is None:
        utc = wall  # no zone: Campaign's documents are UTC; notz fields are wall-clock by definition
    else:
        try:
            utc = wall - offset
        except OverflowError:
            raise _invalid(name, text, "out of range") from None
    return utc.date() if name == "date" else utc


def _parse_uuid(s: str, text: str) -> str | None:
    if not s:
        return None
    hexes = s[1:-1] if s.startswith("{") and s.endswith("}") else s
    if not re.fullmatch(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}", hexes):
        raise _invalid("uuid", text, "expected 8-4-4-4-12 hexadecimal digits")
    return hexes.lower()


def _parse_int(name: str, s: str, text: str) -> int:
    if not s:
        return 0
    if len(s) > 40 or not _INT_RE.fullmatch(s):  # length first: int() of huge strings is costly
        raise _invalid(name, text, "not an integer")
    value = int(s.split(".")[0])
    low, high = INTEGER_RANGES[name]
    if not low <= value <= high:
        raise _invalid(name, text, f"out of range {low}..{high}")
    return value


def _parse_float(name: str, s: str, text: str) -> float:
    if not s:
        return 0.0
    if not _FLOAT_RE.fullmatch(s):  # float() alone would accept "nan", "inf" and "1_0"
        raise _invalid(name, text, "not a number")
    value = float(s)
    try:
        if name == "float":
            struct.pack("<f", value)  # a REAL column: OverflowError unless it fits single precision
    except OverflowError:
        raise _invalid(name, text, "out of range") from None
    if not math.isfinite(value):
        raise _invalid(name, text, "out of range")
    return value


def _micros(fraction: str | None) -> int:
    return int((fraction or "")[:6].ljust(6, "0"))  # beyond microseconds is truncated


def _parse_timestamp(name: str, s: str, text: str) -> tuple[datetime, timedelta | None]:
    m = _TIMESTAMP_RE.fullmatch(s)
    if not m:
        raise _invalid(name, text, "expected YYYY-MM-DD, YYYY/MM/DD or an ISO 8601 timestamp")
    year, _, month, day, hour, minute, second, fraction, zone = m.groups()
    try:
        wall = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            _micros(fraction),
        )
    except ValueError as exc:
        raise _invalid(name, text, str(exc)) from None
    if not zone:
        return wall, None
    if zone in "Zz":
        return wall, timedelta(0)
    digits = zone[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if hours > 23 or minutes > 59:
        raise _invalid(name, text, "bad time-zone offset")
    offset = timedelta(hours=hours, minutes=minutes)
    return wall, -offset if zone[0] == "-" else offset


def parse_soap_value(xtk_type: str | None, text: str | None) -> XtkValue:
    """Parse an incoming SOAP parameter. Like parse_value, except that strings are never None:
    the SDK sends null strings as "" and methods expect a string."""
    name = _scalar(xtk_type)
    if name in STRING_TYPES:
        return text or ""
    return parse_value(name, text)


# --- formatting ----------------------------------------------------------------------------------


def js_number(value: float) -> str:
    """ECMAScript Number#toString: shortest round-trip digits, exponent only outside [1e-7, 1e21).

    It is what the SDK writes for numbers, and it never prints a trailing ".0".
    """
    if not math.isfinite(value):
        raise ValueError(f"{value!r} has no XTK representation")
    if value == 0:
        return "0"
    _, digit_tuple, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    k, n = len(digits), len(digits) + int(exponent)  # value = 0.<digits> * 10**n
    if k <= n <= 21:
        out = digits + "0" * (n - k)
    elif 0 < n <= 21:
        out = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        out = "0." + "0" * -n + digits
    else:
        mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
        out = f"{mantissa}e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"
    return ("-" if value < 0 else "") + out


def _to_int(name: str, value: object) -> int:
    integral = isinstance(value, bool | int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, Decimal):
        integral = value.is_finite() and value == value.to_integral_value()
    if not integral:
        raise _invalid(name, value, "not an integer")
    result = int(value)  # type: ignore[call-overload]
    low, high = INTEGER_RANGES[name]
    if not low <= result <= high:
        raise _invalid(name, value, f"out of range {low}..{high}")
    return result


def _to_float_text(name: str, value: object) -> str:
    if isinstance(value, Decimal) and value.is_finite():
        return "0" if value == 0 else format(value.normalize(), "f")  # keeps NUMERIC money exact
    if isinstance(value, bool | int | float):
        try:
            return js_number(float(value))
        except (ValueError, OverflowError):
            pass
    raise _invalid(name, value, "not a finite number")


def _utc(name: str, value: object) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value
        if name == "datetimenotz":
            return value.replace(tzinfo=None)  # wall-clock field: keep the clock reading
        return value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    raise _invalid(name, value, "not a date or datetime")


def _ymd(d: date) -> str:
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"  # strftime("%Y") does not pad years < 1000


def _hms(t: datetime | time) -> str:
    return f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{t.microsecond // 1000:03d}"


def format_value(xtk_type: str | None, value: object) -> str:
    """Text of a value as Campaign writes it in documents: datetime ``2022-09-26 03:13:36.480Z``
    (always milliseconds; no ``Z`` for datetimenotz), date ``YYYY-MM-DD``, time ``HH:MM:SS.mmm``,
    boolean ``1``/``0``, integers without decimals, numbers in shortest round-trip form.
    None gives "". A str value is parsed first, so it is normalised (and checked)."""
    name = _scalar(xtk_type)
    if isinstance(value, str) and name not in STRING_TYPES:
        value = parse_value(name, value)
    if value is None:
        return ""
    if name in STRING_TYPES or name == "uuid":
        return str(value)
    if name == "boolean":
        if not isinstance(value, bool | int):
            raise _invalid(name, value, "not a boolean")
        return "1" if value else "0"
    if name in INTEGER_RANGES:
        return str(_to_int(name, value))
    if name in FLOAT_TYPES:
        return _to_float_text(name, value)
    if name == "time":
        if not isinstance(value, time | datetime):
            raise _invalid(name, value, "not a time")
        return _hms(value)
    stamp = _utc(name, value)
    if name == "date":
        return _ymd(stamp)
    return f"{_ymd(stamp)} {_hms(stamp)}" + ("" if name == "datetimenotz" else "Z")


def soap_xsi_type(xtk_type: str | None) -> str:
    """The literal ``xsi:type`` to put on a SOAP output of this type (the SDK checks it exactly)."""
    name = xtk_type_name(xtk_type)
    if name not in _SOAP_XSI_TYPES:
        raise ValueError(f"type {name} cannot be a SOAP parameter")
    return _SOAP_XSI_TYPES[name]


def soap_request_xsi_types(xtk_type: str | None) -> frozenset[str]:
    """The ``xsi:type`` literals a client may put on an input of this type."""
    name = xtk_type_name(xtk_type)
    extra = _SOAP_REQUEST_EXTRA.get(name)
    return frozenset({soap_xsi_type(name)} | ({extra} if extra is not None else set()))


def format_soap_value(xtk_type: str | None, value: object) -> str:
    """Text of a SOAP parameter: booleans ``true``/``false``, datetimes ``2020-12-31T12:34:56.789Z``,
    dates as a full timestamp at midnight UTC (as the SDK writes them); None gives "" for strings
    and dates and the zero value for numbers and booleans."""
    name = _scalar(xtk_type)
    soap_xsi_type(name)  # refuses types with no SOAP form
    if isinstance(value, str) and name not in STRING_TYPES:
        value = parse_soap_value(name, value)
    if name in STRING_TYPES or name == "uuid":
        return "" if value is None else str(value)
    if name == "boolean":
        if value is not None and not isinstance(value, bool | int):
            raise _invalid(name, value, "not a boolean")
        return "true" if value else "false"
    if name in INTEGER_RANGES:
        return str(_to_int(name, 0 if value is None else value))
    if name in FLOAT_TYPES:
        return _to_float_text(name, 0 if value is None else value)
    if value is None:
        return ""
    stamp = _utc(name, value)
    if name == "date":
        stamp = datetime(stamp.year, stamp.month, stamp.day)
    return f"{_ymd(stamp)}T{_hms(stamp)}Z"
