"""The one pipeline every call goes through, whether it came over HTTP or from the queue.

bind params -> call the handler -> render its return -> access log + metrics. The HTTP
app and the queue consumer only differ in how they build the Request and the parameter
dict, and in what they do with the :class:`Outcome`.
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
from .logs import current_reqid, error_log, write_access
from .params import ParamError
from .protocol import Outcome, ProtocolSettings, dumps, render_api, render_download, render_raw
from .refusal import Refusal
from .request import Request


class Gateway:
    """Calls handlers of one service and records each call."""

    def __init__(self, conf: ProtocolSettings, data_dir: Path) -> None:
        self.conf = conf
        self.data_dir = data_dir

    def call(self, route: Route, req: Request, values: Mapping[str, Any]) -> Outcome:
        """Bind ``values`` to the handler, run it and render what it returned."""
        token = current_reqid.set(req.reqid)
        try:
            return self._call(route, req, values)
        finally:
            current_reqid.reset(token)
            if database.obj is not None and not database.is_closed():
                database.close()  # back to the pool; next call opens lazily

    def _call(self, route: Route, req: Request, values: Mapping[str, Any]) -> Outcome:
        try:
            kwargs = route.binder.bind(values)
        except ParamError as exc:
            return self.bad_params(req, str(exc), values)
        req.log_params.update(kwargs)
        try:
            ret = route.func(req, **kwargs)
        except ParamError as exc:  # a handler's own validation of the client's input
            return self.bad_params(req, str(exc), {})
        except Refusal as exc:
            return self.refused(req, route, exc)
        except Exception as exc:
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
            root = self.data_dir / (route.spec.root or "")
            outcome = render_download(ret, root, self.conf)
        if outcome.reason:
            error_log.error("%s client_ip=%s err_info=%s path=%s", req.reqid, req.ip,
                            outcome.reason, route.path)
        return outcome

    def refused(self, req: Request, route: Route, exc: Refusal) -> Outcome:
        """A handler's Refusal: its stat and data, ``x-reason``, the status it asks for."""
        req.error_str = exc.reason
        body = self.conf.adapt({"stat": exc.stat, **{k: v for k, v in exc.data.items()
                                                      if k != "stat"}})
        status = exc.http or route.spec.statuses.get(exc.stat, retstat.HTTP_BAD_PARAM)
        if self.conf.legacy_status:
            status = retstat.HTTP_OK
        return Outcome(status, exc.stat, dumps(body), [("Content-Type", "application/json")],
                       exc.reason, body)

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
