"""Single items by id: get and update, the type always taken from the stored item."""

from __future__ import annotations

from typing import Any

from butterfly_common.protocol import json_default

from . import cache, instances, values
from . import errors as E
from .errors import WuxingError
from .itemrows import public_type, set_value, value_of
from .models import Item
from .store import Write, run_write

_TYPE_ALIASES = {**{k: k for k in values.TYPES}, **{f"{k}|": k for k in values.TYPES},
                 **{v: k for k, v in values.TYPES.items()}}


def parse_type(item_type: str | None, stat: str = E.ERR_ITEM_TYPE_NOT_FOUND) -> str | None:
    """``i`` / ``i|`` / ``int`` -> ``i``; None stays None; anything else is refused."""
    if item_type is None:
        return None
    kind = _TYPE_ALIASES.get(item_type.strip().lower())
    if kind is None:
        raise WuxingError(stat, f"unknown item_type {item_type!r}: use i, f, s, b or t")
    return kind


def _not_found(item_id: int) -> WuxingError:
    return WuxingError(E.ERR_ITEM_IS_NOT_FOUND, f"item {item_id} does not exist")


def _check_type(item_id: int, stored: str, given: str | None) -> None:
    kind = parse_type(given)
    if kind is not None and kind != stored:
        raise WuxingError(E.ERR_ITEM_TYPE_MISMATCH,
                          f"item {item_id} is a {values.TYPES[stored]}, not a {values.TYPES[kind]}")


def namespace_of(item_id: int) -> str:
    """Items never change namespace, so this mapping is cached without a version."""
    values.in_range(item_id, E.ERR_ITEM_IS_NOT_FOUND, "item_id")
    key = f"wx:itemns:{item_id}"
    client = cache.get_cache()
    usable = client.enabled and client.usable()
    try:
        found = client.client.get(key) if usable else None
    except Exception:
        found, usable = None, False
    if found:
        return str(found)
    namespace = Item.select(Item.namespace).where(Item.id == item_id).scalar()
    if namespace is None:
        raise _not_found(item_id)
    try:
        if usable:
            client.client.set(key, namespace, px=client.ttl_ms)
    except Exception:  # noqa: S110 - the cache is optional
        pass
    return namespace


def _doc(item_id: int) -> dict[str, Any] | None:
    item = Item.get_or_none(Item.id == item_id)
    if item is None:
        return None
    return {"item_id": item.id, "namespace": item.namespace,
            "section_name": item.section_name, "instance_name": item.instance_name,
            "item_name": item.item_name, "item_type": public_type(item.item_type),
            "item_value": value_of(item), "u_time": json_default(item.u_time),
            "revision": item.revision}


def get(item_id: int, item_type: str | None) -> dict[str, Any]:
    namespace = namespace_of(item_id)
    doc = cache.read_through(namespace, cache.entry_key(namespace, "item", item_id),
                             lambda: _doc(item_id))
    if doc is None:
        raise _not_found(item_id)
    _check_type(item_id, doc["item_name"][0], item_type)
    return doc


def update(item_id: int, item_value: Any, user: str, *, item_type: str | None = None,
           item_value_old: Any = None, revision: int | None = None) -> dict[str, Any]:
    """Set one item; the caller's ``item_type`` is only checked, never trusted."""
    namespace = namespace_of(item_id)

    def change(write: Write) -> dict[str, Any]:
        item = Item.get_or_none(Item.id == item_id)
        if item is None:
            raise _not_found(item_id)
        _check_type(item_id, item.item_type, item_type)
        instance = instances.find(namespace, item.instance_name)
        template = instances._template_for(instance)
        instances.cas_check(item, template, revision=revision, item_value_old=item_value_old)
        if item.item_name not in template:
            raise WuxingError(E.ERR_ITEM_IS_NOT_EXIST, f"{item.item_name} is not in the section")
        value = instances.checked(template, item.item_name, item_value)
        set_value(write, item, value)
        instances.check_instance(namespace, instance)
        instances._touch(write, instance)
        return {"item_id": item.id, "item_value": value}

    result, rev = run_write(namespace, user, change, direct=True)
    return {**result, "revision": rev}
