"""Instances on every deployment shape: tables land in the right database, updatedb is safe."""

from __future__ import annotations

import shutil
from pathlib import Path

import sqlalchemy as sa

from opencampaign.instance import Instance
from opencampaign.security.passwords import verify_password
from opencampaign.storage import migrate
from opencampaign.storage.introspect import introspect
from opencampaign.storage.placement import CLOUD, LOCAL

from .conftest import CUSTOM_SCHEMAS


def _tables(instance: Instance, role: str) -> dict:
    with instance.storage.engine(role).connect() as conn:
        return introspect(conn)


def test_init_creates_every_table_in_its_database(tmp_path: Path, backend_env: dict[str, str]):
    instance = Instance.open(tmp_path / "inst", schema_dirs=[str(CUSTOM_SCHEMAS)], environ=backend_env)
    try:
        report = instance.init(environ=backend_env)
        assert report.admin_created and report.generated_password is None
        storage = instance.storage
        local, cloud = _tables(instance, LOCAL), _tables(instance, CLOUD)
        assert "nmsrecipient" in cloud and "cusstore" in cloud and "xtkoperator" in local
        if not storage.single:
            assert "nmsrecipient" not in local  # customer data stays out of the OLTP database
            assert "xtkworkflow" not in cloud
            assert "xtkfolder" in cloud  # replica of a reference table
        recipient = cloud["nmsrecipient"]
        for column in ("irecipientid", "semail", "ifolderid", "iloyaltypoints", "sCrmId".lower(), "istoreid"):
            assert column in recipient.columns
        assert "nmsrecipient_id" in recipient.indexes
        assert "cusstore_code" in cloud["cusstore"].indexes
        with storage.engine(CLOUD).connect() as conn:
            table = storage.table("nms:recipient")
            assert conn.execute(sa.select(table.c.iRecipientId)).scalars().all() == [0]  # Campaign's empty row
        operator = storage.table("xtk:operator")
        with storage.engine(LOCAL).connect() as conn:
            row = conn.execute(sa.select(operator).where(operator.c.sName == "admin")).one()
        assert verify_password(row.sPassword, "test-admin-password")
        assert not verify_password(row.sPassword, "wrong")
        # A second init has nothing to do and keeps the admin.
        again = instance.init(environ=backend_env)
        assert again.statements == [] and not again.admin_created
    finally:
        instance.close()


def test_updatedb_adds_columns_and_refuses_to_drop_data(tmp_path: Path, backend_env: dict[str, str]):
    schemas = tmp_path / "schemas"
    shutil.copytree(CUSTOM_SCHEMAS, schemas)
    data_dir = tmp_path / "inst"
    instance = Instance.open(data_dir, schema_dirs=[str(schemas)], environ=backend_env)
    instance.init(environ=backend_env)
    store = instance.storage.table("cus:store")
    with instance.storage.write(instance.storage.home("cus:store")) as conn:
        conn.execute(sa.insert(store).values(iStoreId=1001, sCode="PAR1", sName="Paris", dSurface=120.5))
    instance.close()

    store_xml = schemas / "store.xml"
    text = store_xml.read_text()
    text = text.replace('<attribute name="surface" type="double" label="Surface (m2)"/>',
                        '<attribute name="manager" type="string" length="64"/>')
    store_xml.write_text(text)
    instance = Instance.open(data_dir, schema_dirs=[str(schemas)], environ=backend_env)
    try:
        changes = migrate.plan(instance.storage)
        kinds = {(c.kind, c.target.lower()) for c in changes}
        assert ("add_column", "smanager") in kinds
        drop = next(c for c in changes if c.kind == "drop_column")
        assert drop.target.lower() == "dsurface" and drop.blocked and "holds data" in drop.blocked
        migrate.apply(instance.storage, changes)
        columns = _tables(instance, instance.storage.home("cus:store"))["cusstore"].columns
        assert "smanager" in columns and "dsurface" in columns  # data kept
        allowed = migrate.plan(instance.storage, allow_drop=True)
        assert [c.kind for c in allowed] == ["drop_column"] and not allowed[0].blocked
        migrate.apply(instance.storage, allowed)
        assert "dsurface" not in _tables(instance, instance.storage.home("cus:store"))["cusstore"].columns
        assert migrate.plan(instance.storage) == []
    finally:
        instance.close()


def test_removed_schema_table_is_dropped_only_when_empty_or_allowed(tmp_path: Path, backend_env: dict[str, str]):
    schemas = tmp_path / "schemas"
    shutil.copytree(CUSTOM_SCHEMAS, schemas)
    (schemas / "extra.xml").write_text(
        '<srcSchema name="coupon" namespace="cus"><element name="coupon" autopk="true">'
        '<attribute name="code" length="20"/></element></srcSchema>')
    data_dir = tmp_path / "inst"
    instance = Instance.open(data_dir, schema_dirs=[str(schemas)], environ=backend_env)
    instance.init(environ=backend_env)
    instance.close()
    (schemas / "extra.xml").unlink()
    instance = Instance.open(data_dir, schema_dirs=[str(schemas)], environ=backend_env)
    try:
        changes = migrate.plan(instance.storage)
        drop = [c for c in changes if c.kind == "drop_table"]
        # Only the id-0 row is there, but that is still a row: Campaign's empty record counts as data.
        assert len(drop) == 1 and drop[0].table.lower() == "cuscoupon"
        assert drop[0].blocked
        migrate.apply(instance.storage, migrate.plan(instance.storage, allow_drop=True))
        assert "cuscoupon" not in _tables(instance, CLOUD)
    finally:
        instance.close()


def test_sequences_hand_out_unique_ids_across_instances(tmp_path: Path):
    env = {"OPENCAMPAIGN_ADMIN_PASSWORD": "x"}
    first = Instance.open(tmp_path, environ=env)
    first.init(environ=env)
    a = first.storage.sequences.next_ids("XtkNewId", 1500)
    first.close()
    second = Instance.open(tmp_path, environ=env)
    b = second.storage.sequences.next_ids("XtkNewId", 10)
    second.close()
    assert len(set(a) | set(b)) == 1510
    assert min(a) >= 1000
