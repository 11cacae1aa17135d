"""A middleware named by ``BUTTERFLY_MIDDLEWARE`` in the tests: it stamps every answer's
access line and writes its lifecycle hooks to the file ``BF_TEST_LIFECYCLE`` names."""

from __future__ import annotations

import os

from butterfly_common import Middleware


class Stamp(Middleware):
    """Adds ``stamped=1`` to each access line; appends ``boot``/``fork``/``shutdown``
    (with the pid) to ``$BF_TEST_LIFECYCLE``."""

    def after_answer(self, req, outcome, label) -> None:
        req.log_res.add("stamped=1")

    def _note(self, what: str) -> None:
        path = os.environ.get("BF_TEST_LIFECYCLE")
        if path:
            with open(path, "a", encoding="utf-8") as out:
                out.write(f"{what} {os.getpid()}\n")

    def on_boot(self, service, settings) -> None:
        self._note("boot")

    def on_fork(self, service, settings) -> None:
        self._note("fork")

    def on_shutdown(self, service) -> None:
        self._note("shutdown")


NOT_A_MIDDLEWARE = object()
