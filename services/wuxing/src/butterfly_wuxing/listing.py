"""Paging and allow-listed ordering shared by the list handlers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from butterfly_common.paging import check_page

from . import errors as E
from .errors import WuxingError


def order_clause(fields: Mapping[str, Any], order_by: str | None, order_dir: str | None,
                 default: list[Any]) -> list[Any]:
    """ORDER BY for ``orderBy``/``orderDir``; only names in ``fields`` are accepted."""
    if not order_by:
        return default
    if order_by not in fields:
        raise WuxingError(E.ERR_PARAM_IS_INVALID,
                          f"orderBy must be one of {', '.join(sorted(fields))}")
    direction = (order_dir or "asc").lower()
    if direction not in ("asc", "desc"):
        raise WuxingError(E.ERR_PARAM_IS_INVALID, "orderDir must be asc or desc")
    field = fields[order_by]
    return [field.desc() if direction == "desc" else field.asc(), *default[-1:]]


def page(query: Any, page_index: int, page_size: int) -> tuple[int, Any]:
    """``(total, rows of the page)`` of a peewee query (bad paging is ERR_BAD_PARAMS)."""
    if page_index > 10**9:
        raise WuxingError(E.ERR_PARAM_IS_INVALID, "page_index must be at most 10^9")
    offset, limit = check_page(page_index, page_size)
    return query.count(), query.offset(offset).limit(limit)
