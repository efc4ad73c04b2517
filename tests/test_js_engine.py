"""Engine: limits, isolation, errors, syntax positions."""

from __future__ import annotations

import threading
import time

from opencampaign.scripting.engine import ENGINE, Limits, LogEntry


class Host:
    def __init__(self) -> None:
        self.logs: list[LogEntry] = []
        self.calls: list[str] = []

    def handle(self, op: str, args: object) -> object:
        self.calls.append(op)
        return None


def run(src: str, **kw: object):  # noqa: ANN201
    return ENGINE.run(src, Host(), **kw)  # type: ignore[arg-type]


def test_value_and_logs() -> None:
    r = run("logInfo('a', 1, {x: 2}); logWarning('w'); 40 + 2")
    assert r.ok and r.value == 42
    assert [(e.level, e.message) for e in r.logs] == [("info", 'a 1 {"x":2}'), ("warning", "w")]


def test_infinite_loop_stopped_and_engine_usable() -> None:
    t = time.monotonic()
    r = run("while (true) {}", limits=Limits(cpu_seconds=0.3))
    assert r.error is not None and r.error.kind == "time" and "CPU time limit" in str(r.error)
    assert time.monotonic() - t < 5
    r = run("try { for (;;) {} } catch (e) {} logInfo('swallowed')", limits=Limits(cpu_seconds=0.2))
    assert r.error is not None and r.error.kind == "time"
    r = run("function f() { return f2(); } function f2() { var i = 0; do { i++; } while (i > 0); } f()",
            limits=Limits(cpu_seconds=0.2))
    assert r.error is not None and r.error.kind == "time"
    assert run("1 + 1").value == 2


def test_memory_bomb_stopped_and_engine_usable() -> None:
    r = run("var a = []; while (true) a.push(new Array(100000).fill('x'))", limits=Limits(memory_bytes=32 << 20))
    assert r.error is not None and r.error.kind == "memory" and "memory limit" in str(r.error)
    r = run("var m = {}; for (var i = 0; ; i++) m['k' + i] = 'v'.repeat(1000) + i;", limits=Limits(memory_bytes=16 << 20))
    assert r.error is not None and r.error.kind == "memory"
    assert run("[1, 2, 3].length").value == 3


def test_stack_overflow_is_an_error() -> None:
    r = run("function r(n) { return r(n + 1) } r(0)")
    assert r.error is not None and "stack" in str(r.error).lower()
    assert run("'ok'").value == "ok"


def test_globals_do_not_leak_between_runs() -> None:
    assert run("var leaked = 1; let lex = 2; const c = 3; function fn() {} globalThis.g = 4; 0").ok
    r = run("[typeof leaked, typeof lex, typeof c, typeof fn, typeof g].join(',')")
    assert r.value == "undefined,undefined,undefined,undefined,undefined"
    assert run("Array.prototype.evil = 1; 0").ok
    assert run("typeof [].evil").value == "undefined"


def test_builtins_cannot_be_replaced() -> None:
    r = run("logInfo = function () {}; logInfo('still')")
    assert [e.message for e in r.logs] == ["still"]


def test_syntax_error_reports_original_position() -> None:
    r = run("var a = 1;\nvar x = <a b={a}>{a}</a>;\n  a +* 2;")
    assert r.error is not None and r.error.kind == "syntax"
    assert (r.error.line, r.error.column) == (3, 6)
    r = run("var x = <a><b></a>;")
    assert r.error is not None and r.error.kind == "syntax" and r.error.line == 1


def test_runtime_error_line_and_codes() -> None:
    r = run("var a = 1;\n\nnull.x;")
    assert r.error is not None and r.error.line == 3 and "TypeError" in r.error.message
    r = run("throw 'ABC-123456 custom failure'")
    assert r.error is not None and r.error.code == "ABC-123456" and r.error.message == "custom failure"


def test_globals_in_and_out() -> None:
    r = run("vars.count = vars.count + 1; instance.vars.x = 'y'", globals={"vars": {"count": 1}, "instance": {"vars": {}}},
            returns=["vars", "instance"])
    assert r.globals["vars"] == {"count": 2} and r.globals["instance"]["vars"] == {"x": "y"}


def test_no_host_access() -> None:
    r = run("[typeof require, typeof process, typeof std, typeof os, typeof fetch].join(',')")
    assert r.value == "undefined,undefined,undefined,undefined,undefined"


def test_threads_use_their_own_contexts() -> None:
    results: list[object] = []

    def work(n: int) -> None:
        for _ in range(20):
            results.append(run(f"var t = {n}; t * 2").value)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(set(results)) == [0, 2, 4, 6]  # type: ignore[type-var]


def test_thrown_strings_keep_their_line() -> None:
    r = run("var a = 1;\n\nthrow 'plain failure'")
    assert r.error is not None and (r.error.line, r.error.message) == (3, "plain failure")
    r = run("function f() {\n  throw 'ABC-123456 deep'\n}\nf()")
    assert r.error is not None and (r.error.line, r.error.code) == (2, "ABC-123456")
    r = run("var o = {throw: 1}; try { throw 5 } catch (e) { logInfo(e) } o.throw + 1")
    assert r.value == 2 and r.logs[0].message == "5"


def test_run_control_is_out_of_reach() -> None:
    r = run("[typeof __e_run, typeof __e_invoke, typeof __e_reset, typeof __internal, typeof __begin, typeof __cache].join()")
    assert r.value == "undefined,undefined,undefined,undefined,undefined,undefined"


def test_recursion_without_loops_is_stopped() -> None:
    r = run("function fib(n) { return n < 2 ? n : fib(n - 1) + fib(n - 2) } fib(60)", limits=Limits(cpu_seconds=0.2))
    assert r.error is not None and r.error.kind == "time"


def test_translation_cache() -> None:
    from opencampaign.scripting import e4x

    src = "var x = <a b={1}/>; x.@b"
    assert e4x.translate_cached(src) is e4x.translate_cached(src)
    assert e4x.translate_cached(src) == e4x.translate(src)
