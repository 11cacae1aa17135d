"""instance_list and item_list: filters, typed value comparisons and sorting in SQL."""

from __future__ import annotations

import datetime as dt
import operator
from typing import Any

import peewee

from . import errors as E
from . import values
from .errors import WuxingError
from .itemrows import value_of
from .listing import order_clause, page
from .models import Instance, Item

OPERATORS = {"=": operator.eq, "<": operator.lt, "<=": operator.le, ">": operator.gt,
             ">=": operator.ge, "!=": operator.ne}


def _sort_spec(sort: str | None) -> tuple[str, bool] | None:
    if not sort:
        return None
    return (sort[1:], True) if sort.startswith("-") else (sort, False)


def _names(raw: list[str] | str | None) -> list[str]:
    if raw is None:
        return []
    parts = raw if isinstance(raw, list) else [raw]
    return [n.strip() for p in parts for n in p.split(",") if n.strip()]


INSTANCE_ORDER = {"instance_name": Instance.instance_name, "u_time": Instance.u_time,
                  "c_time": Instance.c_time, "section_version": Instance.section_version,
                  "revision": Instance.revision}


def instance_list(namespace: str, section_name: str, instance_name: str | None,
                  section_version: str | None, section_md5: str | None,
                  extra_items: list[str] | str | None, sort: str | None, page_index: int,
                  page_size: int, order_by: str | None, order_dir: str | None) -> dict[str, Any]:
    query = Instance.select(Instance).where((Instance.namespace == namespace)
                                            & (Instance.section_name == section_name))
    if instance_name:
        query = query.where(Instance.instance_name.contains(instance_name))
    if section_version:
        query = query.where(Instance.section_version == section_version)
    if section_md5:
        query = query.where(Instance.section_md5 == section_md5)
    default = [Instance.id.asc()]
    spec = _sort_spec(sort)
    if spec is not None:
        name, desc = spec
        field: Any
        if name in INSTANCE_ORDER:
            field = INSTANCE_ORDER[name]
        else:  # sort by an item's value: documented by the original, built here
            kind = values.item_type(name)
            sort_item = Item.alias()
            query = query.join(sort_item, peewee.JOIN.LEFT_OUTER, on=(
                (sort_item.namespace == Instance.namespace)
                & (sort_item.instance_name == Instance.instance_name)
                & (sort_item.item_name == name)))
            field = getattr(sort_item, values.COLUMNS[kind])
        query = query.order_by(field.desc() if desc else field.asc(), *default)
    else:
        query = query.order_by(*order_clause(INSTANCE_ORDER, order_by, order_dir, default))
    total, rows = page(query, page_index, page_size)
    rows = list(rows)
    extras = _names(extra_items)
    for name in extras:
        values.item_type(name)
    found: dict[tuple[str, str], Any] = {}
    if extras and rows:
        for item in Item.select().where(
                (Item.namespace == namespace)
                & Item.instance_name.in_([r.instance_name for r in rows])
                & Item.item_name.in_(extras)):
            found[(item.instance_name, item.item_name)] = value_of(item)
    out = []
    for r in rows:
        entry = {"namespace": r.namespace, "instance_name": r.instance_name,
                 "section_name": r.section_name, "section_version": r.section_version,
                 "section_md5": r.section_md5, "u_time": r.u_time, "c_time": r.c_time,
                 "revision": r.revision}
        for name in extras:
            entry[name] = found.get((r.instance_name, name))
        out.append(entry)
    return {"total": total, "list": out}


def _time(raw: str | None, what: str) -> dt.datetime | None:
    if not raw:
        return None
    try:
        return dt.datetime.strptime(raw, "%Y%m%d%H%M%S")
    except ValueError:
        raise WuxingError(E.ERR_TIME_FORMATE_INVALID,
                          f"{what} must be YYYYmmddHHMMSS, got {raw!r}") from None


ITEM_ORDER = {"instance_name": Item.instance_name, "u_time": Item.u_time,
              "c_time": Item.c_time, "item_name": Item.item_name, "id": Item.id,
              "revision": Item.revision}


def item_list(namespace: str | None, section_name: str | None, instance_name: str | None,
              item_name: str | None, item_value_operator: str | None, item_value: Any,
              start_time: str | None, end_time: str | None, sort: str | None,
              page_index: int, page_size: int, order_by: str | None,
              order_dir: str | None) -> dict[str, Any]:
    query = Item.select()
    for column_, given in ((Item.namespace, namespace), (Item.section_name, section_name),
                           (Item.instance_name, instance_name), (Item.item_name, item_name)):
        if given:
            query = query.where(column_ == given)
    kind = values.item_type(item_name) if item_name else None
    if item_value_operator is not None or item_value is not None:
        if item_value_operator not in OPERATORS or kind is None or item_value is None:
            raise WuxingError(E.ERR_ITEM_VALUE_OPERATOR,
                              "item_value_operator must be one of = < <= > >= != and needs "
                              "item_name and item_value")
        column = getattr(Item, values.COLUMNS[kind])
        query = query.where(OPERATORS[item_value_operator](
            column, values.convert(kind, item_value, item_name or "item_value")))
    start, end = _time(start_time, "start_time"), _time(end_time, "end_time")
    if start:
        query = query.where(Item.u_time >= start)
    if end:
        query = query.where(Item.u_time < end)
    default = [Item.id.asc()]
    spec = _sort_spec(sort)
    if spec is not None:
        name, desc = spec
        field: Any
        if name == "item_value":
            if kind is None:
                raise WuxingError(E.ERR_PARAM_IS_INVALID, "sort=item_value needs item_name")
            field = getattr(Item, values.COLUMNS[kind])
        elif name in ITEM_ORDER:
            field = ITEM_ORDER[name]
        else:
            raise WuxingError(E.ERR_PARAM_IS_INVALID,
                              "sort must be item_value, instance_name, u_time or c_time")
        query = query.order_by(field.desc() if desc else field.asc(), *default)
    else:
        query = query.order_by(*order_clause(ITEM_ORDER, order_by, order_dir, default))
    total, rows = page(query, page_index, page_size)
    return {"total": total, "list": [
        {"item_id": r.id, "namespace": r.namespace, "section_name": r.section_name,
         "instance_name": r.instance_name, "item_name": r.item_name,
         "item_value": value_of(r), "user": r.user, "c_time": r.c_time, "u_time": r.u_time,
         "revision": r.revision} for r in rows]}
