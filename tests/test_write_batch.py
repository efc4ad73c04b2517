"""The WriteCollection batch path (query/write_batch.py) against the general path: the same
document, from the same stored state, must leave the same rows (and draw as many ids) or fail
with the same fault, on every deployment shape."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from opencampaign.context import CallContext
from opencampaign.instance import Instance
from opencampaign.query import write as write_module
from opencampaign.query import write_batch
from opencampaign.query.errors import DataApiError
from opencampaign.query.write_exec import Repeat, Statement
from opencampaign.query.write_fields import _EMPTY, UNSET
from opencampaign.query.write_plan import Plan

from .conftest import CUSTOM_SCHEMAS
from .test_write import TEST_SCHEMAS, folder_id, w

CTX = CallContext(login="admin", login_id=1234, rights=frozenset({"admin"}))
SETUP = CallContext(login="setup", login_id=7, rights=frozenset({"admin"}))  # rows stored before: other author
NOW = datetime(2024, 5, 6, 7, 8, 9, 123000)

BATCH_SCHEMAS = {
    # no autopk: the key is the primary key; defaults of every kind, a link default, a nested element
    "code.xml": """
<srcSchema name="code" namespace="tst" label="Codes" labelSingular="Code">
  <enumeration name="level" basetype="string" default="low"><value name="low" value="L"/><value name="high" value="H"/></enumeration>
  <element name="code">
    <key name="code" internal="true"><keyfield xpath="@code"/></key>
    <attribute name="code" type="string" length="16"/>
    <attribute name="label" type="string" length="32" default="'none'"/>
    <attribute name="level" type="string" length="1" enum="level"/>
    <attribute name="token" type="string" length="36" default="NewUUID()"/>
    <attribute name="rank" type="long" default="5"/>
    <attribute name="valid" type="date"/>
    <attribute name="created" type="datetime" default="GetDate()"/>
    <attribute name="lastModified" type="datetime" default="GetDate()"/>
    <element name="folder" type="link" target="xtk:folder" revLink="code" default="DefaultFolder('nmsService')"/>
    <element name="extra"><attribute name="note" type="string" length="20"/></element>
  </element>
</srcSchema>""",
    "ticket.xml": """
<srcSchema name="ticket" namespace="tst" label="Tickets" labelSingular="Ticket">
  <element name="ticket" autopk="true" autouuid="true">
    <key name="ref"><keyfield xpath="@ref"/></key>
    <attribute name="ref" type="string" length="16"/>
    <attribute name="qty" type="long"/>
  </element>
</srcSchema>""",
}


@pytest.fixture(autouse=True)
def _no_silent_fallback(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """A batch-path bug falls back to the general path in production (and is logged): here it fails."""
    yield
    assert not [r for r in caplog.records if r.name == write_batch.__name__], caplog.text


@pytest.fixture
def inst(tmp_path: Path, backend_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Instance]:
    monkeypatch.setattr("opencampaign.query.write_plan.now_ms", lambda: NOW)  # both paths stamp the same time
    schemas = tmp_path / "tst"
    schemas.mkdir()
    for name, text in {**TEST_SCHEMAS, **BATCH_SCHEMAS}.items():
        (schemas / name).write_text(text)
    instance = Instance.open(tmp_path / "inst", schema_dirs=[str(CUSTOM_SCHEMAS), str(schemas)], environ=backend_env)
    instance.init(environ=backend_env)
    w(instance, '<folder xtkschema="xtk:folder" name="nmsRootRecipient" label="Recipients"/>')
    w(instance, '<folder xtkschema="xtk:folder" name="nmsService" label="Services"/>')
    yield instance
    instance.close()


# --- running one document through each path -----------------------------------------------------


def snapshot(inst: Instance, schema_id: str) -> list[dict[str, Any]]:
    table = inst.storage.table(schema_id)
    with inst.storage.engine_for(schema_id).connect() as conn:
        keys = [c.key for c in table.columns]  # keys, not physical names (lower-cased on PostgreSQL)
        return [dict(zip(keys, r, strict=True)) for r in conn.execute(sa.select(*table.columns))]


def restore(inst: Instance, schema_id: str, records: list[dict[str, Any]]) -> None:
    table = inst.storage.table(schema_id)
    with inst.storage.write(inst.storage.home(schema_id)) as conn:
        conn.execute(sa.delete(table))
        if records:
            conn.execute(sa.insert(table), records)


def next_id(inst: Instance, schema_id: str) -> int:
    return inst.storage.sequences.next_id(inst.registry.get(schema_id).pk_sequence or "XtkNewId")


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def normalized(inst: Instance, schema_id: str, before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[str]:
    """Rows with the ids drawn by the write replaced by their rank (both paths draw them in
    document order) and per-row random values (NewUUID(), password hashes) by a marker."""
    pk = inst.registry.get(schema_id).attribute("@id")
    column = pk.sqlname if pk is not None else None
    old = {r[column] for r in before} if column else set()
    new = sorted((r[column] for r in after if column and r[column] not in old), key=str)
    rank = {v: f"<new {i}>" for i, v in enumerate(new)}

    def value(key: str, v: Any) -> Any:
        if key == column and v in rank:
            return "<new>" if isinstance(v, str) else rank[v]
        if isinstance(v, str) and (_UUID.fullmatch(v) or v.startswith("$argon2")):
            return "<random>"
        return v

    return sorted(repr(sorted((k, value(k, v)) for k, v in r.items())) for r in after)


def run(inst: Instance, document: str, ctx: CallContext, *, general: bool,
        monkeypatch: pytest.MonkeyPatch) -> tuple[tuple | None, bool]:
    taken: list[bool] = []
    real = write_module.write_batch

    def spy(*args: Any) -> bool:
        result = False if general else real(*args)
        taken.append(result)
        return result

    with monkeypatch.context() as patch:
        patch.setattr(write_module, "write_batch", spy)
        try:
            write_module.write_collection(inst.storage, inst.registry, document, ctx)
            failure = None
        except DataApiError as exc:
            failure = (exc.code, exc.message, exc.detail_chain, exc.client)
    return failure, bool(taken and taken[0])


def compare(inst: Instance, monkeypatch: pytest.MonkeyPatch, schema_id: str, document: str, *, batch: bool,
            ctx: CallContext = CTX) -> tuple | None:
    """Write `document` with the general path, put the table back, write it with the batch
    path; both must agree. `batch`: whether the batch path is expected to take the document.
    The table is left as the batch path wrote it."""
    before = snapshot(inst, schema_id)
    first = next_id(inst, schema_id)
    general_failure, _ = run(inst, document, ctx, general=True, monkeypatch=monkeypatch)
    general_rows = snapshot(inst, schema_id)
    second = next_id(inst, schema_id)
    restore(inst, schema_id, before)
    batch_failure, taken = run(inst, document, ctx, general=False, monkeypatch=monkeypatch)
    batch_rows = snapshot(inst, schema_id)
    third = next_id(inst, schema_id)
    assert batch_failure == general_failure
    assert taken is batch
    assert normalized(inst, schema_id, before, batch_rows) == normalized(inst, schema_id, before, general_rows)
    if batch and general_failure is None:
        assert third - second == second - first  # the same ids reserved
    return general_failure


def collection(schema: str, items: str) -> str:
    return f'<{schema.split(":")[1]}-collection xtkschema="{schema}">{items}</{schema.split(":")[1]}-collection>'


# --- recipients: reconciliation by _key ------------------------------------------------------------


def test_recipients_mixed_inserts_updates_and_duplicates(inst: Instance, monkeypatch: pytest.MonkeyPatch):
    w(inst, '<recipient xtkschema="nms:recipient" _key="@email" email="a@x.org" firstName="A" lastName="Old"/>', SETUP)
    w(inst, '<recipient xtkschema="nms:recipient" _key="@email" email="b@x.org" firstName="B"/>', SETUP)
    for name in ("First", "Second"):  # a non-unique key stored twice: the lowest id is updated
        w(inst, f'<recipient xtkschema="nms:recipient" _operation="insert" email="dup@x.org" firstName="{name}"/>', SETUP)
    items = (
        '<recipient _key="@email" email="a@x.org" lastName="New" gender="female" birthDate="1980/02/03">'
        '<location city="Paris" zipCode="75001"/></recipient>'
        '<!-- a comment between items -->'
        '<recipient _key="@email" email="n1@x.org" firstName="N1" gender="1"/>'
        '<recipient _key="@email" email="dup@x.org" lastName="Lowest"/>'
        '<recipient _key="@email" email="n1@x.org" lastName="Merged" firstName=""/>'  # the insert above, patched
        '<recipient _key="@email" email="b@x.org"/>'  # the key only: nothing written, no lastModified
        '<recipient _key="@email" _operation="update" email="missing@x.org" firstName="M"/>'  # no-op
        '<recipient _key="@email" _operation="update" email="b@x.org" lastName="Upd" domain="ignored.org"/>'
        '<recipient _key="@email" _operation="insert" email="a@x.org" firstName="Another A"/>'  # non-unique: inserts
        '<recipient _key="@email" email="n2@x.org" lastModified="2001-02-03 04:05:06.000Z" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="x"><folder/></recipient>'
        '<recipient _key="@email" email="a@x.org" firstName="Twice"/>'  # the row updated first, again
        '<recipient email="noid@x.org" gender=""/>'  # no key at all: autopk insert
    )
    compare(inst, monkeypatch, "nms:recipient", collection("nms:recipient", items), batch=True)
    # the second pass of the same document only updates
    compare(inst, monkeypatch, "nms:recipient", collection("nms:recipient", items), batch=True)


def test_recipients_by_id_and_first_key(inst: Instance, monkeypatch: pytest.MonkeyPatch):
    w(inst, '<recipient xtkschema="nms:recipient" email="i@x.org" firstName="I"/>', SETUP)
    (rid,), = [(r["iRecipientId"],) for r in snapshot(inst, "nms:recipient") if r["sEmail"] == "i@x.org"]
    items = (f'<recipient id="{rid}" lastName="ById"/>'
             '<recipient id="0" email="zero@x.org"/>'  # id 0 means no id: insert
             f'<recipient id="{rid}" firstName="Again"/>'
             '<recipient email="plain@x.org"/>')
    compare(inst, monkeypatch, "nms:recipient", collection("nms:recipient", items), batch=True)


def test_same_faults(inst: Instance, monkeypatch: pytest.MonkeyPatch):
    """Invalid values, missing keys, unknown names: the batch path steps aside and the general
    path's fault (message, element path) is what the caller gets; nothing is written."""
    w(inst, '<recipient xtkschema="nms:recipient" _key="@email" email="a@x.org"/>', SETUP)
    good = '<recipient _key="@email" email="ok{}@x.org" gender="1"/>'
    cases = {
        'gender="nope"': "is not valid for the 'nms:recipient:gender' enumeration",
        'birthDate="yesterday"': "@birthDate",
        'email=""': "Unable to find key values",
        'nickname="x"': "Attribute 'nickname' unknown",
        'loyaltyPoints="abc"': "not an integer",
        'email="' + "e" * 129 + '"': "too long (129 characters, at most 128)",
        '_operation="merge"': "Invalid value 'merge' for attribute '_operation'",
    }
    for bad, expected in cases.items():
        base = '<recipient _key="@email" email="bad@x.org" ' if "email=" not in bad else '<recipient _key="@email" '
        items = good.format(1) + base + bad + "/>" + good.format(2)
        failure = compare(inst, monkeypatch, "nms:recipient", collection("nms:recipient", items), batch=False)
        assert failure is not None and expected in failure[2][0] and "recipient[2]" in failure[2][1], failure
    failure = compare(inst, monkeypatch, "nms:recipient", collection("nms:recipient", good.format(1) + "<service/>"),
                      batch=False)
    assert failure is not None and "Element 'service' unknown" in failure[2][0]
    failure = compare(inst, monkeypatch, "nms:recipient",
                      collection("nms:recipient", good.format(1) + '<recipient email="x@x.org"><x/></recipient>'),
                      batch=False)
    assert failure is not None and "Element 'x' unknown" in failure[2][0]
    assert sorted(r["sEmail"] for r in snapshot(inst, "nms:recipient") if r["iRecipientId"]) == ["a@x.org"]


def test_items_of_one_layout_with_other_operations_and_layouts_alternating(inst: Instance,
                                                                            monkeypatch: pytest.MonkeyPatch):
    """Items with the same attribute names but another `_operation` (or `_key`), layouts that
    alternate, attributes in another order, comments and processing instructions in and between
    items: the batch path groups them and decides in document order, as the general path."""
    w(inst, '<recipient xtkschema="nms:recipient" _key="@email" email="a@x.org" firstName="A"/>', SETUP)
    w(inst, '<recipient xtkschema="nms:recipient" _key="@email" email="b@x.org" firstName="B"/>', SETUP)
    items = (
        '<recipient _key="@email" _operation="update" email="a@x.org" firstName="A1"/>'
        '<recipient _key="@email" _operation="insertOrUpdate" email="c@x.org" firstName="C1"/>'
        '<recipient _key="@email" _operation="update" email="missing@x.org" firstName="M"/>'  # no-op
        '<recipient _key="@email" _operation="insert" email="a@x.org" firstName="Another A"/>'
        '<?pi data?><recipient _key="@email" _operation="insertOrUpdate" email="b@x.org" firstName="B1">'
        '<location city="X"/><!-- c --></recipient>'
        '<recipient _key="@email" _operation="insert" email="d@x.org" firstName="D"/>'
        '<recipient _operation="insertOrUpdate" _key="@email" firstName="E" email="e@x.org"/>'
        '<recipient _key="@email" _operation="insertOrUpdate" email="f@x.org" firstName="F"><location city="Y"/>'
        '</recipient>'
        '<recipient email="g@x.org" firstName="G"/>'  # no _key: the first complete key (none): insert
        '<recipient _key="@email" _operation="insertOrUpdate" email="h@x.org" firstName="H"/>'
    )
    compare(inst, monkeypatch, "nms:recipient", collection("nms:recipient", items), batch=True)
    compare(inst, monkeypatch, "nms:recipient", collection("nms:recipient", items), batch=True)  # all stored now
    # a key repeated further on: decided item by item
    repeated = items + '<recipient _key="@email" _operation="update" email="c@x.org" lastName="C2"/>'
    compare(inst, monkeypatch, "nms:recipient", collection("nms:recipient", repeated.replace("@x.org", "@y.org")),
            batch=True)
    # the same names with another `_key`: items reconciled on different keys go to the general path
    other = ('<recipient _key="@email" email="k1@x.org" lastName="K"/>'
             '<recipient _key="@lastName" email="k2@x.org" lastName="K"/>')
    compare(inst, monkeypatch, "nms:recipient", collection("nms:recipient", other), batch=False)


def test_documents_the_batch_path_leaves_to_the_general_one(inst: Instance, monkeypatch: pytest.MonkeyPatch):
    w(inst, '<folder xtkschema="xtk:folder" name="vip" label="VIP"/>', SETUP)
    w(inst, '<service xtkschema="nms:service" name="news"/>', SETUP)
    w(inst, '<recipient xtkschema="nms:recipient" _key="@email" email="del@x.org"/>', SETUP)
    for items in (
        # id="0" beside a `_key` that matches: the row keeps its id (the general path decides)
        '<recipient _key="@email" id="0" email="del@x.org" lastName="Z"/><recipient _key="@email" id="0" email="l0@x.org"/>',
        '<recipient email="l1@x.org"><folder name="vip" _operation="none"/></recipient><recipient email="l2@x.org"/>',
        '<recipient _key="@email" email="del@x.org" _operation="delete"/><recipient email="l3@x.org"/>',
        '<recipient _key="@email" email="s@x.org"><subscription><service name="news" _operation="none"/>'
        '</subscription></recipient><recipient email="l4@x.org"/>',
        '<recipient _key="@email" email="l5@x.org"/><recipient _key="@lastName" email="l6@x.org" lastName="L"/>',
        '<recipient _key="@email" email="l7@x.org"><location city="A"/><location city="B"/></recipient>'
        '<recipient email="l8@x.org"/>',
    ):
        compare(inst, monkeypatch, "nms:recipient", collection("nms:recipient", items), batch=False)
    compare(inst, monkeypatch, "tst:profile",
            collection("tst:profile", '<profile code="P1" note="xml field"/><profile code="P2"/>'), batch=False)


# --- unique keys, defaults, other key kinds ------------------------------------------------------


def test_unique_keys_and_first_complete_key(inst: Instance, monkeypatch: pytest.MonkeyPatch):
    w(inst, '<store xtkschema="cus:store" code="S1" name="One"/>', SETUP)
    mixed = ('<store code="S1" name="Uno" surface="1e3"><address city="Nice"/></store>'
             '<store code="S2" opened="2001/02/03"/><store code="S2" name="Two"/><store code="S3" surface=""/>')
    compare(inst, monkeypatch, "cus:store", collection("cus:store", mixed), batch=True)
    failure = compare(inst, monkeypatch, "cus:store",
                      collection("cus:store", '<store _operation="insert" code="S9"/><store _operation="insert" code="S9"/>'),
                      batch=False)
    assert failure is not None and failure[2][0] == "A 'Store' with the same key 'S9' already exists."
    failure = compare(inst, monkeypatch, "cus:store",
                      collection("cus:store", '<store _operation="insert" code="S8"/><store _operation="insert" code="S1"/>'),
                      batch=False)
    assert failure is not None and failure[2][0] == "A 'Store' with the same key 'S1' already exists."
    # no key at all on an autopk schema: an insert with a new id
    compare(inst, monkeypatch, "cus:store", collection("cus:store", '<store name="nokey"/><store code="S7"/>'), batch=True)
    failure = compare(inst, monkeypatch, "cus:store",
                      collection("cus:store", '<store _key="@code" code="S6"/><store _key="@code" name="x"/>'), batch=False)
    assert failure is not None and "Unable to find key values" in failure[2][0]


def test_defaults_and_keys_without_autopk(inst: Instance, monkeypatch: pytest.MonkeyPatch):
    w(inst, '<code xtkschema="tst:code" code="C1" label="Stored" rank="1"/>', SETUP)
    vip = folder_id(inst, "nmsService")
    items = ('<code code="C1" level="high"><extra note="n"/></code>'
             '<code code="C2"/>'  # every default: label, level (enumeration), token (NewUUID), rank, folder
             f'<code code="C3" folder-id="0" rank="0" label=""/>'  # an empty link takes its default
             f'<code code="C4" folder-id="{vip}" valid="2020-01-02"/>'
             '<code code="C2" label="Merged"/>')
    compare(inst, monkeypatch, "tst:code", collection("tst:code", items), batch=True)
    failure = compare(inst, monkeypatch, "tst:code", collection("tst:code", '<code code="C5"/><code label="x"/>'),
                      batch=False)
    assert failure is not None and "Unable to find key values" in failure[2][0]
    failure = compare(inst, monkeypatch, "tst:code",
                      collection("tst:code", '<code code="C6" level="medium"/><code code="C7"/>'), batch=False)
    assert failure is not None and "'level' enumeration" in failure[2][0] or "enumeration" in failure[2][0]


def test_services_folders_and_uuid_keys(inst: Instance, monkeypatch: pytest.MonkeyPatch):
    compare(inst, monkeypatch, "nms:service",
            collection("nms:service", '<service name="a" label="A"/><service name="b" mode="1"/><service name="a" label="AA"/>'),
            batch=True)
    compare(inst, monkeypatch, "tst:ticket",
            collection("tst:ticket", '<ticket ref="T1" qty="1"/><ticket ref="T2"/><ticket ref="T1" qty="3"/>'), batch=True)
    compare(inst, monkeypatch, "tst:ticket", collection("tst:ticket", '<ticket ref="T1" qty="4"/><ticket ref="T3"/>'),
            batch=True)


def test_operators_passwords_and_write_access(inst: Instance, monkeypatch: pytest.MonkeyPatch):
    items = '<operator name="op1"><access password="a"/></operator><operator name="op2" label="Two"/>'
    compare(inst, monkeypatch, "xtk:operator", collection("xtk:operator", items), batch=True)
    user = CallContext(login="user", login_id=55, rights=frozenset())
    failure = compare(inst, monkeypatch, "xtk:operator", collection("xtk:operator", items), ctx=user, batch=False)
    assert failure is not None and "access filter 'writeAccess'" in failure[2][0]


def test_large_collection_and_both_passes(inst: Instance, monkeypatch: pytest.MonkeyPatch):
    """Over one lookup chunk and one id block, with a repeated key every 97 items."""
    items = "".join(f'<recipient _key="@email" email="u{i % 1200 if i % 97 else 5}@x.org" firstName="F{i}" '
                    f'gender="{i % 3}" birthDate="1980-01-{1 + i % 28:02d}"><location city="C{i % 7}"/></recipient>'
                    for i in range(1300))
    compare(inst, monkeypatch, "nms:recipient", collection("nms:recipient", items), batch=True)
    compare(inst, monkeypatch, "nms:recipient", collection("nms:recipient", items.replace('firstName="F', 'lastName="L')),
            batch=True)


def test_folder_rights_leave_batches_to_the_general_path(inst: Instance, monkeypatch: pytest.MonkeyPatch):
    from opencampaign.security import folders
    from opencampaign.security.operators import Operators

    monkeypatch.setattr(folders, "CACHE_SECONDS", 0.0)
    storage = inst.storage
    w(inst, '<folder xtkschema="xtk:folder" name="secret" label="Secret"/>', SETUP)
    secret = folder_id(inst, "secret")
    bob = Operators(storage).create("bob", "pw", groups=["deliveryOperators"]).context()
    grant = storage.table("xtk:folderAccess")
    with storage.write(storage.home("xtk:folderAccess")) as conn:
        conn.execute(sa.insert(grant).values(iFolderAccessId=storage.sequences.next_id("XtkNewId"), iFolderId=secret,
                                             iGroupId=999, iRead=1, iWrite=1, iDelete=0))
    from opencampaign.storage.replication import replicate

    replicate(storage)
    items = f'<recipient email="b1@x.org"/><recipient email="b2@x.org" folder-id="{secret}"/>'
    failure = compare(inst, monkeypatch, "nms:recipient", collection("nms:recipient", items), ctx=bob, batch=False)
    assert failure is not None and "folder rights" in failure[2][0]
    compare(inst, monkeypatch, "nms:recipient", collection("nms:recipient", items), batch=True)  # admin


# --- pieces ------------------------------------------------------------------------------------------


def _reference_apply_insert(defaults: Any, schema: Any, values: dict[str, Any]) -> None:
    """Defaults.apply_insert as it was before insert_defaults (one rule after the other)."""
    defaults.apply_audit(schema, values, insert=True)
    for attr, expr, _on_duplicate, link_fk in defaults.rules(schema):
        name = attr.sqlname or ""
        if values.get(name) not in _EMPTY if link_fk else name in values:
            continue
        value = defaults.db_value(expr, attr) if expr else UNSET
        if value is not UNSET:
            values[name] = value


@pytest.mark.parametrize("backend_env", ["single-sqlite"], indirect=True)
def test_insert_defaults_match_the_rule_by_rule_evaluation(inst: Instance):
    with Plan(inst.storage, inst.registry, CTX) as plan:
        for schema in inst.registry:
            if not schema.has_table:
                continue
            columns = [a.sqlname for a in schema.sql_attributes() if a.sqlname]
            links = [c for _a, _e, _d, fk in plan.defaults.rules(schema) if fk for c in [_a.sqlname]]
            samples: list[dict[str, Any]] = [{}, dict.fromkeys(columns, 1), {c: 1 for c in columns[::2]},
                                             {c: 1 for c in columns[1::3]}]
            samples += [{c: 0 for c in links}, {c: 7 for c in links}]
            for sample in samples:
                expected, got = dict(sample), dict(sample)
                _reference_apply_insert(plan.defaults, schema, expected)
                plan.defaults.apply_insert(schema, got)
                random = {k for k, v in expected.items() if isinstance(v, str) and _UUID.fullmatch(v)}
                assert {k: v for k, v in got.items() if k not in random} == \
                       {k: v for k, v in expected.items() if k not in random}, schema.id
                assert set(got) == set(expected), schema.id


def test_statement_rows_round_trip():
    for kind, rows in (("insert", [{"a": 1, "b": 2}, {"a": 3, "b": 4}]),
                       ("update", [{"k_id": 1, "v_a": "x", "v_b": None}]),
                       ("delete", [{"id": 5}, {"id": 6}])):
        statement = Statement(kind, None, "local", None, ["id"] if kind != "insert" else ["a"], rows=rows)  # type: ignore[arg-type]
        assert statement.params is not None and len(statement.params) == len(rows)
        copy = Statement(kind, None, "local", None, statement.pks, columns=statement.columns,  # type: ignore[arg-type]
                         params=statement.params)
        assert copy.dict_rows() == rows
    insert = Statement("insert", None, "local", None, ["a"], rows=[{"a": 1, "b": 2}])  # type: ignore[arg-type]
    assert insert.keys() == [(1,)]


def test_repeat_columns():
    column = Repeat("x", 5)
    assert len(column) == 5 and list(column) == ["x"] * 5 and column[4] == "x" and column[-5] == "x"
    assert list(column[1:3]) == ["x", "x"] and isinstance(column[1:3], Repeat)
    with pytest.raises(IndexError):
        column[5]  # noqa: B018
    statement = Statement("insert", None, "local", None, ["a"], columns=["a", "b"],  # type: ignore[arg-type]
                          data=[[1, 2, 3], Repeat(None, 3)])
    assert statement.row_params() == [(1, None), (2, None), (3, None)] and statement.keys() == [(1,), (2,), (3,)]


def test_sqlite_multi_row_update():
    """Updates on SQLite run as UPDATE ... FROM (VALUES ...): columns repeated for every row are
    bound once, composite keys are matched on every column, other rows are left alone."""
    from opencampaign.query.write_exec import SQLITE_VALUES_ROWS, run_statement

    engine = sa.create_engine("sqlite://")
    table = sa.Table("t", sa.MetaData(), sa.Column("a", sa.Integer), sa.Column("b", sa.String),
                     sa.Column("x", sa.String), sa.Column("d", sa.Date), sa.Column("n", sa.Integer))
    count = SQLITE_VALUES_ROWS * 2 + 3
    rows = [{"a": i % 7, "b": str(i), "x": "old", "d": None, "n": 0} for i in range(count)]
    keys = [(i % 7, str(i)) for i in range(0, count, 2)]  # every other row
    with engine.begin() as conn:
        table.create(conn)
        conn.execute(sa.insert(table), rows)
        statement = Statement("update", None, "local", table, ["a", "b"], columns=["x", "d", "n"],  # type: ignore[arg-type]
                              data=[[f"new{k[1]}" for k in keys], Repeat(NOW.date(), len(keys)),
                                    [int(k[1]) for k in keys], [k[0] for k in keys], [k[1] for k in keys]])
        run_statement(conn, statement)
        stored = {r.b: (r.x, r.d, r.n) for r in conn.execute(sa.select(table))}
    assert len(stored) == count
    for i in range(count):
        expected = (f"new{i}", NOW.date(), i) if i % 2 == 0 else ("old", None, 0)
        assert stored[str(i)] == expected, i


def test_min_items():
    assert write_batch.MIN_ITEMS >= 2  # a single Write keeps the general path


@pytest.mark.parametrize("backend_env", ["single-sqlite"], indirect=True)
def test_a_batch_path_bug_falls_back_to_the_general_path(inst: Instance, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture):
    def broken(*args: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(write_batch._Batch, "lookup", broken)
    write_module.write_collection(inst.storage, inst.registry,
                                  collection("nms:recipient", '<recipient email="f1@x.org"/><recipient email="f2@x.org"/>'),
                                  CTX)
    assert sorted(r["sEmail"] for r in snapshot(inst, "nms:recipient") if r["iRecipientId"]) == ["f1@x.org", "f2@x.org"]
    assert "batch path failed" in caplog.text
    caplog.clear()
