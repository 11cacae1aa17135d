"""Reading and writing one item row's typed value, and recording it in the history."""

from __future__ import annotations

from typing import Any

from . import rowsql, values
from .models import Item, now
from .store import Moved, Write


def value_of(item: Item) -> Any:
    """The item's value from the column of its type."""
    return getattr(item, values.COLUMNS[item.item_type])


def typed_columns(kind: str, value: Any) -> dict[str, Any]:
    """Column values for an item of ``kind``: its own column set, the others NULL."""
    return {column: (value if key == kind else None) for key, column in values.COLUMNS.items()}


def set_value(write: Write, item: Item, value: Any, cmd: str = "update", *,
              guard: bool = False) -> None:
    """Write ``value`` (already checked) to ``item`` and record it as one history row.

    ``guard``: only if the row is still at the revision ``item`` was read with, else
    store.Moved (store.run_prepared)."""
    old = value_of(item)
    fields = {**typed_columns(item.item_type, value), "user": write.user,
              "revision": write.revision, "u_time": now()}
    matched = rowsql.update(Item, item.id, fields, revision=item.revision if guard else None)
    if guard and not matched:
        raise Moved(f"item {item.id}")
    for key, field_value in fields.items():
        setattr(item, key, field_value)
    write.record("item", cmd, section_name=item.section_name,
                 instance_name=item.instance_name, item_id=item.id, item_name=item.item_name,
                 item_type=item.item_type, value_old=old, value_new=value)


def create_item(write: Write, namespace: str, section_name: str, instance_name: str,
                item_name: str, value: Any) -> Item:
    kind = item_name[0]
    item = Item.create(namespace=namespace, section_name=section_name,
                       instance_name=instance_name, item_name=item_name, item_type=kind,
                       user=write.user, revision=write.revision, c_revision=write.revision,
                       **typed_columns(kind, value))
    write.record("item", "create", section_name=section_name, instance_name=instance_name,
                 item_id=item.id, item_name=item_name, item_type=kind, value_old=None,
                 value_new=value)
    return item


def delete_item(write: Write, item: Item) -> None:
    """Delete an item row, recording its last value (the original kept no trace)."""
    Item.delete().where(Item.id == item.id).execute()
    write.record("item", "delete", section_name=item.section_name,
                 instance_name=item.instance_name, item_id=item.id, item_name=item.item_name,
                 item_type=item.item_type, value_old=value_of(item), value_new=None)


def public_type(kind: str) -> str:
    return values.TYPES[kind]
