"""The one pipeline every call goes through, whether it came over HTTP or from the queue.

bind params -> call the handler -> render its return -> access log + metrics. The HTTP
app and the queue consumer only differ in how they build the Request and the parameter
dict, and in what they do with the :class:`Outcome`.

A handler says no by raising :class:`~butterfly_common.Refusal`; the service's
``refusal_of`` hook may turn other exceptions into one (a store outage -> 503), and its
``before_call`` / ``after_call`` hooks see every call (see docs/architecture.md).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import metrics, retstat
from .db import database
from .discovery import Route
from .logs import MASK, current_reqid, current_secrets, error_log, secret_strings, write_access
from .params import ParamError
from .protocol import Outcome, ProtocolSettings, render_api, render_download, render_raw
from .refusal import DEFAULT_HTTP, Refusal
from .request import Request
from .service import AfterCall, BeforeCall, RefusalOf


class Gateway:
    """Calls handlers of one service and records each call."""

    def __init__(self, conf: ProtocolSettings, download_root: Path, *,
                 before_call: BeforeCall | None = None, after_call: AfterCall | None = None,
                 refusal_of: RefusalOf | None = None) -> None:
        self.conf = conf
        #: ``Settings.download_root``: never the data dir, which holds the database.
        self.download_root = download_root
        self.before_call = before_call
        self.after_call = after_call
        self.refusal_of = refusal_of

    def call(self, route: Route, req: Request, values: Mapping[str, Any]) -> Outcome:
        """Bind ``values`` to the handler, run it and render what it returned."""
        token = current_reqid.set(req.reqid)
        try:
            outcome = self._call(route, req, values)
            if self.after_call is not None:
                try:
                    self.after_call(req, route, outcome)
                except Exception:
                    error_log.exception("%s after_call hook of %s failed", req.reqid,
                                        route.path)
            return outcome
        finally:
            current_reqid.reset(token)
            if database.obj is not None and not database.is_closed():
                database.close()  # back to the pool; next call opens lazily

    def _call(self, route: Route, req: Request, values: Mapping[str, Any]) -> Outcome:
        secret = route.binder.secret
        if not secret:
            return self._bound_call(route, req, values)
        # declared secret (params.Secret): masked in the access line, and every string in
        # them masked in whatever is logged while the call runs (docs/architecture.md)
        req.secrets = secret_strings([values[k] for k in secret if k in values])
        token = current_secrets.set(req.secrets)
        try:
            return self._bound_call(route, req, values)
        finally:
            current_secrets.reset(token)

    def _bound_call(self, route: Route, req: Request, values: Mapping[str, Any]) -> Outcome:
        secret = route.binder.secret
        try:
            kwargs = route.binder.bind(values)
        except ParamError as exc:
            return self.bad_params(req, str(exc), _masked(values, secret))
        if secret:
            req.secrets = secret_strings([*req.secrets,
                                          *(kwargs[k] for k in secret if k in kwargs)])
            current_secrets.set(req.secrets)
            req.log_params.update(_masked(kwargs, secret))
        else:
            req.log_params.update(kwargs)
        try:
            if self.before_call is not None:
                self.before_call(req, route, kwargs)
            ret = route.func(req, **kwargs)
        except Refusal as exc:
            return self.refused(req, route, exc)
        except ParamError as exc:  # a handler's own validation of the client's input
            return self.bad_params(req, str(exc), {})
        except Exception as exc:
            refusal = self.refusal_of(exc) if self.refusal_of is not None else None
            if refusal is not None:
                return self.refused(req, route, refusal)
            req.error_str = req.error_str or "API Processing Exception"
            req.error_detail = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=20)}"
            error_log.exception("%s client_ip=%s err_info=Server_exception path=%s",
                                req.reqid, req.ip, route.path)
            if route.spec.kind == "api":
                return self.conf.error(500, retstat.ERR_SERVER_EXCEPTION, req.error_str)
            return Outcome(500, 500, b"", [], req.error_str)
        if route.spec.kind == "api":
            outcome = render_api(ret, route.spec, self.conf)
        elif route.spec.kind == "raw":
            outcome = render_raw(ret, self.conf)
        else:
            root = self.download_root / (route.spec.root or "")
            outcome = render_download(ret, root, self.conf)
        if outcome.reason:
            error_log.error("%s client_ip=%s err_info=%s path=%s", req.reqid, req.ip,
                            outcome.reason, route.path)
        return outcome

    def refused(self, req: Request, route: Route, refusal: Refusal) -> Outcome:
        """``{"stat": stat, **data}``, ``x-reason`` = the reason, the policy's HTTP code:
        the refusal's own, else the route's ``statuses``, else 400 (200 in legacy mode)."""
        req.error_str = refusal.reason
        outcome = render_api((refusal.stat, refusal.data), route.spec, self.conf)
        if outcome.stat != refusal.stat:  # data not JSON-serialisable: a handler bug
            return outcome
        if self.conf.legacy_status:
            outcome.status = retstat.HTTP_OK
        else:
            outcome.status = refusal.http or route.spec.statuses.get(refusal.stat,
                                                                      DEFAULT_HTTP)
        outcome.reason = refusal.reason
        return outcome

    def bad_params(self, req: Request, reason: str, values: Mapping[str, Any]) -> Outcome:
        """ERR_BAD_PARAMS with the reason in ``x-reason``; the raw params go to the log."""
        req.log_params.update(values)
        error_log.warning("%s client_ip=%s err_info=Param_check_failed reason=%s", req.reqid,
                          req.ip, reason)
        return self.conf.error(400, retstat.ERR_BAD_PARAMS, reason)

    def finish(self, req: Request, outcome: Outcome, label: str) -> None:
        """Write the access-log line and count the call under the metrics ``label``."""
        if outcome.reason and not req.error_str:
            req.error_str = outcome.reason
        stat = req.log_ret_code if req.log_ret_code is not None else outcome.stat
        write_access(req, stat)
        metrics.observe(label, req.method, stat, time.perf_counter() - req.init_tm)


def _masked(values: Mapping[str, Any], secret: frozenset[str]) -> dict[str, Any]:
    """``values`` with the declared-secret ones replaced by the mask, for the log."""
    return {k: MASK if k in secret else v for k, v in values.items()}
