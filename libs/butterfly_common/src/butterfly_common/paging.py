"""The list shape every Butterfly list answers: ``{"total": N, "list": [...]}``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .params import ParamError

MAX_PAGE_SIZE = 1000


class PageError(ParamError):
    """``page_index``/``page_size`` out of range: answered as ERR_BAD_PARAMS."""


def check_page(page_index: int, page_size: int) -> tuple[int, int]:
    """Check 1-based ``page_index`` and ``page_size`` (1..MAX_PAGE_SIZE); return offset, limit."""
    if page_index < 1:
        raise PageError("page_index must be >= 1")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise PageError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
    return (page_index - 1) * page_size, page_size


def page(items: Sequence[Any], page_index: int = 1, page_size: int = 20,
         render: Callable[[Any], Any] = lambda x: x) -> dict[str, Any]:
    """One page of ``items`` in the list shape (``render`` turns an item into JSON data)."""
    offset, limit = check_page(page_index, page_size)
    return {"total": len(items), "list": [render(x) for x in items[offset:offset + limit]]}


def page_query(query: Any, page_index: int = 1, page_size: int = 20,
               render: Callable[[Any], Any] = lambda x: x) -> dict[str, Any]:
    """One page of a peewee ``query``: counts once, fetches only the page."""
    offset, limit = check_page(page_index, page_size)
    return {"total": query.count(), "list": [render(x) for x in query.offset(offset).limit(limit)]}
