"""The only module that touches QuickJS: pooled contexts, limits, host callbacks, error mapping.

A context is owned by one thread (QuickJS crashes when a context is shared between threads): each thread
keeps its own small pool. After each run, the globals the run created are deleted; a context whose built-in
prototypes were changed, or that hit a limit, is discarded. QuickJS's own time limit forbids host callbacks,
so the CPU-time limit is enforced by `__chk()` calls the translator inserts (see `e4x.py`).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import quickjs

from . import e4x
from .prelude import PRELUDE

log = logging.getLogger("opencampaign.js")

# Run control. It lives in a closure: the three functions are handed to Python then deleted from the global
# object, so scripts can neither reset the CPU deadline nor reach (or poison) the per-context cache.
_ENGINE_JS = r"""
(function (I) {
  delete globalThis.__internal;
  var cache = new Map(), CACHE_MAX = 64;
  var base = new Set(Object.getOwnPropertyNames(globalThis));
  var protos = [Object.prototype, Array.prototype, String.prototype, Function.prototype, Number.prototype,
                Date.prototype, RegExp.prototype, Boolean.prototype, Error.prototype, Promise.prototype];
  var counts = protos.map(function (p) { return Object.getOwnPropertyNames(p).length; });
  function engineReset() {
    var clean = true;
    Object.getOwnPropertyNames(globalThis).forEach(function (k) { if (!base.has(k) && !delete globalThis[k]) clean = false; });
    protos.forEach(function (p, i) { if (Object.getOwnPropertyNames(p).length !== counts[i]) clean = false; });
    return clean;
  }
  function engineRun(src, cfg) {
    cfg = JSON.parse(cfg);
    var res;
    try { I.begin(cfg); var v = (0, eval)(src); res = { value: __out(v) }; }
    catch (e) { res = { error: JSON.parse(__errInfo(e)) }; }
    res.end = JSON.parse(I.end(cfg.returns || []));
    return JSON.stringify(res);
  }
  function engineInvoke(key, src, cfg, arg) {
    cfg = JSON.parse(cfg);
    var res, fn;
    try {
      I.begin(cfg);
      fn = cache.get(key);
      if (fn === undefined) {
        fn = (0, eval)(src);
        if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value);
        cache.set(key, fn);
      }
      res = { value: fn(arg === undefined ? undefined : JSON.parse(arg)) };
    } catch (e) { res = { error: JSON.parse(__errInfo(e)) }; }
    if (fn && typeof fn.stale === "function" && fn.stale()) cache.delete(key);  // warm library state changed
    res.end = JSON.parse(I.end([]));
    if (typeof res.value === "string" && !res.error && !res.end.tripped) return ["\u0003", res.value].join("");  // no JSON escaping; join() also flattens ropes
    return JSON.stringify(res);
  }
  [["__e_run", engineRun], ["__e_invoke", engineInvoke], ["__e_reset", engineReset]].forEach(function (p) {
    Object.defineProperty(globalThis, p[0], { value: p[1], configurable: true });
  });
})(globalThis.__internal);
"""
_PRELUDE_NAMES = set(re.findall(r"function\s+([A-Za-z_$][\w$]*)", PRELUDE)) | set(re.findall(r"([\w$]+): function", PRELUDE)) | {"eval", "engineRun", "engineInvoke", "engineReset"}
_FRAME = re.compile(r"at (\S+) \(<input>:(\d+):(\d+)\)|at <input>:(\d+):(\d+)")


@dataclass(frozen=True)
class Limits:
    cpu_seconds: float = 10.0
    memory_bytes: int = 64 * 1024 * 1024
    stack_bytes: int = 512 * 1024


WORKFLOW_LIMITS = Limits(cpu_seconds=3600.0, memory_bytes=256 * 1024 * 1024)
METHOD_LIMITS = Limits(cpu_seconds=10.0)


@dataclass
class LogEntry:
    level: str  # info warning error verbose
    message: str


class ScriptError(Exception):
    """A script failed: `kind` is syntax, runtime, time or memory; line/column refer to the original source."""

    def __init__(self, kind: str, message: str, line: int = 0, column: int = 0, code: str = ""):
        where = f" (line {line}{f', column {column}' if column else ''})" if line else ""
        super().__init__(f"{message}{where}")
        self.kind, self.message, self.line, self.column, self.code = kind, message, line, column, code


@dataclass
class RunResult:
    value: Any = None
    error: ScriptError | None = None
    logs: list[LogEntry] = field(default_factory=list)
    globals: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


class Host(Protocol):
    """What scripts may reach: `handle` gets an operation and JSON-decoded arguments (see api.py)."""

    logs: list[LogEntry]

    def handle(self, op: str, args: Any) -> Any: ...


class HostError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class _Slot:
    def __init__(self) -> None:
        self.ctx = quickjs.Context()
        self.host: Host | None = None
        self.ctx.add_callable("__host", self._host)
        self.ctx.add_callable("__cpu", time.thread_time)
        self.ctx.eval(PRELUDE)
        self.ctx.eval(_ENGINE_JS)
        self.run_fn = self.ctx.get("__e_run")
        self.invoke_fn = self.ctx.get("__e_invoke")
        self.reset_fn = self.ctx.get("__e_reset")
        self.ctx.eval("delete globalThis.__e_run; delete globalThis.__e_invoke; delete globalThis.__e_reset")
        self.base_memory = int(self.ctx.memory().get("memory_used_size", 0))

    def _host(self, op: str, args: str) -> str:
        # Never raise into QuickJS: a Python exception there corrupts the context.
        try:
            if op == "log":
                a = json.loads(args)
                assert self.host is not None
                self.host.logs.append(LogEntry(a["level"], a["message"]))
                getattr(log, {"verbose": "debug"}.get(a["level"], a["level"]))("%s", a["message"])
                return '{"r":null}'
            if self.host is None:
                raise HostError("JST-310000", "no host API in this context")
            return json.dumps({"r": self.host.handle(op, json.loads(args))}, default=str)
        except HostError as exc:
            return json.dumps({"e": {"code": exc.code, "message": exc.message}})
        except Exception as exc:  # noqa: BLE001 - reported to the script as a JS error
            code = getattr(exc, "code", "") or "JST-310000"
            message = getattr(exc, "message", None) or str(exc)
            return json.dumps({"e": {"code": str(code), "message": str(message)}})


class Engine:
    """Runs JavaScript with limits. Thread-safe: each thread uses its own contexts."""

    def __init__(self, pool_size: int = 4):
        self._local = threading.local()
        self.pool_size = pool_size

    def _acquire(self) -> _Slot:
        pool: list[_Slot] = getattr(self._local, "pool", None) or []
        self._local.pool = pool
        return pool.pop() if pool else _Slot()

    def _release(self, slot: _Slot, reusable: bool) -> None:
        slot.host = None
        if reusable:
            try:
                reusable = bool(slot.reset_fn())
            except quickjs.JSException:
                reusable = False
        if reusable and len(self._local.pool) < self.pool_size:
            self._local.pool.append(slot)

    def run(self, source: str, host: Host, *, limits: Limits = METHOD_LIMITS, globals: dict[str, Any] | None = None,
            namespaces: list[str] | None = None, returns: list[str] | None = None) -> RunResult:
        """Run a script (E4X allowed) at global scope; `returns` names globals to read back (e.g. vars)."""
        result = RunResult(logs=host.logs)
        try:
            code = e4x.translate_cached(source)
        except e4x.E4XSyntaxError as exc:
            result.error = ScriptError("syntax", exc.message, exc.line, exc.column)
            return result
        cfg = {"cpu": limits.cpu_seconds, "globals": globals or {}, "namespaces": namespaces or [],
               "returns": returns or []}
        out = self._call(host, limits, lambda slot: slot.run_fn(code, json.dumps(cfg, default=str)))
        if isinstance(out, ScriptError):
            result.error = out
            return result
        result.globals = out.get("end", {}).get("globals", {})
        tripped = out.get("end", {}).get("tripped", False)
        if "error" in out or tripped:
            result.error = self.error_from(out.get("error", {}), source, tripped, limits)
        else:
            result.value = out.get("value")
        return result

    def invoke(self, key: str, source: str, arg: Any, host: Host, *, limits: Limits = METHOD_LIMITS,
               namespaces: list[str] | None = None, error_source: str | None = None, raw_arg: bool = False) -> Any:
        """Call the function `source` evaluates to (compiled once per context, cached under `key`) with `arg`
        (`raw_arg`: already JSON text). `source` is plain JS (already translated); `error_source` is the
        original text syntax errors are located in. Raises ScriptError."""
        cfg = json.dumps({"cpu": limits.cpu_seconds, "namespaces": namespaces or []})
        text = arg if raw_arg else json.dumps(arg, default=str)
        out = self._call(host, limits, lambda slot: slot.invoke_fn(key, source, cfg, text))
        if isinstance(out, ScriptError):
            raise out
        tripped = out.get("end", {}).get("tripped", False)
        if "error" in out or tripped:
            raise self.error_from(out.get("error", {}), error_source or source, tripped, limits)
        return out.get("value")

    def _call(self, host: Host, limits: Limits, fn: Callable[[_Slot], str]) -> dict[str, Any] | ScriptError:
        slot = self._acquire()
        slot.host = host
        slot.ctx.set_memory_limit(slot.base_memory + limits.memory_bytes)
        slot.ctx.set_max_stack_size(limits.stack_bytes)
        reusable = False
        try:
            text = fn(slot)
            if text[:1] == "\x03":
                reusable = True
                return {"value": text[1:]}
            out: dict[str, Any] = json.loads(text)
            err = out.get("error")
            if err and (err.get("isNull") or "out of memory" in err.get("message", "")):
                used = int(slot.ctx.memory().get("memory_used_size", 0))
                if used > slot.base_memory + limits.memory_bytes * 0.8 or "out of memory" in err.get("message", ""):
                    err["limit"] = "memory"
            reusable = not out.get("end", {}).get("tripped") and out.get("error", {}).get("limit") != "memory"
            return out
        except quickjs.JSException as exc:
            msg = str(exc)
            if "out of memory" in msg or msg.strip() == "null":  # OOM while handling OOM surfaces as `null`
                return ScriptError("memory", f"memory limit exceeded ({limits.memory_bytes // (1024 * 1024)} MB)")
            return ScriptError("runtime", msg.splitlines()[0] if msg else "script failed")
        except quickjs.StackOverflow as exc:
            return ScriptError("runtime", f"stack overflow: {exc}")
        finally:
            self._release(slot, reusable)

    def error_from(self, info: dict[str, str], source: str, tripped: bool, limits: Limits) -> ScriptError:
        if tripped or info.get("limit") == "time":
            return ScriptError("time", f"CPU time limit exceeded ({limits.cpu_seconds:g} s)")
        message = info.get("message", "")
        if "out of memory" in message or info.get("limit") == "memory":
            return ScriptError("memory", f"memory limit exceeded ({limits.memory_bytes // (1024 * 1024)} MB)")
        line, column = _user_frame(info.get("stack", ""))
        if not line and info.get("line"):  # a thrown string or number: the line of its `throw`
            line = int(info["line"])
        name = info.get("name", "")
        if name == "SyntaxError" and line:
            line, column = locate_syntax_error(source, line, column)
            return ScriptError("syntax", f"SyntaxError: {message}", line, column)
        code = info.get("code", "")
        if not code and (m := re.match(r"^([A-Z]{3}-\d{6})\s+(.*)$", message, re.S)):
            code, message = m.group(1), m.group(2)
        text = f"{name}: {message}" if name and name not in ("Error", "") else message
        return ScriptError("runtime", text, line, column, code)


def _user_frame(stack: str) -> tuple[int, int]:
    """Line and column of the innermost frame outside the prelude, above the first `eval (native)`."""
    frames = stack.split("at eval (native)")[0]
    for m in _FRAME.finditer(frames):
        if m.group(1) is None:
            return int(m.group(4)), int(m.group(5))
        if m.group(1) not in _PRELUDE_NAMES and m.group(1) != "<anonymous>":
            return int(m.group(2)), int(m.group(3))
    for m in _FRAME.finditer(frames):
        return int(m.group(2) or m.group(4)), int(m.group(3) or m.group(5))
    return 0, 0


_CHECKER: threading.local = threading.local()


def locate_syntax_error(source: str, line: int, column: int) -> tuple[int, int]:
    """Exact position of a syntax error: compile (not run) the same-length form of the source."""
    try:
        plain = e4x.same_length(source)
    except e4x.E4XSyntaxError as exc:
        return exc.line, exc.column
    ctx = getattr(_CHECKER, "ctx", None)
    if ctx is None:
        ctx = _CHECKER.ctx = quickjs.Context()
    try:
        ctx.eval("(function(){" + plain + "\n})")
    except quickjs.JSException as exc:
        m = re.search(r"<input>:(\d+):(\d+)", str(exc))
        if m:
            ln, col = int(m.group(1)), int(m.group(2))
            return ln, col - 12 if ln == 1 else col
    return line, 0


def tune_allocator(mmap_threshold: int = 32 << 20, trim_threshold: int = 64 << 20) -> bool:
    """glibc only, process-wide, opt-in (rendering processes): serve multi-MB buffers from the heap and keep
    up to `trim_threshold` freed bytes, instead of a fresh mmap (and ~700 page faults) per 1000-message
    batch string. Measured: JS batches ~85k -> ~140k msg/s of CPU. Returns False when not applied."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(-3, mmap_threshold)) and bool(libc.mallopt(-1, trim_threshold))  # M_MMAP_, M_TRIM_
    except (OSError, AttributeError):
        return False


ENGINE = Engine()
