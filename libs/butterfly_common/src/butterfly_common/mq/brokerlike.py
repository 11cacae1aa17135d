"""``BrokerLike``: the queue operations a publisher and the consumer rely on.

:class:`~butterfly_common.mq.broker.Broker` (Redis) satisfies it, and so does
:class:`~butterfly_common.testing.stub_broker.StubBroker` (in memory, for unit tests of
one's handlers). The :class:`~butterfly_common.consumer.Consumer` and
:func:`~butterfly_common.mq.client.wait` are typed against it, so mypy checks that both
brokers offer what they call. Administration (requeue, purge, list, registry reads)
stays on the Redis broker alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from .message import ErrorKind, Message, PublishResult


class BrokerLike(Protocol):
    """Publish and look up; claim, record (fenced by the claim's token), extend, release
    and reap; heartbeat the topics a consumer serves. See :class:`.broker.Broker` for the
    semantics every implementation keeps."""

    #: Seconds a claimed message stays leased before reap may hand it to another consumer.
    lease: float

    def publish(self, topic: str, data: dict[str, Any], *, msg_id: str | None = ...,
                delay: float = ..., at_front: bool = ..., timeout: float = ...,
                max_retries: int = ..., result_ttl: float = ..., failure_ttl: float = ...,
                reqid: str | None = ..., force: bool = ...,
                notify: str | None = ..., priority: int = ...,
                dedup_key: str | None = ..., dedup_mode: str | None = ...,
                dedup_ttl: float = ..., dedup_extend: bool = ...,
                trace: str | None = ..., group: str | None = ...) -> PublishResult: ...

    def publish_many(self, messages: Iterable[dict[str, Any]], *, force: bool = ...,
                     chunk: int = ..., **defaults: Any) -> list[PublishResult]: ...

    def get(self, msg_id: str, topic: str | None = ...) -> Message | None: ...

    def counts(self, topic: str) -> dict[str, int]: ...

    def claim(self, topic: str, worker_id: str, count: int = ...) -> list[Message]: ...

    def complete(self, msg: Message, result: dict[str, Any] | None = ...,
                 cost: float = ...) -> bool: ...

    def complete_many(self, done: Sequence[tuple[Message, dict[str, Any] | None, float]]
                      ) -> list[bool]: ...

    def fail(self, msg: Message, error: str, result: dict[str, Any] | None = ...,
             cost: float = ..., retry: bool = ..., kind: ErrorKind | str = ...) -> str: ...

    def progress(self, msg: Message, done: int, total: int, note: str = ...) -> bool: ...

    def notify(self, msg: Message, status: str, stat: str,
               cost: float = ...) -> str | None: ...

    def extend(self, msg: Message, seconds: float | None = ...) -> bool: ...

    def batch_ended(self, msg: Message, outcome: str) -> list[str]: ...

    def release(self, msgs: Iterable[Message]) -> int: ...

    def reap(self, topic: str) -> int: ...

    def heartbeat(self, worker_id: str, topics: Iterable[str],
                  info: dict[str, Any] | None = ..., ttl: float | None = ...,
                  serving: bool = ...) -> float: ...

    def unregister(self, worker_id: str, topics: Iterable[str]) -> None: ...
