"""The `opencampaign` command line.

Errors a user can fix (bad schema, bad configuration, unreachable database) print a readable
message on stderr and exit 1; usage errors exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from lxml import etree

from .config import ConfigError
from .instance import Instance
from .schema.errors import SchemaError, UnknownSchemaError
from .storage.engines import DatabaseUnavailable
from .storage.placement import PlacementError
from .xmlsafe import XMLInputError

USER_ERRORS = (SchemaError, ConfigError, DatabaseUnavailable, PlacementError, XMLInputError, UnknownSchemaError)


def _data_dir_args(parser: argparse.ArgumentParser, *, schemas: bool = True) -> None:
    parser.add_argument("--data-dir", required=True, type=Path, help="instance folder (databases, configuration)")
    if schemas:
        parser.add_argument("--schemas", action="append", default=[], metavar="DIR",
                            help="folder of custom source schemas (*.xml, recursive); repeatable")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="opencampaign", description="Self-hosted Adobe Campaign compatible server")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", help="create or bring up to date an instance's databases and admin operator")
    _data_dir_args(p)
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("serve", help="serve HTTP (runs init when needed)")
    _data_dir_args(p)
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--demo", action="store_true", help="load the demo data set (once)")
    p.add_argument("--workers", type=int, default=1,
                   help="server processes (PostgreSQL or SQLite databases; a DuckDB file allows one process)")
    p.add_argument("--no-workflow-worker", dest="workflow_worker", action="store_false",
                   help="do not run workflows in this process (run `opencampaign worker` instead)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("updatedb", help="apply schema changes to the databases and print the SQL")
    _data_dir_args(p)
    p.add_argument("--dry-run", action="store_true", help="print the SQL without running it")
    p.add_argument("--allow-drop", action="store_true", help="also drop tables and columns that hold data")
    p.set_defaults(func=cmd_updatedb)

    p = sub.add_parser("docs", help="write the data-model description (static site + Markdown)")
    _data_dir_args(p)
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=cmd_docs)

    p = sub.add_parser("schema", help="inspect schemas")
    schema_sub = p.add_subparsers(dest="schema_command", required=True)
    show = schema_sub.add_parser("show", help="print a schema")
    show.add_argument("schema_id", metavar="ns:name")
    group = show.add_mutually_exclusive_group()
    group.add_argument("--compiled", action="store_true", help="the compiled xtk:schema (default)")
    group.add_argument("--source", action="store_true", help="the source srcSchema")
    show.add_argument("--data-dir", type=Path, default=None)
    show.add_argument("--schemas", action="append", default=[], metavar="DIR")
    show.set_defaults(func=cmd_schema_show)

    from .scripting.cli import add_arguments as add_script_commands
    from .security.cli import add_arguments as add_security_commands
    from .workflow.cli import add_arguments as add_workflow_commands

    add_security_commands(sub)
    add_script_commands(sub)
    add_workflow_commands(sub)
    return parser


def _open(args: argparse.Namespace) -> Instance:
    return Instance.open(args.data_dir, schema_dirs=[str(d) for d in args.schemas])


def cmd_init(args: argparse.Namespace) -> int:
    instance = _open(args)
    try:
        report = instance.init()
    finally:
        instance.close()
    created = sum(1 for s in report.statements if s.upper().startswith("CREATE TABLE"))
    print(f"Instance ready in {instance.data_dir} ({created} table(s) created, {len(report.statements)} statement(s)).")
    if report.generated_password:
        print(f"Operator 'admin' created with password: {report.generated_password}")
        print("(shown once; set OPENCAMPAIGN_ADMIN_PASSWORD before init to choose it)")
    elif report.admin_created:
        print("Operator 'admin' created with the password from OPENCAMPAIGN_ADMIN_PASSWORD.")
    return 0


def cmd_updatedb(args: argparse.Namespace) -> int:
    from .storage import migrate

    instance = _open(args)
    try:
        instance.storage.check()
        changes = migrate.plan(instance.storage, allow_drop=args.allow_drop)
        if not changes:
            print("-- The database structure is up to date.")
            return 0
        for change in changes:
            print(f"-- {change.describe()}")
            if not change.blocked:
                for statement in change.statements:
                    print(statement.rstrip() + ";")
        blocked = [c for c in changes if c.blocked]
        if args.dry_run:
            print(f"-- Dry run: nothing applied ({len(changes) - len(blocked)} change(s) pending).")
        else:
            executed = migrate.apply(instance.storage, changes)
            print(f"-- Applied {len(executed)} statement(s).")
        if blocked:
            print(f"-- {len(blocked)} change(s) skipped because data would be lost; rerun with --allow-drop.",
                  file=sys.stderr)
    finally:
        instance.close()
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    from .docsite import build_site
    from .storage.placement import Placement

    instance = _open(args)
    try:
        placement = Placement(instance.registry, single_database=instance.storage.single)
        written = build_site(instance.registry, args.out, placement=placement)
    finally:
        instance.close()
    print(f"Wrote {len(written)} file(s) to {args.out} (open {args.out / 'index.html'}).")
    return 0


def cmd_schema_show(args: argparse.Namespace) -> int:
    from .config import load_settings
    from .schema.registry import load_registry

    dirs = [Path(d) for d in args.schemas]
    if args.data_dir is not None:
        dirs += load_settings(args.data_dir).schema_dirs
    registry = load_registry(dirs)
    if args.source:
        source = registry.source(args.schema_id)
        if source is None:
            raise UnknownSchemaError(args.schema_id)
        tree = source.root
    else:
        compiled = registry.get(args.schema_id).compiled_xml
        assert compiled is not None
        tree = compiled
    text = etree.tostring(_indented(tree), pretty_print=True, encoding="unicode")
    sys.stdout.write(text)
    return 0


def _indented(tree: etree._Element) -> etree._Element:
    import copy

    clone = copy.deepcopy(tree)
    etree.indent(clone, space="  ")
    return clone


def cmd_serve(args: argparse.Namespace) -> int:
    from .server.run import serve

    return serve(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (*USER_ERRORS, ValueError) as exc:
        print(f"opencampaign: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
