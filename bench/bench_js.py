"""JS benchmark: `.venv/bin/python -m bench.bench_js [N] [--no-tune]`.

Renders a ~2.7 KB template (5 fields, one if, one loop) for N recipients (default 100k) through JS batches,
beside a plain Python f-string of the same output; a long and a short field-only template compiled to
Python, each beside its f-string; and the per-call overhead of an empty JS custom method vs an empty
Python method through REGISTRY.call. Rates are given in wall time and in CPU time of the thread (the
machine is shared: CPU time is the stabler figure). `--no-tune` skips `tune_allocator()`.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

from opencampaign.scripting.templates import compile_template

FILLER = "<p>" + "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 6 + "</p>\n"
TEMPLATE = ("<html><body>\n<h1>Hello <%= recipient.firstName %> <%= recipient.lastName %></h1>\n" + FILLER * 5
            + "<% if (recipient.vip) { %><p>Gold member since <%= recipient.since %></p><% } %>\n"
            + "<ul><% for (var i = 0; i < recipient.items.length; i++) { %><li><%= recipient.items[i] %></li><% } %></ul>\n"
            + "<p>Contact: <%= recipient.email %></p>\n" + FILLER * 2 + "</body></html>")
FIELDS_ONLY = ("Hello <%= recipient.firstName %> <%= recipient.lastName %>\n" + FILLER * 7
               + "<%= recipient.email %> <%= recipient.since %> <%= recipient.city %>")
SHORT = "Hello <%= recipient.firstName %> <%= recipient.lastName %>, your code: <%= recipient.email %>"


def fstring(r: dict) -> str:
    vip = f"<p>Gold member since {r['since']}</p>" if r["vip"] else ""
    items = "".join(f"<li>{i}</li>" for i in r["items"])
    return (f"<html><body>\n<h1>Hello {r['firstName']} {r['lastName']}</h1>\n{FILLER * 5}{vip}\n<ul>{items}</ul>\n"
            f"<p>Contact: {r['email']}</p>\n{FILLER * 2}</body></html>")


def fields_fstring(r: dict) -> str:
    return (f"Hello {r['firstName']} {r['lastName']}\n{FILLER * 7}{r['email']} {r['since']} {r['city']}")


def short_fstring(r: dict) -> str:
    return f"Hello {r['firstName']} {r['lastName']}, your code: {r['email']}"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(label: str, n: int, fn) -> float:  # noqa: ANN001
    before = rss_mb()
    t, c = time.perf_counter(), time.thread_time()
    fn()
    dt, dc = time.perf_counter() - t, time.thread_time() - c
    print(f"{label:<44} {n / dt:>11,.0f} msg/s  {n / dc:>11,.0f} msg/s CPU  {dt:6.2f} s"
          f"   peak RSS {rss_mb():7.1f} MB (+{rss_mb() - before:.1f})")
    return dt


def bench_templates(n: int) -> None:
    recipients = [{"firstName": f"First{i}", "lastName": f"Last{i}", "email": f"r{i}@example.com", "vip": i % 3 == 0,
                   "since": 2000 + i % 20, "city": "Paris", "items": [f"item{j}" for j in range(i % 4)]} for i in range(n)]
    tpl = compile_template(TEMPLATE)
    assert tpl.uses_js and len(TEMPLATE) > 1800
    assert tpl.render_texts(recipients[:50]) == [fstring(r) for r in recipients[:50]]
    print(f"template {len(TEMPLATE)} chars, {n:,} recipients")
    timed("JS template (batches of 1000), render", n, lambda: tpl.render(recipients))
    timed("JS template, render_texts", n, lambda: tpl.render_texts(recipients))
    timed("plain Python f-string, same output", n, lambda: [fstring(r) for r in recipients])
    fields = compile_template(FIELDS_ONLY)
    assert not fields.uses_js and fields.render_texts(recipients[:50]) == [fields_fstring(r) for r in recipients[:50]]
    print(f"field-only template {len(fields.render_texts(recipients[:1])[0] or '')} chars of output")
    timed("field-only compiled to Python, render", n, lambda: fields.render(recipients))
    timed("field-only compiled to Python, render_texts", n, lambda: fields.render_texts(recipients))
    timed("plain Python f-string, same output", n, lambda: [fields_fstring(r) for r in recipients])
    short = compile_template(SHORT)
    assert not short.uses_js and short.render_texts(recipients[:50]) == [short_fstring(r) for r in recipients[:50]]
    print(f"short field-only template {len(short.render_texts(recipients[:1])[0] or '')} chars of output")
    timed("short field-only, render", n, lambda: short.render(recipients))
    timed("short field-only, render_texts", n, lambda: short.render_texts(recipients))
    timed("plain Python f-string, same output", n, lambda: [short_fstring(r) for r in recipients])


def bench_methods(calls: int) -> None:
    from opencampaign.context import CallContext
    from opencampaign.instance import Instance
    from opencampaign.methods.registry import REGISTRY, MethodCall, MethodResult
    from opencampaign.scripting.api import run_script
    from opencampaign.scripting.methods import register_js_methods

    corpus = Path(__file__).resolve().parent.parent / "tests" / "js_corpus" / "schemas"
    inst = Instance.open(tempfile.mkdtemp(), schema_dirs=[str(corpus)], environ={})
    inst.init(environ={"OPENCAMPAIGN_ADMIN_PASSWORD": "bench-pass-1"})
    admin = CallContext(login="admin", login_id=1, rights=frozenset({"admin"}))
    seeded = run_script(inst, 'xtk.session.Write(<javascript xtkschema="xtk:javascript" _operation="insert" '
                        'namespace="cus" name="greeter.js"><data>{code}</data></javascript>)', admin,
                        globals={"code": "function cus_greeter_Empty() {}"})
    assert seeded.ok, seeded.error
    register_js_methods(inst.registry)
    schema = inst.registry.get("cus:greeter")
    method = inst.registry.method("cus:greeter", "Empty")
    assert method is not None
    call = MethodCall(inst, admin, schema, method, None, {})
    REGISTRY.call(call)

    def per_call(count: int) -> tuple[float, float]:
        t, c = time.perf_counter(), time.thread_time()
        for _ in range(count):
            REGISTRY.call(call)
        return (time.perf_counter() - t) / count * 1e6, (time.thread_time() - c) / count * 1e6

    js, js_cpu = per_call(calls)
    REGISTRY.register("cus:greeter#Empty", lambda c: MethodResult())
    py, py_cpu = per_call(calls * 10)
    print(f"empty JS method via REGISTRY.call      {js:8.1f} µs/call  {js_cpu:8.1f} µs CPU")
    print(f"empty Python method via REGISTRY.call  {py:8.1f} µs/call  {py_cpu:8.1f} µs CPU")
    inst.close()


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 100_000
    if "--no-tune" not in sys.argv:
        from opencampaign.scripting.engine import tune_allocator

        print(f"tune_allocator(): {tune_allocator()}")
    bench_templates(n)
    bench_methods(2000)


if __name__ == "__main__":
    main()
