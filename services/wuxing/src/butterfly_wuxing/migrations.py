"""Schema migrations: a short, explicit list of numbered steps and a version row.

Start-up creates the version table, then runs every step above the stored version in order
and records it. Steps are idempotent (``safe=True``, "if not exists"), because several
replicas may start at once; a later schema change is one more function appended to STEPS.
"""

from __future__ import annotations

from collections.abc import Callable

from butterfly_common import db

from .models import GRAY_MODELS, MODELS, REVIEW_MODELS, SchemaVersion, SectionSchema


def _v1_tables() -> None:
    """The first schema: every table of models.py."""
    db.database.create_tables(MODELS, safe=True)


def _v2_review() -> None:
    """Reviewed publishing: namespace settings, drafts, releases and their audit log."""
    db.database.create_tables(REVIEW_MODELS, safe=True)


def _v3_section_schema() -> None:
    """JSON Schema per section version (an item's own schema is part of the template)."""
    db.database.create_tables([SectionSchema], safe=True)


def _v4_gray() -> None:
    """Gray releases and the clients' reports of what they applied or rejected."""
    db.database.create_tables(GRAY_MODELS, safe=True)


#: (version, step): append, never edit or reorder a released step.
STEPS: list[tuple[int, Callable[[], None]]] = [
    (1, _v1_tables),
    (2, _v2_review),
    (3, _v3_section_schema),
    (4, _v4_gray),
]
LATEST = STEPS[-1][0]


def current_version() -> int:
    """The schema version recorded in the database (0 for an empty database)."""
    row = SchemaVersion.get_or_none(SchemaVersion.id == 1)
    return row.version if row else 0


def migrate() -> int:
    """Bring the schema up to :data:`LATEST`; return the version reached."""
    with db.database.connection_context():
        db.database.create_tables([SchemaVersion], safe=True)
        version = current_version()
        for number, step in STEPS:
            if number <= version:
                continue
            step()
            with db.database.atomic():
                updated = (SchemaVersion.update(version=number)
                           .where(SchemaVersion.id == 1, SchemaVersion.version < number)
                           .execute())
                if not updated and current_version() < number:
                    SchemaVersion.insert(id=1, version=number).on_conflict_ignore().execute()
            version = number
        return current_version()
