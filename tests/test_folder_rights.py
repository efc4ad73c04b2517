"""Folder rights: records of folders an operator may not read are invisible; writing or deleting
them needs the write or delete right on the folder (before and after the change)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from opencampaign.context import CallContext
from opencampaign.instance import Instance
from opencampaign.query.errors import DataApiError
from opencampaign.query.persist import delete_collection
from opencampaign.query.querydef import execute_query
from opencampaign.query.write import write, write_collection
from opencampaign.security import folders
from opencampaign.security.operators import Operators

ADMIN = CallContext(login="admin", login_id=1, rights=frozenset({"admin"}))


@pytest.fixture
def setup(tmp_path: Path, backend_env: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(folders, "CACHE_SECONDS", 0.0)  # see rights changes at once
    instance = Instance.open(tmp_path / "inst", environ=backend_env)
    instance.init(environ=backend_env)
    storage, registry = instance.storage, instance.registry
    ids = storage.sequences.next_ids("XtkNewId", 3)
    folder_table = storage.table("xtk:folder")
    with storage.write(storage.home("xtk:folder")) as conn:
        for folder_id, name in zip(ids, ("shared", "secret", "open"), strict=True):
            conn.execute(sa.insert(folder_table).values(iFolderId=folder_id, sName=name, sLabel=name))
    shared, secret, opened = ids
    ops = Operators(storage)
    bob = ops.create("bob", "pw", groups=["deliveryOperators"]).context()
    group_id = next(g for g, name in ops.load("bob").groups if name == "deliveryOperators")
    grant = storage.table("xtk:folderAccess")
    with storage.write(storage.home("xtk:folderAccess")) as conn:
        rows = [{"iFolderAccessId": i, "iFolderId": f, "iGroupId": g, "iRead": 1, "iWrite": w, "iDelete": 0}
                for i, f, g, w in zip(storage.sequences.next_ids("XtkNewId", 2), (shared, secret), (group_id, 999), (1, 1),
                                      strict=True)]
        conn.execute(sa.insert(grant), rows)
    from opencampaign.storage.replication import replicate

    replicate(storage)
    docs = "".join(f'<recipient email="{name}@example.com" folder-id="{fid}"/>'
                   for name, fid in (("a", shared), ("b", secret), ("c", opened)))
    write_collection(storage, registry, f'<recipient-collection xtkschema="nms:recipient">{docs}</recipient-collection>',
                     ADMIN)
    yield instance, bob, shared, secret, opened
    instance.close()


def _emails(instance: Instance, ctx: CallContext) -> list[str]:
    out = execute_query(instance.storage, instance.registry,
                        '<queryDef schema="nms:recipient" operation="select"><select><node expr="@email"/></select>'
                        '<orderBy><node expr="@email"/></orderBy></queryDef>', ctx)
    return [r.get("email") for r in out]


def test_records_of_unreadable_folders_are_invisible(setup):
    instance, bob, _shared, _secret, _opened = setup
    assert _emails(instance, ADMIN) == ["a@example.com", "b@example.com", "c@example.com"]
    assert _emails(instance, bob) == ["a@example.com", "c@example.com"]
    count = execute_query(instance.storage, instance.registry,
                          '<queryDef schema="nms:recipient" operation="count"/>', bob)
    assert count.get("count") == "2"
    missing = execute_query(instance.storage, instance.registry,
                            '<queryDef schema="nms:recipient" operation="getIfExists"><select><node expr="@email"/>'
                            "</select><where><condition expr=\"@email = 'b@example.com'\"/></where></queryDef>", bob)
    assert missing.get("email") is None


def test_writes_need_the_write_right_on_both_folders(setup):
    instance, bob, shared, secret, _opened = setup
    storage, registry = instance.storage, instance.registry
    write(storage, registry, f'<recipient xtkschema="nms:recipient" email="new@example.com" folder-id="{shared}"/>', bob)
    with pytest.raises(DataApiError, match="folder rights"):
        write(storage, registry, f'<recipient xtkschema="nms:recipient" email="x@example.com" folder-id="{secret}"/>',
              bob)
    with pytest.raises(DataApiError, match="folder rights"):  # moving a record out of a folder bob cannot write
        write(storage, registry, f'<recipient xtkschema="nms:recipient" _key="@email" email="b@example.com" '
              f'folder-id="{shared}"/>', bob)
    with pytest.raises(DataApiError, match="folder rights"):  # no delete right on 'shared'
        write(storage, registry, '<recipient xtkschema="nms:recipient" _key="@email" email="a@example.com" '
              '_operation="delete"/>', bob)
    assert "x@example.com" not in _emails(instance, ADMIN)
    with pytest.raises(DataApiError, match="folder rights"):  # DeleteCollection checks the same rights
        delete_collection(storage, registry, "nms:recipient", None, False, bob)
    assert len(_emails(instance, ADMIN)) == 4
    assert delete_collection(storage, registry, "nms:recipient", None, False, ADMIN) >= 3  # admins may do anything
