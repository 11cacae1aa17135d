"""Bounds on what client JSON may look like, checked without recursion.

A deeply nested value is cheap to send and expensive everywhere after: Python's JSON
decoder, ``repr``, ``copy.deepcopy`` and any recursive walk hit the interpreter's
recursion limit somewhere near 1000 levels and raise ``RecursionError`` (a 500, or a
dead queue-consumer thread). So every value a client hands in (HTTP body, ``dict``
query values, a published message) is measured here, iteratively, before anything is
stored: deeper than ``BUTTERFLY_MAX_JSON_DEPTH`` levels (default 64) is refused as
``ERR_BAD_PARAMS``. Lone UTF-16 surrogates (``"\\ud800"`` is valid JSON but not
encodable as UTF-8, so Redis, the DB and the log files would choke on it) are refused
in the same walk.

:func:`clip` is the reading-side counterpart: it shortens a value that is already too
deep (a record stored before the limit existed) so it can still be shown and logged.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

#: Default of ``BUTTERFLY_MAX_JSON_DEPTH``: levels of objects/arrays a client value may have.
MAX_DEPTH = 64
#: What :func:`clip` puts where a too-deep container was.
CLIPPED = "...(nested too deep)"


_limit = MAX_DEPTH


def configure(max_depth: int) -> None:
    """Install the process's limit (``runtime.configure`` calls it from the settings)."""
    global _limit
    _limit = max_depth


def limit() -> int:
    """The process's nesting limit (``BUTTERFLY_MAX_JSON_DEPTH``)."""
    return _limit


class NestingError(ValueError):
    """A value is nested too deeply or holds a string that is not valid Unicode."""


def _bad_text(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check(value: Any, max_depth: int | None = None, what: str = "value") -> Any:
    """Return ``value`` unchanged, or raise NestingError naming the problem.

    Depth counts containers: ``{}`` and ``"x"`` are depth 1 and 0, ``{"a": [1]}`` is 2.
    ``max_depth`` defaults to the process's :func:`limit`.
    """
    max_depth = _limit if max_depth is None else max_depth
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _bad_text(item):
                raise NestingError(f"{what} holds a string that is not valid Unicode "
                                   "(a lone surrogate such as \\ud800)")
            continue
        if isinstance(item, dict):
            children: Any = item.values()
            for key in item:
                if isinstance(key, str) and _bad_text(key):
                    raise NestingError(f"{what} holds a key that is not valid Unicode "
                                       "(a lone surrogate such as \\ud800)")
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth + 1 > max_depth:
            raise NestingError(f"{what} is nested deeper than {max_depth} levels "
                               "(BUTTERFLY_MAX_JSON_DEPTH)")
        stack.extend((child, depth + 1) for child in children)
    return value


def depth(value: Any) -> int:
    """Nesting depth of ``value`` (containers only), measured without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        level += 1
        deepest = max(deepest, level)
        stack.extend((child, level) for child in children)
    return deepest


def clip(value: Any, max_depth: int | None = None) -> Any:
    """``value`` with every container deeper than ``max_depth`` replaced by :data:`CLIPPED`.

    Returns ``value`` itself when it is shallow enough (the common case costs one walk);
    otherwise a copy, built without recursion, that any recursive consumer can handle.
    """
    max_depth = _limit if max_depth is None else max_depth
    if depth(value) <= max_depth:
        return value
    return rebuild(value, max_depth, lambda k, v: v)


def rebuild(value: Any, max_depth: int, leaf: Callable[[Any, Any], Any]) -> Any:
    """Copy dicts/lists down to ``max_depth`` levels, without recursion; ``leaf(key, v)``
    maps each dict value first (the log masking uses it), deeper containers become
    :data:`CLIPPED`."""
    if not isinstance(value, dict | list | tuple):
        return value
    root: list[Any] = [None]
    # (source container, level, setter into its copy)
    stack: list[tuple[Any, int, Any]] = [(value, 1, lambda v: root.__setitem__(0, v))]
    while stack:
        source, level, put = stack.pop()
        if level > max_depth:
            put(CLIPPED)
            continue
        if isinstance(source, dict):
            copy: dict[Any, Any] = {}
            put(copy)
            for k, v in source.items():
                v = leaf(k, v)
                if isinstance(v, dict | list | tuple):
                    copy[k] = None
                    stack.append((v, level + 1, lambda x, c=copy, k=k: c.__setitem__(k, x)))
                else:
                    copy[k] = v
        else:
            items: list[Any] = [None] * len(source)
            put(items)
            for i, v in enumerate(source):
                if isinstance(v, dict | list | tuple):
                    stack.append((v, level + 1,
                                  lambda x, c=items, i=i: c.__setitem__(i, x)))
                else:
                    items[i] = v
    return root[0]



def loads(text: str | bytes, what: str = "body") -> Any:
    """``json.loads`` whose every failure is a ValueError (NestingError when too deep).

    The C decoder itself raises RecursionError near 1000 levels; that is a client's
    input too, so it becomes the same refusal as any value past the limit.
    """
    try:
        value = json.loads(text)
    except RecursionError:
        raise NestingError(f"{what} is nested deeper than {_limit} levels "
                           "(BUTTERFLY_MAX_JSON_DEPTH)") from None
    return check(value, what=what)
