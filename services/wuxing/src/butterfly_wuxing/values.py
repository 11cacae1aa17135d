"""Item types, value conversion and per-item constraints.

The type is the item name's prefix, as in the original (``i|`` int, ``f|`` float, ``s|``
string of at most 128 characters, ``b|`` bool, ``t|`` text of at most 20 000). A value that
does not fit is refused with the item named - never truncated, never a 500.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from . import errors as E
from . import schemas
from .errors import WuxingError

TYPES = {"i": "int", "f": "float", "s": "string", "b": "bool", "t": "text"}
#: The item table's column holding each type's value.
COLUMNS = {"i": "value_int", "f": "value_float", "s": "value_string", "b": "value_bool",
           "t": "value_text"}
STRING_MAX, TEXT_MAX = 128, 20_000
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
REGEX_MAX = 256

NAMESPACE_MAX, SECTION_NAME_MAX, SECTION_VERSION_MAX = 16, 64, 16
INSTANCE_NAME_MAX, ITEM_NAME_MAX = 64, 64

# Names become parts of Redis keys (hash tags) and of comma lists: no braces, commas, spaces.
_NAME = re.compile(r"[A-Za-z0-9_.:@\-]+")
_ITEM = re.compile(r"[ifsbt]\|[^,\s|{}]+")


def check_name(value: str, limit: int, stat: str, what: str) -> str:
    """``value`` if it is a valid name of at most ``limit`` characters, else refuse."""
    if not isinstance(value, str) or not 0 < len(value) <= limit or not _NAME.fullmatch(value):
        raise WuxingError(stat, f"{what} must be 1..{limit} characters of A-Z a-z 0-9 _ . : @ -")
    return value


def in_range(value: int, stat: str, what: str) -> int:
    """An id or revision the database can hold (64-bit), else refuse it (never a 500)."""
    if not 0 <= value <= INT_MAX:
        raise WuxingError(stat, f"{what} must be between 0 and {INT_MAX}")
    return value


def check_namespace(namespace: str) -> str:
    return check_name(namespace, NAMESPACE_MAX, E.ERR_NAMESPACE_IS_INVALID, "namespace")


def item_type(item_name: str) -> str:
    """The one-letter type of ``item_name`` (``i`` for ``i|port``), or refuse it."""
    if not isinstance(item_name, str) or not 0 < len(item_name) <= ITEM_NAME_MAX:
        raise WuxingError(E.ERR_ITEM_NAME_IS_INVALID,
                          f"item_name must be 1..{ITEM_NAME_MAX} characters")
    if len(item_name) < 2 or item_name[1] != "|" or item_name[0] not in TYPES:
        raise WuxingError(E.ERR_SECTION_ITEM_TYPE_INVALID,
                          f"{item_name}: the name must start with a type prefix "
                          "i| f| s| b| or t|")
    if not _ITEM.fullmatch(item_name):
        raise WuxingError(E.ERR_ITEM_NAME_IS_INVALID,
                          f"{item_name}: no commas, spaces, braces or '|' after the prefix")
    return item_name[0]


def _invalid(item: str, why: str) -> WuxingError:
    return WuxingError(E.ERR_ITEM_VALUE_INVALID, f"{item}: {why}", {"item_name": item})


def convert(kind: str, value: Any, item: str = "value") -> Any:
    """``value`` as a Python value of type ``kind``; refuses what does not fit."""
    if isinstance(value, dict | list) or value is None:
        raise _invalid(item, f"expected a {TYPES[kind]}, got {type(value).__name__}")
    if kind == "i":
        try:
            if isinstance(value, bool):
                raise ValueError
            number = value if isinstance(value, int) else None
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError
                number = int(value)
            if isinstance(value, str):
                text = value.strip()
                number = int(float(text)) if re.fullmatch(r"-?\d+\.0*", text) else int(text)
            if number is None or not INT_MIN <= number <= INT_MAX:
                raise ValueError
            return number
        except ValueError:
            raise _invalid(item, f"{value!r} is not a 64-bit integer") from None
    if kind == "f":
        try:
            if isinstance(value, bool):
                raise ValueError
            real = float(value)
        except (TypeError, ValueError):
            raise _invalid(item, f"{value!r} is not a number") from None
        if not math.isfinite(real):
            raise _invalid(item, "NaN and infinities are not stored")
        return real
    if kind == "b":
        return _to_bool(value, item)
    text = value if isinstance(value, str) else str(value).lower() \
        if isinstance(value, bool) else str(value)
    limit = STRING_MAX if kind == "s" else TEXT_MAX
    if len(text) > limit:
        raise _invalid(item, f"{len(text)} characters, at most {limit} fit a {TYPES[kind]}")
    return text


def _to_bool(value: Any, item: str) -> bool:
    """The original's rule: a positive number or the string "true" is true."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value > 0
    text = str(value).strip().lower()
    if text in ("true", "false", ""):
        return text == "true"
    try:
        return float(text) > 0
    except ValueError:
        raise _invalid(item, f"{value!r} is not a bool (true/false or a number)") from None


# -- constraints -----------------------------------------------------------------------------

def build_constraints(kind: str, item: str, enum: Any = None, min_: Any = None,
                      max_: Any = None, regex: str | None = None) -> dict[str, Any]:
    """The stored constraint dict of one item, checked for sense; refuse nonsense."""
    bad = E.ERR_SECTION_ITEM_CONSTRAINT_INVALID
    out: dict[str, Any] = {}
    if enum is not None:
        if isinstance(enum, str):
            enum = [v for v in enum.split(",") if v != ""]
        if not isinstance(enum, list) or not enum:
            raise WuxingError(bad, f"{item}: enum must be a non-empty list")
        out["enum"] = [convert(kind, v, item) for v in enum]
    for key, raw in (("min", min_), ("max", max_)):
        if raw is None:
            continue
        if kind == "b":
            raise WuxingError(bad, f"{item}: a bool takes no {key}")
        try:
            out[key] = float(raw) if kind == "f" else int(raw)
        except (TypeError, ValueError):
            raise WuxingError(bad, f"{item}: {key} must be a number") from None
    if "min" in out and "max" in out and out["min"] > out["max"]:
        raise WuxingError(bad, f"{item}: min is greater than max")
    if regex is not None:
        if kind not in ("s", "t"):
            raise WuxingError(bad, f"{item}: regex applies to s| and t| items only")
        if len(regex) > REGEX_MAX:
            raise WuxingError(bad, f"{item}: regex longer than {REGEX_MAX} characters")
        try:
            re.compile(regex)
        except re.error as exc:
            raise WuxingError(bad, f"{item}: regex does not compile: {exc}") from None
        out["regex"] = regex
    return out


def check(kind: str, value: Any, item: str, rules: Mapping[str, Any] | None) -> Any:
    """``value`` converted to ``kind`` and checked against the item's constraints."""
    value = convert(kind, value, item)
    if not rules:
        return value
    if "enum" in rules and value not in rules["enum"]:
        raise _invalid(item, f"{value!r} is not one of {rules['enum']}")
    measure = len(value) if kind in ("s", "t") else value
    what = "length" if kind in ("s", "t") else "value"
    if "min" in rules and measure < rules["min"]:
        raise _invalid(item, f"{what} {measure} is below the minimum {rules['min']}")
    if "max" in rules and measure > rules["max"]:
        raise _invalid(item, f"{what} {measure} is above the maximum {rules['max']}")
    if "regex" in rules and not re.fullmatch(rules["regex"], value):
        raise _invalid(item, f"{value!r} does not match {rules['regex']!r}")
    if "schema" in rules:
        schemas.check(rules["schema"], value, E.ERR_SCHEMA_VIOLATION, item, item_name=item)
    return value
