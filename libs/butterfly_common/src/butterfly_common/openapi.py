"""``/openapi.json``: an OpenAPI 3 document generated from handler signatures and docstrings."""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any

from . import __version__
from .discovery import Route

_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object"}


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


def _operation(route: Route, method: str) -> dict[str, Any]:
    doc = route.doc
    params = list(route.binder.params.values())
    op: dict[str, Any] = {
        "operationId": f"{method}_{route.app}_{route.name}".replace("/", "_"),
        "summary": doc.splitlines()[0] if doc else route.name,
        "description": doc,
        "tags": [route.app or "butterfly"],
        "responses": {
            "200": {"description": "`{\"stat\": ...}` envelope" if route.spec.kind == "api"
                    else "handler-defined body"},
            "400": {"description": "ERR_BAD_PARAMS; the reason is in the x-reason header"},
        },
    }
    if route.spec.admin:
        op["security"] = [{"adminToken": []}]
        op["responses"]["401"] = {"description": "admin token missing or wrong"}
        op["responses"]["403"] = {"description": "admin actions disabled (no token set)"}
    elif route.spec.write:
        # or X-Username from a trusted proxy, which OpenAPI cannot express as a scheme
        op["security"] = [{"operatorToken": []}, {"adminToken": []}]
        op["responses"]["401"] = {"description": "no or wrong credentials (write action)"}
        op["responses"]["403"] = {"description": "write actions disabled (nothing set)"}
    if method == "get":
        op["parameters"] = [{"name": p.name, "in": "query", "required": p.required,
                             "schema": schema_of(p.annotation)} for p in params]
    else:
        op["requestBody"] = {"content": {"application/json": {"schema": {
            "type": "object",
            "properties": {p.name: schema_of(p.annotation) for p in params},
            "required": [p.name for p in params if p.required],
            "additionalProperties": route.binder.accepts_any,
        }}}}
    return op


def build_spec(service: str, routes: Mapping[str, Route],
               description: str = "") -> dict[str, Any]:
    """The OpenAPI document of one service's routes (``description``: the Service's)."""
    paths = {path: {"get": _operation(r, "get"), "post": _operation(r, "post")}
             for path, r in sorted(routes.items())}
    return {
        "openapi": "3.0.3",
        "info": {"title": f"butterfly {service}", "version": __version__,
                 **({"description": description} if description else {})},
        "paths": paths,
        "components": {"securitySchemes": {
            "adminToken": {"type": "http", "scheme": "bearer"},
            "operatorToken": {"type": "http", "scheme": "bearer",
                              "description": "BUTTERFLY_OPERATOR_TOKEN; write actions also "
                              "accept X-Username from a BUTTERFLY_TRUSTED_PROXIES peer"},
        }},
    }
