"""The audit log: every state-changing console or API action, with who, when and reqid."""

from __future__ import annotations

import logging
from typing import Any, cast

from butterfly_common import db

from .models import Audit

log = logging.getLogger("butterfly.canghai.audit")


def record(username: str, role: str, action: str, target: str = "", detail: str = "",
           ok: bool = True, ip: str = "", reqid: str = "") -> None:
    """Write one entry; a failing write is logged, never raised into the action."""
    try:
        with db.database.connection_context():
            Audit.create(username=username[:64], role=role[:16], action=action[:64],
                         target=target[:512], detail=detail[:4000], ok=ok, ip=ip[:64],
                         reqid=reqid[:32])
    except Exception:
        log.exception("audit write failed: %s %s %s", username, action, target)


def recent(page_index: int = 1, page_size: int = 50, username: str | None = None,
           action: str | None = None) -> tuple[int, list[dict[str, Any]]]:
    """Newest first."""
    with db.database.connection_context():
        query = Audit.select().order_by(Audit.id.desc())
        if username:
            query = query.where(Audit.username == username)
        if action:
            query = query.where(Audit.action == action)
        total = query.count()
        page = query.offset((page_index - 1) * page_size).limit(page_size).dicts()
        rows = cast(list[dict[str, Any]], list(page))
    return total, rows
