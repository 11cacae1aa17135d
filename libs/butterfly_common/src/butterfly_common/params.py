"""Binding request parameters to a handler's signature, the same for HTTP and the queue.

A missing required parameter, an unknown one, or a value that does not coerce to the
parameter's annotation is a :class:`ParamError`, answered as ``ERR_BAD_PARAMS`` with the
offending names in ``x-reason`` - never a 500.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from . import nesting

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
RESERVED = "req"


class ParamError(ValueError):
    """The parameters do not fit the handler; ``str(exc)`` is the client-facing reason."""


Coercer = Callable[[Any], Any]


class _SecretMark:
    """The marker of a secret parameter (see :data:`Secret`)."""

    def __repr__(self) -> str:
        return "SECRET"


#: ``Annotated[T, SECRET]`` declares a parameter secret: its value (and every string in
#: it) is masked in the access log, the error log and the console's search, whatever its
#: name (docs/architecture.md, "Secrets").
SECRET = _SecretMark()
#: A secret parameter of any type: ``def f(req, item_value: Secret)``.
Secret = Annotated[Any, SECRET]


def unwrap_secret(annotation: Any) -> tuple[Any, bool]:
    """``(annotation without the marker, is it secret)``; ``Secret`` alone is untyped."""
    if typing.get_origin(annotation) is Annotated:
        inner, *extras = typing.get_args(annotation)
        if any(extra is SECRET for extra in extras):
            return (inspect.Parameter.empty if inner is Any else inner), True
    return annotation, False


def _scalar(value: Any, what: str) -> Any:
    if isinstance(value, list | dict):
        raise ValueError(f"expected one {what}, got {type(value).__name__}")
    return value


def _to_str(value: Any) -> str:
    value = _scalar(value, "value")
    if isinstance(value, bool) or value is None:
        raise ValueError("expected a string")
    return str(value)


#: ``int`` parameters are 64-bit signed: every database the services use stores that, and a
#: larger number from a client is a mistake to refuse, not an overflow deep in a driver.
INT_MIN, INT_MAX = -(2**63), 2**63 - 1


def _to_int(value: Any) -> int:
    number = _parse_int(_scalar(value, "integer"))
    if not INT_MIN <= number <= INT_MAX:
        raise ValueError("integer out of the 64-bit range")
    return number


def _parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return int(value.strip())
    raise ValueError("expected an integer")


def _to_float(value: Any) -> float:
    value = _scalar(value, "number")
    if isinstance(value, bool):
        raise ValueError("expected a number")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return float(value.strip())
    raise ValueError("expected a number")


def _to_bool(value: Any) -> bool:
    value = _scalar(value, "boolean")
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError("expected a boolean (true/false, 1/0, yes/no, on/off)")


def _to_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = nesting.loads(value, "value")
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    return value


_SIMPLE: dict[Any, Coercer] = {str: _to_str, int: _to_int, float: _to_float, bool: _to_bool,
                               dict: _to_dict}


def coercer_for(annotation: Any) -> Coercer | None:
    """A function turning a wire value into ``annotation``'s type, or None to pass it as is."""
    if annotation in _SIMPLE:
        return _SIMPLE[annotation]
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        one = coercer_for(inner[0]) if len(inner) == 1 else None
        if one is None:
            return None
        return lambda v: None if v is None else one(v)
    if annotation is list or origin is list:
        item = coercer_for(args[0]) if args else None

        def to_list(value: Any) -> list[Any]:
            values = value if isinstance(value, list) else [value]
            return [item(v) for v in values] if item else list(values)

        return to_list
    if origin is dict:
        return _to_dict
    return None


@dataclass(frozen=True)
class Param:
    name: str
    required: bool
    default: Any
    annotation: Any
    coerce: Coercer | None
    secret: bool = False


class Binder:
    """The compiled signature of one handler: which names it takes and how to coerce them."""

    def __init__(self, func: Callable[..., Any]) -> None:
        sig = inspect.signature(func)
        try:
            hints = typing.get_type_hints(func, include_extras=True)
        except Exception:
            hints = {}
        params = list(sig.parameters.values())
        if not params or params[0].name != RESERVED:
            raise TypeError(f"{func.__qualname__}: the first parameter must be 'req'")
        self.params: dict[str, Param] = {}
        self.accepts_any = False
        #: names of the parameters declared :data:`Secret` (masked in every log)
        self.secret: frozenset[str] = frozenset()
        for p in params[1:]:
            if p.kind is p.VAR_KEYWORD:
                self.accepts_any = True
                continue
            if p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY):
                continue
            annotation, secret = unwrap_secret(hints.get(p.name, p.annotation))
            self.params[p.name] = Param(p.name, p.default is p.empty, p.default, annotation,
                                        coercer_for(annotation), secret)
        self.secret = frozenset(p.name for p in self.params.values() if p.secret)

    def bind(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Keyword arguments for the handler from ``values``; raises ParamError."""
        if RESERVED in values:
            raise ParamError(f"reserved parameter: {RESERVED}")
        unknown = [k for k in values if k not in self.params]
        missing = [p.name for p in self.params.values() if p.required and p.name not in values]
        problems = []
        if missing:
            problems.append("missing: " + ",".join(missing))
        if unknown and not self.accepts_any:
            problems.append("unknown: " + ",".join(sorted(unknown)))
        kwargs = {}
        bad = []
        for key, value in values.items():
            param = self.params.get(key)
            if param is None or param.coerce is None:
                kwargs[key] = value
                continue
            try:
                kwargs[key] = param.coerce(value)
            except (ValueError, TypeError) as exc:
                bad.append(f"{key} ({exc})")
        if bad:
            problems.append("invalid: " + ", ".join(bad))
        if problems:
            raise ParamError("; ".join(problems))
        return kwargs

    def bind_positional(self, args: Iterable[str]) -> dict[str, Any]:
        """Bind command-line strings in signature order (``butterfly call``); ``k=v`` names one."""
        args = list(args)
        named = dict(arg.split("=", 1) for arg in args if "=" in arg and
                     arg.split("=", 1)[0] in self.params)
        positional = [arg for arg in args if not ("=" in arg and
                                                   arg.split("=", 1)[0] in self.params)]
        if len(positional) > len(self.params):
            raise ParamError(f"too many arguments: expected at most {len(self.params)}")
        values: dict[str, Any] = dict(zip(self.params, positional, strict=False))
        values.update(named)
        return self.bind(values)

    def usage(self) -> str:
        """``'a' 'b' 'c=default'``, as the original ``test_handler.py`` printed it."""
        parts = []
        for p in self.params.values():
            parts.append(repr(p.name) if p.required else repr(f"{p.name}={p.default}"))
        return " ".join(parts)


def multidict_params(items: Iterable[tuple[str, list[str]]]) -> dict[str, Any]:
    """Query/form values: blanks dropped, one value a str, a repeated key a list of str."""
    out: dict[str, Any] = {}
    for key, values in items:
        kept = [v for v in values if v != ""]
        if kept:
            out[key] = kept[0] if len(kept) == 1 else kept
    return out
