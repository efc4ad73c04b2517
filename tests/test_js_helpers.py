"""Shared setup for the test_js_* modules: an embedded instance with a John Doe and the cus:greeter schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from opencampaign.context import CallContext
from opencampaign.instance import Instance

CORPUS = Path(__file__).parent / "js_corpus"
ADMIN = CallContext(login="admin", login_id=1, rights=frozenset({"admin"}))
USER = CallContext(login="jdoe", login_id=2, rights=frozenset())

GREETER_JS = """function cus_greeter_Hello(name) { logInfo("hello called"); return "Hello " + name; }
function cus_greeter_Rename(self, label) { var prev = self.@label; self.@label = label; return prev; }
function cus_greeter_Fail() { throw "CUS-000001 It failed"; }
function cus_greeter_Empty() {}
"""


def make_instance(path: Path) -> Any:
    from opencampaign.scripting.api import run_script

    inst = Instance.open(path, schema_dirs=[str(CORPUS / "schemas")], environ={})
    inst.init(environ={"OPENCAMPAIGN_ADMIN_PASSWORD": "secret-pass-1"})
    seed = """xtk.session.Write(<recipient xtkschema="nms:recipient" _operation="insert"
        email="john.doe@example.com" firstName="John" lastName="Doe"/>);
      xtk.session.Write(<javascript xtkschema="xtk:javascript" _operation="insert" namespace="cus"
        name="greeter.js"><data>{code}</data></javascript>);"""
    result = run_script(inst, seed, ADMIN, globals={"code": GREETER_JS})
    assert result.ok, result.error
    return inst
