"""Schema upgrades: the columns a newer release added to an existing table.

``create_tables`` makes missing tables but never touches an existing one, so a database
created by an older release lacks the newer columns. :func:`migrate` adds every column a
model declares and its table lacks (with the model's default filled in) and every declared
index it lacks,
idempotently and safely from several processes starting at once: a loser of the race
finds the column there.
"""

from __future__ import annotations

import logging

import peewee
from playhouse.migrate import SchemaMigrator
from playhouse.migrate import migrate as run

from butterfly_common import db

from .models import MODELS

log = logging.getLogger("butterfly.xingqiao")


def _columns(table: str) -> set[str]:
    return {c.name for c in db.database.get_columns(table)}


def migrate() -> list[str]:
    """Add the missing columns of every existing table; returns ``table.column`` of each
    added. Runs before ``create_tables``, whose new indexes may cover the new columns."""
    added: list[str] = []
    with db.database.connection_context():
        migrator = SchemaMigrator.from_database(db.database.obj)
        for model in MODELS:
            table = model._meta.table_name
            if not db.database.table_exists(table):
                continue  # create_tables makes it whole
            have = _columns(table)
            for field in model._meta.sorted_fields:
                if field.column_name in have:
                    continue
                try:
                    # peewee's add_column also makes the column's own index (index=True
                    # or unique): making it again here failed and hid the column
                    run(migrator.add_column(table, field.column_name, field))
                except peewee.DatabaseError:
                    if field.column_name not in _columns(table):
                        raise
                    continue  # another process added it meanwhile
                added.append(f"{table}.{field.column_name}")
                log.info("schema: added column %s.%s", table, field.column_name)
            added += _add_indexes(model)
    return added


def _index_names(table: str) -> set[str]:
    return {i.name for i in db.database.get_indexes(table)}


def _add_indexes(model: type[peewee.Model]) -> list[str]:
    """The model's declared indexes its existing table lacks (``create_tables`` skips an
    existing table's indexes on MySQL/MariaDB)."""
    table = model._meta.table_name
    added: list[str] = []
    for index in model._meta.fields_to_index():
        name = index._name
        if name in _index_names(table):
            continue
        try:
            db.database.execute(model._schema._create_index(index, safe=False))  # type: ignore[attr-defined]
        except peewee.DatabaseError:
            if name not in _index_names(table):
                raise
            continue  # another process made it meanwhile
        added.append(f"{table}.{name}")
        log.info("schema: added index %s", name)
    return added
