"""A namespace's committed revision, read from its row in ``wuxing_namespace``.

Its own module because both sides of a write need it: ``store`` (which bumps the row and
then advances the cache's version key) and ``cache`` (which seeds a missing version key
from it). Kept apart from both, neither imports the other in a loop.
"""

from __future__ import annotations

from .models import Namespace


def namespace_revision(namespace: str) -> tuple[int, int]:
    """``(revision, compacted)`` of ``namespace`` ((0, 0) if nothing was written yet)."""
    row = (Namespace.select(Namespace.revision, Namespace.compacted)
           .where(Namespace.namespace == namespace).tuples().first())
    return (int(row[0]), int(row[1])) if row else (0, 0)
