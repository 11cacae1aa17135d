"""百川 baichuan's queue protocol over Redis, Twemproxy or Redis Cluster.

Modules: ``keys`` (key layout), ``message`` (record + ids), ``errors``, ``scripts`` (Lua
loading), ``broker`` (queue operations), ``brokerlike`` (the ``BrokerLike`` protocol the
consumer needs, which the Redis ``Broker`` and the testing ``StubBroker`` satisfy),
``registry`` (workers and topics), ``limits`` (per-topic rate / concurrency limits),
``client``
(``broker`` / ``publish`` / ``get`` / ``wait`` / ``valid_topic`` on the process's
Redis).
"""

from .broker import DEFAULT_FAILURE_TTL, DEFAULT_RESULT_TTL, DEFAULT_TIMEOUT, LEASE, Broker
from .brokerlike import BrokerLike
from .client import broker, get, get_many, publish, publish_batch, publish_many, wait
from .errors import InvalidTopic, MessageIdConflict, MQError, NoConsumer
from .keys import (
    MAX_PRIORITY,
    MIN_PRIORITY,
    check_group,
    check_priority,
    topic_problem,
    valid_topic,
)
from .limits import Limits
from .message import (
    DELAYED,
    FAILED,
    FINISHED,
    QUEUED,
    STARTED,
    STATUSES,
    ErrorKind,
    Message,
    PublishResult,
    new_id,
)
from .registry import HEARTBEAT_TTL, Registry

__all__ = [
    "DEFAULT_FAILURE_TTL", "DEFAULT_RESULT_TTL", "DEFAULT_TIMEOUT", "DELAYED", "FAILED",
    "FINISHED", "HEARTBEAT_TTL", "LEASE", "MAX_PRIORITY", "MIN_PRIORITY", "QUEUED", "STARTED",
    "STATUSES", "Broker", "BrokerLike", "ErrorKind", "InvalidTopic", "Limits", "MQError", "Message",
    "MessageIdConflict", "NoConsumer", "PublishResult", "Registry", "broker", "check_group",
    "check_priority", "get", "get_many", "new_id", "publish", "publish_batch", "publish_many",
    "topic_problem",
    "valid_topic", "wait",
]
