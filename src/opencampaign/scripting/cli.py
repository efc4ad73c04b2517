"""CLI: `opencampaign js run FILE` (like `nlserver javascript`) and `opencampaign template render FILE`.

The lead wires `add_arguments(subparsers)` into `opencampaign.cli`; each sub-command sets `func`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..context import CallContext


def add_arguments(subparsers: Any) -> None:
    js = subparsers.add_parser("js", help="server-side JavaScript")
    js_sub = js.add_subparsers(dest="js_command", required=True)
    run = js_sub.add_parser("run", help="run a script and print its log")
    run.add_argument("file", type=Path)
    run.add_argument("--as", dest="operator", default="admin", help="operator whose rights the script has")
    run.add_argument("--data-dir", type=Path, default=Path("."))
    run.add_argument("--timeout", type=float, default=3600.0, help="CPU-time limit in seconds")
    run.set_defaults(func=cmd_js_run)

    tpl = subparsers.add_parser("template", help="personalization templates")
    tpl_sub = tpl.add_subparsers(dest="template_command", required=True)
    render = tpl_sub.add_parser("render", help="render a template for the recipients matching --where")
    render.add_argument("file", type=Path)
    render.add_argument("--where", default="", help="XTK expression on nms:recipient")
    render.add_argument("--data-dir", type=Path, default=Path("."))
    render.add_argument("--limit", type=int, default=10)
    render.set_defaults(func=cmd_template_render)


def operator_context(instance: Any, login: str) -> CallContext:
    """The CallContext of an existing operator: its own named rights plus those of its groups."""
    from ..security.operators import Operators

    operator = Operators(instance.storage).load(login)
    if operator is None:
        raise SystemExit(f"error: operator '{login}' does not exist")
    return operator.context()


def cmd_js_run(args: argparse.Namespace) -> int:
    from ..instance import Instance
    from .api import run_script
    from .engine import Limits

    instance = Instance.open(args.data_dir)
    ctx = operator_context(instance, args.operator)
    result = run_script(instance, args.file.read_text(encoding="utf-8"), ctx,
                        limits=Limits(cpu_seconds=args.timeout, memory_bytes=256 * 1024 * 1024))
    for entry in result.logs:
        prefix = {"info": "", "verbose": "", "warning": "WARNING: ", "error": "ERROR: "}[entry.level]
        print(f"{prefix}{entry.message}")
    if result.error is not None:
        print(f"ERROR: {args.file}: {result.error}", file=sys.stderr)
        return 1
    return 0


def cmd_template_render(args: argparse.Namespace) -> int:
    from lxml import etree

    from ..instance import Instance
    from ..query.querydef import execute_query
    from ..query.simplejson import xml_to_simplejson
    from .api import ScriptApi
    from .templates import compile_template

    instance = Instance.open(args.data_dir)
    ctx = operator_context(instance, "admin")
    query = etree.Element("queryDef", schema="nms:recipient", operation="select", lineCount=str(args.limit))
    etree.SubElement(query, "select").append(etree.Element("node", expr="."))
    if args.where:
        etree.SubElement(etree.SubElement(query, "where"), "condition", expr=args.where)
    try:
        res = execute_query(instance.storage, instance.registry, query, ctx)
    except Exception:  # a select of "." may be refused: select every attribute instead
        sel = query.find("select")
        assert sel is not None
        sel.clear()
        for attr in instance.registry.get("nms:recipient").root.attributes.values():
            if attr.name.replace("_", "a").isalnum():  # plain fields (not link keys such as folder-id)
                etree.SubElement(sel, "node", expr=f"@{attr.name}")
        res = execute_query(instance.storage, instance.registry, query, ctx)
    recipients = [xml_to_simplejson(r) for r in res]
    template = compile_template(args.file.read_text(encoding="utf-8"), instance=instance)
    status = 0
    for rcp, out in zip(recipients, template.render(recipients, host=ScriptApi(instance, ctx)), strict=False):
        if out.error is not None:
            print(f"--- {rcp.get('email', rcp.get('id', ''))}: ERROR {out.error}", file=sys.stderr)
            status = 1
        else:
            print(f"--- {rcp.get('email', rcp.get('id', ''))}")
            print(out.text)
    if not recipients:
        print(json.dumps({"recipients": 0}))
    return status
