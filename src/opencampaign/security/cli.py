"""`opencampaign operator|account|keys ...`: operators, technical accounts, signing keys."""

from __future__ import annotations

import argparse
import getpass
import json
import os
from pathlib import Path

from rich.console import Console
from rich.table import Table


def add_arguments(sub: argparse._SubParsersAction) -> None:
    def data_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", required=True, type=Path)
        p.add_argument("--schemas", action="append", default=[], metavar="DIR")

    op = sub.add_parser("operator", help="manage operators").add_subparsers(dest="operator_command", required=True)
    p = op.add_parser("create", help="create an operator (password from --password-env or prompted)")
    data_dir(p)
    p.add_argument("login")
    p.add_argument("--label", default="")
    p.add_argument("--group", action="append", default=[], help="operator group (repeatable)")
    p.add_argument("--right", action="append", default=[], help="named right held directly (repeatable)")
    p.add_argument("--password-env", default="OPENCAMPAIGN_OPERATOR_PASSWORD",
                   help="environment variable holding the password (default OPENCAMPAIGN_OPERATOR_PASSWORD)")
    p.set_defaults(func=cmd_operator_create)
    p = op.add_parser("set-password", help="set an operator's password and lift any ban")
    data_dir(p)
    p.add_argument("login")
    p.add_argument("--password-env", default="OPENCAMPAIGN_OPERATOR_PASSWORD")
    p.set_defaults(func=cmd_operator_set_password)
    p = op.add_parser("grant", help="give named rights or groups to an operator")
    data_dir(p)
    p.add_argument("login")
    p.add_argument("--group", action="append", default=[])
    p.add_argument("--right", action="append", default=[])
    p.set_defaults(func=cmd_operator_grant)
    p = op.add_parser("list", help="list operators with their groups and rights")
    data_dir(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_operator_list)

    acc = sub.add_parser("account", help="manage technical accounts (OAuth server-to-server)").add_subparsers(
        dest="account_command", required=True)
    p = acc.add_parser("create", help="create a technical account; prints its client secret once")
    data_dir(p)
    p.add_argument("name")
    p.add_argument("--group", action="append", default=[], help="product profile / operator group (repeatable)")
    p.add_argument("--json", action="store_true", help="print one JSON object with client_id and client_secret")
    p.set_defaults(func=cmd_account_create)
    p = acc.add_parser("list", help="list technical accounts (no secrets)")
    data_dir(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_account_list)
    p = acc.add_parser("revoke", help="revoke a technical account: no new token, existing ones refused")
    data_dir(p)
    p.add_argument("name")
    p.set_defaults(func=cmd_account_revoke)

    keys = sub.add_parser("keys", help="token signing keys").add_subparsers(dest="keys_command", required=True)
    p = keys.add_parser("rotate", help="make a new signing key active; tokens signed by older keys stay valid")
    data_dir(p)
    p.set_defaults(func=cmd_keys_rotate)


def _instance(args: argparse.Namespace):  # noqa: ANN202
    from ..instance import Instance

    return Instance.open(args.data_dir, schema_dirs=[str(d) for d in args.schemas])


def _password(args: argparse.Namespace) -> str:
    password = os.environ.get(args.password_env)
    if password:
        return password
    if not os.isatty(0):
        raise ValueError(f"set {args.password_env} (no terminal to prompt for a password)")
    password = getpass.getpass("Password: ")
    if password != getpass.getpass("Again: "):
        raise ValueError("the passwords differ")
    return password


def _operators(instance):  # noqa: ANN001, ANN202
    from .operators import Operators

    return Operators(instance.storage)


def cmd_operator_create(args: argparse.Namespace) -> int:
    instance = _instance(args)
    try:
        operator = _operators(instance).create(args.login, _password(args), label=args.label,
                                               rights=set(args.right), groups=args.group)
    finally:
        instance.close()
    print(f"Operator '{operator.name}' created (id {operator.id}; rights: {', '.join(sorted(operator.rights)) or 'none'}).")
    return 0


def cmd_operator_set_password(args: argparse.Namespace) -> int:
    instance = _instance(args)
    try:
        _operators(instance).set_password(args.login, _password(args))
    finally:
        instance.close()
    print(f"Password of '{args.login}' changed.")
    return 0


def cmd_operator_grant(args: argparse.Namespace) -> int:
    instance = _instance(args)
    try:
        operator = _operators(instance).grant(args.login, rights=args.right, groups=args.group)
    finally:
        instance.close()
    print(f"'{operator.name}' now has rights: {', '.join(sorted(operator.rights)) or 'none'}; "
          f"groups: {', '.join(n for _i, n in operator.groups) or 'none'}.")
    return 0


def cmd_operator_list(args: argparse.Namespace) -> int:
    instance = _instance(args)
    try:
        operators = _operators(instance).list()
    finally:
        instance.close()
    rows = [{"login": o.name, "id": o.id, "label": o.label, "type": "technical" if o.type == 1 else "operator",
             "groups": [n for _i, n in o.groups], "rights": sorted(o.rights)} for o in operators]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table("login", "id", "type", "groups", "rights")
    for r in rows:
        table.add_row(r["login"], str(r["id"]), r["type"], ", ".join(r["groups"]), ", ".join(r["rights"]))
    Console().print(table)
    return 0


def _tokens(instance):  # noqa: ANN001, ANN202
    from .ims import TokenService

    return TokenService(instance.settings, instance.storage)


def cmd_account_create(args: argparse.Namespace) -> int:
    instance = _instance(args)
    try:
        client_id, secret, email = _tokens(instance).accounts.create(args.name, args.group)
    finally:
        instance.close()
    if args.json:
        print(json.dumps({"name": args.name, "client_id": client_id, "client_secret": secret,
                          "technical_account_email": email, "groups": args.group}))
    else:
        print(f"Technical account '{args.name}' created.\n  client_id:     {client_id}\n"
              f"  client_secret: {secret}   (shown once)\n  operator:      {email}")
    return 0


def cmd_account_list(args: argparse.Namespace) -> int:
    instance = _instance(args)
    try:
        accounts = _tokens(instance).accounts.list()
    finally:
        instance.close()
    if args.json:
        print(json.dumps(accounts, indent=2))
        return 0
    table = Table("name", "client_id", "groups", "revoked", "last used")
    for a in accounts:
        table.add_row(a["name"], a["client_id"], ", ".join(a["groups"]), "yes" if a["revoked"] else "",
                      a["last_used"] or "")
    Console().print(table)
    return 0


def cmd_account_revoke(args: argparse.Namespace) -> int:
    instance = _instance(args)
    try:
        _tokens(instance).accounts.revoke(args.name)
    finally:
        instance.close()
    print(f"Technical account '{args.name}' revoked.")
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    instance = _instance(args)
    try:
        kid = _tokens(instance).keys.rotate()
    finally:
        instance.close()
    print(f"New signing key '{kid}' is active; tokens signed by earlier keys stay valid until they expire.")
    return 0
