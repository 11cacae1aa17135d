"""JSON Schema (Draft 2020-12) for an item's value or a whole instance, with the
``jsonschema`` library.

An item's schema sees its typed value (int, float, str, bool); an ``s|`` or ``t|`` item
whose schema says ``"contentMediaType": "application/json"`` holds a JSON document: its
text must parse and the parsed document must satisfy ``contentSchema`` (the standard's
keywords, which jsonschema itself only annotates). A section's schema sees the instance as
``{item_name: value}``. Every violation is reported (``path``, ``message``), never just the
first. ``$ref`` resolves only inside the schema (and the metaschemas): nothing is fetched
from the network.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import referencing
import referencing.exceptions
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from jsonschema.exceptions import SchemaError  # type: ignore[import-untyped]

from .errors import WuxingError

#: The longest schema accepted (its JSON text, characters).
SCHEMA_MAX = 16_384
#: Violations reported per value (the count says how many there were).
VIOLATIONS_MAX = 50
JSON_MEDIA = "application/json"


def parse(raw: Any, stat: str, what: str) -> dict[str, Any]:
    """``raw`` (an object, or its JSON text) as a valid schema; refuse it with ``stat``."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise WuxingError(stat, f"{what}: not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise WuxingError(stat, f"{what}: a JSON Schema must be an object")
    text = json.dumps(raw, sort_keys=True, ensure_ascii=False)
    if len(text) > SCHEMA_MAX:
        raise WuxingError(stat, f"{what}: longer than {SCHEMA_MAX} characters")
    try:
        Draft202012Validator.check_schema(raw)
        content = raw.get("contentSchema")
        if raw.get("contentMediaType") == JSON_MEDIA and content is not None:
            Draft202012Validator.check_schema(content)
        # every $ref must resolve locally: try the schema once on a value
        _validator(text)
        violations(raw, None)
    except SchemaError as exc:
        raise WuxingError(stat, f"{what}: not a valid JSON Schema: {exc.message}") from None
    except _Unusable as exc:
        raise WuxingError(stat, f"{what}: {exc}") from None
    return raw


class _Unusable(Exception):
    """A schema that cannot be evaluated (a $ref that does not resolve locally)."""


@lru_cache(maxsize=1024)
def _validator(text: str) -> Draft202012Validator:
    # an empty registry: only the schema itself and the metaschemas, no remote retrieval
    return Draft202012Validator(json.loads(text), registry=referencing.Registry())


def _path(parts: Any) -> str:
    return "/" + "/".join(str(p) for p in parts)


def violations(schema: dict[str, Any], value: Any) -> list[dict[str, str]]:
    """Every violation of ``schema`` by ``value`` as ``{"path", "message"}``, in order."""
    validator = _validator(json.dumps(schema, sort_keys=True, ensure_ascii=False))
    try:
        found = [{"path": _path(e.absolute_path), "message": e.message}
                 for e in validator.iter_errors(value)]
        if (not found and schema.get("contentMediaType") == JSON_MEDIA
                and isinstance(value, str)):
            try:
                document = json.loads(value)
            except ValueError as exc:
                return [{"path": "/", "message": f"not JSON: {exc}"}]
            content = schema.get("contentSchema")
            if content is not None:
                found = violations(content, document)
    except referencing.exceptions.Unresolvable as exc:
        raise _Unusable(f"a $ref does not resolve inside the schema: {exc}") from None
    except (SchemaError, ValueError, TypeError, RecursionError) as exc:  # (an imported one)
        raise _Unusable(f"the schema cannot be evaluated: {type(exc).__name__}: "
                        f"{str(exc)[:200]}") from None
    found.sort(key=lambda v: v["path"])
    return found


def summary(found: list[dict[str, str]]) -> str:
    """The violations as one line for ``x-reason``."""
    return "; ".join(f"{v['path']}: {v['message']}" for v in found)[:900]


def check(schema: dict[str, Any] | None, value: Any, stat: str, what: str,
          **data: Any) -> None:
    """Refuse ``value`` with ``stat`` and every violation in ``violations``."""
    if not schema:
        return
    try:
        found = violations(schema, value)
    except _Unusable as exc:
        raise WuxingError(stat, f"{what}: {exc}", data) from None
    if found:
        raise WuxingError(stat, f"{what}: {len(found)} schema violation(s): {summary(found)}",
                          {**data, "violations": found[:VIOLATIONS_MAX],
                           "violation_count": len(found)})
