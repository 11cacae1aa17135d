"""The log files' handlers: size rotation without ``stat`` calls, and the access log
written in batches (one ``write`` + ``flush`` per batch, not per line).

Every call writes an access line, so under load the per-line costs (a ``write`` and a
``flush`` syscall, a ``seek``/``tell`` for the size check, the handler lock held across
them while the other threads queue on it) were a tenth of a request's CPU. Here a line is
formatted by the caller and appended to a list; one flusher thread per process writes the
batch every ``BUTTERFLY_LOG_FLUSH_MS`` (or sooner when it grows past :data:`MAX_BATCH`).

Nothing is lost on a clean stop: ``flush()`` and ``close()`` write the batch, and logging's
own ``atexit`` hook (``logging.shutdown``) calls both, as does ``butterfly serve`` when a
worker exits. A ``fork`` first writes the batch out, so a child starts empty and no line is
written twice. A crash (SIGKILL) can lose at most one interval of lines.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import threading
import weakref
from typing import IO, Any

#: bytes buffered before the caller writes the batch itself
MAX_BATCH = 256 * 1024


class SizeRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """RotatingFileHandler without its two ``stat`` calls per line.

    The stdlib checks on every record that the file is a regular file; ours always are,
    and the check doubled the cost of a log line. Rotation is still by size, from the
    stream position, and never truncates: several worker processes may each rotate,
    shifting files one more place, but no line is lost.
    """

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        if self.stream is None:
            self.stream = self._open()
        if self.maxBytes <= 0:
            return False
        self.stream.seek(0, 2)
        return self.stream.tell() + len(self.format(record)) + 1 >= self.maxBytes


class _Batch:
    """The buffered lines of one handler, under a lock of their own.

    Not the handler's lock: ``logging.shutdown`` holds that one while it calls ``flush``,
    which waits for the write lock; a flusher holding the write lock while it waited for
    the handler's lock to take the batch hung the process's exit. This lock is always the
    innermost one, held for an append or a swap only."""

    __slots__ = ("lines", "lock", "size")

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.size = 0
        self.lock = threading.Lock()

    def add(self, line: str) -> int:
        """Append ``line``; the batch's size in characters after it."""
        with self.lock:
            self.lines.append(line)
            self.size += len(line)
            return self.size

    def take(self) -> list[str]:
        with self.lock:
            lines, self.lines, self.size = self.lines, [], 0
        return lines


class BatchingHandler(logging.Handler):
    """``emit`` appends the formatted line to the batch (all a request thread ever waits
    for); ``flush`` takes the batch and writes it under a write lock of its own, so a
    writer descheduled mid-write never holds up the callers."""

    terminator = "\n"
    #: Lines of this handler may be added as formatted text (``logs.write_access``).
    direct_access = False
    batch: _Batch
    _write_lock: threading.Lock

    def _start_batching(self, interval: float) -> None:
        self.batch = _Batch()
        self._write_lock = threading.Lock()
        _flusher.watch(self, interval)

    def emit(self, record: logging.LogRecord) -> None:  # called under the handler lock
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        self.add_line(line)

    def add_line(self, line: str) -> None:
        """Buffer one formatted line (terminator included), as ``emit`` does."""
        if self.batch.add(line) >= MAX_BATCH:
            _flusher.now()

    def flush(self) -> None:
        # batches are written in the order they were taken: the write lock is taken first
        with self._write_lock:
            lines = self.batch.take()
            if lines:
                try:
                    self._write(lines)
                except Exception:
                    logging.getLogger(__name__).exception(
                        "writing %d access-log lines failed", len(lines))

    def _write(self, lines: list[str]) -> None:
        raise NotImplementedError


class BufferedRotatingFileHandler(BatchingHandler, SizeRotatingFileHandler):
    """Size-rotated file, written in batches; a batch is split at line boundaries so the
    files rotate where unbuffered writing would have rotated them."""

    def __init__(self, filename: str | os.PathLike[str], *, interval: float,
                 **kwargs: Any) -> None:
        super().__init__(filename, **kwargs)
        self._start_batching(interval)

    def close(self) -> None:
        self.flush()
        super().close()

    def _write(self, lines: list[str]) -> None:
        if self.stream is None:
            self.stream = self._open()
        stream: IO[str] = self.stream
        pos = stream.tell() if self.maxBytes > 0 else 0
        if self.maxBytes <= 0 or pos + sum(map(len, lines)) < self.maxBytes:
            stream.write("".join(lines))
        else:
            for line in lines:
                if pos and pos + len(line) >= self.maxBytes:
                    self.doRollover()
                    stream, pos = self.stream, 0
                stream.write(line)
                pos += len(line)
        stream.flush()


class BufferedStreamHandler(BatchingHandler, logging.StreamHandler):  # type: ignore[type-arg]
    """The same batching for ``BUTTERFLY_LOG_DIR=-`` (stdout, for containers)."""

    def __init__(self, stream: IO[str], *, interval: float) -> None:
        super().__init__(stream)
        self._start_batching(interval)

    def _write(self, lines: list[str]) -> None:
        self.stream.write("".join(lines))
        self.stream.flush()


class _Flusher:
    """One daemon thread per process flushing every watched handler on its interval."""

    def __init__(self) -> None:
        self._handlers: weakref.WeakSet[logging.Handler] = weakref.WeakSet()
        self._interval = 1.0
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def watch(self, handler: logging.Handler, interval: float) -> None:
        self._handlers.add(handler)
        self._interval = min(self._interval, max(interval, 0.001))
        if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
            self._start()

    def _start(self) -> None:
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="butterfly-log-flusher",
                                        daemon=True)
        self._thread.start()

    def flush_all(self) -> None:
        for handler in list(self._handlers):
            handler.flush()

    def now(self) -> None:
        """Flush without waiting for the interval (a batch grew past MAX_BATCH)."""
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                self.flush_all()
            except Exception:  # never let the flusher die: the next round retries
                logging.getLogger(__name__).exception("access-log flush failed")

    def after_fork(self) -> None:
        """In a child: the parent's thread is gone and its locks may have been held at the
        fork; lines still batched are the parent's to write. Start ours when handlers
        exist."""
        for handler in list(self._handlers):
            if isinstance(handler, BatchingHandler):
                handler._write_lock = threading.Lock()
                handler.batch = _Batch()
        self._thread = None
        self._wake = threading.Event()
        if len(self._handlers):
            self._start()


_flusher = _Flusher()
flush_all = _flusher.flush_all
os.register_at_fork(before=_flusher.flush_all, after_in_child=_flusher.after_fork)
