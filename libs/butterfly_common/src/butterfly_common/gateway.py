"""The one pipeline every call goes through, whether it came over HTTP or the queue.

middleware ``before_call`` -> read + bind params -> ``before_handler`` -> the handler ->
render its return -> ``after_call`` -> (the caller answers) -> ``after_answer`` (metrics,
access log). The HTTP app and the queue consumer only differ in how they build the Request
and the parameter dict, and in what they do with the :class:`Outcome`.

A handler says no by raising :class:`~butterfly_common.Refusal`; a middleware's
``on_exception`` may turn other exceptions into one (a store outage -> 503). The chain and
its hook order: :mod:`butterfly_common.middleware` and docs/architecture.md.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from . import retstat
from .discovery import Route
from .logs import MASK, current_secrets, error_log, secret_strings
from .middleware import Chain
from .middleware.defaults import default_middleware
from .params import ParamError
from .protocol import Outcome, ProtocolSettings, render_api, render_download, render_raw
from .refusal import DEFAULT_HTTP, Refusal
from .request import Request

#: What :meth:`Gateway.call` takes as the call's parameters: the dict, or a function that
#: reads it (HTTP: only once the ``before_call`` hooks let the call through) and may answer
#: an Outcome instead (a body too large).
Values = Mapping[str, Any] | Callable[[], "Mapping[str, Any] | Outcome"]


class Gateway:
    """Calls handlers of one service through its middleware chain."""

    def __init__(self, conf: ProtocolSettings, download_root: Path,
                 chain: Chain | None = None) -> None:
        self.conf = conf
        #: ``Settings.download_root``: never the data dir, which holds the database.
        self.download_root = download_root
        #: default: the framework's own middleware only (access log, metrics...)
        self.chain = chain if chain is not None else Chain(default_middleware())

    def call(self, route: Route, req: Request, values: Values) -> Outcome:
        """Run the chain's call hooks around binding ``values`` to the handler, running it
        and rendering what it returned."""
        chain = self.chain
        outcome: Outcome | None = None
        try:
            for mw in chain.before_call:
                mw.before_call(req, route)
        except Refusal as exc:  # before the parameters: answered like the framework's own
            req.error_str = exc.reason
            outcome = self.conf.error(exc.http or DEFAULT_HTTP, exc.stat, exc.reason)
            chain.notify("on_refusal", req, route, exc)
        try:
            if outcome is None:
                read = values() if callable(values) else values
                if isinstance(read, Outcome):
                    outcome = read
                elif route.binder.secret:
                    outcome = self._secret_call(route, req, read)
                else:
                    outcome = self._bound_call(route, req, read)
            return outcome
        finally:
            chain.notify("after_call", req, route, outcome)

    def _secret_call(self, route: Route, req: Request, values: Mapping[str, Any]) -> Outcome:
        secret = route.binder.secret
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
            for mw in self.chain.before_handler:
                mw.before_handler(req, route, kwargs)
            ret = route.func(req, **kwargs)
        except Refusal as exc:
            return self.refused(req, route, exc)
        except ParamError as exc:  # a handler's own validation of the client's input
            return self.bad_params(req, str(exc), {})
        except Exception as exc:
            refusal = self.refusal_of(req, route, exc)
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

    def refusal_of(self, req: Request, route: Route, exc: Exception) -> Refusal | None:
        """The Refusal the first middleware's ``on_exception`` names for ``exc``, or None."""
        for mw in self.chain.on_exception:
            refusal = mw.on_exception(req, route, exc)
            if refusal is not None:
                return refusal
        return None

    def refused(self, req: Request, route: Route, refusal: Refusal) -> Outcome:
        """``{"stat": stat, **data}``, ``x-reason`` = the reason, the policy's HTTP code:
        the refusal's own, else the route's ``statuses`` (the service's map under the
        handler's own), else 400 (200 in legacy mode)."""
        req.error_str = refusal.reason
        self.chain.notify("on_refusal", req, route, refusal)
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
        """The call is answered: the chain's ``after_answer`` hooks (metrics, access log)
        with the metrics ``label``."""
        if outcome.reason and not req.error_str:
            req.error_str = outcome.reason
        self.chain.notify("after_answer", req, outcome, label)


def _masked(values: Mapping[str, Any], secret: frozenset[str]) -> dict[str, Any]:
    """``values`` with the declared-secret ones replaced by the mask, for the log."""
    return {k: MASK if k in secret else v for k, v in values.items()}
