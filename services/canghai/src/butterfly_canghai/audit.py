"""The audit log: every state-changing console or API action, with who, when and reqid.

Refusals (failed sign-ins, CSRF and role refusals) are rate-limited per action and client
address (``CANGHAI_AUDIT_FAILURES_PER_MINUTE``, counted in Redis): past the limit one
entry says the rest of that minute was not recorded, so a flood of refusals cannot grow
the table without bound. Entries older than ``CANGHAI_AUDIT_DAYS`` are deleted once an
hour by the process that wins the hour (:func:`prune_if_due`, from the sampler).
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any, cast

from butterfly_common import db

from .models import Audit

log = logging.getLogger("butterfly.canghai.audit")
RATE_PREFIX = "canghai:audit:refused"
PRUNE_PREFIX = "canghai:audit:prune"


def _over_limit(action: str, ip: str) -> tuple[bool, bool]:
    """``(drop, last)``: drop this refusal's entry, or write it as the last of the minute."""
    from butterfly_common.runtime import get_config, get_redis

    from .config import CanghaiConfig

    limit = get_config(CanghaiConfig).audit_failures_per_minute
    minute = int(time.time() // 60)
    digest = hashlib.sha256(f"{action}|{ip}".encode()).hexdigest()[:24]
    key = f"{RATE_PREFIX}:{digest}:{minute}"
    try:
        client = get_redis()
        n = int(client.incr(key))
        if n == 1:
            client.expire(key, 120)
    except Exception as exc:  # Redis down: record (the table is the safer side)
        log.warning("audit rate limit not checked: %s: %s", type(exc).__name__, exc)
        return False, False
    return n > limit + 1, n == limit + 1


def record(username: str, role: str, action: str, target: str = "", detail: str = "",
           ok: bool = True, ip: str = "", reqid: str = "") -> None:
    """Write one entry; a failing write is logged, never raised into the action."""
    if not ok:
        drop, last = _over_limit(action, ip)
        if drop:
            return
        if last:
            detail = ("rate limited: further refusals of this action from this address "
                      "are not recorded until the minute ends (CANGHAI_AUDIT_FAILURES_"
                      "PER_MINUTE)")
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


def prune(days: float, now: float | None = None) -> int:
    """Delete entries older than ``days``; how many went."""
    before = (time.time() if now is None else now) - days * 86400
    with db.database.connection_context():
        return int(Audit.delete().where(Audit.at < before).execute())


def prune_if_due(client: Any, days: float, now: float | None = None) -> int | None:
    """:func:`prune` once an hour across the fleet (a ``SET NX`` per hour decides who);
    None when another process has it."""
    now = time.time() if now is None else now
    if not client.set(f"{PRUNE_PREFIX}:{int(now // 3600)}", "1", nx=True, ex=7200):
        return None
    return prune(days, now)
