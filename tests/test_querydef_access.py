"""queryDef read access: readAccess sysFilters, accessibleIf secrets, and the plan cache's
correctness (constants lifted out, rights never leaking through a cached plan)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from opencampaign.context import INTERNAL, CallContext
from opencampaign.instance import Instance
from opencampaign.query.errors import DataApiError
from opencampaign.query.querydef import PLANS, execute_query

USER = CallContext(login="jdoe", login_id=1234, rights=frozenset({"delivery"}))
ADMIN = CallContext(login="admin", login_id=1, rights=frozenset({"admin"}))


@pytest.fixture(scope="module", params=["single-sqlite", "embedded"])
def inst(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    env = {"OPENCAMPAIGN_ADMIN_PASSWORD": "secret-password"}
    if request.param == "single-sqlite":
        env["OPENCAMPAIGN_SINGLE_DATABASE"] = "1"
    path: Path = tmp_path_factory.mktemp("access") / "instance"
    instance = Instance.open(path, environ=env)
    instance.init(environ=env)
    storage = instance.storage
    operators = storage.table("xtk:operator")
    with storage.write(storage.home("xtk:sessionInfo")) as conn:
        admin = conn.execute(sa.select(operators.c.iOperatorId).where(operators.c.sName == "admin")).scalar()
        conn.execute(sa.insert(storage.table("xtk:sessionInfo")),
                     [{"iSessionInfoId": 5, "sToken": "___SECRET-TOKEN", "sSecurityTokenHash": "hash",
                       "iOperatorId": admin}])
    with storage.write(storage.home("xtk:technicalAccount")) as conn:
        conn.execute(sa.insert(storage.table("xtk:technicalAccount")),
                     [{"iTechnicalAccountId": 7, "sName": "ci", "sClientId": "cid", "sSecretHash": "argon"}])
    with storage.write(storage.home("nms:recipient")) as conn:
        conn.execute(sa.insert(storage.table("nms:recipient")),
                     [{"iRecipientId": i, "sEmail": f"u{i}@example.com", "iGender": i % 3} for i in range(1, 21)])
    yield instance


def q(instance: Instance, document: str, ctx: CallContext):  # noqa: ANN201
    return execute_query(instance.storage, instance.registry, document, ctx)


def count(instance: Instance, schema: str, ctx: CallContext) -> int:
    return int(q(instance, f'<queryDef schema="{schema}" operation="count"/>', ctx).get("count"))


def test_session_info_readable_only_by_the_internal_account(inst: Instance) -> None:
    assert count(inst, "xtk:sessionInfo", INTERNAL) == 1
    assert count(inst, "xtk:sessionInfo", USER) == 0
    assert count(inst, "xtk:sessionInfo", ADMIN) == 0  # admins are not the internal account
    doc = '<queryDef schema="xtk:sessionInfo" operation="select"><select><node expr="@id"/></select></queryDef>'
    assert len(q(inst, doc, USER)) == 0
    assert len(q(inst, doc, INTERNAL)) == 1
    one = ('<queryDef schema="xtk:sessionInfo" operation="{op}"><select><node expr="@id"/></select>'
           '<where><condition expr="@id = 5"/></where></queryDef>')
    assert q(inst, one.format(op="getIfExists"), USER).attrib == {}
    with pytest.raises(DataApiError) as err:
        q(inst, one.format(op="get"), USER)
    assert err.value.code == "XTK-170041"
    assert q(inst, one.format(op="get"), INTERNAL).get("id") == "5"


def test_technical_accounts_readable_only_by_admins(inst: Instance) -> None:
    assert count(inst, "xtk:technicalAccount", USER) == 0
    assert count(inst, "xtk:technicalAccount", ADMIN) == 1


def test_read_access_applies_in_sub_queries(inst: Instance) -> None:
    exists = ('<queryDef schema="xtk:operator" operation="count"><where><condition expr="sessionInfo" '
              'setOperator="EXISTS"/></where></queryDef>')
    assert q(inst, exists, INTERNAL).get("count") == "1"
    assert q(inst, exists, USER).get("count") == "0"
    sub = ('<queryDef schema="xtk:operator" operation="count"><where><condition expr="@id" setOperator="IN">'
           '<subQuery schema="xtk:sessionInfo"><select><node expr="[@operator-id]"/></select></subQuery>'
           '</condition></where></queryDef>')
    assert q(inst, sub, INTERNAL).get("count") == "1"
    assert q(inst, sub, USER).get("count") == "0"


def test_secrets_never_come_out_even_for_admins(inst: Instance) -> None:
    op = q(inst, '<queryDef schema="xtk:operator" operation="get"><select><node expr="@name"/>'
                 '<node expr="access/@password"/></select><where><condition expr="@name = \'admin\'"/></where>'
                 '</queryDef>', INTERNAL)
    assert op.get("name") == "admin"
    access = op.find("access")
    assert access is None or not access.get("password")
    full = q(inst, '<queryDef schema="xtk:operator" operation="select"/>', INTERNAL)
    for row in full:
        node = row.find("access")
        assert node is None or not node.get("password")
    session = q(inst, '<queryDef schema="xtk:sessionInfo" operation="select"/>', INTERNAL)
    assert len(session) == 1
    assert not session[0].get("token") and not session[0].get("securityTokenHash")
    tech = q(inst, '<queryDef schema="xtk:technicalAccount" operation="select"><select><node expr="@name"/>'
                   '<node expr="@secretHash"/></select></queryDef>', ADMIN)
    assert tech[0].get("name") == "ci" and tech[0].get("secretHash") == ""


@pytest.mark.parametrize("doc", [
    '<queryDef schema="xtk:operator" operation="count"><where><condition expr="access/@password = \'x\'"/>'
    '</where></queryDef>',
    '<queryDef schema="xtk:operator" operation="select"><select><node expr="@name"/></select>'
    '<orderBy><node expr="access/@password"/></orderBy></queryDef>',
    '<queryDef schema="xtk:sessionInfo" operation="count"><where><condition expr="@token = \'___SECRET-TOKEN\'"/>'
    '</where></queryDef>',
    '<queryDef schema="xtk:operator" operation="select"><select><node expr="Length(access/@password)"/>'
    '</select></queryDef>',
])
def test_filtering_on_secrets_is_refused(inst: Instance, doc: str) -> None:
    with pytest.raises(DataApiError) as err:
        q(inst, doc, INTERNAL)
    assert err.value.code == "XTK-170036"
    assert "not accessible" in str(err.value)


# -- plan cache ------------------------------------------------------------------------------

GET = ('<queryDef schema="nms:recipient" operation="get"><select><node expr="@id"/><node expr="@email"/></select>'
       '<where><condition expr="@id = {id}"/></where></queryDef>')


def test_cached_plans_rebind_constants(inst: Instance) -> None:
    PLANS.clear()
    for rid in (3, 4, 17, 3):
        assert q(inst, GET.format(id=rid), USER).get("email") == f"u{rid}@example.com"
    assert PLANS.hits >= 3
    with pytest.raises(DataApiError) as err:  # id 0 (the empty row) is another plan: still excluded
        q(inst, GET.format(id=0), USER)
    assert err.value.code == "XTK-170041"
    ids = ('<queryDef schema="nms:recipient" operation="select"><select><node expr="@id"/></select><where>'
           '<condition expr="@gender = {g} AND @id &lt; {n}"/></where><orderBy><node expr="@id"/></orderBy></queryDef>')
    assert [int(r.get("id")) for r in q(inst, ids.format(g=1, n=8), USER)] == [1, 4, 7]
    assert [int(r.get("id")) for r in q(inst, ids.format(g=2, n=12), USER)] == [2, 5, 8, 11]
    # numbers inside strings are part of the document, not lifted
    emails = ('<queryDef schema="nms:recipient" operation="count"><where><condition expr="@email = \'u{n}@example.com\'"/>'
              '</where></queryDef>')
    assert q(inst, emails.format(n=5), USER).get("count") == "1"
    assert q(inst, emails.format(n=99), USER).get("count") == "0"


def test_rights_do_not_leak_through_the_plan_cache(inst: Instance) -> None:
    PLANS.clear()
    doc = ('<queryDef schema="xtk:sessionInfo" operation="count"><where><condition expr="@id &gt; 0"/></where>'
           '</queryDef>')
    assert q(inst, doc, INTERNAL).get("count") == "1"
    assert q(inst, doc, USER).get("count") == "0"
    assert q(inst, doc, INTERNAL).get("count") == "1"
    right = ('<queryDef schema="nms:recipient" operation="count"><where><condition expr="HasNamedRight(\'delivery\')'
             ' AND @id &gt; 0"/></where></queryDef>')
    assert q(inst, right, USER).get("count") == "20"
    assert q(inst, right, CallContext(login="x", login_id=9)).get("count") == "0"


def test_errors_name_the_document_as_sent(inst: Instance) -> None:
    with pytest.raises(DataApiError) as err:
        q(inst, '<queryDef schema="nms:recipient" operation="count"><where><condition expr="@nope = 12"/></where>'
                '</queryDef>', USER)
    assert "@nope = 12" in str(err.value)
