"""The batch routes' checks and answers (``publish_batch``, ``batch``, ``batches``,
``batch_cancel``): every bad input is a ParamError or a Refusal before the broker is
asked, an unknown batch ERR_BATCH_NOT_FOUND (404)."""

from __future__ import annotations

from typing import Any

from butterfly_common import Refusal
from butterfly_common.mq import Broker
from butterfly_common.mq.batch import MAX_BATCH_ID_LEN, Batch, BatchNotFound, check_batch_id
from butterfly_common.paging import check_page
from butterfly_common.params import ParamError

from .queue_admin import (
    MAX_PUBLISH_MANY,
    _item_options,
    check_message,
    check_publish_topic,
    check_seconds,
    publish_answer,
    serialized_size,
)
from .refusals import ERR_BATCH_NOT_FOUND, ERR_MSG_TOO_LARGE

#: Batches are listed newest first; a page this far down is empty without asking Redis
#: (an index past Redis' 64-bit range would be a store error, not an empty page).
MAX_OFFSET = 10**9


def _batch_id(batch_id: str) -> str:
    try:
        return check_batch_id(batch_id)
    except ValueError:
        raise ParamError(f"invalid: batch_id (1..{MAX_BATCH_ID_LEN} chars of "
                         "A-Z a-z 0-9 _ . : @ -)") from None


def publish_batch(broker: Broker, messages: list[Any], *, max_bytes: int,
                  on_success: str | None, on_complete: str | None, batch_id: str | None,
                  data: dict[str, Any] | None, ttl: float, reqid: str | None,
                  force: bool) -> dict[str, Any]:
    """Open a batch of up to MAX_PUBLISH_MANY messages (each checked as ``publish``
    checks it; a batch names its messages, so an item's ``msg_id`` is refused) and queue
    them; answers ``batch_id``, ``created`` and the per-item ``results``."""
    if not messages:
        raise ParamError("invalid: messages (give at least one)")
    if len(messages) > MAX_PUBLISH_MANY:
        raise ParamError(f"invalid: messages (at most {MAX_PUBLISH_MANY} per batch)")
    for name, topic in (("on_success", on_success), ("on_complete", on_complete)):
        if topic is not None:
            try:
                check_publish_topic(topic)
            except Refusal as exc:
                raise Refusal(exc.stat, f"{name}: {exc.reason}", http=exc.http) from None
    if batch_id is not None:
        _batch_id(batch_id)
    check_seconds("ttl", ttl, positive=True)
    size = serialized_size(data or {})
    if size > max_bytes:  # it rides in each callback message
        raise Refusal(ERR_MSG_TOO_LARGE, f"data is {size} bytes as JSON; the limit is "
                                         f"{max_bytes} (BAICHUAN_MAX_MESSAGE_BYTES)")
    items = []
    for i, raw in enumerate(messages):
        topic, body, options = _item_options(i, raw)
        if options.pop("msg_id") is not None:
            raise ParamError(f"invalid: messages[{i}].msg_id (a batch names its messages)")
        try:
            check_message(topic, body, max_bytes, {**options, "msg_id": None})
        except ParamError as exc:
            raise ParamError(str(exc).replace("invalid: ", f"invalid: messages[{i}].", 1)
                             ) from None
        except Refusal as exc:
            raise Refusal(exc.stat, f"messages[{i}]: {exc.reason}", http=exc.http) from None
        items.append({"topic": topic, "data": body, **options})
    try:
        bid, results = broker.publish_batch(items, on_success=on_success,
                                            on_complete=on_complete, batch_id=batch_id,
                                            data=data or {}, ttl=ttl, force=force,
                                            reqid=reqid)
    except (ValueError, TypeError) as exc:  # the data of the callbacks (nesting)
        raise ParamError(f"invalid: {exc}") from None
    answers = [publish_answer(r) for r in results]
    return {"batch_id": bid, "created": sum(1 for a in answers if a["created"]),
            "results": answers}


def _found(batch_id: str, action: Any) -> Batch:
    try:
        batch: Batch = action(_batch_id(batch_id))
        return batch
    except BatchNotFound:
        raise Refusal(ERR_BATCH_NOT_FOUND, f"no batch {batch_id!r} (never published, or "
                      "its record expired)") from None


def get(broker: Broker, batch_id: str) -> dict[str, Any]:
    """The batch record, reconciled first (ends no consumer told are counted)."""
    return _found(batch_id, broker.get_batch).to_dict()


def cancel(broker: Broker, batch_id: str) -> dict[str, Any]:
    """Cancel the batch: its queued / delayed messages become dead letters."""
    return _found(batch_id, broker.cancel_batch).to_dict()


def page(broker: Broker, page_index: int, page_size: int) -> dict[str, Any]:
    """One page of batches, newest first, as ``{total, list}``."""
    offset, _ = check_page(page_index, page_size)
    if offset > MAX_OFFSET:
        return {"total": 0, "list": []}
    total, batches = broker.batches(page_index, page_size)
    return {"total": total, "list": [b.to_dict() for b in batches]}
