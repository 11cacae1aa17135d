"""The bulk-action form's text fields as ``Broker.bulk`` arguments, or why they are not.

The console's "Bulk action" form sends text (the times as the browser's ``datetime-local``
value, in the console's local time as every time on its pages): this turns it into the
action, status and filter ``Broker.bulk`` (baichuan's ``bulk`` route) takes, and says what
is wrong as an i18n key, so the page shows the error instead of a 400 page or a 500.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from butterfly_common.mq.bulk import ACTIONS, BulkFilter, check

from .limits_form import LimitsInputError

#: longest error substring / stat taken (a filter, not a document)
MAX_TEXT = 200


class BulkInputError(LimitsInputError):
    """A bulk field the broker would refuse (``key``: the i18n label, ``fmt``: its values)."""


@dataclass(frozen=True)
class BulkInput:
    action: str
    status: str
    error: str | None = None
    since: float | None = None
    until: float | None = None
    stat: str | None = None

    def filter(self) -> BulkFilter:
        return BulkFilter(self.status, self.error, self.since, self.until, self.stat)

    def detail(self) -> str:
        """The audit log's words for the filter."""
        return json.dumps(self.filter().to_dict(), sort_keys=True, ensure_ascii=False)


def _time(name: str, text: str) -> float | None:
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text) if len(text) <= 32 else None
    except ValueError:
        when = None
    if when is None:
        raise BulkInputError("bulk_bad_time", field=name)
    try:
        return when.timestamp()  # naive: the console's local time
    except (OverflowError, OSError, ValueError):
        raise BulkInputError("bulk_bad_time", field=name) from None


def _text(name: str, text: str) -> str | None:
    if len(text) > MAX_TEXT:
        raise BulkInputError("bulk_refused", why=f"{name}: at most {MAX_TEXT} characters")
    return text or None


def parse(form: Any) -> BulkInput:
    """``bulk_action``, ``bulk_status``, ``error``, ``time_from``, ``time_to`` and ``stat``
    of ``form`` checked as the broker checks them, else BulkInputError."""
    action = form.get("bulk_action") or ""
    status = form.get("bulk_status") or ""
    got = BulkInput(action, status, _text("error", form.get("error") or ""),
                    _time("time_from", (form.get("time_from") or "").strip()),
                    _time("time_to", (form.get("time_to") or "").strip()),
                    _text("stat", (form.get("stat") or "").strip()))
    if action not in ACTIONS:
        raise BulkInputError("bulk_refused", why=f"unknown action {action[:20]!r}")
    try:
        check(action, got.filter(), 1000)  # the broker's own rule has the last word
    except ValueError as exc:
        raise BulkInputError("bulk_refused", why=str(exc)) from None
    return got
