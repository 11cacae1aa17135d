"""Sections: versioned templates of typed items, edited while disabled, used when enabled."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from butterfly_common.protocol import json_default

from . import cache, schemas, values
from . import errors as E
from .errors import WuxingError
from .listing import order_clause, page
from .models import Instance, Section, SectionSchema, now
from .store import Write, run_write

DESCRIPTION_MAX = 1024


def template_md5(template: dict[str, Any]) -> str:
    """First 8 hex digits of the md5 of the template JSON, as the original."""
    text = json.dumps(template, sort_keys=True, ensure_ascii=False)
    return hashlib.md5(text.encode()).hexdigest()[:8]  # noqa: S324 - a fingerprint, not security


def section_md5(template: dict[str, Any], schema: dict[str, Any] | None) -> str:
    """The section's fingerprint: its template's md5 (as the original), or with a section
    schema, the md5 of both (so an instance's md5 pins the schema too)."""
    if schema is None:
        return template_md5(template)
    return template_md5({"section_template": template, "section_schema": schema})


def schema_of(namespace: str, section_name: str, section_version: str) -> dict[str, Any] | None:
    """The section version's own JSON Schema (None: none set)."""
    raw = SectionSchema.select(SectionSchema.schema).where(
        (SectionSchema.namespace == namespace) & (SectionSchema.section_name == section_name)
        & (SectionSchema.section_version == section_version)).scalar()
    return None if raw is None else dict(json.loads(raw))


_schemas: dict[tuple[str, str, str, str], dict[str, Any] | None] = {}


def schema_for(namespace: str, section_name: str, section_version: str,
               md5: str) -> dict[str, Any] | None:
    """The section schema an instance recorded by ``md5``, kept per process: a section in
    use cannot change (edited only while disabled), and its md5 covers the schema."""
    key = (namespace, section_name, section_version, md5)
    if key in _schemas:
        return _schemas[key]
    row = Section.get_or_none(_where(namespace, section_name, section_version))
    found = schema_of(namespace, section_name, section_version)
    if row is not None and row.section_md5 == md5:
        if len(_schemas) > 4096:
            _schemas.clear()
        _schemas[key] = found
    return found


def check_document(namespace: str, section_name: str, section_version: str, md5: str,
                   document: dict[str, Any], instance_name: str) -> None:
    """Refuse an instance's values ``{item: value}`` that break its section's schema,
    every violation listed (ERR_SCHEMA_VIOLATION)."""
    schema = schema_for(namespace, section_name, section_version, md5)
    schemas.check(schema, document, E.ERR_SCHEMA_VIOLATION,
                  f"instance {instance_name} (section schema)", instance_name=instance_name)


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
        row.section_md5 = section_md5(template, schema_of(row.namespace, row.section_name,
                                                          row.section_version))
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
             constraints: dict[str, Any] | None = None, schema: Any = None) -> int:
    check_key(namespace, section_name, section_version)
    kind = values.item_type(item_name)
    if len(item_description) > DESCRIPTION_MAX:
        raise WuxingError(E.ERR_PARAM_IS_INVALID,
                          f"item_description longer than {DESCRIPTION_MAX} characters")
    rules = values.build_constraints(kind, item_name, **(constraints or {}))
    if schema is not None:
        rules["schema"] = schemas.parse(schema, E.ERR_SECTION_ITEM_CONSTRAINT_INVALID,
                                        f"{item_name}: item_schema")
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
        schema = schema_of(namespace, section_name, section_version)
        if schema is not None:
            defaults = {name: spec["item_default"] for name, spec in template_of(row).items()}
            try:
                schemas.check(schema, defaults, E.ERR_SECTION_ENABLE_FAILED,
                              "the item defaults break the section schema")
            except WuxingError as exc:
                raise WuxingError(exc.stat, exc.reason, exc.data, http=400) from None
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
        SectionSchema.delete().where(
            (SectionSchema.namespace == namespace) & (SectionSchema.section_name == section_name)
            & (SectionSchema.section_version == section_version)).execute()
        _record(write, row, "delete", value_old=template_of(row))

    return run_write(namespace, user, change)[1]


def schema_set(namespace: str, section_name: str, section_version: str, schema: Any,
               user: str) -> int:
    """Set (or with None, remove) the JSON Schema every instance of this disabled section
    version must satisfy as a whole ``{item_name: value}``."""
    check_key(namespace, section_name, section_version)
    parsed = None if schema is None else schemas.parse(schema, E.ERR_SECTION_SCHEMA_INVALID,
                                                       "section_schema")

    def change(write: Write) -> None:
        row = _editable(namespace, section_name, section_version)
        where = ((SectionSchema.namespace == namespace)
                 & (SectionSchema.section_name == section_name)
                 & (SectionSchema.section_version == section_version))
        old = schema_of(namespace, section_name, section_version)
        SectionSchema.delete().where(where).execute()
        if parsed is not None:
            SectionSchema.create(namespace=namespace, section_name=section_name,
                                 section_version=section_version,
                                 schema=json.dumps(parsed, ensure_ascii=False))
        _save(row, write, template_of(row))
        _record(write, row, "schema", value_old=old, value_new=parsed)

    return run_write(namespace, user, change)[1]


# -- reads -----------------------------------------------------------------------------------

def _doc(row: Section) -> dict[str, Any]:
    doc = {"section_template": template_of(row), "is_enabled": row.is_enabled,
           "section_md5": row.section_md5, "revision": row.revision,
           "u_time": json_default(row.u_time)}
    schema = schema_of(row.namespace, row.section_name, row.section_version)
    if schema is not None:  # (only then: a section without one answers as it always did)
        doc["section_schema"] = schema
    return doc


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
