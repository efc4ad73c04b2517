"""The schema-aware expression compiler: SQL shape, binding, refusals, and identical results on
SQLite, DuckDB and PostgreSQL for random well-typed conditions (hypothesis)."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from opencampaign.context import CallContext
from opencampaign.instance import Instance
from opencampaign.query.compile_expr import ExprCompiler, QueryScope, Statement
from opencampaign.query.errors import DataApiError
from opencampaign.query.querydef import execute_query
from opencampaign.storage.replication import replicate

try:  # tests/ may or may not be a package
    from .conftest import PG_AVAILABLE, PgDatabases
except ImportError:
    from conftest import PG_AVAILABLE, PgDatabases  # type: ignore[no-redef]

CUSTOM_SCHEMAS = Path(__file__).parent / "fixtures" / "schemas" / "custom"
CTX = CallContext(login="jdoe", login_id=7, variables={"n": "42", "name": "x'y"})
EXTRA_SCHEMAS = {
    # calculated fields that refer to each other
    "cyclic.xml": """<srcSchema name="cyclic" namespace="cus" label="Cycles">
  <element name="cyclic" autopk="true">
    <attribute name="a" type="long" expr="@b + 1"/>
    <attribute name="b" type="long" expr="@c"/>
    <attribute name="c" type="long" expr="@a"/>
    <attribute name="ok" type="long" expr="@id * 2"/>
  </element>
</srcSchema>""",
    # text elements: one in its own column, one in the XML memo; an XML attribute
    "note.xml": """<srcSchema name="note" namespace="cus" label="Notes">
  <element name="note" autopk="true">
    <attribute name="title" type="string" length="64"/>
    <attribute name="tag" type="string" xml="true"/>
    <element name="body" type="memo"/>
    <element name="extra" type="memo" xml="true"/>
    <element name="meta" xml="true"><attribute name="source" type="string"/></element>
  </element>
</srcSchema>""",
    # a local table linking to a cloud-only one: not replicated, so its queries cannot join
    "localref.xml": """<srcSchema name="localRef" namespace="cus" label="Local references">
  <element name="localRef" autopk="true" dataSource="local">
    <attribute name="label" type="string" length="64"/>
    <element name="store" type="link" target="cus:store" revLink="_NONE_"/>
  </element>
</srcSchema>""",
}


def make_instance(path: Path, env: dict[str, str]) -> Instance:
    extra = path / "schemas"
    extra.mkdir(parents=True, exist_ok=True)
    for name, text in EXTRA_SCHEMAS.items():
        (extra / name).write_text(text)
    env = {"OPENCAMPAIGN_ADMIN_PASSWORD": "test-admin-password", **env}
    instance = Instance.open(path / "data", schema_dirs=[str(CUSTOM_SCHEMAS), str(extra)], environ=env)
    instance.init(environ=env)
    return instance


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    """Embedded deployment: SQLite local + DuckDB cloud."""
    instance = make_instance(tmp_path_factory.mktemp("split"), {})
    yield instance
    instance.close()


def compiler_for(instance: Instance, schema_id: str, ctx: CallContext = CTX) -> tuple[ExprCompiler, QueryScope]:
    storage = instance.storage
    statement = Statement(storage, instance.registry, ctx, storage.home(schema_id))
    return ExprCompiler(statement), QueryScope(statement, instance.registry.get(schema_id))


def sql_of(instance: Instance, schema_id: str, expr: str) -> tuple[str, dict[str, Any]]:
    compiler, scope = compiler_for(instance, schema_id)
    where = compiler.condition(expr, scope)
    statement = sa.select(sa.literal(1)).select_from(scope.from_clause()).where(where)
    compiled = statement.compile(dialect=instance.storage.engine(scope.statement.role).dialect)
    return str(compiled), dict(compiled.params)


def refusal(instance: Instance, schema_id: str, expr: str) -> DataApiError:
    with pytest.raises(DataApiError) as info:
        sql_of(instance, schema_id, expr)
    return info.value


# -- SQL shape -----------------------------------------------------------------------------------


def test_constants_are_bound_never_inlined(split: Instance) -> None:
    sql, params = sql_of(split, "nms:recipient", "@email = 'x\\' OR 1=1 --' AND @lastName = $(name)")
    assert "OR 1=1" not in sql and "x'y" not in sql
    assert sorted(v for v in params.values() if isinstance(v, str)) == ["x' OR 1=1 --", "x'y"]
    sql, params = sql_of(split, "nms:recipient", "@loyaltyPoints > 12345 AND @birthDate < #2001-02-03#")
    assert "12345" not in sql and "2001" not in sql
    assert 12345 in params.values() and dt.date(2001, 2, 3) in params.values()


def test_link_hops_join_once_and_outer_join_when_external(split: Instance) -> None:
    sql, _ = sql_of(split, "nms:recipient", "[folder/@name] = 'a' AND [folder/@label] = 'b' OR [folder/parent/@name] = 'c'")
    assert sql.count("JOIN") == 2 and "LEFT OUTER JOIN" not in sql
    sql, _ = sql_of(split, "nms:recipient", "[country/@label] = 'France'")
    assert "LEFT OUTER JOIN" in sql and 'sCountryCode" = "R1"."sIsoA2"' in sql


def test_calculated_fields_are_inlined_and_cycles_refused(split: Instance) -> None:
    sql, _ = sql_of(split, "nms:recipient", "@domain = 'example.com'")
    assert "sEmail" in sql
    sql, _ = sql_of(split, "cus:cyclic", "@ok = 4")
    assert "iCyclicId" in sql
    err = refusal(split, "cus:cyclic", "@a = 1")
    assert err.code == "XTK-170036"
    assert "refers to itself" in err.lines[0] and "@a -> @b -> @c -> @a" in err.lines[0]


def test_typed_variables(split: Instance) -> None:
    _, params = sql_of(split, "nms:recipient", "@loyaltyPoints = $long(n) AND @id = $(loginId) AND @email = $(login)")
    assert {42, 7, "jdoe"} <= set(params.values())
    assert refusal(split, "nms:recipient", "@id = $long(name)").lines[0].startswith("Variable 'name'")


def test_foreign_database_links_are_refused(split: Instance, tmp_path: Path) -> None:
    err = refusal(split, "cus:localRef", "[store/@name] = 'Paris'")
    assert err.code == "XTK-170042"
    assert "Stores (cus:store)" in err.message and "local database" in err.message
    single = make_instance(tmp_path, {"OPENCAMPAIGN_SINGLE_DATABASE": "1"})
    try:
        assert "JOIN" in sql_of(single, "cus:localRef", "[store/@name] = 'Paris'")[0]
    finally:
        single.close()


def test_text_elements_and_xml_memo_fields(split: Instance) -> None:
    storage = split.storage
    table = storage.table("cus:note")
    with storage.write(storage.home("cus:note")) as conn:
        conn.execute(sa.insert(table).values(iNoteId=1, sTitle="first", mBody="hello <world>",
                                             mData='<note tag="t1"><extra>more</extra><meta source="crm"/></note>'))
        conn.execute(sa.insert(table).values(iNoteId=2, sTitle="second"))
    doc = ('<queryDef schema="cus:note" operation="select"><select><node expr="@title"/><node expr="body"/>'
           '<node expr="@tag"/><node expr="extra"/><node expr="[meta/@source]"/><node expr="body" alias="@b"/>'
           '</select><orderBy><node expr="@id"/></orderBy></queryDef>')
    out = execute_query(storage, split.registry, doc, CTX)
    assert [etree.tostring(row, encoding="unicode") for row in out] == [
        '<note title="first" tag="t1" b="hello &lt;world&gt;"><body>hello &lt;world&gt;</body><extra>more</extra>'
        '<meta source="crm"/></note>',
        '<note title="second" tag="" b=""><meta source=""/></note>']
    assert refusal(split, "cus:note", "@tag = 't1'").lines[0].startswith("Field '@tag' is stored in XML")
    assert refusal(split, "cus:note", "Length(extra) > 1").code == "XTK-170036"


@pytest.mark.parametrize("expr, detail", [
    ("@nope = 1", "Attribute 'nope' unknown (see definition of schema 'Recipients (nms:recipient)')"),
    ("[location/@nope] = 1", "Attribute 'nope' unknown"),
    ("[folder/@nope] = 1", "Attribute 'nope' unknown (see definition of schema 'Folders (xtk:folder)')"),
    ("@email + 1 = 2", "needs numbers"),
    ("@email > @birthDate", "Cannot compare a value of type 'string' with a value of type 'date'"),
    ("@birthDate = 'yesterday'", "Cannot compare 'date' with the string 'yesterday'"),
    ("-@email = 1", "Unary minus needs a number"),
    ("@email", "A condition is expected"),
    ("@id IN (1, null)", "IN lists cannot contain null"),
    ("@id > null", "Only '=' and '<>' can compare with null"),
    ("location = 1", "is an element, not a value"),
    ("@gender = 'robot'", "enumeration"),
    ("GetMirrorURL(@id) = 'x'", "not available in queries"),
])
def test_refusals(split: Instance, expr: str, detail: str) -> None:
    err = refusal(split, "nms:recipient", expr)
    assert err.code == "XTK-170036" and detail in err.lines[0], err.lines
    assert err.lines[-1] == f"XTK-170036 Unable to parse expression '{expr}'."


# -- identical results on the three engines ------------------------------------------------------

FIRST = ["Ann", "bob", "Carl", "dina", "Eve", "Finn", "Gus", "hal", "Ivy", "Jo", "", "Zoe"]
LAST = ["Martin", "Smith", "martin", "Li", "O'Hara", "Durand", "Ng", "ZZ", "Lee", "Park"]
CITIES = ["Paris", "Lyon", "paris", "New York", None, "Nice", ""]
DOMAINS = ["example.com", "Example.com", "test.net", "mail.org"]


def dataset() -> list[dict[str, Any]]:
    rng = random.Random(20240601)
    rows = []
    for i in range(60):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        email = None if rng.random() < 0.1 else f"{first.lower() or 'x'}.{i}@{rng.choice(DOMAINS)}"
        birth = None if rng.random() < 0.15 else dt.date(1940, 1, 1) + dt.timedelta(days=rng.randrange(0, 25000))
        rows.append({
            "iRecipientId": 2000 + i, "sEmail": email, "sFirstName": first or None, "sLastName": last,
            "iGender": rng.randrange(3), "tsBirthDate": birth, "iLoyaltyPoints": rng.choice([0, 5, 10, 50, 99, 100, 250, 1000]) + i,
            "iLoyaltyTier": rng.randrange(3), "iBlackList": int(rng.random() < 0.2), "sCity": rng.choice(CITIES),
            "iFolderId": rng.choice([0, 10, 11]), "iStoreId": rng.choice([0, 200, 201]),
            "tsCreated": dt.datetime(2023, 1, 1) + dt.timedelta(minutes=rng.randrange(0, 600000)),
        })
    return rows


def seed(instance: Instance) -> None:
    storage = instance.storage
    data = [("xtk:folder", [{"iFolderId": 10, "sName": "root", "sLabel": "Root"},
                            {"iFolderId": 11, "sName": "vip", "sLabel": "VIP", "iParentId": 10}]),
            ("cus:store", [{"iStoreId": 200, "sCode": "P", "sName": "Paris", "dSurface": 120.5},
                           {"iStoreId": 201, "sCode": "L", "sName": "Lyon", "dSurface": 80.0}]),
            ("nms:recipient", dataset())]
    for schema_id, rows in data:
        table = storage.table(schema_id)
        with storage.write(storage.home(schema_id)) as conn:
            for row in rows:
                conn.execute(sa.insert(table).values(row))
    replicate(storage)


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Instance]]:
    """The recipient table in SQLite, in DuckDB, and in PostgreSQL (when reachable)."""
    shapes: dict[str, dict[str, str]] = {"sqlite": {"OPENCAMPAIGN_SINGLE_DATABASE": "1"}, "duckdb": {}}
    dbs = PgDatabases() if PG_AVAILABLE else None
    if dbs is not None:
        shapes["postgresql"] = {"OPENCAMPAIGN_LOCAL_DB": dbs.new(), "OPENCAMPAIGN_SINGLE_DATABASE": "1"}
    instances = {name: make_instance(tmp_path_factory.mktemp(name), env) for name, env in shapes.items()}
    for name, instance in instances.items():
        assert instance.storage.dialect(instance.storage.home("nms:recipient")) == name
        seed(instance)
    yield instances
    for instance in instances.values():
        instance.close()
    if dbs is not None:
        dbs.drop_all()


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


small_int = st.integers(min_value=-5, max_value=1200).map(str)
num_leaf = st.one_of(
    st.sampled_from(["@loyaltyPoints", "@gender", "@id", "@loyaltyTier", "@blackList", "[store/@surface]",
                     "Length(@lastName)", "Year(@birthDate)", "Month(@created)", "Day(@birthDate)"]),
    small_int,
    st.decimals(min_value=-100, max_value=100, places=2, allow_nan=False).map(str),
)
str_leaf = st.one_of(
    st.sampled_from(["@email", "@firstName", "@lastName", "location/@city", "[folder/@name]", "[store/@name]"]),
    st.sampled_from(["", "Paris", "paris", "Martin", "a", "Z", "O'Hara", "x.1@test.net"]).map(_quote),
)
date_leaf = st.one_of(
    st.sampled_from(["@birthDate", "@created"]),
    st.dates(min_value=dt.date(1930, 1, 1), max_value=dt.date(2030, 1, 1)).map(lambda d: f"#{d.isoformat()}#"),
)
comparison = st.sampled_from(["=", "<>", "<", "<=", ">", ">="])
simple_condition = st.tuples(num_leaf, comparison, num_leaf).map(" ".join)


def _numbers(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(inner, st.integers(1, 9)).map(lambda t: f"({t[0]} * {t[1]})"),
        inner.map(lambda n: f"Abs({n})"),
        st.tuples(simple_condition, inner, inner).map(lambda t: f"Iif({t[0]}, {t[1]}, {t[2]})"),
    )


def _strings(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        inner.map(lambda s: f"Lower({s})"),
        inner.map(lambda s: f"Upper({s})"),
        st.tuples(inner, st.integers(0, 6)).map(lambda t: f"Left({t[0]}, {t[1]})"),
        st.tuples(inner, inner).map(lambda t: f"({t[0]} + {t[1]})"),
    )


numbers = st.recursive(num_leaf, _numbers, max_leaves=4)
strings = st.recursive(str_leaf, _strings, max_leaves=3)
dates = st.one_of(
    date_leaf,
    st.tuples(st.sampled_from(["@birthDate", "@created"]), st.integers(-400, 400)).map(lambda t: f"AddDays({t[0]}, {t[1]})"),
)
patterns = st.sampled_from(["%", "a%", "%a%", "%.com", "M%", "_o%", "%@test.net", "%\\_%", "P_ris"]).map(_quote)
atoms = st.one_of(
    st.tuples(numbers, comparison, numbers).map(" ".join),
    st.tuples(strings, comparison, strings).map(" ".join),
    st.tuples(dates, comparison, dates).map(" ".join),
    st.tuples(strings, st.sampled_from(["LIKE", "NOT LIKE"]), patterns).map(" ".join),
    st.tuples(st.sampled_from(["@email", "@birthDate", "location/@city", "@firstName"]),
              st.sampled_from(["IS NULL", "IS NOT NULL"])).map(" ".join),
    st.tuples(numbers, st.lists(small_int, min_size=1, max_size=4)).map(lambda t: f"{t[0]} IN ({', '.join(t[1])})"),
    st.sampled_from(["@blackList = true", "@gender = 'female'", "@loyaltyTier <> 'gold'"]),
)
conditions = st.recursive(atoms, lambda inner: st.one_of(
    inner.map(lambda c: f"NOT ({c})"),
    st.tuples(inner, st.sampled_from(["AND", "OR"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
), max_leaves=4)


def _ids(instance: Instance, expr: str) -> list[int] | str:
    doc = (f'<queryDef schema="nms:recipient" operation="select"><select><node expr="@id"/></select>'
           f'<where><condition expr="{expr.replace("&", "&amp;").replace("<", "&lt;").replace(chr(34), "&quot;")}"/>'
           f'</where></queryDef>')
    try:
        out = execute_query(instance.storage, instance.registry, doc, CTX)
    except DataApiError as err:
        return err.code  # a refusal must be the same everywhere too
    return sorted(int(r.get("id")) for r in out)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(expr=conditions)
def test_same_ids_on_every_engine(engines: dict[str, Instance], expr: str) -> None:
    results = {name: _ids(instance, expr) for name, instance in engines.items()}
    assert len({repr(r) for r in results.values()}) == 1, (expr, results)
    assert not isinstance(results["sqlite"], str), (expr, results)  # well-typed: never refused


def test_engines_agree_on_a_few_known_conditions(engines: dict[str, Instance]) -> None:
    for expr in ["@loyaltyPoints > 100", "@email LIKE '%@Example.com'", "location/@city = ''",
                 "[store/@surface] > 100 AND @gender = 2", "Lower(@lastName) = 'martin'"]:
        results = {name: _ids(instance, expr) for name, instance in engines.items()}
        assert len({repr(r) for r in results.values()}) == 1, (expr, results)
        assert isinstance(results["sqlite"], list) and results["sqlite"], expr
