"""The middleware base class and the chain that runs it, in hook order.

The package docstring (:mod:`butterfly_common.middleware`) says what the hooks are for and
in which order they run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..discovery import Route
    from ..mq.message import Message
    from ..protocol import Outcome
    from ..refusal import Refusal
    from ..request import Request
    from ..service import Service
    from ..settings import Settings

log = logging.getLogger(__name__)

#: Hooks run in reverse chain order (the rest run in chain order).
REVERSED = frozenset({"after_call", "after_answer", "after_publish", "after_process",
                      "on_retry", "on_dead_letter", "on_timeout", "on_shutdown"})


class Middleware:
    """Base class of a middleware: every hook does nothing until overridden.

    Call hooks see HTTP and queue calls alike (``req.method == "QUEUE"`` tells them apart);
    message hooks run in the queue consumer; publish hooks wherever ``mq.publish`` is
    called; lifecycle hooks in ``butterfly serve``.
    """

    # -- a call (HTTP or queue) -----------------------------------------------------------
    def before_call(self, req: Request, route: Route) -> None:
        """First, before the parameters are read; raise Refusal to refuse (auth, quotas)."""

    def before_handler(self, req: Request, route: Route, params: Mapping[str, Any]) -> None:
        """With the bound parameters, just before the handler runs; may raise Refusal."""

    def on_refusal(self, req: Request, route: Route, refusal: Refusal) -> None:
        """A handler (or a before_handler hook) refused the call."""

    def on_exception(self, req: Request, route: Route, exc: Exception) -> Refusal | None:
        """A handler raised ``exc``: return the Refusal it stands for (a store outage ->
        503), or None to let the next middleware decide (none does: a 500, a bug)."""
        return None

    def after_call(self, req: Request, route: Route, outcome: Outcome | None) -> None:
        """The call is decided (``outcome``), not yet answered; None when it was
        interrupted (a queued call past its ``timeout``). Runs for every call whose
        ``before_call`` hooks started, refused or not."""

    def after_answer(self, req: Request, outcome: Outcome, label: str) -> None:
        """Last: the call is over (``label``: the route for metrics, or ``unknown``).
        Runs for every request, routed or not: the access log and metrics live here."""

    # -- publish ------------------------------------------------------------------------
    def before_publish(self, topic: str, data: dict[str, Any], options: dict[str, Any]) -> None:
        """Before ``mq.publish``; may change ``options`` (msg_id, delay, reqid...) or raise."""

    def after_publish(self, topic: str, data: dict[str, Any], result: Any) -> None:
        """After a publish (``result``: its ``PublishResult``, None when it raised)."""

    # -- a message in the consumer ------------------------------------------------------
    def before_process(self, msg: Message, req: Request) -> None:
        """A claimed message is about to go through the call hooks and its handler."""

    def after_process(self, msg: Message, req: Request, outcome: Outcome) -> None:
        """Its outcome is recorded (finished, to be retried or failed)."""

    def on_retry(self, msg: Message, req: Request, outcome: Outcome) -> None:
        """The message failed and goes back to its queue for another attempt."""

    def on_dead_letter(self, msg: Message, req: Request, outcome: Outcome) -> None:
        """The message failed for good (no attempts left, or refused): in the failed set."""

    def on_timeout(self, msg: Message, req: Request) -> None:
        """Its handler ran past the message's ``timeout`` and was interrupted."""

    # -- the process ----------------------------------------------------------------------
    def on_boot(self, service: Service, settings: Settings) -> None:
        """Once per deployment start, before any worker forks (after the service's setup)."""

    def on_fork(self, service: Service, settings: Settings) -> None:
        """In every server worker after fork, before its background work starts."""

    def on_shutdown(self, service: Service) -> None:
        """In every server worker on a graceful stop, after its background work stopped."""

    def __repr__(self) -> str:
        return type(self).__name__


HOOKS = tuple(name for name in vars(Middleware)
              if not name.startswith("_") and callable(vars(Middleware)[name]))


class Chain:
    """An ordered list of middleware, with per hook the ones that override it (in the
    order that hook runs in): ``chain.after_call`` is a tuple to loop over."""

    before_call: tuple[Middleware, ...]
    before_handler: tuple[Middleware, ...]
    on_refusal: tuple[Middleware, ...]
    on_exception: tuple[Middleware, ...]
    after_call: tuple[Middleware, ...]
    after_answer: tuple[Middleware, ...]
    before_publish: tuple[Middleware, ...]
    after_publish: tuple[Middleware, ...]
    before_process: tuple[Middleware, ...]
    after_process: tuple[Middleware, ...]
    on_retry: tuple[Middleware, ...]
    on_dead_letter: tuple[Middleware, ...]
    on_timeout: tuple[Middleware, ...]
    on_boot: tuple[Middleware, ...]
    on_fork: tuple[Middleware, ...]
    on_shutdown: tuple[Middleware, ...]

    def __init__(self, middleware: Iterable[Middleware] = ()) -> None:
        self.middleware: tuple[Middleware, ...] = tuple(middleware)
        for mw in self.middleware:
            if not isinstance(mw, Middleware):
                raise TypeError(f"{mw!r} is not a butterfly Middleware")
        #: per hook, the bound methods :meth:`notify` calls (looked up once, not per call)
        self._bound: dict[str, tuple[Any, ...]] = {}
        for hook in HOOKS:
            users = [mw for mw in self.middleware
                     if getattr(type(mw), hook) is not getattr(Middleware, hook)]
            ordered = tuple(reversed(users) if hook in REVERSED else users)
            setattr(self, hook, ordered)
            self._bound[hook] = tuple(getattr(mw, hook) for mw in ordered)

    def __iter__(self) -> Any:
        return iter(self.middleware)

    def __len__(self) -> int:
        return len(self.middleware)

    def notify(self, hook: str, *args: Any) -> None:
        """Run ``hook`` of every middleware that has it, in its order; what one raises is
        logged and dropped (the after hooks, which must not change a decided answer)."""
        for call in self._bound[hook]:
            try:
                call(*args)
            except Exception:
                log.exception("middleware %r: %s failed", call.__self__, hook)
