"""Typed XTK values (data-model.md §1.5, soap-protocol.md §5.1)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opencampaign.query.values import (
    INTEGER_RANGES,
    format_soap_value,
    format_value,
    js_number,
    parse_soap_value,
    parse_value,
    soap_request_xsi_types,
    soap_xsi_type,
    xtk_type_name,
)

# --- type names ----------------------------------------------------------------------------------


def test_type_names():
    assert xtk_type_name(None) == "string"  # an untyped attribute is a string
    assert xtk_type_name("") == "string"
    assert xtk_type_name("int") == "long"
    assert xtk_type_name("cdata") == "CDATA"
    with pytest.raises(ValueError, match="unknown XTK type 'varchar'"):
        parse_value("varchar", "x")
    with pytest.raises(ValueError, match="DOMElement is an XML type"):
        parse_value("DOMElement", "x")


# --- parse_value ---------------------------------------------------------------------------------


@pytest.mark.parametrize("xtk_type", ["string", "memo", "html", "CDATA", "blob", None])
def test_strings(xtk_type):
    assert parse_value(xtk_type, "  keep spaces ") == "  keep spaces "
    assert parse_value(xtk_type, "") is None  # "" and null are the same string in Campaign
    assert parse_value(xtk_type, None) is None
    assert parse_value(xtk_type, "Zoë 李 😀") == "Zoë 李 😀"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("false", False),
        ("1", True),
        ("0", False),
        ("TRUE", True),
        (" False ", False),
        ("", False),
    ],
)
def test_booleans(text, expected):
    assert parse_value("boolean", text) is expected


@pytest.mark.parametrize("text", ["yes", "2", "-1", "t", "1.0"])
def test_boolean_errors(text):
    with pytest.raises(ValueError, match=f"invalid boolean value '{text}'"):
        parse_value("boolean", text)


@pytest.mark.parametrize(
    ("xtk_type", "low", "high"),
    [
        ("byte", -128, 127),
        ("short", -32768, 32767),
        ("long", -2147483648, 2147483647),
        ("int", -2147483648, 2147483647),
        ("int64", -9223372036854775808, 9223372036854775807),
    ],
)
def test_integer_ranges(xtk_type, low, high):
    assert parse_value(xtk_type, str(low)) == low
    assert parse_value(xtk_type, str(high)) == high
    assert parse_value(xtk_type, f"+{high}") == high
    for outside in (low - 1, high + 1):
        with pytest.raises(
            ValueError, match=rf"invalid {xtk_type_name(xtk_type)} value '{outside}': out of range"
        ):
            parse_value(xtk_type, str(outside))


@pytest.mark.parametrize(
    ("text", "expected"), [("", 0), ("  42 ", 42), ("-7", -7), ("007", 7), ("12.0", 12), ("12.", 12)]
)
def test_integer_forms(text, expected):
    assert parse_value("long", text) == expected


@pytest.mark.parametrize("text", ["12.5", "1e3", "0x10", "abc", "1 2", "١٢", "--1", "1_000", "9" * 50])
def test_integer_errors(text):
    with pytest.raises(ValueError, match=r"invalid long value '.*': not an integer"):
        parse_value("long", text)


@pytest.mark.parametrize("xtk_type", ["float", "double", "percent", "money", "timespan"])
def test_float_forms(xtk_type):
    assert parse_value(xtk_type, "") == 0.0
    assert parse_value(xtk_type, "1.5") == 1.5
    assert parse_value(xtk_type, " -2e-3 ") == -0.002
    assert parse_value(xtk_type, ".5") == 0.5
    assert parse_value(xtk_type, "1.") == 1.0
    assert parse_value(xtk_type, "1e+21") == 1e21
    assert isinstance(parse_value(xtk_type, "3"), float)


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-Infinity", "1_000", "0x10", "1,5", "abc", "1e999"])
def test_float_errors(text):
    with pytest.raises(ValueError, match="invalid double value"):
        parse_value("double", text)


def test_float_type_is_single_precision_range():
    assert parse_value("double", "1e39") == 1e39
    with pytest.raises(ValueError, match="invalid float value '1e39': out of range"):
        parse_value("float", "1e39")


# every date format accepted, as (text, naive UTC datetime)
DATETIMES = [
    ("2020-12-31", datetime(2020, 12, 31)),
    ("2020/12/31", datetime(2020, 12, 31)),
    ("1956/05/04", datetime(1956, 5, 4)),  # Write input style, data-model.md §4.1
    ("2020-1-2", datetime(2020, 1, 2)),
    ("2020-12-31T12:34:56.789Z", datetime(2020, 12, 31, 12, 34, 56, 789000)),  # SDK xsd:datetime
    ("2020-12-31T00:00:00.000Z", datetime(2020, 12, 31)),  # SDK xsd:date
    ("2020-12-31T12:34:56Z", datetime(2020, 12, 31, 12, 34, 56)),
    ("2022-11-09T06:10:27Z", datetime(2022, 11, 9, 6, 10, 27)),
    ("2020-12-31T12:34Z", datetime(2020, 12, 31, 12, 34)),
    ("2020-12-31T12:34:56", datetime(2020, 12, 31, 12, 34, 56)),
    ("2020-12-31t12:34:56z", datetime(2020, 12, 31, 12, 34, 56)),
    ("2020-12-31T14:34:56+02:00", datetime(2020, 12, 31, 12, 34, 56)),
    ("2020-12-31T14:34:56+0200", datetime(2020, 12, 31, 12, 34, 56)),
    ("2020-12-31T07:04:56-05:30", datetime(2020, 12, 31, 12, 34, 56)),
    ("2020-12-31T12:34:56.123456789+00:00", datetime(2020, 12, 31, 12, 34, 56, 123456)),
    ("2022-09-26 03:13:36.480Z", datetime(2022, 9, 26, 3, 13, 36, 480000)),  # Campaign documents
    ("2022-09-26 03:13:36.480", datetime(2022, 9, 26, 3, 13, 36, 480000)),
    ("2022-09-26 03:13:36", datetime(2022, 9, 26, 3, 13, 36)),
    ("2022-09-26 03:13:36Z", datetime(2022, 9, 26, 3, 13, 36)),
    ("2021-08-27 08:02:07.963-07", datetime(2021, 8, 27, 15, 2, 7, 963000)),  # /r/test date
    ("2020/12/31 12:34:56", datetime(2020, 12, 31, 12, 34, 56)),
    ("2020-12-31 12:34:56,5", datetime(2020, 12, 31, 12, 34, 56, 500000)),
    ("  2020-12-31  ", datetime(2020, 12, 31)),
    ("2021-01-01T01:00:00+02:00", datetime(2020, 12, 31, 23, 0)),
]


@pytest.mark.parametrize("xtk_type", ["datetime", "datetimetz"])
@pytest.mark.parametrize(("text", "expected"), DATETIMES)
def test_datetime_formats(xtk_type, text, expected):
    value = parse_value(xtk_type, text)
    assert value == expected
    assert value.tzinfo is None


@pytest.mark.parametrize(("text", "expected"), DATETIMES)
def test_date_formats_take_the_utc_date(text, expected):
    assert parse_value("date", text) == expected.date()


def test_date_with_offset_is_the_utc_date():
    # the SDK's XtkCaster.asDate: parse the timestamp, then keep the UTC day
    assert parse_value("date", "2020-12-31T23:30:00-05:00") == date(2021, 1, 1)


def test_datetimenotz_keeps_the_wall_clock():
    assert parse_value("datetimenotz", "2020-12-31T14:34:56+02:00") == datetime(2020, 12, 31, 14, 34, 56)
    assert parse_value("datetimenotz", "2020-12-31 14:34:56.250") == datetime(
        2020, 12, 31, 14, 34, 56, 250000
    )


@pytest.mark.parametrize("xtk_type", ["date", "datetime", "datetimetz", "datetimenotz", "time"])
def test_empty_dates_are_null(xtk_type):
    assert parse_value(xtk_type, "") is None
    assert parse_value(xtk_type, "   ") is None
    assert parse_value(xtk_type, None) is None


@pytest.mark.parametrize(
    "text",
    [
        "2020-13-01",
        "2020-02-30",
        "31/12/2020",
        "2020-12/31",
        "20201231",
        "2020-12-31T25:00:00Z",
        "2020-12-31T12:60:00Z",
        "2020-12-31T12:00:00+24:00",
        "2020-12-31T12:00:00+05:60",
        "2020-12-31Z",
        "2020-12-31T12",
        "0000-01-01",
        "yesterday",
        "1609418096",
        "2020-12-31T12:00:00 Z",
    ],
)
def test_date_errors(text):
    with pytest.raises(ValueError, match=r"invalid datetime value '.*'"):
        parse_value("datetime", text)
    with pytest.raises(ValueError, match=r"invalid date value"):
        parse_value("date", text)


def test_date_overflow_is_a_value_error():
    with pytest.raises(ValueError, match="out of range"):
        parse_value("datetime", "0001-01-01T00:00:00+01:00")


def test_time():
    assert parse_value("time", "12:34") == time(12, 34)
    assert parse_value("time", "12:34:56.789") == time(12, 34, 56, 789000)
    for bad in ("24:00", "12:34:60", "1:02", "noon"):
        with pytest.raises(ValueError, match="invalid time value"):
            parse_value("time", bad)


def test_uuid():
    text = "B7B9A5B0-1C2D-4E5F-8A9B-0C1D2E3F4A5B"
    assert parse_value("uuid", text) == text.lower()
    assert parse_value("uuid", "{" + text + "}") == text.lower()
    assert parse_value("uuid", "") is None
    for bad in ("b7b9a5b01c2d4e5f8a9b0c1d2e3f4a5b", "urn:uuid:" + text, "xyz"):
        with pytest.raises(ValueError, match="invalid uuid value"):
            parse_value("uuid", bad)


def test_error_messages_are_bounded():
    with pytest.raises(ValueError) as info:
        parse_value("long", "x" * 10_000)
    assert len(str(info.value)) < 120


# --- format_value (documents) --------------------------------------------------------------------


def test_format_datetime_as_campaign_documents():
    # data-model.md §1.5: created="2022-09-26 03:13:36.480Z"; mock.js has "17:30:00.000Z" too
    assert format_value("datetime", datetime(2022, 9, 26, 3, 13, 36, 480000)) == "2022-09-26 03:13:36.480Z"
    assert format_value("datetime", datetime(2021, 12, 7, 17, 30)) == "2021-12-07 17:30:00.000Z"
    assert format_value("datetimetz", datetime(2022, 9, 26, 3, 13, 36, 480999)) == "2022-09-26 03:13:36.480Z"
    paris = timezone(timedelta(hours=2))
    assert (
        format_value("datetime", datetime(2022, 9, 26, 5, 13, 36, tzinfo=paris)) == "2022-09-26 03:13:36.000Z"
    )
    assert format_value("datetime", date(2020, 1, 2)) == "2020-01-02 00:00:00.000Z"
    assert format_value("datetime", datetime(999, 1, 2)) == "0999-01-02 00:00:00.000Z"
    assert (
        format_value("datetimenotz", datetime(2022, 9, 26, 5, 13, 36, tzinfo=paris))
        == "2022-09-26 05:13:36.000"
    )


def test_format_date_time_and_strings():
    assert format_value("date", date(2020, 12, 31)) == "2020-12-31"
    assert (
        format_value("date", datetime(2020, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-5))))
        == "2021-01-01"
    )
    assert format_value("time", time(9, 5, 7, 12000)) == "09:05:07.012"
    assert format_value("string", "x") == "x"
    assert (
        format_value("uuid", "b7b9a5b0-1c2d-4e5f-8a9b-0c1d2e3f4a5b") == "b7b9a5b0-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
    )


def test_format_none_is_empty():
    for xtk_type in ("string", "boolean", "long", "double", "date", "datetime", "time", "uuid"):
        assert format_value(xtk_type, None) == ""


def test_format_booleans_as_one_and_zero():
    # the NewInstance fixture (mock.js) shows database booleans as active="1", isModel="1", deployed="0"
    assert format_value("boolean", True) == "1"
    assert format_value("boolean", False) == "0"
    assert format_value("boolean", 1) == "1"
    assert format_value("boolean", "true") == "1"
    with pytest.raises(ValueError, match="not a boolean"):
        format_value("boolean", 1.5)


def test_format_integers():
    assert format_value("long", 42) == "42"
    assert format_value("long", 42.0) == "42"
    assert format_value("int64", Decimal("9223372036854775807")) == "9223372036854775807"
    assert format_value("short", " 7 ") == "7"
    for bad in (1.5, float("nan"), float("inf"), Decimal("1.5"), Decimal("NaN"), object()):
        with pytest.raises(ValueError, match="not an integer"):
            format_value("long", bad)
    with pytest.raises(ValueError, match="out of range -128..127"):
        format_value("byte", 300)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"),
        (-0.0, "0"),
        (1.0, "1"),
        (0.1, "0.1"),
        (0.1 + 0.2, "0.30000000000000004"),
        (-2.5, "-2.5"),
        (123.456, "123.456"),
        (1e20, "100000000000000000000"),
        (123456789012345680000.0, "123456789012345680000"),
        (1e21, "1e+21"),
        (1.5e300, "1.5e+300"),
        (1e-6, "0.000001"),
        (1.5e-6, "0.0000015"),
        (1e-7, "1e-7"),
        (1.25e-7, "1.25e-7"),
        (5e-324, "5e-324"),
        (2**53, "9007199254740992"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
    ],
)
def test_js_number(value, text):
    # expected strings are what JavaScript's String(value) prints
    assert js_number(value) == text
    assert format_value("double", value) == text


def test_format_floats():
    assert format_value("money", Decimal("10.50")) == "10.5"
    assert format_value("money", Decimal("100")) == "100"
    assert format_value("money", Decimal("-0.00")) == "0"
    assert format_value("percent", 3) == "3"
    assert format_value("timespan", 86400.0) == "86400"
    for bad in (float("nan"), float("inf"), "abc", Decimal("Infinity")):
        with pytest.raises(ValueError):
            format_value("double", bad)


def test_format_normalises_text_input():
    assert format_value("datetime", "2020/01/02") == "2020-01-02 00:00:00.000Z"
    assert format_value("date", "2020-12-31T00:00:00.000Z") == "2020-12-31"
    with pytest.raises(ValueError, match="invalid date value"):
        format_value("date", "not a date")


def test_format_type_errors():
    with pytest.raises(ValueError, match="not a date or datetime"):
        format_value("datetime", 1609459200)
    with pytest.raises(ValueError, match="not a time"):
        format_value("time", 3.5)


# --- SOAP parameters -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("xtk_type", "literal"),
    [
        ("string", "xsd:string"),
        ("memo", "xsd:string"),
        ("primarykey", "xsd:primarykey"),
        ("boolean", "xsd:boolean"),
        ("byte", "xsd:byte"),
        ("short", "xsd:short"),
        ("long", "xsd:int"),
        ("int", "xsd:int"),
        ("int64", "xsd:long"),
        ("float", "xsd:float"),
        ("double", "xsd:double"),
        ("datetime", "xsd:dateTime"),
        ("datetimetz", "xsd:dateTime"),
        ("date", "xsd:date"),
        ("DOMElement", "ns:Element"),
        ("DOMDocument", "ns:Element"),
    ],
)
def test_soap_xsi_types(xtk_type, literal):
    assert soap_xsi_type(xtk_type) == literal
    assert literal in soap_request_xsi_types(xtk_type)


def test_soap_request_literals_the_sdk_writes():
    assert soap_request_xsi_types("datetime") == {"xsd:datetime", "xsd:dateTime"}
    assert soap_request_xsi_types("primarykey") == {"xsd:string", "xsd:primarykey"}
    assert soap_request_xsi_types("DOMDocument") == {"", "ns:Element"}
    assert soap_request_xsi_types("long") == {"xsd:int"}


@pytest.mark.parametrize("xtk_type", ["timespan", "time", "percent", "money"])
def test_types_without_soap_form(xtk_type):
    with pytest.raises(ValueError, match="cannot be a SOAP parameter"):
        soap_xsi_type(xtk_type)
    with pytest.raises(ValueError, match="cannot be a SOAP parameter"):
        format_soap_value(xtk_type, 1)


def test_format_soap_values_like_the_sdk():
    # the observed AllTypes call, soap-protocol.md §5.1
    assert format_soap_value("long", 100000) == "100000"
    assert format_soap_value("int64", 100000) == "100000"
    assert (
        format_soap_value("datetime", datetime(2020, 12, 31, 12, 34, 56, 789000))
        == "2020-12-31T12:34:56.789Z"
    )
    assert format_soap_value("date", date(2020, 12, 31)) == "2020-12-31T00:00:00.000Z"
    assert format_soap_value("date", datetime(2020, 12, 31, 18, 0)) == "2020-12-31T00:00:00.000Z"
    assert format_soap_value("boolean", True) == "true"
    assert format_soap_value("boolean", False) == "false"
    assert format_soap_value("byte", 6) == "6"
    assert format_soap_value("double", 0.5) == "0.5"
    assert format_soap_value("primarykey", "xtk:operator|123") == "xtk:operator|123"


def test_format_soap_nulls():
    assert format_soap_value("string", None) == ""
    assert format_soap_value("datetime", None) == ""
    assert format_soap_value("date", None) == ""
    assert format_soap_value("boolean", None) == "false"
    assert format_soap_value("long", None) == "0"
    assert format_soap_value("double", None) == "0"
    with pytest.raises(ValueError, match="XML type"):
        format_soap_value("DOMElement", None)


def test_parse_soap_values():
    assert parse_soap_value("string", "") == ""
    assert parse_soap_value("string", None) == ""
    assert parse_soap_value("primarykey", "xtk:operator|123") == "xtk:operator|123"
    assert parse_soap_value("datetime", "2020-12-31T12:34:56.789Z") == datetime(
        2020, 12, 31, 12, 34, 56, 789000
    )
    assert parse_soap_value("datetime", "") is None
    assert parse_soap_value("date", "2020-12-31T00:00:00.000Z") == date(2020, 12, 31)
    assert parse_soap_value("boolean", "false") is False
    assert parse_soap_value("int64", "100000") == 100000
    assert parse_soap_value("double", "1e+21") == 1e21
    with pytest.raises(ValueError, match="invalid byte value '128'"):
        parse_soap_value("byte", "128")


# --- round trips ---------------------------------------------------------------------------------

MS_DATETIMES = st.datetimes().map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
VALUES = {
    "string": st.text(min_size=1),
    "memo": st.text(min_size=1),
    "html": st.text(min_size=1),
    "CDATA": st.text(min_size=1),
    "uuid": st.uuids().map(str),
    "boolean": st.booleans(),
    **{name: st.integers(low, high) for name, (low, high) in INTEGER_RANGES.items()},
    "float": st.floats(width=32, allow_nan=False, allow_infinity=False).map(float),
    "double": st.floats(allow_nan=False, allow_infinity=False),
    "percent": st.floats(allow_nan=False, allow_infinity=False),
    "money": st.floats(allow_nan=False, allow_infinity=False),
    "timespan": st.floats(allow_nan=False, allow_infinity=False),
    "date": st.dates(),
    "datetime": MS_DATETIMES,
    "datetimetz": MS_DATETIMES,
    "datetimenotz": MS_DATETIMES,
    "time": st.times().map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000)),
}
SOAP_TYPES = [t for t in VALUES if t not in ("percent", "money", "timespan", "time")]


@given(st.sampled_from(sorted(VALUES)).flatmap(lambda t: st.tuples(st.just(t), VALUES[t])))
def test_document_round_trip(case):
    xtk_type, value = case
    assert parse_value(xtk_type, format_value(xtk_type, value)) == value


@given(st.sampled_from(SOAP_TYPES).flatmap(lambda t: st.tuples(st.just(t), VALUES[t])))
def test_soap_round_trip(case):
    xtk_type, value = case
    assert parse_soap_value(xtk_type, format_soap_value(xtk_type, value)) == value


@given(MS_DATETIMES, st.integers(-14 * 60, 14 * 60))
def test_aware_datetimes_come_back_as_naive_utc(naive, offset_minutes):
    tz = timezone(timedelta(minutes=offset_minutes))
    aware = naive.replace(tzinfo=tz)
    try:
        expected = aware.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        return
    assert parse_value("datetime", format_value("datetime", aware)) == expected
    assert parse_soap_value("datetime", format_soap_value("datetime", aware)) == expected


@given(st.sampled_from(sorted(VALUES)).flatmap(lambda t: st.tuples(st.just(t), VALUES[t])))
def test_format_is_idempotent_through_text(case):
    xtk_type, value = case
    text = format_value(xtk_type, value)
    assert format_value(xtk_type, parse_value(xtk_type, text)) == text
