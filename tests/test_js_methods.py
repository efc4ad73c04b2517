"""Schema methods implemented in JavaScript libraries, called through the method registry."""

from __future__ import annotations

import pytest

from opencampaign.methods.registry import REGISTRY, MethodCall, MethodError
from opencampaign.scripting.api import run_script
from opencampaign.scripting.methods import register_js_methods

from .test_js_helpers import ADMIN, USER, make_instance


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    inst = make_instance(tmp_path_factory.mktemp("jsmethods"))
    register_js_methods(inst.registry)
    yield inst
    inst.close()


def _call(inst, name: str, params: dict, this=None, ctx=ADMIN):  # noqa: ANN001, ANN202
    schema = inst.registry.get("cus:greeter")
    return REGISTRY.call(MethodCall(inst, ctx, schema, inst.registry.method("cus:greeter", name), this, params))


def test_static_method_through_registry(instance) -> None:  # noqa: ANN001
    assert _call(instance, "Hello", {"name": "Ann"}).outputs == ["Hello Ann"]
    assert _call(instance, "Empty", {}).outputs == []


def test_non_static_method_returns_this(instance) -> None:  # noqa: ANN001
    from lxml import etree

    res = _call(instance, "Rename", {"label": "new"}, this=etree.fromstring('<greeter label="old"/>'))
    assert res.outputs == ["old"] and res.this is not None and res.this.get("label") == "new"


def test_js_fault_becomes_method_error(instance) -> None:  # noqa: ANN001
    with pytest.raises(MethodError) as info:
        _call(instance, "Fail", {})
    assert info.value.code == "CUS-000001" and info.value.message == "It failed"


def test_scripts_call_js_methods_and_share_the_log(instance) -> None:  # noqa: ANN001
    r = run_script(instance, """logInfo(cus.greeter.Hello("Bob"));
        var g = cus.greeter.create(<greeter label="a"/>); logInfo(g.Rename("b"), g.entity.@label);
        try { cus.greeter.Fail() } catch (e) { logInfo(e.code, e.message) }""", ADMIN)
    assert r.ok, r.error
    assert [e.message for e in r.logs] == ["hello called", "Hello Bob", "a b", "CUS-000001 It failed"]


def test_method_needs_a_session(instance) -> None:  # noqa: ANN001
    from opencampaign.context import CallContext

    with pytest.raises(MethodError):
        _call(instance, "Hello", {"name": "x"}, ctx=CallContext())
    assert _call(instance, "Hello", {"name": "x"}, ctx=USER).outputs == ["Hello x"]


def _set_library(inst, code: str) -> None:  # noqa: ANN001
    r = run_script(inst, 'xtk.session.Write(<javascript xtkschema="xtk:javascript" _operation="update" namespace="cus" '
                   'name="greeter.js"><data>{code}</data></javascript>)', ADMIN, globals={"code": code})
    assert r.ok, r.error


@pytest.fixture()
def scratch(tmp_path):  # noqa: ANN001, ANN201
    inst = make_instance(tmp_path)
    register_js_methods(inst.registry)
    yield inst
    inst.close()


def test_library_changes_apply_at_once(scratch) -> None:  # noqa: ANN001
    assert _call(scratch, "Hello", {"name": "a"}).outputs == ["Hello a"]
    _set_library(scratch, 'function cus_greeter_Hello(name) { return "Hi " + name; }')
    assert _call(scratch, "Hello", {"name": "b"}).outputs == ["Hi b"]


def test_library_changed_elsewhere_is_revalidated(scratch, monkeypatch) -> None:  # noqa: ANN001
    from opencampaign.scripting import libraries

    assert _call(scratch, "Hello", {"name": "a"}).outputs == ["Hello a"]
    raw = scratch.storage.engine_for("xtk:javascript").raw_connection()  # bypasses SQLAlchemy events: another process
    try:
        raw.cursor().execute("UPDATE XtkJavascript SET mData = ? WHERE sName = 'greeter.js'",
                             ('function cus_greeter_Hello(name) { return "Yo " + name; }',))
        raw.commit()
    finally:
        raw.close()
    assert _call(scratch, "Hello", {"name": "b"}).outputs == ["Hello b"]  # cached for REVALIDATE seconds
    monkeypatch.setattr(libraries, "REVALIDATE", 0.0)
    assert _call(scratch, "Hello", {"name": "c"}).outputs == ["Yo c"]


def test_warm_libraries_keep_no_state_between_calls(scratch) -> None:  # noqa: ANN001
    _set_library(scratch, "function cus_greeter_Hello(name) { var p = helper(); helper = function () { return name; };"
                 " return String(p) + (cus_greeter_Hello.seen || ''); }\n"
                 "function helper() { return 'none'; }")
    for name in ("x", "y", "z"):
        assert _call(scratch, "Hello", {"name": name}).outputs == ["none"]  # rebinding a function drops the warm closure; functions are frozen


def test_libraries_with_top_level_code_run_per_call(scratch) -> None:  # noqa: ANN001
    from opencampaign.scripting.libraries import declared_functions

    code = "var count = 0;\nfunction cus_greeter_Hello(name) { count++; return name + count; }"
    assert declared_functions(code) is None
    assert declared_functions("'use strict';\nfunction a() { return <x/>; }\n;function b(x) {}") == ("a", "b")
    _set_library(scratch, code)
    assert [_call(scratch, "Hello", {"name": n}).outputs for n in "xy"] == [["x1"], ["y1"]]


def test_fault_lines_come_from_the_library(scratch) -> None:  # noqa: ANN001
    _set_library(scratch, 'function cus_greeter_Hello(name) {\n\n  throw "oops";\n}')
    with pytest.raises(MethodError) as info:
        _call(scratch, "Hello", {"name": "x"})
    assert info.value.message == "oops" and info.value.detail == ["line 3"]
    _set_library(scratch, "function cus_greeter_Hello(name) {\n  return 1 +* 2;\n}")
    with pytest.raises(MethodError) as info:
        _call(scratch, "Hello", {"name": "x"})
    assert "SyntaxError" in info.value.message and info.value.detail == ["line 2"]
