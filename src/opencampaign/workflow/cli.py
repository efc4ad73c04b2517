"""`opencampaign worker` and `opencampaign workflow list|start|stop|pause|resume|post-event|log`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ..context import INTERNAL
from . import commands, model

FINAL = (model.PAUSED, model.FINISHED)


def add_arguments(subparsers: Any) -> None:
    p = subparsers.add_parser("worker", help="run the workflow worker (leases runnable workflows and runs them)")
    _common(p)
    p.add_argument("--threads", type=int, default=None, help="workflows run in parallel (default 4)")
    p.set_defaults(func=cmd_worker)

    p = subparsers.add_parser("workflow", help="list, start, stop, pause, resume workflows; post events; logs")
    sub = p.add_subparsers(dest="workflow_command", required=True)
    q = sub.add_parser("list", help="workflows and their states")
    _common(q)
    q.set_defaults(func=cmd_list)
    for verb in ("start", "stop", "pause", "resume", "kill", "restart"):
        q = sub.add_parser(verb, help=f"{verb} a workflow (asynchronous: applied by a worker)")
        q.add_argument("name", help="internal name or identifier")
        _common(q)
        if verb == "start":
            q.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="instance variable")
        q.add_argument("--wait", action="store_true", help="show progress until the workflow is finished or paused")
        q.add_argument("--run", action="store_true", help="run an in-process worker while waiting (implies --wait)")
        q.set_defaults(func=cmd_command, verb=verb)
    q = sub.add_parser("post-event", help="send an event to an external signal activity")
    q.add_argument("name")
    q.add_argument("activity")
    _common(q)
    q.add_argument("--transition", default="")
    q.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="event variable")
    q.add_argument("--complete", action="store_true", help="complete the signal task")
    q.set_defaults(func=cmd_post_event)
    q = sub.add_parser("log", help="print the log of a workflow")
    q.add_argument("name")
    _common(q)
    q.add_argument("--follow", action="store_true", help="keep printing new messages")
    q.set_defaults(func=cmd_log)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", required=True, type=Path, help="instance folder")
    p.add_argument("--schemas", action="append", default=[], metavar="DIR", help="folder of custom schemas")


def _open(args: argparse.Namespace) -> Any:
    from ..instance import Instance

    return Instance.open(args.data_dir, schema_dirs=[str(d) for d in args.schemas])


def _vars(items: list[str]) -> dict[str, str]:
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"opencampaign: error: --var expects NAME=VALUE, got '{item}'")
        result[key] = value
    return result


def cmd_worker(args: argparse.Namespace) -> int:
    from ..storage.engines import check_connection
    from ..storage.placement import CLOUD
    from .worker import Worker

    try:
        instance = _open(args)
        # the embedded DuckDB is single-process: fail now, not at the first activity, when `serve` holds it
        check_connection(instance.storage.engine(CLOUD), CLOUD)
        worker = Worker(instance, threads=args.threads)
    except Exception as exc:  # noqa: BLE001 - a database that cannot be opened is reported, not traced
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "duckdb" in text.lower() or "lock" in text.lower():
            text += ("\nWith the embedded databases (DuckDB cloud), `opencampaign serve` runs the workflow worker in "
                     "its own process; separate workers need PostgreSQL (OPENCAMPAIGN_LOCAL_DB, OPENCAMPAIGN_CLOUD_DB).")
        print(f"opencampaign worker: error: {text}", file=sys.stderr)
        return 1
    print(f"opencampaign worker: {worker.threads} thread(s) on {args.data_dir} (Ctrl-C to stop)", file=sys.stderr)
    try:
        worker.run_forever()
    except KeyboardInterrupt:
        worker.stop()
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    instance = _open(args)
    table = Table("id", "internal name", "label", "state", "failed", "last start", "last end")
    for row in commands.store_of(instance).list():
        table.add_row(str(row["iWorkflowId"]), row["sInternalName"] or "", row["sLabel"] or "",
                      model.STATE_NAMES.get(row["iState"], str(row["iState"])), "yes" if row["iFailed"] else "",
                      str(row["tsLastStart"] or ""), str(row["tsLastEnd"] or ""))
    Console().print(table)
    return 0


def _run_command(instance: Any, args: argparse.Namespace) -> dict[str, Any]:
    func = getattr(commands, args.verb)
    if args.verb == "start":
        return commands.start(instance, args.name, INTERNAL, variables=_vars(args.var) or None)
    return func(instance, args.name, INTERNAL)


def cmd_command(args: argparse.Namespace) -> int:
    instance = _open(args)
    try:
        wf = _run_command(instance, args)
    except commands.CommandError as exc:
        print(f"opencampaign: error: {exc}", file=sys.stderr)
        return 1
    if not (args.wait or args.run):
        print(f"{wf['sInternalName']}: {model.STATE_NAMES.get(wf['iState'])}")
        return 0
    return _wait(instance, wf, run_worker=args.run)


def _wait(instance: Any, wf: dict[str, Any], *, run_worker: bool) -> int:
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    stop = None
    if run_worker:
        from .worker import start_background

        stop = start_background(instance)
    store = commands.store_of(instance)
    wid, last = wf["iWorkflowId"], 0
    console = Console()
    try:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as bar:
            job = bar.add_task(wf["sInternalName"], total=None)
            while True:
                for entry in store.logs(wid, last):
                    last = entry["iWorkflowLogId"]
                    style = "red" if entry["iLogType"] == model.LOG_ERROR else ""
                    bar.console.print(f"[{style}]{_line(entry)}[/{style}]" if style else _line(entry), markup=bool(style))
                current = store.get(wid)
                done = sum(1 for t in store.tasks(wid) if t["iStatus"] == model.TASK_COMPLETED)
                bar.update(job, description=f"{wf['sInternalName']}: {model.STATE_NAMES.get(current['iState'])}, "
                                            f"{done} task(s) done")
                if current["iState"] in FINAL:
                    break
                time.sleep(0.2)
    finally:
        if stop is not None:
            stop()
    return 1 if current["iFailed"] else 0


def _line(entry: dict[str, Any]) -> str:
    where = f"[{entry['sActivity']}] " if entry["sActivity"] else ""
    return f"{entry['tsLog']:%Y-%m-%d %H:%M:%S} {where}{entry['mMessage']}"


def cmd_post_event(args: argparse.Namespace) -> int:
    instance = _open(args)
    try:
        commands.post_event(instance, args.name, args.activity, args.transition, _vars(args.var), args.complete,
                            INTERNAL)
    except commands.CommandError as exc:
        print(f"opencampaign: error: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    instance = _open(args)
    try:
        wid = commands.find(instance, args.name)["iWorkflowId"]
    except commands.CommandError as exc:
        print(f"opencampaign: error: {exc}", file=sys.stderr)
        return 1
    store, last = commands.store_of(instance), 0
    while True:
        for entry in store.logs(wid, last):
            last = entry["iWorkflowLogId"]
            print(_line(entry))
        if not args.follow:
            return 0
        time.sleep(0.5)
