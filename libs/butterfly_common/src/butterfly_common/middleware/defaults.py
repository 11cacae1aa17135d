"""The framework's own middleware: what every call gets before a service adds anything.

In chain order (their *after* hooks run in reverse, see the package docstring):

1. :class:`ReqidContext`: the call's reqid in the log context while it runs (so every log
   line and every publish from the handler carries it);
2. :class:`RoleCheck`: the one role check of every HTTP route that declares one, and the
   read policy (``BUTTERFLY_READ_AUTH``) of the others, before the body is read;
3. :class:`CloseDatabase`: the peewee connection goes back to the pool after each call;
4. :class:`CallMetrics`: ``butterfly_requests_total`` / the latency histogram per route;
5. :class:`AccessLog`: the original's access-log line.

docs/architecture.md walks through :class:`AccessLog` as the example of a feature written
as middleware.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .. import metrics
from ..auth import check_read, check_role, request_identity
from ..db import database
from ..logs import current_reqid, write_access
from ..refusal import Refusal
from .base import Middleware

if TYPE_CHECKING:
    from ..discovery import Route
    from ..protocol import Outcome
    from ..request import Request
    from ..settings import Settings

#: ``req.context`` key under which ReqidContext keeps what resets the log context
_REQID_CONTEXT = "reqid.context"


class ReqidContext(Middleware):
    """Puts ``req.reqid`` in the log context for the call (log lines, publishes)."""

    def before_call(self, req: Request, route: Route) -> None:
        req.context[_REQID_CONTEXT] = current_reqid.set(req.reqid)

    def after_call(self, req: Request, route: Route, outcome: Outcome | None) -> None:
        token = req.context.pop(_REQID_CONTEXT, None)
        if token is not None:
            current_reqid.reset(token)


class RoleCheck(Middleware):
    """The role a route declares (``@api(write=True)``, ``role=``), else the read policy.

    HTTP only: a queued call was authorized when it was published (baichuan's publish
    route, or a trusted process). Runs before the body is read, so a caller without the
    role learns nothing about the parameters.
    """

    def __init__(self, settings: Settings, redis: Any = None) -> None:
        self.settings = settings
        #: the process's Redis client, or a callable returning it (a JWT's epoch)
        self.redis = redis

    def before_call(self, req: Request, route: Route) -> None:
        if req.method == "QUEUE":
            return
        settings = self.settings
        if route.spec.role is not None:
            refused = check_role(request_identity(req, settings, self.redis),
                                 route.spec.role, settings)
        elif settings.read_auth != "open" and not route.spec.public:
            refused = check_read(request_identity(req, settings, self.redis), settings)
        else:
            return
        if refused is not None:
            status, stat, reason = refused
            raise Refusal(stat, reason, http=status)


class CloseDatabase(Middleware):
    """The call's database connection back to the pool; the next call opens lazily."""

    def after_call(self, req: Request, route: Route, outcome: Outcome | None) -> None:
        db = database.obj  # the bound database itself: the proxy's lookups cost 5x more
        if db is not None and not db.is_closed():
            db.close()


class CallMetrics(Middleware):
    """Counts the call and its latency under its route (``label``)."""

    def after_answer(self, req: Request, outcome: Outcome, label: str) -> None:
        stat = req.log_ret_code if req.log_ret_code is not None else outcome.stat
        metrics.observe(label, req.method, stat, time.perf_counter() - req.init_tm)


class AccessLog(Middleware):
    """The original's access-log line, one per call (docs/operations.md has its columns)."""

    def after_answer(self, req: Request, outcome: Outcome, label: str) -> None:
        stat = req.log_ret_code if req.log_ret_code is not None else outcome.stat
        write_access(req, stat)


def default_middleware(settings: Settings | None = None,
                       redis: Any = None) -> list[Middleware]:
    """The framework's middleware, outermost first. Without ``settings`` (a Gateway built
    by hand, for queue calls) there is no RoleCheck: it checks HTTP callers only."""
    auth = [RoleCheck(settings, redis)] if settings is not None else []
    return [ReqidContext(), *auth, CloseDatabase(), CallMetrics(), AccessLog()]
