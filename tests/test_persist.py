"""NewInstance, GetNewIds, DeleteCollection, Duplicate, and the XML memo merge."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from opencampaign.instance import Instance
from opencampaign.query import persist, xmldata
from opencampaign.query.errors import DataApiError
from opencampaign.schema.registry import load_registry

from .conftest import CUSTOM_SCHEMAS
from .test_write import CTX, error_of, folder_id, make_instance, rows, w


@pytest.fixture
def inst(tmp_path: Path, backend_env: dict[str, str]) -> Iterator[Instance]:
    yield from make_instance(tmp_path, backend_env)


def test_new_instance_fills_defaults_and_id(inst: Instance):
    doc = persist.new_instance(inst.storage, inst.registry, '<recipient xtkschema="nms:recipient" email="n@x.org"/>',
                               CTX)
    assert doc.tag == "recipient" and doc.get("_operation") == "insert" and doc.get("xtkschema") == "nms:recipient"
    assert int(doc.get("id")) >= 1000 and doc.get("email") == "n@x.org"
    assert doc.get("folder-id") == str(folder_id(inst, "nmsRootRecipient"))
    assert doc.get("created", "").endswith("Z") and doc.get("createdBy-id") == "1234"
    assert doc.get("gender") == "0"  # enumeration default 'unknown'
    again = persist.new_instance(inst.storage, inst.registry, {"xtkschema": "nms:recipient"}, CTX)
    assert again.get("id") != doc.get("id")
    w(inst, doc)  # NewInstance then Write: the id announced is the id stored
    assert rows(inst, "nms:recipient", "iRecipientId", "sEmail") == [(int(doc.get("id")), "n@x.org")]
    operator = persist.new_instance(inst.storage, inst.registry, '<operator xtkschema="xtk:operator"/>', CTX)
    assert operator.find("access").get("authenticationType") == "native" and operator.get("locale") == "en"
    with pytest.raises(DataApiError):
        persist.new_instance(inst.storage, inst.registry, '<x xtkschema="no:such"/>', CTX)


def test_get_new_ids(inst: Instance):
    ids = persist.get_new_ids(inst.storage, 5)
    assert len(set(ids)) == 5 and min(ids) >= 1000
    ex = persist.get_new_ids(inst.storage, 3, "NmsRecipientId")
    assert len(set(ex)) == 3
    w(inst, f'<recipient xtkschema="nms:recipient" id="{ex[0]}" email="pre@x.org"/>')
    assert rows(inst, "nms:recipient", "iRecipientId") == [(ex[0],)]
    for bad in (-1, 10**9):
        assert error_of(lambda b=bad: persist.get_new_ids(inst.storage, b)).code == "XSV-350026"
    assert error_of(lambda: persist.get_new_ids(inst.storage, 1, "x'; DROP")).code == "XSV-350026"


def test_delete_collection(inst: Instance):
    w(inst, '<service xtkschema="nms:service" name="news"/>')
    for i in range(5):
        w(inst, f'<recipient xtkschema="nms:recipient" email="d{i}@{"adobe.com" if i % 2 else "x.org"}">'
                '<subscription><service name="news" _operation="none"/></subscription></recipient>')
    where = '<where><condition expr="GetEmailDomain(@email)=\'adobe.com\'"/></where>'
    assert persist.delete_collection(inst.storage, inst.registry, "nms:recipient", where, False, CTX) == 2
    assert rows(inst, "nms:recipient", "sEmail") == [("d0@x.org",), ("d2@x.org",), ("d4@x.org",)]
    assert len(rows(inst, "nms:subscription", "iRecipientId")) == 3  # own: subscriptions went with them
    one = '<condition expr="@email = \'d0@x.org\'"/>'
    assert persist.delete_collection(inst.storage, inst.registry, "nms:recipient", one, True, CTX) == 1
    err = error_of(lambda: persist.delete_collection(inst.storage, inst.registry, "nms:recipient",
                                                     '<where><condition expr="@nope = 1"/></where>', False, CTX))
    assert err.code == "XSV-350025" and "nope" in "\n".join(err.lines)
    # define integrity: a folder holding recipients cannot go; normal: FKs are reset
    err = error_of(lambda: persist.delete_collection(inst.storage, inst.registry, "xtk:folder",
                                                     '<condition expr="@name=\'nmsRootRecipient\'"/>', False, CTX))
    assert "integrity 'define'" in err.detail_chain[0]
    w(inst, '<profile xtkschema="tst:profile" code="P1"><folder name="tmp" _operation="insert"/></profile>')
    assert persist.delete_collection(inst.storage, inst.registry, "xtk:folder", '<condition expr="@name=\'tmp\'"/>',
                                     False, CTX) == 1
    assert rows(inst, "tst:profile", "iFolderId") == [(0,)]
    # the id-0 row is never deleted, whatever the condition
    assert persist.delete_collection(inst.storage, inst.registry, "tst:profile", None, True, CTX) == 1
    assert rows(inst, "tst:profile", "iProfileId") == []


def test_duplicate_copies_owncopy_members(inst: Instance):
    w(inst, '<profile xtkschema="tst:profile" code="ORIG" level="low" note="kept"><prefs color="blue"/></profile>')
    (pid,), = rows(inst, "tst:profile", "iProfileId")
    for label in ("l1", "l2"):
        w(inst, f'<line xtkschema="tst:line" label="{label}" profile-id="{pid}"/>')
    doc = persist.duplicate(inst.storage, inst.registry, "tst:profile", f"tst:profile|{pid}", CTX)
    assert doc.get("_operation") == "insert" and doc.get("xtkschema") == "tst:profile"
    assert doc.get("id") != str(pid) and doc.get("code") == "P"  # defOnDuplicate default re-applied
    assert doc.get("note") == "kept" and doc.find("prefs").get("color") == "blue"
    assert sorted(m.get("label") for m in doc.findall("line")) == ["l1", "l2"]
    assert rows(inst, "tst:profile", "sCode") == [("ORIG",)]  # returned, not saved
    persist.duplicate(inst.storage, inst.registry, "tst:profile", f"tst:profile|{pid}", CTX, save=True)
    assert rows(inst, "tst:profile", "sCode") == [("ORIG",), ("P",)]
    assert len(rows(inst, "tst:line", "sLabel")) == 4
    err = error_of(lambda: persist.duplicate(inst.storage, inst.registry, "tst:profile", "tst:profile|999999", CTX))
    assert "Unable to find document" in err.detail_chain[0]
    assert error_of(lambda: persist.duplicate(inst.storage, inst.registry, "", "nopipe", CTX)).code == "XSV-350026"


def test_parse_primary_key():
    assert persist.parse_primary_key("xtk:operator|1610") == ("xtk:operator", ["1610"])
    assert persist.parse_primary_key(r"xtk:option|a\|b|c") == ("xtk:option", ["a|b", "c"])


# --- the memo, without a database -----------------------------------------------------------------


@pytest.fixture(scope="module")
def folder_schema():
    return load_registry([str(CUSTOM_SCHEMAS)]).get("xtk:folder")


def _memo(text: str) -> etree._Element:
    return etree.fromstring(text)


def test_merge_replaces_collections_unless_every_member_has_an_operation(folder_schema):
    stored = _memo('<folder><where filteringSchema="a"><condition expr="1"/><condition expr="2"/></where></folder>')
    merged = xmldata.merge(folder_schema, stored, _memo('<folder><where><condition expr="3"/></where></folder>'))
    assert [c.get("expr") for c in merged.iter("condition")] == ["3"]
    assert merged.find("where").get("filteringSchema") == "a"
    patch = _memo('<folder><where><condition _operation="insert" expr="4"/>'
                  '<condition _operation="delete" _key="@expr" expr="3"/></where></folder>')
    merged = xmldata.merge(folder_schema, merged, patch)
    assert [c.get("expr") for c in merged.iter("condition")] == ["4"]
    free = xmldata.merge(folder_schema, merged, _memo('<folder><data><x a="1"/></data></folder>'))
    free = xmldata.merge(folder_schema, free, _memo('<folder><data><y/></data></folder>'))
    assert [c.tag for c in free.find("data")] == ["y"]  # ANY content is replaced whole


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20),
                max_size=6))
def test_memo_round_trip_keeps_any_text(folder_schema, values):
    patch = etree.Element("folder")
    where = etree.SubElement(patch, "where")
    for value in values:
        etree.SubElement(where, "condition", expr=value)
    text = xmldata.write_memo(xmldata.merge(folder_schema, None, patch))
    back = xmldata.read_memo(text)
    assert [c.get("expr") for c in back.iter("condition")] == values if back is not None else values == []
