"""The XTK function whitelist, as data (data-model.md §3.6 plus schema-default helpers).

Each entry gives the canonical name (lookup is case-insensitive), its category (the
expression-editor groups, plus `context` for functions that need server state), argument
count and kinds, the XTK return type, and whether it aggregates or is a window function.

Argument kinds: `string`, `memo`, `number`, `integer`, `date` (date or datetime), `any`,
`condition` (a boolean expression), and the marker kinds `branch` (When(..) or a final Else(..),
inside Case), `clause` (PartitionBy(..) or OrderBy(..), inside RowNum) and `sort` (a value or
Desc(value), inside OrderBy).

Return types are XTK type names; `$N` means "the type of argument N" (0-based) and `any`
means the compiler has to infer it (Case).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

CATEGORIES = ("aggregate", "string", "date", "numeric", "currency", "geomarketing", "other", "window", "context")


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    name: str
    category: str
    min_args: int
    max_args: int | None  # None: unbounded
    arg_kinds: tuple[str, ...]  # one per position; the last one repeats when unbounded
    returns: str
    aggregate: bool = False
    window: bool = False
    only_inside: str | None = None  # canonical name of the only allowed parent call
    sql: bool = True  # False: needs server context (rights, options, sequences), no SQL form
    description: str = ""

    def arg_kind(self, index: int) -> str:
        if not self.arg_kinds:
            return "any"
        return self.arg_kinds[min(index, len(self.arg_kinds) - 1)]

    def accepts(self, count: int) -> bool:
        return count >= self.min_args and (self.max_args is None or count <= self.max_args)


def _f(name: str, category: str, args: str, returns: str, description: str = "", **kw: object) -> FunctionSpec:
    """`args`: comma-separated kinds; kinds after `;` are optional; a trailing `*` repeats."""
    required, _, optional = args.partition(";")
    req = [a.strip() for a in required.split(",") if a.strip()]
    opt = [a.strip() for a in optional.split(",") if a.strip()]
    kinds = req + opt
    variadic = bool(kinds) and kinds[-1].endswith("*")
    min_args = len([k for k in req if not k.endswith("*")])
    kinds = [k.rstrip("*") for k in kinds]
    max_args = None if variadic else len(kinds)
    return FunctionSpec(name, category, min_args, max_args, tuple(kinds), returns, description=description, **kw)  # type: ignore[arg-type]


_AGG = {"aggregate": True}

_SPECS: list[FunctionSpec] = [
    # -- aggregates
    _f("Avg", "aggregate", "number", "double", "Average of the values", **_AGG),
    _f("Count", "aggregate", ";any", "long", "Count of non-null values; Count() counts rows", **_AGG),
    _f("CountAll", "aggregate", "", "long", "Count of rows (count(*))", **_AGG),
    _f("Countdistinct", "aggregate", "any", "long", "Count of distinct non-null values", **_AGG),
    _f("Max", "aggregate", "any", "$0", "Maximum value", **_AGG),
    _f("Min", "aggregate", "any", "$0", "Minimum value", **_AGG),
    _f("StdDev", "aggregate", "number", "double", "Sample standard deviation", **_AGG),
    _f("Sum", "aggregate", "number", "$0", "Sum of the values", **_AGG),
    # -- string
    _f("AllNonNull2", "string", "any, any", "boolean", "True if both values are neither null nor empty"),
    _f("AllNonNull3", "string", "any, any, any", "boolean", "True if all three values are neither null nor empty"),
    _f("Ascii", "string", "string", "long", "Code point of the first character (0 for an empty string)"),
    # `any`: the SDK's escapeForLike writes Char('36') with a string argument
    _f("Char", "string", "any", "string", "Character of a code point (number or numeric text)"),
    _f("Charindex", "string", "string, string", "long", "1-based position of string 2 in string 1, 0 if absent"),
    _f("GetLine", "string", "string, integer", "string", "n-th line (from 1) of the string, '' past the end"),
    _f("IfEquals", "string", "any, any, any, any", "$2", "Value 3 if value 1 = value 2, else value 4"),
    _f("IsMemoNull", "string", "memo", "boolean", "True if the memo is null or empty"),
    _f("JuxtWords", "string", "string, string", "string", "Concatenation with a space between non-empty parts"),
    _f("JuxtWords3", "string", "string, string, string", "string", "JuxtWords of three strings"),
    _f("LPad", "string", "string, integer, string", "string", "Left-pad (or cut) to n characters"),
    _f("Left", "string", "string, integer", "string", "First n characters"),
    _f("Length", "string", "string", "long", "Length in characters"),
    _f("Lower", "string", "string", "string", "Lower case"),
    _f("Ltrim", "string", "string", "string", "Remove leading spaces"),
    _f("Md5Digest", "string", "string", "string", "Hexadecimal MD5 of the UTF-8 bytes"),
    _f("MemoContains", "string", "memo, string", "boolean", "True if the memo contains the string"),
    _f("RPad", "string", "string, integer, string", "string", "Right-pad (or cut) to n characters"),
    _f("Right", "string", "string, integer", "string", "Last n characters"),
    _f("Rtrim", "string", "string", "string", "Remove trailing spaces"),
    _f("Smart", "string", "string", "string", "Title case (first letter of each word upper case)"),
    _f("Substring", "string", "string, integer, integer", "string", "Substring from 1-based offset, of a length"),
    _f("ToString", "string", "any; integer", "string", "Number as text; optional fixed number of decimals"),
    _f("Upper", "string", "string", "string", "Upper case"),
    _f("VirtualLink", "string", "integer, any, any", "long", "The key if the two other values are equal, else 0"),
    _f("VirtualLinkStr", "string", "string, any, any", "string", "The key if the two other values are equal, else ''"),
    _f("dataLength", "string", "string", "long", "Size in bytes (UTF-8)"),
    # -- date
    _f("AddDays", "date", "date, number", "$0", "Add days"),
    _f("AddHours", "date", "date, number", "datetime", "Add hours"),
    _f("AddMinutes", "date", "date, number", "datetime", "Add minutes"),
    _f("AddMonths", "date", "date, number", "$0", "Add (whole) months, clamped to the end of month"),
    _f("AddSeconds", "date", "date, number", "datetime", "Add seconds"),
    _f("AddYears", "date", "date, number", "$0", "Add (whole) years"),
    _f("DateOnly", "date", "date", "datetime", "Date at 00:00 (server time zone: UTC)"),
    _f("Day", "date", "date", "long", "Day of the month"),
    _f("DayOfYear", "date", "date", "long", "Day of the year (1-366)"),
    _f("DaysAgo", "date", "number", "datetime", "Today 00:00 UTC minus n days"),
    _f("DaysAgoInt", "date", "number", "long", "DaysAgo as an integer yyyymmdd"),
    _f("DaysDiff", "date", "date, date", "long", "Whole days from start (arg 2) to end (arg 1)"),
    _f("DaysOld", "date", "date", "long", "Whole days from the date to now"),
    _f("GetDate", "date", "", "datetime", "Current UTC timestamp"),
    _f("Hour", "date", "date", "long", "Hour (0-23)"),
    _f("HoursDiff", "date", "date, date", "long", "Whole hours from start to end"),
    _f("Minute", "date", "date", "long", "Minute (0-59)"),
    _f("MinutesDiff", "date", "date, date", "long", "Whole minutes from start to end"),
    _f("Month", "date", "date", "long", "Month (1-12)"),
    _f("MonthsAgo", "date", "number", "datetime", "Today 00:00 UTC minus n months"),
    _f("MonthsDiff", "date", "date, date", "long", "Whole months from start to end"),
    _f("MonthsOld", "date", "date", "long", "Whole months from the date to now"),
    _f("Second", "date", "date", "long", "Second (0-59)"),
    _f("SecondsDiff", "date", "date, date", "long", "Whole seconds from start to end"),
    _f("SubDays", "date", "date, number", "$0", "Subtract days"),
    _f("SubHours", "date", "date, number", "datetime", "Subtract hours"),
    _f("SubMinutes", "date", "date, number", "datetime", "Subtract minutes"),
    _f("SubMonths", "date", "date, number", "$0", "Subtract (whole) months"),
    _f("SubSeconds", "date", "date, number", "datetime", "Subtract seconds"),
    _f("SubYears", "date", "date, number", "$0", "Subtract (whole) years"),
    _f("ToDate", "date", "date", "date", "Date part of a timestamp"),
    _f("ToDateTime", "date", "string", "datetime", "Timestamp from ISO text (a zone suffix is ignored)"),
    _f("TruncDate", "date", "date, integer", "datetime", "Truncate to a multiple of n seconds since 1970"),
    _f("TruncDateTZ", "date", "date, integer, string", "datetime", "TruncDate computed in a time zone"),
    _f("TruncQuarter", "date", "date", "datetime", "First day of the quarter, 00:00"),
    _f("TruncTime", "date", "date, integer", "datetime", "Truncate the time of day to a multiple of n seconds"),
    _f("TruncWeek", "date", "date", "datetime", "Monday of the week, 00:00"),
    _f("TruncYear", "date", "date", "datetime", "January 1st, 00:00"),
    _f("WeekDay", "date", "date", "long", "Day of the week, 0 = Monday ... 6 = Sunday"),
    _f("Year", "date", "date", "long", "Year"),
    _f("YearAndMonth", "date", "date", "long", "Year and month as yyyymm"),
    _f("YearsDiff", "date", "date, date", "long", "Whole years from start to end"),
    _f("YearsOld", "date", "date", "long", "Whole years from the date to now (age)"),
    # -- numeric
    _f("Abs", "numeric", "number", "$0", "Absolute value"),
    _f("Ceil", "numeric", "number", "double", "Smallest integer >= n"),
    _f("Floor", "numeric", "number", "double", "Largest integer <= n"),
    _f("Greatest", "numeric", "any, any*", "$0", "Largest non-null value"),
    _f("Least", "numeric", "any, any*", "$0", "Smallest non-null value"),
    _f("Mod", "numeric", "number, number", "int64", "Remainder of the integer division (sign of n1); null for 0"),
    _f("Percent", "numeric", "number, number", "double", "n1 * 100 / n2; null for 0"),
    _f("Random", "numeric", "", "double", "Random value in [0, 1)"),
    _f("Round", "numeric", "number; integer", "double", "Round half away from zero to n decimals"),
    _f("Sign", "numeric", "number", "long", "-1, 0 or 1"),
    _f("ToDouble", "numeric", "any", "double", "Convert to a float"),
    _f("ToInt64", "numeric", "any", "int64", "Convert to a 64-bit integer (truncated toward zero)"),
    _f("ToInteger", "numeric", "any", "long", "Convert to a 32-bit integer (truncated toward zero)"),
    _f("Trunc", "numeric", "number; integer", "double", "Truncate toward zero to n decimals"),
    # -- currency and geomarketing
    _f("ConvertCurrency", "currency", "number, string, string, date", "double", "Needs exchange rates", sql=False),
    _f("FormatCurrency", "currency", "number, string", "string", "Needs currency settings", sql=False),
    _f("Distance", "geomarketing", "number, number, number, number", "double",
       "Great-circle distance in km between (lonA, latA) and (lonB, latB), in degrees"),
    # -- others
    _f("Case", "other", "branch, branch*", "any", "Case(When(c, v), ..., Else(v))"),
    _f("When", "other", "condition, any", "$1", "Branch of Case", only_inside="Case"),
    _f("Else", "other", "any", "$0", "Default branch of Case", only_inside="Case"),
    _f("ClearBit", "other", "integer, integer", "int64", "value & ~flag"),
    _f("Coalesce", "other", "any, any", "$0", "Value 2 if value 1 is null or zero (or '')"),
    _f("Decode", "other", "any, any, any, any", "$2", "Value 3 if value 1 = value 2, else value 4"),
    _f("GetEmailDomain", "other", "string", "string", "Part after the last '@', null without '@'"),
    _f("GetMirrorURL", "other", "any", "string", "Needs the mirror page configuration", sql=False),
    _f("Iif", "other", "condition, any, any", "$1", "Value 1 if the condition holds, else value 2"),
    _f("IsBitSet", "other", "integer, integer", "boolean", "(value & flag) <> 0"),
    _f("IsEmptyString", "other", "any, any, any", "$1", "Value 2 if value 1 is null or '', else value 3"),
    _f("NoNull", "other", "any", "$0", "'' (or 0 for numbers) instead of null"),
    _f("RowId", "other", "", "int64", "Row number in the result", window=True),
    _f("SetBit", "other", "integer, integer", "int64", "value | flag"),
    _f("ToBoolean", "other", "number", "boolean", "True if the number is not 0"),
    _f("newuuid", "other", "", "string", "New random UUID (text)"),
    # -- window
    _f("RowNum", "window", "; clause, clause", "int64", "row_number() over (PartitionBy(..), OrderBy(..))", window=True),
    _f("PartitionBy", "window", "any, any*", "any", "Partition of RowNum", only_inside="RowNum"),
    _f("OrderBy", "window", "sort, sort*", "any", "Sort of RowNum", only_inside="RowNum"),
    _f("Desc", "window", "any", "$0", "Descending sort inside OrderBy", only_inside="OrderBy"),
    # -- need server context: accepted by the parser, resolved by the compiler, never SQL
    _f("HasNamedRight", "context", "string", "boolean", "Operator has the named right", sql=False),
    _f("HasPackage", "context", "string", "boolean", "Package is installed", sql=False),
    _f("CounterValue", "context", "string", "int64", "Next value of a counter (schema defaults)", sql=False),
    _f("DefaultFolder", "context", "string", "long", "Id of a default folder (schema defaults)", sql=False),
    _f("Gid", "context", "", "int64", "New global id (schema defaults)", sql=False),
]

FUNCTIONS: Mapping[str, FunctionSpec] = MappingProxyType({s.name.lower(): s for s in _SPECS})


def lookup(name: str) -> FunctionSpec | None:
    """The spec of a function, by any capitalisation of its name."""
    return FUNCTIONS.get(name.lower())


def arity_text(spec: FunctionSpec) -> str:
    if spec.max_args is None:
        return f"at least {spec.min_args} argument(s)"
    if spec.min_args == spec.max_args:
        return f"{spec.min_args} argument(s)"
    return f"{spec.min_args} to {spec.max_args} arguments"


def check_call(name: str, count: int) -> str | None:
    """None if `name(count args)` is a valid call, else the problem (Campaign wording)."""
    spec = lookup(name)
    if spec is None:
        return f"Function '{name}' unknown"
    if not spec.accepts(count):
        return f"Function '{spec.name}' expects {arity_text(spec)}, got {count}"
    return None


def result_type(spec: FunctionSpec, arg_types: Sequence[str | None]) -> str | None:
    """XTK type of a call's result given its argument types (None when unknown)."""
    if spec.returns.startswith("$"):
        index = int(spec.returns[1:])
        return arg_types[index] if index < len(arg_types) else None
    return None if spec.returns == "any" else spec.returns
