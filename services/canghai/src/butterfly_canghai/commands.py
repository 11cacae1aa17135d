"""``butterfly user add|passwd|role|remove|list``: manage console users from the shell.

Registered under the ``butterfly.commands`` entry point group. Passwords are read from the
terminal (twice) or, with ``--password-stdin``, from one line of standard input: never from
argv, where ``ps`` and shell history would show them.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from .config import ROLES


def _prepare() -> None:
    from butterfly_common import db, runtime
    from butterfly_common.settings import load_settings

    from .models import MODELS

    runtime.configure(load_settings())
    db.create_tables(MODELS)


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("butterfly user: the passwords differ")
    return first


def _run(args: argparse.Namespace) -> int:
    from . import users

    _prepare()
    try:
        if args.action == "add":
            users.add_user(args.username, _password(args), args.role)
            print(f"added {args.username} ({args.role})")
        elif args.action == "passwd":
            users.set_password(args.username, _password(args))
            print(f"password of {args.username} changed; their sessions are signed out")
        elif args.action == "role":
            users.set_role(args.username, args.role)
            print(f"{args.username} is now {args.role}")
        elif args.action == "remove":
            users.remove_user(args.username)
            print(f"removed {args.username}")
        else:
            for user in users.list_users():
                print(f"{user.username}\t{user.role}")
    except users.UserError as exc:
        print(f"butterfly user: {exc}", file=sys.stderr)
        return 1
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """The ``butterfly.commands`` hook: add ``butterfly user``."""
    p = subparsers.add_parser("user", help="manage canghai console users")
    sub = p.add_subparsers(dest="action", required=True)
    for name, helptext in (("add", "add a user"), ("passwd", "change a password"),
                           ("role", "change a role"), ("remove", "remove a user"),
                           ("list", "list users")):
        q = sub.add_parser(name, help=helptext)
        if name != "list":
            q.add_argument("username")
        if name in ("add", "role"):
            q.add_argument("--role", choices=ROLES, default="viewer" if name == "add" else None,
                           required=name == "role")
        if name in ("add", "passwd"):
            q.add_argument("--password-stdin", action="store_true",
                           help="read the password from one line of stdin")
    p.set_defaults(func=_run)
