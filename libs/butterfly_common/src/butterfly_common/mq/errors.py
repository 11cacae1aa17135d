"""Exceptions of the queue protocol; all derive from :class:`MQError`."""

from __future__ import annotations


class MQError(Exception):
    """Base class: catch this to handle any queue-protocol refusal."""


class InvalidTopic(MQError, ValueError):
    """The topic name cannot be used as a hash tag (empty, braces, whitespace, too long)."""


class NoConsumer(MQError):
    """No live consumer serves the topic, so a message would sit unread: publish refused.

    Pass ``force=True`` to publish anyway (e.g. before the consumers are deployed).
    """

    def __init__(self, topic: str) -> None:
        super().__init__(f"no live consumer serves topic {topic!r}")
        self.topic = topic


class MessageIdConflict(MQError):
    """A caller-chosen ``msg_id`` is already used by a message of another topic."""

    def __init__(self, msg_id: str, topic: str, other: str) -> None:
        super().__init__(f"msg_id {msg_id!r} already belongs to topic {other!r}, "
                         f"not {topic!r}")
        self.msg_id = msg_id
        self.topic = topic
        self.other = other
