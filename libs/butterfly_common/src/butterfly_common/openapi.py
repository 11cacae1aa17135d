"""``/openapi.json``: an OpenAPI 3.0.3 document generated from handler signatures and docstrings.

Every status a route can answer is listed, derived from what the framework knows about
it: 400 for parameters (every route), 401/403 for admin and write routes, 413 for bodies
over ``BUTTERFLY_MAX_BODY_BYTES``, the route's own ``statuses`` map (e.g. baichuan's 404,
409, 503), 403/404 for downloads. ``@raw`` handlers pick their own status, so theirs is
the ``default`` response. The document validates as 3.0.3 (checked in the tests with
openapi-spec-validator), and the fuzz tests hold every service to its own document.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any

from . import __version__
from .discovery import Route

_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object"}

ENVELOPE = {"type": "object", "required": ["stat"], "properties": {"stat": {}}}
_JSON_ENVELOPE = {"application/json": {"schema": ENVELOPE}}
_REFUSED = "the reason is in the x-reason header"
_GENERIC = {
    400: f"ERR_BAD_PARAMS: a parameter is missing, unknown or malformed; {_REFUSED}",
    401: f"ERR_UNAUTHORIZED: credentials missing or wrong; {_REFUSED}",
    403: f"ERR_FORBIDDEN: not allowed (or the action is disabled); {_REFUSED}",
    404: f"not found; {_REFUSED}",
    409: f"conflicts with the current state; {_REFUSED}",
    413: f"ERR_BODY_TOO_LARGE: over BUTTERFLY_MAX_BODY_BYTES; {_REFUSED}",
    414: "request line over 8190 bytes: refused by gunicorn (plain text, no x-reason)",
    503: f"a dependency is unavailable, try again; {_REFUSED}",
}


def schema_of(annotation: Any) -> dict[str, Any]:
    """JSON schema for a parameter annotation (empty: anything goes)."""
    if annotation in _TYPES:
        return {"type": _TYPES[annotation]}
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is list or origin is list:
        return {"type": "array", "items": schema_of(args[0]) if args else {}}
    if origin is dict:
        return {"type": "object"}
    inner = [a for a in args if a is not type(None)]
    if len(inner) == 1:
        return {**schema_of(inner[0]), "nullable": True}
    return {}


def _query_param(name: str, required: bool, schema: dict[str, Any]) -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": "query", "required": required}
    if schema.get("type") == "object":
        # a dict parameter in a query string is one JSON-encoded value
        param["content"] = {"application/json": {"schema": schema}}
    else:
        param["schema"] = schema
    return param


def statuses_of(route: Route, method: str) -> dict[int, str]:
    """HTTP status -> description of every answer ``route`` can give to ``method``."""
    spec = route.spec
    out: dict[int, str] = {400: _GENERIC[400]}
    if spec.admin or spec.write:
        out[401] = _GENERIC[401]
        out[403] = _GENERIC[403]
    if method == "post":
        out[413] = _GENERIC[413]
    else:
        out[414] = _GENERIC[414]
    if spec.kind == "download":
        out[403] = f"ERR_FORBIDDEN: the path escapes the download directory; {_REFUSED}"
        out[404] = f"ERR_NOT_FOUND: no such file; {_REFUSED}"
    by_code: dict[int, list[str]] = {}
    for stat, code in sorted(spec.statuses.items()):
        by_code.setdefault(int(code), []).append(stat)
    for code, stats in by_code.items():
        if code == 200:
            continue
        out[code] = f"{', '.join(stats)}; {_REFUSED}"
    return dict(sorted(out.items()))


def _responses(route: Route, method: str) -> dict[str, Any]:
    kind = route.spec.kind
    responses: dict[str, Any] = {}
    if kind == "api":
        ok_stats = [s for s, c in route.spec.statuses.items() if c == 200]
        note = f" (also {', '.join(sorted(ok_stats))})" if ok_stats else ""
        responses["200"] = {"description": f'`{{"stat": ...}}` envelope{note}',
                            "content": _JSON_ENVELOPE}
        if route.spec.stream:  # no schema: a stream is a sequence, not one document
            responses["200"] = {
                "description": responses["200"]["description"] + "; or, when the call "
                f"asks for a stream, a chunked {route.spec.stream} stream (see the "
                "description)",
                "content": {**_JSON_ENVELOPE, route.spec.stream: {}}}
    elif kind == "download":
        responses["200"] = {"description": "the file, streamed"}
    else:
        responses["default"] = {"description": "status and body chosen by the handler"}
    for code, text in statuses_of(route, method).items():  # refusals are JSON envelopes
        responses[str(code)] = ({"description": text} if code == 414 else
                                {"description": text, "content": _JSON_ENVELOPE})
    return responses


def _operation(route: Route, method: str) -> dict[str, Any]:
    doc = route.doc
    params = list(route.binder.params.values())
    op: dict[str, Any] = {
        "operationId": f"{method}_{route.app}_{route.name}".replace("/", "_"),
        "summary": doc.splitlines()[0] if doc else route.name,
        "description": doc,
        "tags": [route.app or "butterfly"],
        "responses": _responses(route, method),
    }
    if route.spec.role == "admin":
        # or an admin's JWT / X-Role: admin from a trusted proxy (auth.identify)
        op["security"] = [{"adminToken": []}]
    elif route.spec.role is not None:
        # or a JWT / X-Username and X-Role from a trusted proxy, which OpenAPI cannot
        # express as a scheme
        op["security"] = [{"operatorToken": []}, {"adminToken": []}]
    if method == "get":
        op["parameters"] = [_query_param(p.name, p.required, schema_of(p.annotation))
                            for p in params]
    else:
        body: dict[str, Any] = {
            "type": "object",
            "properties": {p.name: schema_of(p.annotation) for p in params},
            "additionalProperties": route.binder.accepts_any,
        }
        required = [p.name for p in params if p.required]
        if required:  # 3.0.3: "required" must list at least one name when present
            body["required"] = required
        op["requestBody"] = {"content": {"application/json": {"schema": body}}}
    return op


def _ops_paths() -> dict[str, Any]:
    def get(summary: str, responses: dict[str, Any],
            parameters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        name = summary.split(":")[0]
        op: dict[str, Any] = {"operationId": f"get_{name}", "summary": summary,
                              "tags": ["ops"], "responses": responses}
        if parameters:
            op["parameters"] = parameters
        return {"get": op}

    json_ok = {"description": "OK", "content": _JSON_ENVELOPE}
    return {
        "/healthz": get("healthz: the process is up (never touches Redis or the DB)",
                        {"200": json_ok}),
        "/readyz": get("readyz: Redis, the DB, every queue shard and the consumer are ok",
                       {"200": json_ok, "503": {
                           "description": f"ERR_UNAVAILABLE: what is down; {_REFUSED}",
                           "content": _JSON_ENVELOPE}},
                       # detail=1: the body adds "loops", this process's background loops
                       [_query_param("detail", False,
                                     {"type": "string", "enum": ["1", "true", "yes"]})]),
        "/metrics": get("metrics: Prometheus exposition text",
                        {"200": {"description": "text/plain exposition format"}}),
        "/openapi.json": get("openapi: this document",
                             {"200": {"description": "OpenAPI 3.0.3 JSON"}}),
    }


def build_spec(service: str, routes: Mapping[str, Route],
               description: str = "") -> dict[str, Any]:
    """The OpenAPI document of one service's routes and built-in endpoints
    (``description``: the Service's)."""
    paths = {path: {"get": _operation(r, "get"), "post": _operation(r, "post")}
             for path, r in sorted(routes.items())}
    for path, item in _ops_paths().items():
        paths.setdefault(path, item)
    return {
        "openapi": "3.0.3",
        "info": {"title": f"butterfly {service}", "version": __version__,
                 **({"description": description} if description else {})},
        "paths": paths,
        "components": {"securitySchemes": {
            "adminToken": {"type": "http", "scheme": "bearer"},
            "operatorToken": {"type": "http", "scheme": "bearer",
                              "description": "BUTTERFLY_OPERATOR_TOKEN; write actions also "
                              "accept a huoyan JWT, or X-Username and X-Role from a "
                              "BUTTERFLY_TRUSTED_PROXIES peer"},
        }},
    }
