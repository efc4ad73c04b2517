"""Personalization templates: Python fast path, JS batches, per-recipient failures, includes."""

from __future__ import annotations

from opencampaign.scripting.templates import compile_template

TEMPLATE = """Dear <%= recipient.firstName %>,
<% if (recipient.vip) { %>VIP!<% } %>
<% for (var i = 0; i < recipient.items.length; i++) { %>- <%= recipient.items[i] %>
<% } %><%= recipient.extra.code %>
<%@ include view='footer' %>
<%= escapeUrl(recipient.email) %> <%@ value object='delivery' xpath='@label' %>"""


def _include(kind: str, name: str) -> str | None:
    return "-- footer --\nbye" if (kind, name) == ("view", "footer") else None


def test_field_only_templates_compile_to_python() -> None:
    t = compile_template("Hi <%= recipient.firstName %> from <%= recipient.country.label %> {x}")
    assert not t.uses_js
    assert t.render_texts([{"firstName": "A", "country": {"label": "FR"}}, {"firstName": None, "country": {}}]) == [
        "Hi A from FR {x}", "Hi  from  {x}"]


FIELDS = "<%= recipient.a %>|<%= recipient.b.c %>|\n<%= recipient.b.d.e %>|<%= targetData.x %>"
CASES = [{"a": "s", "b": {"c": 1.0, "d": {"e": True}}}, {"a": None, "b": {"c": [1, None, 2.5], "d": {}}},
         {"a": {"k": 1}, "b": {"c": 1e-7, "d": {"e": 0.000001}}}, {"b": {"c": "x"}}, {"b": None}, {},
         {"a": 1e21, "b": {"c": float("nan"), "d": {"e": -0.0}}}, {"a": [], "b": {"c": "q", "d": "str"}}]


def test_python_and_js_paths_agree() -> None:
    """Field-only templates follow JS: missing field -> "", field of a missing object -> error (with line)."""
    py, js = compile_template(FIELDS), compile_template(FIELDS, python=False)
    assert not py.uses_js and js.uses_js
    targets = [{"x": k} for k in range(len(CASES))]
    a, b = py.render(CASES, target_data=targets), js.render(CASES, target_data=targets)
    assert [r.text for r in a] == [r.text for r in b]
    assert [(r.error.line, r.error.message) if r.error else None for r in a] == \
        [(r.error.line, r.error.message) if r.error else None for r in b]
    assert a[0].text == "s|1|\ntrue|0" and a[3].error is not None and a[3].error.line == 2
    assert "cannot read property 'e' of undefined" in str(a[3].error)


def test_foreach_directive() -> None:
    t = compile_template("<%@ foreach object='delivery' xpath='items' item='it' %>[<%@ value object='it' xpath='@label' %>]"
                         "<%@ end %> <%= recipient.n %>")
    assert t.render_texts([{"n": 1}, {"n": 2}], delivery={"items": [{"label": "a"}, {"label": "b"}]}) == [
        "[a][b] 1", "[a][b] 2"]


def test_control_characters_in_texts() -> None:
    t = compile_template("<% var s = recipient.s %><%= s %>!")
    assert t.render_texts([{"s": "a\u0001b"}, {"s": "\u0002"}, {"s": "c"}]) == ["a\u0001b!", "\u0002!", "c!"]


def test_code_template_and_batch_with_one_failing_recipient() -> None:
    t = compile_template(TEMPLATE, include=_include)
    assert t.uses_js
    ok = {"firstName": "A", "vip": True, "items": [1, 2], "extra": {"code": "C1"}, "email": "a b@c"}
    bad = {"firstName": "B", "items": []}  # no `extra`: fails on line 4
    out = t.render([ok, bad, ok], delivery={"label": "Spring"})
    assert out[0].text == "Dear A,\nVIP!\n- 1\n- 2\nC1\n-- footer --\nbye\na%20b%40c Spring"
    assert out[1].text is None and out[1].error is not None and out[1].error.line == 4
    assert "template line 4" in str(out[1].error)
    assert out[2].text == out[0].text


def test_error_after_include_maps_to_template_line() -> None:
    t = compile_template("a<% var z = 1; %>\n<%@ include view='footer' %>\n<%= recipient.x.y %>", include=_include)
    out = t.render([{}])
    assert out[0].error is not None and out[0].error.line == 3


def test_infinite_loop_in_template_is_stopped() -> None:
    from opencampaign.scripting.engine import Limits

    t = compile_template("<% while (true) {} %>", limits=Limits(cpu_seconds=0.2))
    out = t.render([{}, {}])
    assert all(r.error is not None and r.error.kind == "time" for r in out)
    assert compile_template("<% var x = 1 %><%= x %>").render_texts([{}]) == ["1"]


def test_large_batches() -> None:
    t = compile_template("<% if (recipient.n % 2) { %>odd<% } else { %>even<% } %> <%= recipient.n %>")
    texts = t.render_texts([{"n": i} for i in range(2500)])
    assert len(texts) == 2500 and texts[3] == "odd 3" and texts[2498] == "even 2498"
