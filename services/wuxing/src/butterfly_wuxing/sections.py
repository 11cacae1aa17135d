"""Sections: versioned templates of typed items, edited while disabled, used when enabled."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from butterfly_common.protocol import json_default

from . import cache, values
from . import errors as E
from .errors import WuxingError
from .listing import order_clause, page
from .models import Instance, Section, now
from .store import Write, run_write

DESCRIPTION_MAX = 1024


def template_md5(template: dict[str, Any]) -> str:
    """First 8 hex digits of the md5 of the template JSON, as the original."""
    text = json.dumps(template, sort_keys=True, ensure_ascii=False)
    return hashlib.md5(text.encode()).hexdigest()[:8]  # noqa: S324 - a fingerprint, not security


def check_key(namespace: str, section_name: str, section_version: str) -> None:
    values.check_namespace(namespace)
    values.check_name(section_name, values.SECTION_NAME_MAX, E.ERR_SECTION_NAME_IS_INVALID,
                      "section_name")
    values.check_name(section_version, values.SECTION_VERSION_MAX,
                      E.ERR_SECTION_VERSION_IS_INVALID, "section_version")


def _where(namespace: str, section_name: str, section_version: str) -> Any:
    return ((Section.namespace == namespace) & (Section.section_name == section_name)
            & (Section.section_version == section_version))


def find(namespace: str, section_name: str, section_version: str) -> Section:
    """The section row, or refuse with ERR_SECTION_IS_NOT_EXIST."""
    row = Section.get_or_none(_where(namespace, section_name, section_version))
    if row is None:
        raise WuxingError(E.ERR_SECTION_IS_NOT_EXIST,
                          f"section {namespace}/{section_name}/{section_version} does not exist")
    return row


def template_of(row: Section) -> dict[str, Any]:
    return json.loads(row.section_template)


def in_use(namespace: str, section_name: str, section_version: str) -> int:
    return Instance.select().where(
        (Instance.namespace == namespace) & (Instance.section_name == section_name)
        & (Instance.section_version == section_version)).count()


def _record(write: Write, row: Section, cmd: str, **extra: Any) -> None:
    write.record("section", cmd, section_name=row.section_name,
                 section_version=row.section_version, **extra)


def _save(row: Section, write: Write, template: dict[str, Any] | None = None) -> None:
    if template is not None:
        row.section_template = json.dumps(template, ensure_ascii=False)
        row.section_md5 = template_md5(template)
    row.user, row.revision, row.u_time = write.user, write.revision, now()
    row.save()


# -- writes ----------------------------------------------------------------------------------

def create(namespace: str, section_name: str, section_version: str, user: str) -> int:
    check_key(namespace, section_name, section_version)

    def change(write: Write) -> None:
        if Section.select().where(_where(namespace, section_name, section_version)).exists():
            raise WuxingError(E.ERR_SECTION_IS_EXIST, "section already exists")
        row = Section.create(namespace=namespace, section_name=section_name,
                             section_version=section_version, section_template="{}",
                             section_md5=template_md5({}), user=user,
                             revision=write.revision)
        _record(write, row, "create")

    return run_write(namespace, user, change)[1]


def _editable(namespace: str, section_name: str, section_version: str) -> Section:
    row = find(namespace, section_name, section_version)
    if row.is_enabled:
        raise WuxingError(E.ERR_SECTION_IS_ENABLED,
                          "items are added and removed only while the section is disabled")
    return row


def item_add(namespace: str, section_name: str, section_version: str, item_name: str,
             item_default: Any, item_description: str, user: str,
             constraints: dict[str, Any] | None = None) -> int:
    check_key(namespace, section_name, section_version)
    kind = values.item_type(item_name)
    if len(item_description) > DESCRIPTION_MAX:
        raise WuxingError(E.ERR_PARAM_IS_INVALID,
                          f"item_description longer than {DESCRIPTION_MAX} characters")
    rules = values.build_constraints(kind, item_name, **(constraints or {}))
    try:
        default = values.check(kind, item_default, item_name, rules)
    except WuxingError as exc:
        raise WuxingError(E.ERR_SECTION_ITEM_DEFAULT_INVALID,
                          f"item_default does not fit: {exc.reason}") from None

    def change(write: Write) -> None:
        row = _editable(namespace, section_name, section_version)
        template = template_of(row)
        if item_name in template:
            raise WuxingError(E.ERR_SECTION_ITEM_IS_EXIST, f"{item_name} already exists")
        template[item_name] = {"item_type": values.TYPES[kind], "item_default": default,
                               "item_description": item_description, **rules}
        _save(row, write, template)
        _record(write, row, "item_add", item_name=item_name, item_type=kind,
                value_new=template[item_name])

    return run_write(namespace, user, change)[1]


def item_delete(namespace: str, section_name: str, section_version: str, item_name: str,
                user: str) -> int:
    check_key(namespace, section_name, section_version)

    def change(write: Write) -> None:
        row = _editable(namespace, section_name, section_version)
        template = template_of(row)
        if item_name not in template:
            raise WuxingError(E.ERR_SECTION_ITEM_IS_NOT_EXIST, f"{item_name} does not exist")
        old = template.pop(item_name)
        _save(row, write, template)
        _record(write, row, "item_delete", item_name=item_name, value_old=old)

    return run_write(namespace, user, change)[1]


def enable(namespace: str, section_name: str, section_version: str, user: str) -> int:
    check_key(namespace, section_name, section_version)

    def change(write: Write) -> None:
        row = find(namespace, section_name, section_version)
        if row.is_enabled:
            raise WuxingError(E.ERR_SECTION_ENABLE_FAILED, "section is already enabled")
        row.is_enabled = True
        _save(row, write)
        _record(write, row, "enable")

    return run_write(namespace, user, change)[1]


def disable(namespace: str, section_name: str, section_version: str, user: str) -> int:
    """Disable to edit again; refused while an instance uses the section."""
    check_key(namespace, section_name, section_version)

    def change(write: Write) -> None:
        row = find(namespace, section_name, section_version)
        if not row.is_enabled:
            raise WuxingError(E.ERR_SECTION_IS_NOT_ENABLED, "section is already disabled")
        users = in_use(namespace, section_name, section_version)
        if users:
            raise WuxingError(E.ERR_SECTION_IN_USE, f"{users} instance(s) use this section")
        row.is_enabled = False
        _save(row, write)
        _record(write, row, "disable")

    return run_write(namespace, user, change)[1]


def delete(namespace: str, section_name: str, section_version: str, user: str) -> int:
    check_key(namespace, section_name, section_version)

    def change(write: Write) -> None:
        row = find(namespace, section_name, section_version)
        users = in_use(namespace, section_name, section_version)
        if users:
            raise WuxingError(E.ERR_SECTION_IN_USE, f"{users} instance(s) use this section")
        row.delete_instance()
        _record(write, row, "delete", value_old=template_of(row))

    return run_write(namespace, user, change)[1]


# -- reads -----------------------------------------------------------------------------------

def _doc(row: Section) -> dict[str, Any]:
    return {"section_template": template_of(row), "is_enabled": row.is_enabled,
            "section_md5": row.section_md5, "revision": row.revision,
            "u_time": json_default(row.u_time)}


def get(namespace: str, section_name: str, section_version: str) -> dict[str, Any]:
    """The section's template (read through the cache)."""
    check_key(namespace, section_name, section_version)
    key = cache.entry_key(namespace, "s", section_name, section_version)
    doc = cache.read_through(namespace, key, lambda: _load(namespace, section_name,
                                                           section_version))
    if doc is None:
        raise WuxingError(E.ERR_SECTION_IS_NOT_EXIST,
                          f"section {namespace}/{section_name}/{section_version} does not exist")
    return doc


def _load(namespace: str, section_name: str, section_version: str) -> dict[str, Any] | None:
    row = Section.get_or_none(_where(namespace, section_name, section_version))
    return None if row is None else _doc(row)


ORDER = {"namespace": Section.namespace, "section_name": Section.section_name,
         "section_version": Section.section_version, "section_md5": Section.section_md5,
         "is_enabled": Section.is_enabled, "u_time": Section.u_time, "c_time": Section.c_time,
         "revision": Section.revision}


def list_(namespace: str | None, section_name: str | None, page_index: int, page_size: int,
          order_by: str | None, order_dir: str | None) -> dict[str, Any]:
    query = Section.select()
    if namespace:
        query = query.where(Section.namespace == namespace)
    if section_name:
        query = query.where(Section.section_name.contains(section_name))
    query = query.order_by(*order_clause(ORDER, order_by, order_dir,
                                         [Section.u_time.desc(), Section.id.desc()]))
    total, rows = page(query, page_index, page_size)
    return {"total": total, "list": [
        {"namespace": r.namespace, "section_name": r.section_name,
         "section_version": r.section_version, "section_md5": r.section_md5,
         "is_enabled": r.is_enabled, "u_time": r.u_time, "c_time": r.c_time, "user": r.user,
         "revision": r.revision} for r in rows]}
