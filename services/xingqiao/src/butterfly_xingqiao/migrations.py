"""Schema upgrades: the columns a newer release added to an existing table.

``create_tables`` makes missing tables but never touches an existing one, so a database
created by an older release lacks the newer columns. :func:`migrate` adds every column a
model declares and its table lacks (with the model's default filled in, and its index),
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
    """Add the missing columns of every model; returns ``table.column`` of each added."""
    added: list[str] = []
    with db.database.connection_context():
        migrator = SchemaMigrator.from_database(db.database.obj)
        for model in MODELS:
            table = model._meta.table_name
            have = _columns(table)
            for field in model._meta.sorted_fields:
                if field.column_name in have:
                    continue
                try:
                    run(migrator.add_column(table, field.column_name, field))
                    if field.index or field.unique:
                        run(migrator.add_index(table, (field.column_name,), field.unique))
                except peewee.DatabaseError:
                    if field.column_name not in _columns(table):
                        raise
                    continue  # another process added it meanwhile
                added.append(f"{table}.{field.column_name}")
                log.info("schema: added column %s.%s", table, field.column_name)
    return added
