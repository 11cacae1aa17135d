"""demo_async_job: a long job run by core's worker, its progress polled by message id.

``submit`` publishes a job to the queue topic ``/demo_async_job/run`` and answers its
message id at once; a worker (``butterfly worker core``, or ``butterfly serve core`` with
``BUTTERFLY_CONSUME=1``) runs ``run`` step by step and reports ``req.progress`` after each
step; ``status`` reads the message's record (state, progress, result) by id.

The original demo ran shell commands built from its parameters; this one only sleeps and
hashes, within capped parameters: the pattern, not a remote shell.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from redis.exceptions import RedisError

from butterfly_common import Refusal, Request, api, mq, retstat
from butterfly_common.mq.keys import check_id
from butterfly_common.params import ParamError

TOPIC = "/demo_async_job/run"
MAX_STEPS = 100
MAX_STEP_MS = 1000
MAX_LABEL = 64
#: Beyond the job's own sleeping: time a worker may take to claim and record it.
TIMEOUT_MARGIN = 30.0

ERR_NO_CONSUMER = "ERR_NO_CONSUMER"
ERR_MSG_NOT_FOUND = "ERR_MSG_NOT_FOUND"
ERR_MQ_UNAVAILABLE = "ERR_MQ_UNAVAILABLE"
ERR_QUEUE_ONLY = "ERR_QUEUE_ONLY"
STATUSES = {ERR_NO_CONSUMER: 409, ERR_MSG_NOT_FOUND: retstat.HTTP_NOT_FOUND,
            ERR_MQ_UNAVAILABLE: retstat.HTTP_UNAVAILABLE,
            ERR_QUEUE_ONLY: retstat.HTTP_BAD_PARAM}


def _check(steps: int, step_ms: int, label: str) -> None:
    """Refuse a job outside the caps (ERR_BAD_PARAMS, never a 5xx or an endless job)."""
    if not 1 <= steps <= MAX_STEPS:
        raise ParamError(f"steps must be 1..{MAX_STEPS}")
    if not 0 <= step_ms <= MAX_STEP_MS:
        raise ParamError(f"step_ms must be 0..{MAX_STEP_MS}")
    if len(label) > MAX_LABEL or not label.isprintable():
        raise ParamError(f"label must be at most {MAX_LABEL} printable characters")


def _unavailable(exc: RedisError) -> Refusal:
    return Refusal(ERR_MQ_UNAVAILABLE, f"queue store unavailable: {type(exc).__name__}")


@api(write=True, statuses=STATUSES)
def submit(req: Request, steps: int = 10, step_ms: int = 200, label: str = "demo"):
    """Queue a job of ``steps`` steps of ``step_ms`` ms each and answer its ``msg_id``
    at once; poll ``status`` with it. ERR_NO_CONSUMER when no worker serves the topic."""
    _check(steps, step_ms, label)
    try:
        sent = mq.publish(TOPIC, {"steps": steps, "step_ms": step_ms, "label": label},
                          timeout=steps * step_ms / 1000 + TIMEOUT_MARGIN)
    except mq.NoConsumer:
        raise Refusal(ERR_NO_CONSUMER, f"no worker serves {TOPIC}: start "
                                       "`butterfly worker core`") from None
    except RedisError as exc:
        raise _unavailable(exc) from None
    return retstat.OK, {"data": {"msg_id": sent.msg_id, "status": sent.status,
                                 "topic": TOPIC}}


@api(statuses=STATUSES)
def status(req: Request, msg_id: str):
    """A job's state (queued, started, finished, failed), its ``progress`` (``done`` of
    ``total`` and a note; null before it started) and, once finished, its result. Reads
    this demo's topic only, so it shows no other message."""
    try:
        check_id(msg_id)
    except ValueError as exc:
        raise ParamError(str(exc)) from None
    try:
        msg = mq.get(msg_id, TOPIC)
    except RedisError as exc:
        raise _unavailable(exc) from None
    if msg is None:
        raise Refusal(ERR_MSG_NOT_FOUND, f"no job {msg_id} (unknown or expired)")
    answer: dict[str, Any] = {"msg_id": msg.id, "status": msg.status,
                              "progress": msg.progress, "attempts": msg.attempts,
                              "created_at": msg.created_at, "ended_at": msg.ended_at,
                              "result": msg.result, "error": msg.error}
    return retstat.OK, {"data": answer}


@api(statuses=STATUSES)
def run(req: Request, steps: int = 10, step_ms: int = 200, label: str = "demo"):
    """The job itself, served from the queue (or ``butterfly call``): ``steps`` steps,
    each sleeping ``step_ms`` ms and extending a SHA-256 chain over ``label``, reporting
    progress after each. Over HTTP it is refused (it would hold a web worker for
    minutes)."""
    if req.method not in ("QUEUE", "CALL"):
        raise Refusal(ERR_QUEUE_ONLY, f"{TOPIC} runs from the queue: queue a job with "
                                      "/demo_async_job/submit")
    _check(steps, step_ms, label)
    digest = hashlib.sha256(label.encode()).hexdigest()
    req.progress(0, steps, "starting")
    for done in range(1, steps + 1):
        time.sleep(step_ms / 1000)
        digest = hashlib.sha256(f"{digest}:{done}".encode()).hexdigest()
        req.progress(done, steps, f"{label}: step {done} of {steps}")
    return retstat.OK, {"data": {"steps": steps, "label": label, "digest": digest}}
