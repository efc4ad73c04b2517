"""XTK expression parser: syntax forms of data-model.md §3.5, precedence, errors, hostile input."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opencampaign.query.expr import (
    Binary,
    Boolean,
    Date,
    DateTime,
    ExpressionError,
    FunctionCall,
    In,
    IsNull,
    Like,
    Null,
    Number,
    Path,
    Step,
    String,
    Unary,
    Variable,
    calls,
    format_expression,
    parse_expression,
    paths,
    walk,
)
from opencampaign.query.expr import ast as A

parse = parse_expression


def attr(name: str) -> Path:
    return Path((Step("attribute", name),))


def path(*steps: Step, schema: str | None = None, alias: str | None = None) -> Path:
    return Path(tuple(steps), schema, alias)


def el(name: str, index: int | None = None, predicate: A.Node | None = None) -> Step:
    return Step("element", name, index, predicate)


def at(name: str) -> Step:
    return Step("attribute", name)


UP = Step("parent")


# -- paths ------------------------------------------------------------------------------------

PATHS = [
    ("@email", attr("email")),
    ("[@email]", attr("email")),
    ("[folder/@name]", path(el("folder"), at("name"))),
    ("[a/b/@c]", path(el("a"), el("b"), at("c"))),
    ("[@folder-id]", attr("folder-id")),
    ("[../@x]", path(UP, at("x"))),
    ("[../../job/@id]", path(UP, UP, el("job"), at("id"))),
    ("[delivery-linkedDelivery/properties/@toDeliver]",
     path(el("delivery-linkedDelivery"), el("properties"), at("toDeliver"))),
    ("subscription", path(el("subscription"))),
    ("[newsgroup/@id]", path(el("newsgroup"), at("id"))),
    ("group[1]/@label", path(el("group", index=1), at("label"))),
    ("[group[2]/@label]", path(el("group", index=2), at("label"))),
    ("group[@label='x']", path(el("group", predicate=Binary("=", attr("label"), String("x"))))),
    ("[group[@label = 'x']/@name]", path(el("group", predicate=Binary("=", attr("label"), String("x"))), at("name"))),
    ("a/b/@c", path(el("a"), el("b"), at("c"))),
    ("[nms:recipient:@email]", path(at("email"), schema="nms:recipient")),
    ("[nms:recipient:r:@email]", path(at("email"), schema="nms:recipient", alias="r")),
    ("[nms:recipient:folder/@name]", path(el("folder"), at("name"), schema="nms:recipient")),
    ("[ folder / @name ]", path(el("folder"), at("name"))),
]


@pytest.mark.parametrize(("text", "expected"), PATHS, ids=[p[0] for p in PATHS])
def test_paths(text: str, expected: Path) -> None:
    node = parse(text)
    assert node == expected
    assert isinstance(node, Path)
    assert node.raw == text
    assert node.offset == 0


def test_path_properties() -> None:
    outer = parse("[../@owner-id]")
    assert isinstance(outer, Path)
    assert outer.outer_levels == 1 and outer.is_attribute and outer.xpath == "../@owner-id"
    coll = parse("subscription")
    assert isinstance(coll, Path) and not coll.is_attribute and coll.outer_levels == 0
    assert parse("[@a]").bracketed and not parse("@a").bracketed  # type: ignore[attr-defined]


def test_attribute_division_is_not_a_path() -> None:
    assert parse("@a/@b") == Binary("/", attr("a"), attr("b"))
    assert parse("@a / 2") == Binary("/", attr("a"), Number(2))
    assert parse("a / @b") == Binary("/", path(el("a")), attr("b"))  # spaces: division


# -- literals ---------------------------------------------------------------------------------

LITERALS = [
    ("'abc'", String("abc")),
    ("'it\\'s'", String("it's")),
    ("'back\\\\slash'", String("back\\slash")),
    ("'50\\%'", String("50\\%")),  # LIKE escapes stay for the LIKE translation
    ("''", String("")),
    ("42", Number(42)),
    ("-42", Number(-42)),
    ("-42.3", Number(Decimal("-42.3"))),
    ("1.5e3", Number(Decimal("1.5e3"))),
    ("#2024-01-01#", Date(dt.date(2024, 1, 1))),
    ("#2002/02/01#", Date(dt.date(2002, 2, 1))),
    ("#2021-07-07T10:03:33.332Z#", DateTime(dt.datetime(2021, 7, 7, 10, 3, 33, 332000))),
    ("#2021-07-07 10:03:33#", DateTime(dt.datetime(2021, 7, 7, 10, 3, 33))),
    ("#2021-07-07 10:03#", DateTime(dt.datetime(2021, 7, 7, 10, 3))),
    ("#2021-07-07T12:03:33+02:00#", DateTime(dt.datetime(2021, 7, 7, 10, 3, 33))),
    ("true", Boolean(True)),
    ("FALSE", Boolean(False)),
    ("True", Boolean(True)),
    ("NULL", Null()),
    ("$(loginId)", Variable("loginId")),
    ("$(vars/@x)", Variable("vars/@x")),
    ("$long(../@owner-id)", Variable("../@owner-id", "long")),
    ("$date(vars/@when)", Variable("vars/@when", "date")),
    ("$String(name)", Variable("name", "string")),
]


@pytest.mark.parametrize(("text", "expected"), LITERALS, ids=[p[0] for p in LITERALS])
def test_literals(text: str, expected: A.Node) -> None:
    assert parse(text) == expected


def test_numbers_keep_int_and_decimal_apart() -> None:
    integer, decimal = parse("42"), parse("42.0")
    assert isinstance(integer, Number) and isinstance(decimal, Number)
    assert integer.is_integer and type(integer.value) is int
    assert not decimal.is_integer and type(decimal.value) is Decimal


def test_string_raw_text_is_kept() -> None:
    node = parse("'a\\'b'")
    assert isinstance(node, String) and node.raw == "a\\'b" and node.value == "a'b"


def test_double_quotes_are_not_strings() -> None:
    # No public Campaign example uses double quotes: refuse rather than guess.
    with pytest.raises(ExpressionError, match="Unexpected character '\"' at offset 5"):
        parse('@a = "x"')


# -- operators and precedence ---------------------------------------------------------------------

a, b, c, d = attr("a"), attr("b"), attr("c"), attr("d")
OPERATORS = [
    ("@a = @b", Binary("=", a, b)),
    ("@a == @b", Binary("=", a, b)),
    ("@a <> @b", Binary("<>", a, b)),
    ("@a != @b", Binary("<>", a, b)),
    ("@a < @b", Binary("<", a, b)),
    ("@a <= @b", Binary("<=", a, b)),
    ("@a > @b", Binary(">", a, b)),
    ("@a >= @b", Binary(">=", a, b)),
    ("@a + @b - @c", Binary("-", Binary("+", a, b), c)),
    ("@a * @b / @c", Binary("/", Binary("*", a, b), c)),
    ("@a + @b * @c", Binary("+", a, Binary("*", b, c))),
    ("(@a + @b) * @c", Binary("*", Binary("+", a, b), c)),
    ("-@a * @b", Binary("*", Unary("-", a), b)),
    ("@a - -1", Binary("-", a, Number(-1))),
    ("@a like 'x%'", Like(a, String("x%"))),
    ("@a NOT LIKE 'x%'", Like(a, String("x%"), negated=True)),
    ("@a In (1, 2)", In(a, (Number(1), Number(2)))),
    ("@a not in ('x')", In(a, (String("x"),), negated=True)),
    ("@a IS NULL", IsNull(a)),
    ("@a is not null", IsNull(a, negated=True)),
    ("@a = 1 AND @b = 2", Binary("AND", Binary("=", a, Number(1)), Binary("=", b, Number(2)))),
    ("@a = 1 or @b = 2 and @c = 3",
     Binary("OR", Binary("=", a, Number(1)), Binary("AND", Binary("=", b, Number(2)), Binary("=", c, Number(3))))),
    ("(@a = 1 Or @b = 2) And @c = 3",
     Binary("AND", Binary("OR", Binary("=", a, Number(1)), Binary("=", b, Number(2))), Binary("=", c, Number(3)))),
    ("NOT @a = 1", Unary("NOT", Binary("=", a, Number(1)))),
    ("not @a and @b", Binary("AND", Unary("NOT", a), b)),
    ("NOT NOT @a", Unary("NOT", Unary("NOT", a))),
    ("@a + 1 = @b * 2", Binary("=", Binary("+", a, Number(1)), Binary("*", b, Number(2)))),
    ("@a LIKE @b + '%'", Like(a, Binary("+", b, String("%")))),
    ("@a = 1 AND NOT @b IS NULL", Binary("AND", Binary("=", a, Number(1)), Unary("NOT", IsNull(b)))),
    ("@shared = true", Binary("=", attr("shared"), Boolean(True))),
    ("$(login)=='admin'", Binary("=", Variable("login"), String("admin"))),
    ("[@job-id]=[../job/@id]", Binary("=", attr("job-id"), path(UP, el("job"), at("id")))),
    ("[@group-id]=$long(../@owner-id)", Binary("=", attr("group-id"), Variable("../@owner-id", "long"))),
    ("@lastModified >= #2021-07-07T10:03:33.332Z#",
     Binary(">=", attr("lastModified"), DateTime(dt.datetime(2021, 7, 7, 10, 3, 33, 332000)))),
]


@pytest.mark.parametrize(("text", "expected"), OPERATORS, ids=[p[0] for p in OPERATORS])
def test_operators(text: str, expected: A.Node) -> None:
    assert parse(text) == expected


def test_operator_text_is_kept() -> None:
    node = parse("@a != 1")
    assert isinstance(node, Binary) and node.op == "<>" and node.op_text == "!="


def test_logical_chains_are_balanced() -> None:
    terms = [f"@a = {i}" for i in range(1000)]
    node = parse(" OR ".join(terms))
    assert node.height <= 12  # log2(1000) + comparison + path
    assert [n.value for n in walk(node) if isinstance(n, Number)] == list(range(1000))  # order kept


# -- functions --------------------------------------------------------------------------------------

FUNCTION_FORMS = [
    ("GetDate()", FunctionCall("GetDate")),
    ("countall()", FunctionCall("countall")),
    ("count([newsgroup/@id])", FunctionCall("count", (path(el("newsgroup"), at("id")),))),
    ("Iif(@blackList!=0, 1, 0)", FunctionCall("Iif", (Binary("<>", attr("blackList"), Number(0)), Number(1), Number(0)))),
    ("Case(When(@a=1, 'x'), Else('y'))",
     FunctionCall("Case", (FunctionCall("When", (Binary("=", a, Number(1)), String("x"))),
                           FunctionCall("Else", (String("y"),))))),
    ("RowNum(PartitionBy(@a), OrderBy(Desc(@b)))",
     FunctionCall("RowNum", (FunctionCall("PartitionBy", (a,)), FunctionCall("OrderBy", (FunctionCall("Desc", (b,)),))))),
    ("HasNamedRight('admin') AND HasPackage('nms:social')",
     Binary("AND", FunctionCall("HasNamedRight", (String("admin"),)), FunctionCall("HasPackage", (String("nms:social"),)))),
    ("Sum (@x)", FunctionCall("Sum", (attr("x"),))),
    ("@expirationDate >= GetDate()", Binary(">=", attr("expirationDate"), FunctionCall("GetDate"))),
    ("count(@email)>1", Binary(">", FunctionCall("count", (attr("email"),)), Number(1))),
    ("@name LIKE 'a' + Char('36') + '%'",  # SDK escapeForLike output
     Like(attr("name"), Binary("+", Binary("+", String("a"), FunctionCall("Char", (String("36"),))), String("%")))),
]


@pytest.mark.parametrize(("text", "expected"), FUNCTION_FORMS, ids=[p[0] for p in FUNCTION_FORMS])
def test_function_calls(text: str, expected: A.Node) -> None:
    assert parse(text) == expected


def test_function_names_are_case_insensitive_but_kept_as_written() -> None:
    node = parse("LOWER(@a)")
    assert isinstance(node, FunctionCall) and node.name == "LOWER"
    assert parse("lower(@a)") != node  # name as written is part of the tree


def test_unknown_functions_can_be_left_to_the_caller() -> None:
    assert parse("Foo(1)", check_functions=False) == FunctionCall("Foo", (Number(1),))


# -- helpers ------------------------------------------------------------------------------------------


def test_walk_paths_and_functions() -> None:
    node = parse("Lower([folder/@name]) = 'x' AND group[@label = @y]/@z IN (@a, [../@b])")
    kinds = [type(n).__name__ for n in walk(node)]
    assert kinds[:4] == ["Binary", "Binary", "FunctionCall", "Path"]
    assert [p.raw for p in paths(node)] == ["[folder/@name]", "group[@label = @y]/@z", "@a", "[../@b]"]
    inner = [p.raw for p in paths(node, include_predicates=True)]
    assert inner == ["[folder/@name]", "group[@label = @y]/@z", "@label", "@y", "@a", "[../@b]"]
    assert [f.name for f in calls(node)] == ["Lower"]


def test_offsets() -> None:
    node = parse("@a = 'x' AND Lower( @b ) LIKE 'y'")
    assert isinstance(node, Binary)
    left, right = node.left, node.right
    assert isinstance(left, Binary) and isinstance(right, Like)
    assert (left.offset, left.left.offset, left.right.offset) == (0, 0, 5)
    assert isinstance(right.operand, FunctionCall)
    assert (right.offset, right.operand.offset, right.operand.args[0].offset, right.pattern.offset) == (13, 13, 20, 30)


FORMAT_CASES = [
    "@a = 1 AND (@b = 2 OR @c = 3)",
    "NOT (@a = 1 AND @b = 2)",
    "(@a = 1) = (@b = 2)",
    "-(@a + @b) * 2 - -3",
    "@a - (@b - @c)",
    "[folder/@name] LIKE 'x\\'y%' + @s",
    "Iif(@x IS NOT NULL, $long(vars/@n), #2024-01-02T03:04:05Z#)",
    "(@a OR @b) OR (@c OR @d)",
    "[nms:recipient:r:group[1]/@label] NOT IN ('a', 'b')",
]


@pytest.mark.parametrize("text", FORMAT_CASES)
def test_format_round_trip(text: str) -> None:
    node = parse(text)
    assert parse(format_expression(node)) == node


# -- errors -------------------------------------------------------------------------------------------

ERRORS = [
    ("@a = (1 + 2))", "Unexpected token ')' at offset 12"),
    ("@a = 'abc", "Unterminated string starting at offset 5"),
    ("(@a = 1", "Unexpected end of expression (expected ')') at offset 7"),
    ("@a =", "Unexpected end of expression at offset 4"),
    ("", "Empty expression at offset 0"),
    ("@a = 1 = 2", "Unexpected token '=' at offset 7"),
    ("@a IS 1", "Unexpected token '1' at offset 6 (expected NULL)"),
    ("@a IN ()", "Unexpected token ')' at offset 7"),
    ("Foo(@a)", "Function 'Foo' unknown at offset 0"),
    ("Left(@a)", "Function 'Left' expects 2 argument(s), got 1 at offset 0"),
    ("Iif(1, 2, 3, 4)", "Function 'Iif' expects 3 argument(s), got 4 at offset 0"),
    ("@a = #2024-13-01#", "Invalid date literal '#2024-13-01#' at offset 5"),
    ("@a = #2024-01-01", "Unterminated date literal starting at offset 5"),
    ("[folder/@name", "Missing ']' to close path at offset 13"),
    ("[@a/b]", "Unexpected token '/' at offset 3 (expected ']' after an attribute)"),
    ("[a/../@b]", "'..' is only allowed at the start of a path at offset 3"),
    ("[..]", "A path cannot end with '..' at offset 3"),
    ("@a ]", "Unexpected character ']' at offset 3"),
    ("@", "Expected an attribute name after '@' at offset 0"),
    ("$(a b)", "Invalid variable name at offset 3"),
    ("$(", "Unterminated variable reference starting at offset 0"),
    ("$x", "Invalid variable reference, expected '$(name)' or '$type(name)' at offset 0"),
    ("$foo(a)", "Unknown variable type 'foo' at offset 0"),
    ("group[0]", "Collection index must be 1 or more at offset 5"),
    ("99999999999999999999", "Number out of range '99999999999999999999' at offset 0"),
    ("1e999", "Number out of range '1e999' at offset 0"),
    ("12abc", "Invalid number '12a' at offset 0"),
    ("@a ; @b", "Unexpected character ';' at offset 3"),
    ("@a = 'x' \x00", "Invalid character U+0000 at offset 9"),
    ("@a = 'x\x07'", "Invalid character U+0007 at offset 7"),
]


@pytest.mark.parametrize(("text", "detail"), ERRORS, ids=[e[1] for e in ERRORS])
def test_errors(text: str, detail: str) -> None:
    with pytest.raises(ExpressionError) as info:
        parse(text)
    err = info.value
    assert err.detail == detail
    assert err.code == "XTK-170036"
    assert str(err).splitlines()[-1].startswith("XTK-170036 Unable to parse expression '")
    assert str(err).splitlines()[0] == detail
    assert err.offset is not None and 0 <= err.offset <= len(text)


def test_error_message_format() -> None:
    with pytest.raises(ExpressionError) as info:
        parse("@a = (1 + 2))")
    assert str(info.value) == (
        "Unexpected token ')' at offset 12\nXTK-170036 Unable to parse expression '@a = (1 + 2))'."
    )
    assert info.value.lines == str(info.value).splitlines()


# -- hostile input ------------------------------------------------------------------------------------

INJECTIONS = [
    "@email = 'a' OR 1=1 --",
    "@email = ''; DROP TABLE x; --'",
    "@email = '\\'; DROP TABLE x; --",
    "@email = 'x' UNION SELECT 1",
    "@email = 'x'; DELETE FROM NmsRecipient",
    "@email = 'x' /* comment */",
    "[SQLDATA[SELECT 1]]",
]


@pytest.mark.parametrize("text", INJECTIONS)
def test_quote_breaking_is_refused(text: str) -> None:
    with pytest.raises(ExpressionError):
        parse(text)


def test_escaped_quotes_stay_inside_the_literal() -> None:
    node = parse("@email = 'a\\' OR 1=1 --'")
    assert node == Binary("=", attr("email"), String("a' OR 1=1 --"))
    node = parse("@email = '\\'; DROP TABLE x; --'")
    assert node == Binary("=", attr("email"), String("'; DROP TABLE x; --"))


def test_huge_expression_is_refused_before_parsing() -> None:
    text = "@a = '" + "x" * (10 * 1024 * 1024) + "'"
    with pytest.raises(ExpressionError) as info:
        parse(text)
    assert "Expression too long" in info.value.detail
    assert len(str(info.value)) < 500  # the echo is cut


def test_length_limit_is_configurable() -> None:
    parse("@a = 1", max_length=6)
    with pytest.raises(ExpressionError, match="too long"):
        parse("@a = 1", max_length=5)


@pytest.mark.parametrize("depth", [65, 1000, 10_000])
def test_deep_parentheses_are_refused(depth: int) -> None:
    with pytest.raises(ExpressionError, match="nesting too deep"):
        parse("(" * depth + "1" + ")" * depth)


@pytest.mark.parametrize(
    "text",
    [
        "NOT " * 10_000 + "@a",
        "-" * 10_000 + "1",
        "Lower(" * 5_000 + "@a" + ")" * 5_000,
        "[a[" * 3_000 + "1" + "]]" * 3_000,
        "@a IN (" * 3_000 + "1" + ")" * 3_000,
        " + ".join(["1"] * 5_000),
    ],
    ids=["not", "minus", "calls", "predicates", "in-lists", "long-sum"],
)
def test_other_deep_forms_are_refused(text: str) -> None:
    with pytest.raises(ExpressionError):
        parse(text)


def test_depth_limit_is_configurable() -> None:
    text = "(" * 10 + "1" + ")" * 10
    parse(text, max_depth=11)
    with pytest.raises(ExpressionError, match="maximum 5"):
        parse(text, max_depth=5)
    with pytest.raises(ValueError):
        parse(text, max_depth=100_000)


def test_token_limit() -> None:
    text = " + ".join(["@a"] * 40)
    parse(text, max_tokens=200)
    with pytest.raises(ExpressionError, match=r"Too many tokens \(maximum 50\)"):
        parse(text, max_tokens=50)


def test_nul_bytes_are_refused_and_not_echoed_raw() -> None:
    with pytest.raises(ExpressionError) as info:
        parse("@a = '\x00'")
    assert "\x00" not in str(info.value)
    assert "\\x00" in str(info.value)


def test_non_string_input() -> None:
    with pytest.raises(ExpressionError):
        parse(b"@a")  # type: ignore[arg-type]


# -- property tests -----------------------------------------------------------------------------------

XTK_ALPHABET = list("@[]/()'\\,#$=<>!+-*._: \t\nabcANDORNOTLIKEISNULLtrue0123456789") + ["AND", "OR", "IN", "(", ")"]


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.text(max_size=200))
def test_random_text_parses_or_raises_expression_error(text: str) -> None:
    try:
        node = parse(text)
    except ExpressionError as err:
        assert err.detail and err.code == "XTK-170036"
        return
    assert parse(format_expression(node)) == node


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(XTK_ALPHABET), max_size=60).map("".join))
def test_xtk_like_text_parses_or_raises_expression_error(text: str) -> None:
    try:
        node = parse(text)
    except ExpressionError:
        return
    assert parse(format_expression(node)) == node


_names = st.from_regex(r"[a-z][A-Za-z0-9_]{0,6}", fullmatch=True).filter(
    lambda s: s.upper() not in {"AND", "OR", "NOT", "LIKE", "IN", "IS", "NULL", "TRUE", "FALSE"}
)
_leaves = st.one_of(
    _names.map(attr),
    _names.map(lambda n: path(el(n), at("x"))),
    st.integers(-(2**63) + 1, 2**63 - 1).map(Number),
    st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-10**6, max_value=10**6).map(Number),
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=8).map(String),
    st.booleans().map(Boolean),
    st.just(Null()),
    st.dates(min_value=dt.date(1, 1, 1)).map(Date),
    _names.map(Variable),
)


def _extend(children: st.SearchStrategy[A.Node]) -> st.SearchStrategy[A.Node]:
    ops = st.sampled_from(["=", "<>", "<", "<=", ">", ">=", "+", "-", "*", "/", "AND", "OR"])
    non_number = children.filter(lambda n: not isinstance(n, Number))
    return st.one_of(
        st.builds(Binary, ops, children, children),
        st.builds(Unary, st.just("NOT"), children),
        st.builds(Unary, st.just("-"), non_number),
        st.builds(Like, children, children, st.booleans()),
        st.builds(In, children, st.lists(children, min_size=1, max_size=3).map(tuple), st.booleans()),
        st.builds(IsNull, children, st.booleans()),
        st.builds(FunctionCall, st.sampled_from(["Lower", "Iif", "Coalesce"]), st.lists(children, max_size=3).map(tuple)),
    )


@settings(max_examples=500, deadline=None)
@given(st.recursive(_leaves, _extend, max_leaves=12))
def test_format_then_parse_gives_the_same_tree(node: A.Node) -> None:
    assert parse(format_expression(node), check_functions=False) == node
