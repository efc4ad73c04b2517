"""The queryDef plan cache and its raw-driver execution, on every deployment shape.

A cached plan runs its SQL on the driver itself (storage.engines.ReadConnections) and shapes rows
without SQLAlchemy: its documents must be byte-identical to the uncached path (SQLAlchemy
execution), for every value type, and stay right across threads, disposed engines and lost
connections. Lifting constants out of documents must never touch anything but integer literals
of `expr` attributes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from lxml import etree

from opencampaign.context import CallContext
from opencampaign.instance import Instance
from opencampaign.query import lifting, querydef
from opencampaign.query.errors import DataApiError
from opencampaign.query.querydef import PLANS, execute_query
from opencampaign.storage.engines import read_connections

try:  # tests/ may or may not be a package
    from .conftest import BACKENDS, PG_AVAILABLE, PgDatabases
    from .test_querydef import RECIPIENTS, TRUSTED, USER, backend_environment, open_instance
except ImportError:
    from conftest import BACKENDS, PG_AVAILABLE, PgDatabases  # type: ignore[no-redef]
    from test_querydef import RECIPIENTS, TRUSTED, USER, backend_environment, open_instance  # type: ignore[no-redef]


@pytest.fixture(scope="module", params=BACKENDS)
def inst(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    dbs = PgDatabases() if PG_AVAILABLE else None
    instance = open_instance(tmp_path_factory.mktemp(request.param), backend_environment(request.param, dbs))
    yield instance
    instance.close()
    if dbs is not None:
        dbs.drop_all()


def q(instance: Instance, document: Any, ctx: CallContext = USER) -> etree._Element:
    return execute_query(instance.storage, instance.registry, document, ctx)


def uncached(instance: Instance, document: Any, ctx: CallContext = USER) -> etree._Element:
    """The same query through SQLAlchemy, planned from the document as sent."""
    return querydef._query(instance.storage, instance.registry, document, ctx, 10000, 65536).run()  # noqa: SLF001


def text(elem: etree._Element) -> str:
    return etree.tostring(elem, encoding="unicode")


def outcome(call: Any) -> str:
    try:
        return text(call())
    except DataApiError as exc:
        return f"{exc.code} {exc.client} {exc}"


def last_plan() -> querydef._Plan:
    return next(reversed(PLANS._entries.values()))  # noqa: SLF001


GET = ('<queryDef schema="nms:recipient" operation="get"><select><node expr="@id"/><node expr="@email"/>'
       '<node expr="@firstName"/></select><where><condition expr="@id = {id}"/></where></queryDef>')

DOCUMENTS = [
    # every stored field of the row: datetimes, dates, memo with characters to escape and replace
    '<queryDef schema="nms:recipient" operation="select"><orderBy><node expr="@id"/></orderBy></queryDef>',
    '<queryDef schema="nms:recipient" operation="select" lineCount="3" startLine="2"><select><node expr="@id"/>'
    '<node expr="@email"/><node expr="[folder/@label]"/><node expr="[folder/@name]"/><node expr="location/@city"/>'
    '<node expr="[store/@name]" alias="@storeName"/><node expr="[folder/parent/@label]"/></select>'
    '<orderBy><node expr="@id"/></orderBy></queryDef>',
    '<queryDef schema="nms:recipient" operation="get"><select><node expr="@id"/><node expr="folder"/>'
    '<node expr="store" noComputeString="true"/></select><where><condition expr="@id=1001"/></where></queryDef>',
    '<queryDef schema="nms:recipient" operation="get"><select><node expr="@birthDate"/><node expr="@created"/>'
    '<node expr="@blackList"/><node expr="@loyaltyPoints / 8" alias="@ratio"/><node expr="@id &gt; 1000" alias="@big"/>'
    '<node expr="@company"/></select><where><condition expr="@id = 1001"/></where></queryDef>',
    '<queryDef schema="nms:recipient" operation="select"><select><node expr="@id"/><node expr="@gender" analyze="true"/>'
    '<node expr="@loyaltyTier" analyze="true"/></select><where><condition expr="@gender = \'female\'"/></where>'
    '<orderBy><node expr="@id"/></orderBy></queryDef>',
    '<queryDef schema="nms:recipient" operation="select"><select><node expr="@company"/>'
    '<node expr="@company" alias="info/@company"/><node expr="@id" alias="a/b/@id"/></select>'
    '<orderBy><node expr="@id"/></orderBy></queryDef>',
    '<queryDef schema="xtk:folder" operation="select"><select><node expr="@name"/>'
    '<node expr="[where/@filteringSchema]"/></select><orderBy><node expr="@id"/></orderBy></queryDef>',
    '<queryDef schema="nms:recipient" operation="select"><select><node expr="@gender"/>'
    '<node expr="Count(@id)" alias="@count"/><node expr="Sum(@loyaltyPoints)" alias="@points"/>'
    '<node expr="Avg(@loyaltyPoints)" alias="@avg"/><node expr="Max(@birthDate)" alias="@youngest"/></select>'
    '<groupBy><node expr="@gender"/></groupBy><having><condition expr="Count(@id) &gt; 1"/></having>'
    '<orderBy><node expr="@gender"/></orderBy></queryDef>',
    '<queryDef schema="nms:recipient" operation="select" distinct="true"><select><node expr="@lastName"/></select>'
    '<where><condition expr="@gender = 1"/></where><orderBy><node expr="@lastName"/></orderBy></queryDef>',
    '<queryDef schema="nms:recipient" operation="count"><where><condition expr="@loyaltyPoints &gt;= $(minPoints)"/>'
    '<condition expr="[folder/@name] = \'vip\'" boolOperator="OR"/><condition expr="@id &lt; 1003"/></where></queryDef>',
    '<queryDef schema="nms:recipient" operation="count"><groupBy><node expr="location/@city"/></groupBy></queryDef>',
    '<queryDef schema="nms:recipient" operation="getIfExists"><select><node expr="@id"/></select>'
    '<where><condition expr="@id = 999999"/></where></queryDef>',
    '<queryDef schema="nms:recipient" operation="get"><select><node expr="@id"/></select>'
    '<where><condition expr="@id = 999999"/></where></queryDef>',
    '<queryDef schema="nms:recipient" operation="select"><select><node expr="@id"/>'
    '<node expr="Year(@birthDate) + 1" alias="@y"/><node expr="Lower(@lastName) + \'-\' + @firstName" alias="@n"/>'
    '<node expr="HasNamedRight(\'delivery\')" alias="@right"/></select>'
    '<where><condition expr="@id IN (1001, 1003, 1005)"/></where><orderBy><node expr="@birthDate" sortDesc="true"/>'
    '</orderBy></queryDef>',
    '<queryDef schema="nms:recipient" operation="select"><select><node expr="@id"/></select><where>'
    '<condition expr="subscription" setOperator="EXISTS"><condition expr="@origin = \'web\'"/></condition>'
    '</where><orderBy><node expr="@id"/></orderBy></queryDef>',
]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_cached_plans_give_the_documents_of_the_uncached_path(inst: Instance, document: str) -> None:
    expected = outcome(lambda: uncached(inst, document))
    PLANS.clear()
    assert outcome(lambda: q(inst, document)) == expected  # planned, then run raw
    assert outcome(lambda: q(inst, document)) == expected  # cached
    assert outcome(lambda: q(inst, etree.fromstring(document))) == expected  # as an element (SOAP)
    assert len(PLANS) == 1 and last_plan().runner is not None  # the raw path ran


def test_constants_are_rebound_on_one_plan_and_never_in_the_sql(inst: Instance) -> None:
    PLANS.clear()
    for row in RECIPIENTS:
        rid = row["iRecipientId"]
        out = q(inst, GET.format(id=rid))
        assert (out.get("id"), out.get("email"), out.get("firstName")) == \
            (str(rid), row["sEmail"] or "", row["sFirstName"])
    assert len(PLANS) == 1 and PLANS.hits == len(RECIPIENTS) - 1
    runner = last_plan().runner
    assert runner is not None and "1008" not in runner.sql and "1001" not in runner.sql


def test_only_integer_literals_of_expr_attributes_are_lifted() -> None:
    lifted = lifting.lift_constants(
        '<queryDef schema="nms:recipient" operation="select" lineCount="10"><select>'
        '<node expr="@field1 + 2" alias="@x3"/><node expr="\'a4\' + Substring(@email, 5, 6)"/></select>'
        '<where><condition expr="@created &gt;= #2024-01-03# AND @id &lt;&gt; 7 AND @points = 8.5"/>'
        '<condition expr=\'@email = &apos;x expr="9"&apos;\'/></where></queryDef>')
    assert lifted is not None
    assert lifted.values == [2, 5, 6, 7]
    canonical = lifted.canonical()
    assert 'lineCount="10"' in canonical and "@field1 + $(__oc_lift_0)" in canonical and 'alias="@x3"' in canonical
    assert "'a4' + Substring(@email, $(__oc_lift_1), $(__oc_lift_2))" in canonical
    assert "#2024-01-03#" in canonical and "@id &lt;&gt; $(__oc_lift_3)" in canonical and "8.5" in canonical
    assert 'x expr="9"' in canonical  # inside a string of another expression: not an attribute
    # the same skeleton with other digits: same shape, the non-lifted runs stay in the key
    other = lifting.lift_constants(
        '<queryDef schema="nms:recipient" operation="select" lineCount="20"><select>'
        '<node expr="@field1 + 3" alias="@x3"/><node expr="\'a4\' + Substring(@email, 5, 6)"/></select>'
        '<where><condition expr="@created &gt;= #2024-01-03# AND @id &lt;&gt; 7 AND @points = 8.5"/>'
        '<condition expr=\'@email = &apos;x expr="9"&apos;\'/></where></queryDef>')
    assert other is not None and other.values == [3, 5, 6, 7] and other.key != lifted.key
    for refused in ('<queryDef expr="$(__oc_lift_0)"/>', '<queryDef schema="&#110;ms:recipient"/>'):
        assert lifting.lift_constants(refused) is None


def test_numbers_in_strings_of_other_attributes_keep_their_value(inst: Instance) -> None:
    # `expr="5"` inside a string of a single-quoted expr: lifting it would change the string
    doc = ('<queryDef schema="nms:recipient" operation="get"><select>'
           '<node expr=\'&apos;x expr="{n}"&apos;\' alias="@v"/><node expr="@id"/></select>'
           '<where><condition expr="@id = {id}"/></where></queryDef>')
    PLANS.clear()
    assert q(inst, doc.format(n=5, id=1001)).get("v") == 'x expr="5"'
    assert q(inst, doc.format(n=6, id=1002)).attrib == {"v": 'x expr="6"', "id": "1002"}
    assert q(inst, doc.format(n=6, id=1003)).attrib == {"v": 'x expr="6"', "id": "1003"}
    assert len(PLANS) == 2


def test_long_and_zero_constants(inst: Instance) -> None:
    PLANS.clear()
    for rid in ("1234567890123456789012", "00001002", "0", "1002", "9223372036854775807"):
        doc = GET.replace("get", "getIfExists", 1).format(id=rid)
        assert outcome(lambda doc=doc: q(inst, doc)) == outcome(lambda doc=doc: uncached(inst, doc))


def test_database_errors_match_the_uncached_path(inst: Instance) -> None:
    # a run-time conversion error on PostgreSQL and DuckDB (SQLite converts silently)
    doc = ('<queryDef schema="nms:recipient" operation="select"><select><node expr="@id"/></select><where>'
           '<condition sql="CAST(\'x\' || \'y\' AS INTEGER) = 1"/><condition expr="@id = 1001"/></where></queryDef>')
    expected = outcome(lambda: uncached(inst, doc, TRUSTED))
    PLANS.clear()
    assert outcome(lambda: q(inst, doc, TRUSTED)) == expected
    assert outcome(lambda: q(inst, doc, TRUSTED)) == expected
    assert last_plan().runner is not None  # the database's refusal, not a fallback to SQLAlchemy
    assert text(q(inst, GET.format(id=1003), TRUSTED)).startswith('<recipient id="1003"')  # connections still fine


def test_threads_share_plans_not_connections(inst: Instance) -> None:
    PLANS.clear()
    emails = {row["iRecipientId"]: row["sEmail"] or "" for row in RECIPIENTS}
    failures: list[str] = []

    def work(seed: int) -> None:
        try:
            for n in range(60):
                rid = 1001 + (seed * 7 + n) % len(RECIPIENTS)
                out = q(inst, GET.format(id=rid))
                if out.get("email") != emails[rid]:
                    failures.append(f"{rid}: {out.get('email')}")
                count = q(inst, f'<queryDef schema="nms:recipient" operation="count"><where>'
                                f'<condition expr="@id &lt;= {rid}"/></where></queryDef>')
                if count.get("count") != str(rid - 1000):
                    failures.append(f"count {rid}: {count.get('count')}")
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(repr(exc))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(PLANS) == 2


def test_disposed_engines_and_lost_connections(inst: Instance) -> None:
    storage = inst.storage
    engine = storage.engine(storage.home("nms:recipient"))
    reads = read_connections(engine)
    assert reads is not None
    assert q(inst, GET.format(id=1001)).get("id") == "1001"
    assert len(reads) >= 1
    engine.dispose()  # idle connections are closed with the pool
    assert len(reads) == 0
    assert q(inst, GET.format(id=1002)).get("id") == "1002"
    assert len(reads) >= 1
    for raw in list(reads._idle):  # noqa: SLF001 - a server restart: every idle connection is dead
        raw.dbapi.close()
    assert q(inst, GET.format(id=1003)).get("id") == "1003"  # retried through SQLAlchemy
    assert q(inst, GET.format(id=1004)).get("id") == "1004"
    assert last_plan().runner is not None  # the raw path is still in use
