"""Instances: named objects bound to one enabled section version, one typed value per item.

Every multi-row change (create, several items, upgrade, delete, rollback) is one write
transaction (store.run_write): a crash or a refused value leaves the old state, never
orphan items.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from butterfly_common.protocol import json_default

from . import cache, rowsql, sections, values
from . import errors as E
from .errors import WuxingError
from .itemrows import create_item, delete_item, public_type, set_value, value_of
from .models import Instance, Item, Section, now
from .store import Moved, Write, run_prepared, run_write


def check_instance_name(instance_name: str) -> str:
    return values.check_name(instance_name, values.INSTANCE_NAME_MAX,
                             E.ERR_INSTANCE_NAME_IS_INVALID, "instance_name")


def _missing(namespace: str, instance_name: str) -> WuxingError:
    return WuxingError(E.ERR_INSTANCE_IS_NOT_EXIST,
                       f"instance {namespace}/{instance_name} does not exist")


def find(namespace: str, instance_name: str) -> Instance:
    row = Instance.get_or_none((Instance.namespace == namespace)
                               & (Instance.instance_name == instance_name))
    if row is None:
        raise _missing(namespace, instance_name)
    return row


def items_of(namespace: str, instance_name: str,
             names: list[str] | None = None) -> dict[str, Item]:
    """The instance's item rows by name (only ``names`` when given)."""
    query = Item.select().where((Item.namespace == namespace)
                                & (Item.instance_name == instance_name))
    if names is not None:
        query = query.where(Item.item_name.in_(names))
    return {item.item_name: item for item in query}


def enabled_template(namespace: str, section_name: str, section_version: str) -> Section:
    row = sections.find(namespace, section_name, section_version)
    if not row.is_enabled:
        raise WuxingError(E.ERR_SECTION_IS_NOT_ENABLED,
                          f"section {section_name}/{section_version} is not enabled")
    return row


def _rules(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: spec[k] for k in ("enum", "min", "max", "regex", "schema") if k in spec}


def checked(template: Mapping[str, Any], item_name: str, value: Any) -> Any:
    """``value`` converted to the item's type and checked against its constraints."""
    spec = template[item_name]
    return values.check(item_name[0], value, item_name, _rules(spec))


def check_instance(namespace: str, instance: Instance,
                   new: Mapping[str, Any] | None = None) -> None:
    """The instance's values (as the transaction sees them, with ``new`` on top) against
    its section's JSON Schema, when the section has one: ERR_SCHEMA_VIOLATION listing
    every violation. Call it after writing, inside the write: a refusal rolls back."""
    if sections.schema_for(namespace, instance.section_name, instance.section_version,
                           instance.section_md5) is None:
        return
    document = {name: value_of(item) for name, item in
                items_of(namespace, instance.instance_name).items()}
    document.update(new or {})
    sections.check_document(namespace, instance.section_name, instance.section_version,
                            instance.section_md5, document, instance.instance_name)


def _touch(write: Write, instance: Instance) -> None:
    rowsql.update(Instance, instance.id,
                  {"revision": write.revision, "u_time": now(), "user": write.user})


def _unknown(names: list[str]) -> WuxingError:
    return WuxingError(E.ERR_ITEM_IS_NOT_EXIST, f"no such item(s): {', '.join(sorted(names))}",
                       {"items": sorted(names)})


# -- writes ----------------------------------------------------------------------------------

def create(namespace: str, instance_name: str, section_name: str, section_version: str,
           items_data: Mapping[str, Any] | None, user: str) -> int:
    values.check_namespace(namespace)
    check_instance_name(instance_name)
    items_data = dict(items_data or {})

    def change(write: Write) -> None:
        section = enabled_template(namespace, section_name, section_version)
        template = sections.template_of(section)
        unknown = [name for name in items_data if name not in template]
        if unknown:
            raise _unknown(unknown)
        if Instance.select().where((Instance.namespace == namespace)
                                   & (Instance.instance_name == instance_name)).exists():
            raise WuxingError(E.ERR_INSTANCE_IS_EXIST, f"instance {instance_name} exists")
        initial = {name: checked(template, name, items_data[name]
                                 if items_data.get(name) is not None else spec["item_default"])
                   for name, spec in template.items()}
        sections.check_document(namespace, section_name, section_version, section.section_md5,
                                initial, instance_name)
        Instance.create(namespace=namespace, instance_name=instance_name,
                        section_name=section_name, section_version=section_version,
                        section_md5=section.section_md5, user=user, revision=write.revision)
        write.record("instance", "create", section_name=section_name,
                     section_version=section_version, instance_name=instance_name)
        for name, value in initial.items():
            create_item(write, namespace, section_name, instance_name, name, value)

    return run_write(namespace, user, change, direct=bool(items_data))[1]


def _cas_failed(item: Item, why: str) -> WuxingError:
    return WuxingError(E.ERR_ITEM_UPDATE_FAILED, why,
                       {"data": {"item_id": item.id, "revision": item.revision,
                                 "item_value": value_of(item)}})


def cas_check(item: Item, template: Mapping[str, Any] | None, *, revision: int | None,
              item_value_old: Any) -> None:
    """Refuse with ERR_ITEM_UPDATE_FAILED when the item moved on since the caller read it."""
    if revision is not None and item.revision != revision:
        raise _cas_failed(item, f"{item.item_name}: revision is {item.revision}, not {revision}")
    if item_value_old is not None:
        try:
            expected = values.convert(item.item_type, item_value_old, item.item_name)
        except WuxingError:
            raise _cas_failed(item, f"{item.item_name}: item_value_old does not fit the "
                                    "item's type") from None
        if value_of(item) != expected:
            raise _cas_failed(item, f"{item.item_name}: the value is no longer item_value_old")


_templates: dict[tuple[str, str, str, str], dict[str, Any]] = {}


def _template_for(instance: Instance) -> dict[str, Any]:
    """The template of the instance's section version.

    A section used by an instance cannot change (items are edited only while disabled, and
    disabling is refused while instances use it), so templates are kept per process, keyed
    by the md5 the instance recorded.
    """
    key = (instance.namespace, instance.section_name, instance.section_version,
           instance.section_md5)
    found = _templates.get(key)
    if found is None:
        section = sections.find(*key[:3])
        found = sections.template_of(section)
        if section.section_md5 == instance.section_md5:
            if len(_templates) > 4096:
                _templates.clear()
            _templates[key] = found
    return found


def update_items(namespace: str, instance_name: str, changes: Mapping[str, Any], user: str,
                 *, revision: int | None = None,
                 olds: Mapping[str, Any] | None = None,
                 item_revisions: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Set several items at once: all checked first, then written in one transaction.

    ``revision`` compares with the instance's revision (any change to it fails the call);
    ``olds`` / ``item_revisions`` are per-item CAS conditions.
    """
    values.check_namespace(namespace)
    if not changes:
        raise WuxingError(E.ERR_PARAM_IS_INVALID, "no items to update")
    names = sorted(changes)

    def prepare() -> tuple[Instance, dict[str, Item], dict[str, Any]]:
        # plain reads before the namespace's lock: a CAS that has already lost stops here
        # without queueing for it; change() writes only if the rows are still as read
        instance, rows = rowsql.instance_items(namespace, instance_name, names)
        if instance is None:
            raise _missing(namespace, instance_name)
        if not instance.is_valid:
            raise WuxingError(E.ERR_INSTANCE_IS_NOT_VALID, "instance is not valid")
        if revision is not None and instance.revision != revision:
            raise WuxingError(E.ERR_ITEM_UPDATE_FAILED,
                              f"instance revision is {instance.revision}, not {revision}",
                              {"data": {"revision": instance.revision}})
        template = _template_for(instance)
        unknown = [name for name in changes if name not in rows or name not in template]
        if unknown:
            raise _unknown(unknown)
        new = {}
        for name, value in changes.items():
            cas_check(rows[name], template,
                      revision=(item_revisions or {}).get(name),
                      item_value_old=(olds or {}).get(name))
            new[name] = checked(template, name, value)
        return instance, rows, new

    def change(write: Write, state: tuple[Instance, dict[str, Item], dict[str, Any]]
               ) -> dict[str, Any]:
        instance, rows, new = state
        # the instance first: every write of its items moves its revision (one guard
        # catches most changes); then each item, guarded by its own revision
        if not rowsql.update(Instance, instance.id, {"revision": write.revision,
                                                      "u_time": now(), "user": write.user},
                             revision=instance.revision):
            raise Moved(f"instance {namespace}/{instance_name}")
        for name, value in new.items():
            set_value(write, rows[name], value, guard=True)
        check_instance(namespace, instance)
        return {name: {"item_id": rows[name].id, "item_value": value}
                for name, value in new.items()}

    result, rev = run_prepared(namespace, user, prepare, change, direct=True)
    return {"revision": rev, "items": result}


def update_section(namespace: str, instance_name: str, section_version: str,
                   user: str) -> int:
    """Move an instance to another version of its section (upgrade or downgrade).

    New items get their default, removed items are deleted (and recorded), common items keep
    their value - converted when the type changed, refused with the item named when it does
    not convert or fit the new constraints; a value still equal to the old default takes the
    new default.
    """
    values.check_namespace(namespace)

    def change(write: Write) -> None:
        instance = find(namespace, instance_name)
        target = enabled_template(namespace, instance.section_name, section_version)
        new_template = sections.template_of(target)
        old_template = _template_for(instance)
        rows = items_of(namespace, instance_name)
        plan: list[tuple[str, Any]] = []
        for name, spec in new_template.items():
            item = rows.get(name) or _same_item(rows, name, new_template)
            if item is None:
                plan.append(("create", (name, checked(new_template, name,
                                                      spec["item_default"]))))
                continue
            value = value_of(item)
            old_spec = old_template.get(item.item_name)
            if old_spec is not None and value == _default(item.item_name, old_spec):
                value = spec["item_default"]
            try:
                value = checked(new_template, name, value)
            except WuxingError as exc:
                raise WuxingError(E.ERR_INSTANCE_UPDATE_FAILED,
                                  f"{name}: the value does not fit version {section_version}:"
                                  f" {exc.reason}", {"item_name": name}) from None
            plan.append(("keep", (item, name, value)))
        kept = {entry[1][0].id for entry in plan if entry[0] == "keep"}
        for item in rows.values():
            if item.id not in kept:
                delete_item(write, item)
        for kind, args in plan:
            if kind == "create":
                create_item(write, namespace, instance.section_name, instance_name, *args)
            else:
                item, name, value = args
                if item.item_name != name:
                    delete_item(write, item)
                    create_item(write, namespace, instance.section_name, instance_name, name,
                                value)
                elif value != value_of(item):
                    set_value(write, item, value, cmd="upgrade")
        Instance.update(section_version=section_version, section_md5=target.section_md5,
                        revision=write.revision, u_time=now(), user=user).where(
            Instance.id == instance.id).execute()
        check_instance(namespace, find(namespace, instance_name))
        write.record("instance", "upgrade", section_name=instance.section_name,
                     section_version=section_version, instance_name=instance_name,
                     value_old=instance.section_version, value_new=section_version)

    return run_write(namespace, user, change)[1]


def _same_item(rows: Mapping[str, Item], name: str,
               new_template: Mapping[str, Any]) -> Item | None:
    """The current item of the same base name under another type prefix (a type change)."""
    base = name[2:]
    for item_name, item in rows.items():
        if item_name[2:] == base and item_name not in new_template:
            return item
    return None


def _default(item_name: str, spec: Mapping[str, Any]) -> Any:
    try:
        return values.convert(item_name[0], spec["item_default"], item_name)
    except WuxingError:
        return object()


def delete(namespace: str, instance_name: str, user: str) -> int:
    values.check_namespace(namespace)

    def change(write: Write) -> None:
        instance = find(namespace, instance_name)
        for item in items_of(namespace, instance_name).values():
            delete_item(write, item)
        instance.delete_instance()
        write.record("instance", "delete", section_name=instance.section_name,
                     section_version=instance.section_version, instance_name=instance_name)

    return run_write(namespace, user, change)[1]


# -- reads -----------------------------------------------------------------------------------

def _load(namespace: str, instance_name: str) -> dict[str, Any] | None:
    instance = Instance.get_or_none((Instance.namespace == namespace)
                                    & (Instance.instance_name == instance_name))
    if instance is None:
        return None
    section = Section.get_or_none(
        (Section.namespace == namespace) & (Section.section_name == instance.section_name)
        & (Section.section_version == instance.section_version))
    template = sections.template_of(section) if section else {}
    items = {}
    for item in items_of(namespace, instance_name).values():
        spec = template.get(item.item_name, {})
        items[item.item_name] = {
            "item_id": item.id, "item_name": item.item_name,
            "item_type": public_type(item.item_type),
            "item_description": spec.get("item_description", ""),
            "item_value": value_of(item), "u_time": json_default(item.u_time),
            "revision": item.revision}
    return {"namespace": namespace, "instance_name": instance_name,
            "section_name": instance.section_name,
            "section_version": instance.section_version,
            "section_md5": instance.section_md5, "is_valid": instance.is_valid,
            "revision": instance.revision, "u_time": json_default(instance.u_time),
            "items": items}


def load(namespace: str, instance_name: str) -> dict[str, Any]:
    """The whole instance (read through the cache); refuses a missing or invalid one."""
    values.check_namespace(namespace)
    key = cache.entry_key(namespace, "i", instance_name)
    doc = cache.read_through(namespace, key, lambda: _load(namespace, instance_name))
    if doc is None:
        raise _missing(namespace, instance_name)
    if not doc["is_valid"]:
        raise WuxingError(E.ERR_INSTANCE_IS_NOT_VALID, "instance is not valid")
    return doc


def view(doc: Mapping[str, Any], items: list[str] | None, value_format: str) -> dict[str, Any]:
    """instance_get's ``data``: simple ``{item: value}`` or detail ``{item: {...}}``."""
    if value_format not in ("simple", "detail"):
        raise WuxingError(E.ERR_PARAM_IS_INVALID, "value_format must be simple or detail")
    wanted = doc["items"] if not items else {k: doc["items"][k] for k in items
                                             if k in doc["items"]}
    if value_format == "simple":
        return {name: item["item_value"] for name, item in wanted.items()}
    return dict(wanted)
