"""History: the per-item list, retention (compaction) and rollback as new writes."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from typing import Any

import peewee

from butterfly_common.periodic import Periodic

from . import errors as E
from . import instances, items, values
from .errors import WuxingError
from .gray import prune_clients
from .itemrows import set_value, value_of
from .listing import page
from .models import History, Item, Namespace
from .revisions import namespace_revision
from .store import Write, run_write

log = logging.getLogger(__name__)


def change_of(row: History) -> dict[str, Any]:
    """One history row as the API shows it (values decoded from JSON)."""
    return {"id": row.id, "revision": row.revision, "kind": row.kind, "cmd": row.cmd,
            "section_name": row.section_name, "section_version": row.section_version,
            "instance_name": row.instance_name, "item_id": row.item_id,
            "item_name": row.item_name, "item_type": row.item_type,
            "item_value_old": _decode(row.value_old), "item_value": _decode(row.value_new),
            "user": row.user, "c_time": row.c_time}


def _decode(raw: str | None) -> Any:
    return None if raw is None else json.loads(raw)


def item_history(item_id: int, item_type: str | None, page_index: int,
                 page_size: int) -> dict[str, Any]:
    """Newest first; ``item_type`` is optional and only checked (the original needed it)."""
    items.parse_type(item_type)
    values.in_range(item_id, E.ERR_ITEM_IS_NOT_FOUND, "item_id")
    query = (History.select().where((History.kind == "item") & (History.item_id == item_id))
             .order_by(History.revision.desc(), History.id.desc()))
    total, rows = page(query, page_index, page_size)
    return {"total": total, "list": [change_of(r) for r in rows]}


# -- rollback --------------------------------------------------------------------------------

def _check_revision(namespace: str, revision: int) -> None:
    current, compacted = namespace_revision(namespace)
    if revision < 0 or revision > current:
        raise WuxingError(E.ERR_REVISION_IS_INVALID,
                          f"revision must be between 0 and {current}")
    if revision < compacted:
        raise WuxingError(E.ERR_REVISION_COMPACTED,
                          f"history up to revision {compacted} was pruned",
                          {"compact_revision": compacted})


def values_as_of(item_ids: list[int], revision: int) -> dict[int, History]:
    """For each item, its last history row at or before ``revision``."""
    found: dict[int, History] = {}
    if not item_ids:
        return found
    query = (History.select().where((History.kind == "item") & History.item_id.in_(item_ids)
                                    & (History.revision <= revision))
             .order_by(History.revision, History.id))
    for row in query:
        if row.item_id is not None:
            found[row.item_id] = row
    return found


def _restore(write: Write, item: Item, row: History | None, template: dict[str, Any]) -> bool:
    if row is None or row.value_new is None or item.item_name not in template:
        return False
    value = instances.checked(template, item.item_name, json.loads(row.value_new))
    if value == value_of(item):
        return False
    set_value(write, item, value, cmd="rollback")
    return True


def item_rollback(item_id: int, revision: int, user: str) -> dict[str, Any]:
    namespace = items.namespace_of(item_id)
    _check_revision(namespace, revision)

    def change(write: Write) -> dict[str, Any]:
        item = Item.get_or_none(Item.id == item_id)
        if item is None:
            raise WuxingError(E.ERR_ITEM_IS_NOT_FOUND, f"item {item_id} does not exist")
        row = values_as_of([item_id], revision).get(item_id)
        if row is None:
            raise WuxingError(E.ERR_REVISION_IS_INVALID,
                              f"item {item_id} did not exist at revision {revision}")
        instance = instances.find(namespace, item.instance_name)
        template = instances._template_for(instance)
        if _restore(write, item, row, template):
            instances.check_instance(namespace, instance)
            instances._touch(write, instance)
        return {"item_id": item_id, "item_value": value_of(item)}

    result, rev = run_write(namespace, user, change, direct=True)
    return {**result, "revision": rev}


def instance_rollback(namespace: str, instance_name: str, revision: int,
                      user: str) -> dict[str, Any]:
    """Every current item back to its value at ``revision`` (items created later keep theirs)."""
    values.check_namespace(namespace)
    _check_revision(namespace, revision)

    def change(write: Write) -> list[str]:
        instance = instances.find(namespace, instance_name)
        template = instances._template_for(instance)
        rows = instances.items_of(namespace, instance_name)
        past = values_as_of([i.id for i in rows.values()], revision)
        changed = [name for name, item in rows.items()
                   if _restore(write, item, past.get(item.id), template)]
        if changed:
            instances.check_instance(namespace, instance)
            instances._touch(write, instance)
        return changed

    changed, rev = run_write(namespace, user, change, direct=True)
    return {"revision": rev, "items": sorted(changed)}


# -- retention -------------------------------------------------------------------------------

def prune(days: float, now: dt.datetime | None = None) -> int:
    """Delete history older than ``days`` days, namespace by namespace; return rows deleted.

    The namespace's ``compacted`` mark moves to the newest pruned revision, so watchers and
    rollbacks asking for older revisions get ERR_REVISION_COMPACTED instead of a silent gap.
    """
    cutoff = (now or dt.datetime.now()) - dt.timedelta(days=days)
    deleted = 0
    names = [str(ns) for ns in Namespace.select(Namespace.namespace).scalars()]
    for namespace in names:
        top = (History.select(peewee.fn.MAX(History.revision))
               .where((History.namespace == namespace) & (History.c_time < cutoff)).scalar())
        if top is None:
            continue
        deleted += History.delete().where((History.namespace == namespace)
                                          & (History.revision <= top)).execute()
        Namespace.update(compacted=top).where((Namespace.namespace == namespace)
                                              & (Namespace.compacted < top)).execute()
    return deleted


def prune_pass(days: float) -> int:
    """One pruning pass on a pooled connection (the pruner loop's work); rows deleted."""
    from butterfly_common import db

    with db.database.connection_context():
        removed = prune(days)
        clients = prune_clients()
    if clients:
        log.info("wuxing clients: forgot %d that did not report within the TTL", clients)
    if removed:
        log.info("wuxing history: pruned %d rows older than %s days", removed, days)
    return removed


def start_pruner(days: float, interval: float) -> Callable[[], None]:
    """A loop pruning every ``interval`` seconds (the first after one interval); returns its
    stop function."""
    loop = Periodic("wuxing-history-prune", interval, lambda: prune_pass(days),
                    logger=log).start()
    return lambda: loop.stop(5)
