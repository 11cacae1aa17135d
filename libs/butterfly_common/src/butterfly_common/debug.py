"""``butterfly call``: run one handler in-process under a pysnooper trace.

This is the original ``test_handler.py``: positional command-line strings bind to the
handler's parameters in order (``name=value`` names one), annotations coerce, the call is
traced line by line, and the raw return value is printed between two rules.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from typing import Any, TextIO

import pysnooper

from .discovery import Route, discover
from .params import ParamError
from .reqid import new_reqid
from .request import Request
from .service import installed_services

RULE = "=" * 61


def all_routes() -> dict[str, Route]:
    """Routes of every installed service (a path served by two services: first one wins)."""
    routes: dict[str, Route] = {}
    for service in installed_services().values():
        for path, route in discover(service.handlers).items():
            routes.setdefault(path, route)
    return routes


def _invoke(func: Callable[..., Any], req: Request, kwargs: dict[str, Any]) -> Any:
    return func(req, **kwargs)


def usage(routes: dict[str, Route], out: TextIO) -> None:
    out.write("Usage:\n")
    for path, route in sorted(routes.items()):
        out.write(f"  butterfly call {path} {route.binder.usage()}\n")


def call(path: str, args: list[str], out: TextIO = sys.stdout, trace: TextIO = sys.stderr) -> int:
    """Run ``path`` with ``args``; returns the process exit code."""
    routes = all_routes()
    route = routes.get(path.rstrip("/") or "/")
    if route is None:
        out.write(f"unknown route {path!r}\n")
        usage(routes, out)
        return 2
    try:
        kwargs = route.binder.bind_positional(args)
    except ParamError as exc:
        out.write(f"bad arguments: {exc}\nUsage:\n  butterfly call {route.path} "
                  f"{route.binder.usage()}\n")
        if route.doc:
            out.write("\n    " + route.doc.replace("\n", "\n    ") + "\n")
        return 2
    req = Request(new_reqid(), method="CALL", funcname=route.path)
    traced = pysnooper.snoop(output=trace, depth=2, thread_info=True,
                             color=trace.isatty())(_invoke)
    try:
        ret = traced(route.func, req, kwargs)
    except Exception:
        out.write(f"Usage:\n  butterfly call {route.path} {route.binder.usage()}\n")
        traceback.print_exc(file=out)
        return 1
    out.write(f"{RULE}\n{ret!r}\n{RULE}\n")
    return 0
