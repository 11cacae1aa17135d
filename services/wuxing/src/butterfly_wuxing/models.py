"""wuxing's tables (peewee): namespaces, sections, instances, items and one history table.

Values are stored typed, one column per type as in the original (``value_int``,
``value_float``, ``value_string``, ``value_bool``, ``value_text``; only the column of the
item's type is set), so ``item_list`` compares and sorts values in SQL with the type's own
order. History keeps old and new values as JSON text: it is only read back, never compared.

``wuxing_namespace.revision`` is the namespace's monotonic revision. Every write locks that
row (``UPDATE ... revision = revision + 1``) before it changes any row, and holds it to the
commit, which serialises the writers of one namespace, so revisions commit in order and the
change feed never skips one (store.py).
"""

from __future__ import annotations

import datetime as dt

import peewee

from butterfly_common import db


def now() -> dt.datetime:
    """Local time to the second, as the original stored it."""
    return dt.datetime.now().replace(microsecond=0)


class BaseModel(peewee.Model):
    class Meta:
        database = db.database
        legacy_table_names = False


class SchemaVersion(BaseModel):
    """One row: the last migration step applied (see migrations.py)."""

    id = peewee.IntegerField(primary_key=True)
    version = peewee.IntegerField()

    class Meta:
        table_name = "wuxing_schema_version"


class Namespace(BaseModel):
    namespace = peewee.CharField(max_length=16, primary_key=True)
    revision = peewee.BigIntegerField(default=0)
    #: History at or below this revision was pruned: older ``since`` / rollbacks are refused.
    compacted = peewee.BigIntegerField(default=0)

    class Meta:
        table_name = "wuxing_namespace"


class Section(BaseModel):
    id = peewee.AutoField()
    namespace = peewee.CharField(max_length=16)
    section_name = peewee.CharField(max_length=64)
    section_version = peewee.CharField(max_length=16)
    #: JSON ``{item_name: {item_type, item_default, item_description, constraints}}``.
    section_template = peewee.TextField(default="{}")
    section_md5 = peewee.CharField(max_length=8)
    is_enabled = peewee.BooleanField(default=False)
    user = peewee.CharField(max_length=128, default="-")
    revision = peewee.BigIntegerField(default=0)
    c_time = peewee.DateTimeField(default=now)
    u_time = peewee.DateTimeField(default=now, index=True)

    class Meta:
        table_name = "wuxing_section"
        indexes = ((("namespace", "section_name", "section_version"), True),)


class Instance(BaseModel):
    id = peewee.AutoField()
    namespace = peewee.CharField(max_length=16)
    instance_name = peewee.CharField(max_length=64)
    section_name = peewee.CharField(max_length=64)
    section_version = peewee.CharField(max_length=16)
    section_md5 = peewee.CharField(max_length=8)
    is_valid = peewee.BooleanField(default=True)
    user = peewee.CharField(max_length=128, default="-")
    #: The revision of the last write to this instance or any of its items.
    revision = peewee.BigIntegerField(default=0)
    c_time = peewee.DateTimeField(default=now)
    u_time = peewee.DateTimeField(default=now, index=True)

    class Meta:
        table_name = "wuxing_instance"
        indexes = ((("namespace", "instance_name"), True),
                   (("namespace", "section_name", "section_version"), False))


class Item(BaseModel):
    id = peewee.BigAutoField()
    namespace = peewee.CharField(max_length=16)
    section_name = peewee.CharField(max_length=64)
    instance_name = peewee.CharField(max_length=64)
    item_name = peewee.CharField(max_length=64)
    item_type = peewee.CharField(max_length=1)
    value_int = peewee.BigIntegerField(null=True, index=True)
    value_float = peewee.DoubleField(null=True, index=True)
    value_string = peewee.CharField(max_length=128, null=True, index=True)
    value_bool = peewee.BooleanField(null=True, index=True)
    value_text = peewee.TextField(null=True)
    user = peewee.CharField(max_length=128, default="-")
    #: Revision of the last write of this value (CAS compares it), and of its creation.
    revision = peewee.BigIntegerField(default=0)
    c_revision = peewee.BigIntegerField(default=0)
    c_time = peewee.DateTimeField(default=now, index=True)
    u_time = peewee.DateTimeField(default=now, index=True)

    class Meta:
        table_name = "wuxing_item"
        indexes = ((("namespace", "instance_name", "item_name"), True),
                   (("namespace", "section_name", "item_name"), False))


class History(BaseModel):
    """Every write, one row per thing it changed; the change feed ``watch`` answers from."""

    id = peewee.BigAutoField()
    namespace = peewee.CharField(max_length=16)
    revision = peewee.BigIntegerField()
    #: ``item`` | ``instance`` | ``section`` | ``gray`` (a gray release created, promoted,
    #: aborted: ``value_new`` holds its id)
    kind = peewee.CharField(max_length=8)
    #: create | update | delete | enable | disable | item_add | item_delete | upgrade
    cmd = peewee.CharField(max_length=16)
    section_name = peewee.CharField(max_length=64, default="")
    section_version = peewee.CharField(max_length=16, default="")
    instance_name = peewee.CharField(max_length=64, default="")
    item_id = peewee.BigIntegerField(null=True)
    item_name = peewee.CharField(max_length=64, default="")
    item_type = peewee.CharField(max_length=1, default="")
    value_old = peewee.TextField(null=True)
    value_new = peewee.TextField(null=True)
    user = peewee.CharField(max_length=128, default="-")
    c_time = peewee.DateTimeField(default=now, index=True)

    class Meta:
        table_name = "wuxing_history"
        indexes = ((("namespace", "revision"), False), (("item_id", "revision"), False))


MODELS: list[type[peewee.Model]] = [Namespace, Section, Instance, Item, History]


# -- reviewed publishing (migration 2): drafts, releases, approvals, their audit ---------------

class LongTextField(peewee.TextField):
    """LONGTEXT on MySQL/MariaDB (a TEXT column stops at 64 KiB); plain text on SQLite."""

    field_type = "LONGTEXT"


class NamespaceSetting(BaseModel):
    """A namespace's publishing mode (no row: direct writes, as always)."""

    namespace = peewee.CharField(max_length=16, primary_key=True)
    #: Values change only through draft -> publish.
    review = peewee.BooleanField(default=False)
    #: A publish needs a second person's approval.
    approval = peewee.BooleanField(default=False)
    user = peewee.CharField(max_length=128, default="-")
    u_time = peewee.DateTimeField(default=now)

    class Meta:
        table_name = "wuxing_namespace_setting"


class Draft(BaseModel):
    """One pending value of a reviewed namespace (JSON of the checked value)."""

    id = peewee.BigAutoField()
    namespace = peewee.CharField(max_length=16)
    instance_name = peewee.CharField(max_length=64)
    item_name = peewee.CharField(max_length=64)
    value = peewee.TextField()
    user = peewee.CharField(max_length=128, default="-")
    u_time = peewee.DateTimeField(default=now)

    class Meta:
        table_name = "wuxing_draft"
        indexes = ((("namespace", "instance_name", "item_name"), True),)


class Release(BaseModel):
    """A publish request (``pending``, then ``published`` or ``rejected``) and, once
    published, the release: its namespace revision and every value of the namespace."""

    id = peewee.BigAutoField()
    namespace = peewee.CharField(max_length=16)
    #: pending | published | rejected | approved (a ``gray`` request: no revision, no values)
    state = peewee.CharField(max_length=12)
    #: publish | rollback | baseline | promote (a gray release's) | gray (creating one)
    kind = peewee.CharField(max_length=12, default="publish")
    revision = peewee.BigIntegerField(null=True)
    rollback_of = peewee.BigIntegerField(null=True)
    message = peewee.TextField(default="")
    author = peewee.CharField(max_length=128, default="-")
    approver = peewee.CharField(max_length=128, default="")
    comment = peewee.TextField(default="")
    #: JSON ``{instance_name: {item_name: value}}`` of the whole namespace once published.
    snapshot = LongTextField(null=True)
    c_time = peewee.DateTimeField(default=now)
    p_time = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "wuxing_release"
        indexes = ((("namespace", "revision"), True), (("namespace", "state"), False))


class ReviewLog(BaseModel):
    """The audit of reviewed publishing: who set, discarded, asked, approved, rejected."""

    id = peewee.BigAutoField()
    namespace = peewee.CharField(max_length=16)
    #: settings | draft_set | draft_discard | request | publish | approve | reject | rollback
    #: | gray_create | gray_promote | gray_abort
    action = peewee.CharField(max_length=16)
    user = peewee.CharField(max_length=128, default="-")
    comment = peewee.TextField(default="")
    revision = peewee.BigIntegerField(null=True)
    #: JSON details (items touched, settings set)
    detail = peewee.TextField(default="{}")
    c_time = peewee.DateTimeField(default=now)

    class Meta:
        table_name = "wuxing_review_log"
        indexes = ((("namespace", "id"), False),)


REVIEW_MODELS: list[type[peewee.Model]] = [NamespaceSetting, Draft, Release, ReviewLog]


class SectionSchema(BaseModel):
    """A section version's JSON Schema for a whole instance ``{item_name: value}``
    (migration 3; an item's own schema lives in the template, beside its constraints)."""

    id = peewee.AutoField()
    namespace = peewee.CharField(max_length=16)
    section_name = peewee.CharField(max_length=64)
    section_version = peewee.CharField(max_length=16)
    schema = peewee.TextField()

    class Meta:
        table_name = "wuxing_section_schema"
        indexes = ((("namespace", "section_name", "section_version"), True),)


# -- gray releases and client reports (migration 4) ------------------------------------------

class Gray(BaseModel):
    """A gray release: values (``overrides`` on top of the main release) served only to the
    clients its ``rule`` matches, until it is promoted (a main release) or aborted."""

    id = peewee.BigAutoField()
    namespace = peewee.CharField(max_length=16)
    #: pending (its creation waits for approval; served to nobody) | active | promoting (a
    #: promote waits for approval) | promoted | aborted | rejected (never served)
    state = peewee.CharField(max_length=12)
    #: ``draft`` or ``release`` (then ``source_revision`` is the release it came from)
    source = peewee.CharField(max_length=12)
    source_revision = peewee.BigIntegerField(null=True)
    #: The main release's revision when the gray release was created.
    base_revision = peewee.BigIntegerField(null=True)
    #: JSON ``{"clients": [...], "labels": [...], "ips": [...]}``
    rule = peewee.TextField()
    #: JSON ``{instance_name: {item_name: value}}``
    overrides = LongTextField()
    message = peewee.TextField(default="")
    author = peewee.CharField(max_length=128, default="-")
    #: the publish request waiting for approval: its creation (pending) or its promote
    request = peewee.BigIntegerField(null=True)
    #: the main release a promote made
    revision = peewee.BigIntegerField(null=True)
    closed_by = peewee.CharField(max_length=128, default="")
    c_time = peewee.DateTimeField(default=now)
    u_time = peewee.DateTimeField(default=now)

    class Meta:
        table_name = "wuxing_gray"
        indexes = ((("namespace", "state"), False),)


class ClientReport(BaseModel):
    """A client's last report in a namespace: what it applied, what it rejected."""

    id = peewee.BigAutoField()
    namespace = peewee.CharField(max_length=16)
    client = peewee.CharField(max_length=128)
    ip = peewee.CharField(max_length=64, default="")
    labels = peewee.TextField(default="[]")
    #: the release it runs: main release revision and gray release id (null: main)
    applied_revision = peewee.BigIntegerField(null=True)
    applied_gray = peewee.BigIntegerField(null=True)
    #: the last report: applied | rejected, of which release, and the client's error
    status = peewee.CharField(max_length=12)
    revision = peewee.BigIntegerField(null=True)
    gray = peewee.BigIntegerField(null=True)
    error = peewee.TextField(default="")
    u_time = peewee.DateTimeField(default=now, index=True)

    class Meta:
        table_name = "wuxing_client"
        indexes = ((("namespace", "client"), True),)


GRAY_MODELS: list[type[peewee.Model]] = [Gray, ClientReport]
