"""Group commit: threads that record at the same moment share one round trip.

A consumer's runners each finish a message and must record it before they log it and
take the next. Recording one by one costs a round trip per message, most of it waiting on
the network (and through Twemproxy, on the proxy too). Here the first runner to arrive
writes the batch of every runner queued behind it, in one pipeline; the others wait for
their own answer. Nobody waits for a timer: a lone runner writes at once, and batches
only form while a write is already under way, so latency never grows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Interrupted(RuntimeError):
    """The thread writing a batch was interrupted (an asynchronous exception such as a
    handler time limit landed in it): the batch's other items were not written; retry."""


class _Slot(Generic[T, R]):
    """One submitted item and the signal its thread waits on.

    The signal is a bare lock taken at birth: ``wake`` releases it, ``wait`` takes it. An
    Event (a Condition, a lock and a waiter list) per message cost more CPU than the
    round trip it saved. A slot is woken once, promoted or answered: a writer does not
    wake its own slot, so a release never finds the lock free."""

    __slots__ = ("_signal", "error", "item", "promoted", "result")

    def __init__(self, item: T) -> None:
        self.item = item
        self._signal = threading.Lock()
        self._signal.acquire()
        self.promoted = False  # woken to write the next batch, not with its answer
        self.result: R | None = None
        self.error: BaseException | None = None

    def wait(self) -> None:
        self._signal.acquire()

    def wake(self) -> None:
        self._signal.release()


class GroupCommit(Generic[T, R]):
    """Calls ``write(items)`` (one result per item, in order) for batches of concurrent
    :meth:`submit` calls, at most ``max_batch`` items at a time.

    Each writer writes ONE batch (the one holding its own item), then hands the lead to
    the oldest waiting thread, so under steady load no thread writes for the others
    forever.
    """

    def __init__(self, write: Callable[[Sequence[T]], Sequence[R]],
                 max_batch: int = 64) -> None:
        self._write = write
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._pending: list[_Slot[T, R]] = []
        self._writing = False

    def submit(self, item: T) -> R:
        """``item``'s result, once some thread has written it (raises what the write
        raised: every item of a failed batch sees the error and may retry)."""
        slot: _Slot[T, R] = _Slot(item)
        with self._lock:
            self._pending.append(slot)
            lead = not self._writing
            self._writing = True
        if not lead:
            slot.wait()
            lead = slot.promoted
        if lead:
            self._write_batch(slot)
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _write_batch(self, own: _Slot[T, R]) -> None:
        """Write the oldest pending items (the caller's own among them), then promote the
        next waiter or give up the lead, under the lock so no slot is left unwritten."""
        with self._lock:
            batch = self._pending[:self._max_batch]
            del self._pending[:self._max_batch]
        try:
            results = self._write([slot.item for slot in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"write returned {len(results)} results for "
                                   f"{len(batch)} items")
            for slot, result in zip(batch, results, strict=True):
                slot.result = result
        except Exception as exc:  # handed to each waiter, who decides
            for slot in batch:
                slot.error = exc
        except BaseException as exc:  # an interrupt of this thread: the others retry
            batch[0].error = exc
            for slot in batch[1:]:
                slot.error = Interrupted(f"batch writer interrupted: {type(exc).__name__}")
        finally:
            with self._lock:
                if self._pending:
                    nxt = self._pending[0]
                    nxt.promoted = True
                    nxt.wake()
                else:
                    self._writing = False
            for slot in batch:
                if slot is not own:
                    slot.wake()
