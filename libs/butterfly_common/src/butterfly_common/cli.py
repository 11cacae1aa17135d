"""The ``butterfly`` command: serve a service, call a handler, list routes."""

from __future__ import annotations

import argparse
import sys

from .settings import SettingsError, load_settings


def _serve(args: argparse.Namespace) -> int:
    from .serve import serve
    from .service import get_service

    service = get_service(args.service)
    settings = load_settings(default_port=service.port)
    serve(service, settings)
    return 0


def _call(args: argparse.Namespace) -> int:
    from . import runtime
    from .debug import all_routes, call, usage
    from .logs import configure_logging

    settings = load_settings()
    runtime.configure(settings)
    configure_logging(settings, "dev")
    if not args.path:
        usage(all_routes(), sys.stdout)
        return 2
    return call(args.path, args.args)


def _routes(args: argparse.Namespace) -> int:
    from .discovery import discover
    from .service import get_service, installed_services

    services = [get_service(args.service)] if args.service else installed_services().values()
    for service in services:
        for path, route in discover(service.handlers).items():
            flags = ",".join(f for f, on in (("admin", route.spec.admin),
                                             ("topic", route.is_topic)) if on)
            print(f"{service.name}\t:{service.port}\t{route.spec.kind}\t{path}\t"
                  f"{route.binder.usage()}\t{flags}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="butterfly", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run a service under gunicorn on its port")
    p.add_argument("service", help="core, baichuan, ruqi, ...")
    p.set_defaults(func=_serve)
    p = sub.add_parser("call", help="run one handler in-process under a trace")
    p.add_argument("path", nargs="?", help="/app/handler (omit to list every route)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="values in parameter order, or k=v")
    p.set_defaults(func=_call)
    p = sub.add_parser("routes", help="list routes of installed services")
    p.add_argument("service", nargs="?", help="only this service")
    p.set_defaults(func=_routes)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SettingsError as exc:
        print(f"butterfly: configuration error: {exc}", file=sys.stderr)
        return 2
    except LookupError as exc:
        print(f"butterfly: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
