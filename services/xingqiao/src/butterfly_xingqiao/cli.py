"""``butterfly xingqiao signal <job_id> <name> [--payload JSON]``: send a signal to a flow
from a shell (an operator's approval, a script's "the file is there").

Registered through the ``butterfly.commands`` entry point group, as wuxing's CLI. The
service URL comes from ``--url`` or ``BUTTERFLY_XINGQIAO_URL``; the write sends ``--token``
or ``BUTTERFLY_OPERATOR_TOKEN`` (else ``BUTTERFLY_ADMIN_TOKEN``) as a Bearer token.
Exit codes: 0 sent, 1 refused or unreachable (the stat and reason on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


def register(sub: Any) -> None:
    """Add the ``xingqiao`` command to the ``butterfly`` parser's sub-commands."""
    parser = sub.add_parser("xingqiao", help="act on xingqiao flows (send a signal)")
    parser.add_argument("--url", help="xingqiao base URL (BUTTERFLY_XINGQIAO_URL, "
                                      "default http://127.0.0.1:4700)")
    parser.add_argument("--token", help="Bearer token (default: BUTTERFLY_OPERATOR_TOKEN "
                                        "or BUTTERFLY_ADMIN_TOKEN)")
    cmds = parser.add_subparsers(dest="xingqiao_command", required=True)
    p = cmds.add_parser("signal", help="send a signal to a flow: its signal task of that "
                                       "name finishes with the payload as its result")
    p.add_argument("job_id", type=int)
    p.add_argument("name", help="the signal's name")
    p.add_argument("--payload", default="{}", help="a JSON object (default: {})")
    parser.set_defaults(func=run)


def _payload(text: str) -> dict[str, Any] | str:
    """The payload as a dict, or the problem with it as a str."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        return f"--payload is not JSON: {exc}"
    if not isinstance(value, dict):
        return f"--payload must be a JSON object, not {type(value).__name__}"
    return value


def run(args: argparse.Namespace) -> int:
    """Run one ``butterfly xingqiao`` sub-command; 1 on a refusal, 2 on a usage error."""
    from butterfly_common.httpclient import CallError

    from .client import FlowClient

    name = f"butterfly xingqiao {args.xingqiao_command}"
    payload = _payload(args.payload)
    if isinstance(payload, str):
        print(f"{name}: {payload}", file=sys.stderr)
        return 2
    token = (args.token or os.environ.get("BUTTERFLY_OPERATOR_TOKEN")
             or os.environ.get("BUTTERFLY_ADMIN_TOKEN"))
    try:
        sent = FlowClient(args.url, token=token).send_signal(args.job_id, args.name, payload)
    except CallError as exc:  # a refusal (stat, reason), or xingqiao could not be reached
        print(f"{name}: {exc.stat}: {exc.reason}", file=sys.stderr)
        return 1
    print(json.dumps(sent, ensure_ascii=False, sort_keys=True))
    return 0
