"""``butterfly wuxing get|set|watch|export|import``: the original ``wuxing_cli.py``, over HTTP.

Registered through the ``butterfly.commands`` entry point group. The service URL comes from
``--url`` or ``BUTTERFLY_WUXING_URL``; writes send ``--token`` or ``BUTTERFLY_OPERATOR_TOKEN``
(else ``BUTTERFLY_ADMIN_TOKEN``) as a Bearer token.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    """Add the ``wuxing`` command to the ``butterfly`` parser's sub-commands."""
    parser = sub.add_parser("wuxing", help="read, write, watch, export and import wuxing data")
    parser.add_argument("--url", help="wuxing base URL (BUTTERFLY_WUXING_URL, "
                                      "default http://127.0.0.1:4200)")
    parser.add_argument("--token", help="Bearer token for writes (default: "
                                        "BUTTERFLY_OPERATOR_TOKEN or BUTTERFLY_ADMIN_TOKEN)")
    cmds = parser.add_subparsers(dest="wuxing_command", required=True)
    p = cmds.add_parser("get", help="print an instance's values as JSON")
    p.add_argument("namespace")
    p.add_argument("instance_name")
    p.add_argument("items", nargs="*", help="only these items")
    p.add_argument("--detail", action="store_true", help="ids, types, revisions too")
    p = cmds.add_parser("set", help="set one item (CAS with --revision or --old)")
    p.add_argument("namespace")
    p.add_argument("instance_name")
    p.add_argument("item_name")
    p.add_argument("value")
    p.add_argument("--revision", type=int, help="only if the item's revision is still this")
    p.add_argument("--old", help="only if the item's value is still this")
    p = cmds.add_parser("watch", help="print every change as one JSON line, in order")
    p.add_argument("namespace")
    p.add_argument("--since", type=int, help="revision to start after (default: now)")
    p.add_argument("--exit-after", type=float, help="stop after this many quiet seconds")
    p = cmds.add_parser("export", help="write a namespace as one JSON document")
    p.add_argument("namespace")
    p.add_argument("-o", "--output", help="file (default: stdout)")
    p = cmds.add_parser("import", help="import an exported document")
    p.add_argument("file", help="the JSON document ('-' for stdin)")
    p.add_argument("--namespace", help="import into this namespace instead")
    p.add_argument("--dry-run", action="store_true", help="only print the diff")
    parser.set_defaults(func=run)


def _client(args: argparse.Namespace) -> Any:
    from .client import WuxingClient

    token = (args.token or os.environ.get("BUTTERFLY_OPERATOR_TOKEN")
             or os.environ.get("BUTTERFLY_ADMIN_TOKEN"))
    return WuxingClient(args.url, token=token)


def _print(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True))


def run(args: argparse.Namespace) -> int:
    """Run one ``butterfly wuxing`` sub-command; 1 on a refusal, 2 on a usage error."""
    from butterfly_common.httpclient import CallError

    wx = _client(args)
    try:
        command = args.wuxing_command
        if command == "get":
            _print(wx.get(args.namespace, args.instance_name, args.items or None, args.detail))
        elif command == "set":
            _print(wx.update(args.namespace, args.instance_name, args.item_name, args.value,
                             revision=args.revision, old=args.old))
        elif command == "watch":
            for change in wx.watch(args.namespace, args.since, stop_after=args.exit_after):
                print(json.dumps(change, ensure_ascii=False), flush=True)
        elif command == "export":
            text = json.dumps(wx.export(args.namespace), ensure_ascii=False, indent=2)
            if args.output:
                Path(args.output).write_text(text + "\n", encoding="utf-8")
            else:
                print(text)
        elif command == "import":
            raw = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8")
            try:
                document = json.loads(raw)
            except ValueError as exc:
                print(f"butterfly wuxing import: not JSON: {exc}", file=sys.stderr)
                return 2
            _print(wx.import_(document, args.namespace, args.dry_run))
    except CallError as exc:  # a refusal, or wuxing could not be reached
        print(f"butterfly wuxing {args.wuxing_command}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"butterfly wuxing {args.wuxing_command}: {exc}", file=sys.stderr)
        return 1
    return 0
