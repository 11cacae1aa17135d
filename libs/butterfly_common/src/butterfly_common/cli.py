"""The ``butterfly`` command: serve a service, call a handler, list routes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dotenv import load_dotenv

from .settings import SettingsError, load_settings


def _serve(args: argparse.Namespace) -> int:
    from .serve import prepare_metrics_dir, serve
    from .service import get_service

    prepare_metrics_dir()  # before any service module can import prometheus_client
    service = get_service(args.service)
    settings = load_settings(default_port=service.port)
    serve(service, settings, **({"reload": True} if args.reload else {}))
    return 0


def _new(args: argparse.Namespace) -> int:
    from .scaffold import ScaffoldError, new_project, next_steps

    try:
        folder = new_project(args.name, Path(args.dir), args.port)
    except ScaffoldError as exc:
        print(f"butterfly new: {exc}", file=sys.stderr)
        return 2
    print(f"created {folder}: the service {args.name} on port {args.port}")
    for step in next_steps(folder):
        print(f"  {step}")
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


def _config(args: argparse.Namespace) -> int:
    """Every setting of the framework and of the services, with its value and its source,
    read from the current environment; a bad value is a SettingsError (exit 2, one line)."""
    from .config import Config, SettingInfo
    from .service import get_service, installed_services
    from .settings import DEFAULT_PORT, describe_settings
    from .tracing import TracingConfig

    services = ([get_service(name) for name in args.service] if args.service
                else list(installed_services().values()))
    # one service: its port is BUTTERFLY_PORT's default, as under ``butterfly serve``
    settings = load_settings(default_port=services[0].port if len(args.service) == 1
                             else DEFAULT_PORT)
    sections: list[tuple[str, list[SettingInfo] | str]] = [
        ("butterfly", describe_settings(settings)),
        ("tracing", TracingConfig.describe(settings.env))]
    for service in services:
        declared = service.config
        if declared is None:
            sections.append((service.name, "declares no config"))
        elif isinstance(declared, type) and issubclass(declared, Config):
            declared.from_env(settings.env)  # cross-field checks too
            sections.append((service.name, declared.describe(settings.env)))
        else:
            service.read_config(settings)
            sections.append((service.name, f"{declared.__name__} is valid; it does not "
                                           "declare its variables (butterfly_common.config)"))
    for title, rows in sections:
        print(f"# {title}")
        if isinstance(rows, str):
            print(f"  ({rows})")
            continue
        width = max((len(row.env) for row in rows), default=0)
        for row in rows:
            print(f"{row.env:<{width}} = {row.shown():<24} ({row.source})")
    return 0


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


def _worker(args: argparse.Namespace) -> int:
    import signal
    import threading

    from .consumer import build_consumer
    from .logs import configure_logging
    from .service import get_service

    service = get_service(args.service)
    settings = load_settings(default_port=service.port)
    configure_logging(settings, service.name)
    consumer = build_consumer(service, settings).start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"butterfly worker {service.name}: {consumer.worker_id} serving "
          f"{len(consumer.topics)} topics", flush=True)
    stop.wait()
    consumer.stop()
    return 0


def _publish(args: argparse.Namespace) -> int:
    import json

    from . import mq, runtime
    from .mq import FINISHED, MQError

    try:
        data = json.loads(args.data)
    except ValueError as exc:
        print(f"butterfly publish: data is not valid JSON: {exc}", file=sys.stderr)
        return 2
    if not isinstance(data, dict):
        print("butterfly publish: data must be a JSON object", file=sys.stderr)
        return 2
    from .reqid import new_reqid

    runtime.configure(load_settings())
    options = {"force": args.force, "delay": args.delay, "reqid": new_reqid(),
               "priority": args.priority}
    if args.msg_id:
        options["msg_id"] = args.msg_id
    try:
        result = mq.publish(args.topic, data, **options)
    except (MQError, ValueError) as exc:
        print(f"butterfly publish: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"msg_id": result.msg_id, "created": result.created,
                      "status": result.status, "reqid": options["reqid"]}))
    if not args.wait:
        return 0
    message = mq.wait(result.msg_id, args.timeout)
    if message is None:
        print("butterfly publish: the message is gone (expired or deleted)", file=sys.stderr)
        return 1
    print(json.dumps({k: v for k, v in message.to_dict().items()
                      if k in ("id", "status", "result", "error", "attempts", "cost")}))
    return 0 if message.status == FINISHED else 1


def _healthcheck(args: argparse.Namespace) -> int:
    import os
    import urllib.request

    if args.worker:
        return _worker_healthcheck()
    from .settings import DEFAULT_PORT

    port = args.port or int(os.environ.get("BUTTERFLY_PORT") or DEFAULT_PORT)
    try:
        url = f"http://127.0.0.1:{port}/healthz"  # fixed scheme and host: the local service
        with urllib.request.urlopen(url, timeout=3) as reply:
            return 0 if reply.status == 200 else 1
    except OSError as exc:
        print(f"butterfly healthcheck: {exc}", file=sys.stderr)
        return 1


def _worker_healthcheck() -> int:
    """A worker-only process serves no HTTP: it is healthy while a consumer on this host
    heartbeats the worker registry with every thread alive (what baichuan's ``workers``
    calls ``alive``)."""
    import socket

    from . import mq, runtime

    host = socket.gethostname()
    try:
        runtime.configure(load_settings())
        mine = [w for w in mq.broker().workers() if (w.get("info") or {}).get("host") == host]
    except Exception as exc:  # Redis unreachable: unhealthy, said in one line
        print(f"butterfly healthcheck: {exc}", file=sys.stderr)
        return 1
    if any(w["alive"] for w in mine):
        return 0
    print(f"butterfly healthcheck: no live consumer on {host} "
          f"({len(mine)} registered, none alive)", file=sys.stderr)
    return 1


BUILTIN = ("serve", "call", "worker", "publish", "healthcheck", "routes", "new", "config")


def build_parser(plugins: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="butterfly", description="The butterfly command: serve a service, call a handler, "
                                      "publish a message, list routes.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run a service under gunicorn on its port")
    p.add_argument("service", help="core, baichuan, ruqi, ...")
    p.add_argument("--reload", action="store_true",
                   help="for development: restart the workers when a loaded file changes")
    p.set_defaults(func=_serve)
    p = sub.add_parser("call", help="run one handler in-process under a trace")
    p.add_argument("path", nargs="?", help="/app/handler (omit to list every route)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="values in parameter order, or k=v")
    p.set_defaults(func=_call)
    p = sub.add_parser("worker", help="run only the queue consumer of a service")
    p.add_argument("service")
    p.set_defaults(func=_worker)
    p = sub.add_parser("publish", help="publish a message to a topic (/app/handler)",
                       usage="butterfly publish /app/handler ['{\"k\": \"v\"}'] [--wait] "
                             "[--timeout 30] [--delay S] [--msg-id ID] [--priority N] [--force]")
    p.add_argument("topic", help="/app/handler")
    p.add_argument("data", nargs="?", default="{}", help="JSON object of the handler's params")
    p.add_argument("--wait", action="store_true", help="wait for the result and print it")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to --wait (30)")
    p.add_argument("--force", action="store_true", help="publish even with no live consumer")
    p.add_argument("--delay", type=float, default=0.0, help="seconds before it may run")
    p.add_argument("--msg-id", help="idempotency key: the same id is never queued twice")
    p.add_argument("--priority", type=int, default=0,
                   help="-100..100, higher claimed first (0)")
    p.set_defaults(func=_publish)
    p = sub.add_parser("healthcheck", help="exit 0 when the local service answers /healthz")
    p.add_argument("--port", type=int, help="default: BUTTERFLY_PORT or 8585")
    p.add_argument("--worker", action="store_true",
                   help="check a `butterfly worker` process instead: a live consumer on "
                        "this host in the worker registry")
    p.set_defaults(func=_healthcheck)
    p = sub.add_parser("routes", help="list routes of installed services")
    p.add_argument("service", nargs="?", help="only this service")
    p.set_defaults(func=_routes)
    p = sub.add_parser("config", help="print every setting: value and source (env or "
                                      "default), secrets masked; exit 2 on a bad value")
    p.add_argument("service", nargs="*", help="only these services (default: every one)")
    p.set_defaults(func=_config)
    p = sub.add_parser("new", help="scaffold a project of your own: a service, an app, tests")
    p.add_argument("name", help="the service, its package and its app (e.g. demo_shop)")
    p.add_argument("--port", type=int, default=8600, help="its HTTP port (8600)")
    p.add_argument("--dir", default=".", help="where to create the folder <name> (.)")
    p.set_defaults(func=_new)
    sub.add_parser("help", help="this text; `butterfly help <command>`: that command's")
    # Services add their own subcommands (``butterfly user`` ...): each entry point of the
    # ``butterfly.commands`` group is a callable ``register(subparsers)``. Not loaded for
    # the built-in commands: ``serve`` must set up Prometheus before anything imports it.
    if plugins:
        from importlib.metadata import entry_points

        for ep in entry_points(group="butterfly.commands"):
            ep.load()(sub)
    return parser


def _help_argv(argv: list[str]) -> list[str]:
    """``butterfly help [cmd]`` is ``butterfly [cmd] --help``; no command at all, the same."""
    if not argv:
        return ["--help"]
    if argv[0] == "help":
        return [*argv[1:2], "--help"]
    return argv


def main(argv: list[str] | None = None) -> int:
    argv = _help_argv(sys.argv[1:] if argv is None else list(argv))
    args = build_parser(plugins=argv[0] not in BUILTIN).parse_args(argv)
    # A .env in the working directory supplies settings; the real environment wins.
    load_dotenv(Path.cwd() / ".env", override=False)
    try:
        code: int = args.func(args)
        return code
    except SettingsError as exc:
        print(f"butterfly: configuration error: {exc}", file=sys.stderr)
        return 2
    except LookupError as exc:
        print(f"butterfly: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
