"""The queue consumer: a service's JSON handlers served as topics.

A message goes through the same :class:`~butterfly_common.gateway.Gateway` as an HTTP
request (binding, checking, logging with method ``QUEUE``), so a handler cannot tell the
two apart except by ``req.method``.

Threads, all daemons:

- the *fetcher* claims batches for every topic into a local ready list, up to twice the
  runner count, once half of that is free (or the list ran dry); busy, it claims again at
  once; idle, it backs off (jittered, doubling from 2 ms), at most ``HOT_IDLE`` (5 ms) for
  ``HOT_SECONDS`` (0.1 s) after its last claim, then at most ``max_idle`` seconds, since
  Twemproxy offers no blocking pop;
- *runners* (a bounded pool) take ready messages and call the handler;
- the *keeper* heartbeats the worker registry, extends the leases of running messages,
  interrupts handlers past their message's ``timeout`` and reaps expired leases;
- the *supervisor* replaces any of those threads that died and counts it
  (``butterfly_consumer_thread_restarts_total{role}``).

No message can kill a thread: whatever a handler, the access log, the metrics or the
result recording raises is contained (logged, counted in
``butterfly_consumer_errors_total{stage}``, the message failed), and a thread that dies
anyway is replaced within a second. :meth:`Consumer.health` says whether every thread is
alive; it is part of ``/readyz`` and of the worker's heartbeat, so baichuan's ``workers``
shows a consumer with missing threads as not ``alive``.

A consumer that dies stops extending: its leases lapse within the broker's lease (30 s)
and any other consumer's keeper puts the messages back, well inside 60 s. On
:meth:`Consumer.stop` prefetched messages go back to the front of their queues; running
ones get ``grace`` seconds to finish.
"""

from __future__ import annotations

import ctypes
import logging
import os
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError, ResponseError

from . import health, metrics, retstat
from .discovery import Route
from .gateway import Gateway
from .mq import BrokerLike, ErrorKind, Message
from .mq.group_commit import GroupCommit, Interrupted
from .protocol import Outcome
from .reqid import is_valid_reqid, new_reqid
from .request import Request
from .service import Service
from .settings import Settings

log = logging.getLogger(__name__)

MIN_IDLE = 0.002
#: For HOT_SECONDS after claiming work the fetcher's pause between polls stays at most
#: HOT_IDLE: the next message of a chain (a flow's next task, a notice) usually comes
#: within tens of ms, and a backed-off poll would add up to ``max_idle`` to every hop.
HOT_SECONDS = 0.1
HOT_IDLE = 0.005
HEARTBEAT_EVERY = 10.0
REAP_EVERY = 5.0
GRACE = 25.0
SUPERVISE_EVERY = 0.5
#: A topic whose claim the store refused (its shard down behind Twemproxy, its cluster
#: slot down) is left out of the fetcher's passes this long, so the other topics keep
#: their speed and the log gets one line per topic per second, not one per poll.
TOPIC_DOWN_PAUSE = 1.0


class TimeLimitExceeded(BaseException):
    """Raised inside a handler's thread when its message's ``timeout`` passes.

    A BaseException, so a handler's ``except Exception`` cannot swallow it. Like any
    asynchronous exception it lands at the next Python instruction: a handler blocked in
    C code (a socket read without timeout) is interrupted only when that call returns.
    """


def _interrupt(thread_id: int) -> None:
    """Raise TimeLimitExceeded in another thread at its next Python instruction."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id),
                                               ctypes.py_object(TimeLimitExceeded))


@dataclass
class _Running:
    msg: Message
    thread_id: int
    started: float = field(default_factory=time.monotonic)
    extended: float = field(default_factory=time.monotonic)
    interrupted: bool = False
    done: bool = False

    @property
    def deadline(self) -> float:
        return self.started + self.msg.timeout


class Consumer:
    """Consumes the topics of one service's routes with ``threads`` runners."""

    def __init__(self, service: str, routes: Mapping[str, Route], gateway: Gateway,
                 broker: BrokerLike, *, threads: int = 8, max_idle: float = 0.5,
                 topics: tuple[str, ...] = (), grace: float = GRACE) -> None:
        self.service = service
        self.routes = routes
        self.gateway = gateway
        self.broker = broker
        self.threads = threads
        self.max_idle = max_idle
        self.grace = grace
        wanted = set(topics)
        self.topics = sorted(path for path, route in routes.items()
                             if route.is_topic and (not wanted or path in wanted))
        self.worker_id = (f"{service}:{socket.gethostname()}:{os.getpid()}:"
                          f"{random.getrandbits(24):06x}")
        lock = threading.Lock()
        self._work = threading.Condition(lock)   # runners wait here for ready messages
        self._space = threading.Condition(lock)  # the fetcher waits here for free slots
        self._ready: deque[Message] = deque()
        self._completions: GroupCommit[tuple[Message, dict[str, Any] | None, float], bool] = \
            GroupCommit(lambda done: self.broker.complete_many(done))
        self._running: dict[str, _Running] = {}
        self._stopping = threading.Event()
        self._threads: dict[str, threading.Thread] = {}
        self._roles: dict[str, Callable[[], None]] = {}
        self.processed = 0
        self.failed = 0  # of the processed, those whose stat was not OK
        self.restarts = 0
        self._reported_healthy = True
        self._paused: dict[str, float] = {}  # topic -> monotonic time it is claimed again

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> Consumer:
        """Announce the topics, then start fetching, running and supervising."""
        if not self.topics:
            log.warning("consumer %s: no topics to serve", self.worker_id)
            return self
        metrics.consumer_series()
        self._roles = {"fetch": self._fetch_loop, "keeper": self._keeper_loop}
        self._roles.update((f"run-{i}", self._run_loop) for i in range(self.threads))
        for name in self._roles:
            self._spawn(name)
        self._threads["supervisor"] = self._thread("supervisor", self._supervise_loop)
        self._safe_heartbeat()
        health.register(f"consumer {self.worker_id}", self._health_problem)
        log.info("consumer %s serving %d topics with %d threads", self.worker_id,
                 len(self.topics), self.threads)
        return self

    def _thread(self, name: str, target: Callable[[], None]) -> threading.Thread:
        thread = threading.Thread(target=target, name=f"bf-consumer-{name}", daemon=True)
        thread.start()
        return thread

    def _spawn(self, name: str) -> None:
        self._threads[name] = self._thread(name, self._roles[name])

    def _supervise_loop(self) -> None:
        """Replace dead threads. Nothing here runs handler code, so it has nothing to
        die of; were it to die anyway, :meth:`health` reports it."""
        while not self._stopping.wait(SUPERVISE_EVERY):
            for name in list(self._roles):
                thread = self._threads.get(name)
                if thread is not None and not thread.is_alive() and \
                        not self._stopping.is_set():
                    role = name.split("-", 1)[0]
                    log.error("consumer %s: thread %s died; replacing it", self.worker_id,
                              name)
                    self.restarts += 1
                    metrics.consumer_restart(role)
                    self._spawn(name)

    def health(self) -> dict[str, Any]:
        """``healthy`` (every thread alive), ``threads_alive`` of ``threads_expected``,
        and ``thread_restarts`` so far."""
        expected = len(self._roles) + 1 if self._roles else 0
        alive = sum(1 for t in self._threads.values() if t.is_alive())
        return {"healthy": alive == expected and not self._stopping.is_set(),
                "threads_alive": alive, "threads_expected": expected,
                "thread_restarts": self.restarts}

    def _health_problem(self) -> str | None:
        state = self.health()
        if state["healthy"]:
            return None
        return (f"{state['threads_alive']}/{state['threads_expected']} threads alive"
                f" ({state['thread_restarts']} replaced)")

    def stop(self) -> None:
        """Stop claiming, hand prefetched messages back, let running ones finish."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        health.unregister(f"consumer {self.worker_id}")
        with self._work:
            prefetched = list(self._ready)
            self._ready.clear()
            self._work.notify_all()
            self._space.notify_all()
        if prefetched:
            try:
                self.broker.release(prefetched)
            except Exception:
                log.exception("could not hand back %d messages; their leases will lapse",
                              len(prefetched))
        deadline = time.monotonic() + self.grace
        for thread in list(self._threads.values()):
            thread.join(max(0.0, deadline - time.monotonic()))
        try:
            self.broker.unregister(self.worker_id, self.topics)
        except Exception:
            log.warning("could not unregister %s; it will be pruned", self.worker_id)
        log.info("consumer %s stopped (%d processed, %d handed back)", self.worker_id,
                 self.processed, len(prefetched))

    # -- fetching -----------------------------------------------------------------------
    def _capacity(self) -> int:
        return 2 * self.threads - len(self._ready) - len(self._running)

    def _fetch_may_go(self) -> bool:
        """Whether the fetcher may claim now (caller holds the lock): free prefetch, and
        half of it free while runners still have ready work (one round trip per ~threads
        messages, not per message). Runners wake the fetcher only then: a wake-up per
        finished message was a tenth of a busy consumer's CPU."""
        capacity = self._capacity()
        return capacity > 0 and (not self._ready or capacity >= self.threads)

    def _fetch_loop(self) -> None:
        idle = MIN_IDLE
        offset = 0
        last_work = time.monotonic()
        while not self._stopping.is_set():
            try:
                got, offset = self._fetch_once(offset)
            except Exception:  # never let a bad reply end fetching
                log.exception("consumer %s: fetching failed", self.worker_id)
                metrics.consumer_error("fetch")
                got = 0
            if got < 0:
                return
            if got:
                idle = MIN_IDLE
                last_work = time.monotonic()
                continue
            self._stopping.wait(idle * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
            hot = time.monotonic() - last_work < HOT_SECONDS
            idle = min(min(HOT_IDLE, self.max_idle) if hot else self.max_idle, idle * 2)

    def _fetch_once(self, offset: int) -> tuple[int, int]:
        """Claim up to the free capacity over all topics; -1 when stopping mid-claim."""
        with self._space:
            while not self._stopping.is_set() and not self._fetch_may_go():
                self._space.wait(0.5)
            capacity = self._capacity()
        got = 0
        offset = (offset + 1) % len(self.topics)
        now = time.monotonic()
        for topic in self.topics[offset:] + self.topics[:offset]:
            if self._paused and self._paused.get(topic, 0.0) > now:
                continue
            try:
                msgs = self.broker.claim(topic, self.worker_id, capacity - got)
            except ResponseError as exc:
                # the store answered: this topic's shard is down (behind Twemproxy, or
                # its cluster slot): pause it, the other topics go on at full speed
                log.warning("claim on %s failed (paused %gs): %s", topic, TOPIC_DOWN_PAUSE,
                            exc)
                self._paused[topic] = now + TOPIC_DOWN_PAUSE
                continue
            except RedisError as exc:  # the store itself is unreachable or slow
                log.warning("claim on %s failed: %s", topic, exc)
                break
            if self._paused:
                self._paused.pop(topic, None)
            if msgs:
                with self._work:
                    if self._stopping.is_set():  # stop() already drained the list
                        self.broker.release(msgs)
                        return -1, offset
                    self._ready.extend(msgs)
                    self._work.notify(len(msgs))
                got += len(msgs)
                if got >= capacity:
                    break
        return got, offset

    # -- running ------------------------------------------------------------------------
    def _next(self) -> _Running | None:
        with self._work:
            while not self._ready and not self._stopping.is_set():
                self._work.wait()
            if not self._ready:
                return None
            msg = self._ready.popleft()
            job = self._running[msg.id] = _Running(msg, threading.get_ident())
            return job

    def _run_loop(self) -> None:
        while True:
            try:
                job = self._next()
                if job is None:
                    return
                try:
                    self.process(job.msg)
                finally:
                    job.done = True
                    with self._space:
                        self._running.pop(job.msg.id, None)
                        if self._fetch_may_go():
                            self._space.notify()
            except TimeLimitExceeded:
                # an interrupt that arrived just after its handler returned: harmless
                continue
            except Exception:  # process() contains its own; this is the last net
                log.exception("consumer %s: runner error", self.worker_id)
                metrics.consumer_error("run")

    def process(self, msg: Message) -> None:
        """Run one message through the gateway and record the outcome, fenced.

        Each step is contained: an exception in the call (binding, rendering), in
        recording the result or in the access log / metrics fails this message at most,
        never the runner thread.
        """
        route = self.routes[msg.topic]
        reqid = msg.reqid if is_valid_reqid(msg.reqid) else new_reqid()
        req = Request(reqid, ip="-", method="QUEUE", funcname=route.path)
        req.log_res.add(f"msg_id={msg.id}")
        req.log_res.add(f"attempt={msg.attempts}")
        req.progress_sink = self._progress_sink(msg)
        chain = self.gateway.chain
        timed_out = False
        try:
            for mw in chain.before_process:
                mw.before_process(msg, req)
            outcome = self.gateway.call(route, req, msg.data)
        except TimeLimitExceeded:
            timed_out = True  # recorded as ErrorKind.TIMEOUT, whatever the text says
            req.error_str = f"timeout after {msg.timeout:g}s"
            outcome = self.gateway.conf.error(500, retstat.ERR_SERVER_EXCEPTION, req.error_str)
            chain.notify("on_timeout", msg, req)
        except Exception as exc:  # the gateway's own step failed (e.g. rendering)
            log.exception("%s on %s: the call failed outside the handler", msg.id, msg.topic)
            metrics.consumer_error("call")
            req.error_str = f"{type(exc).__name__} outside the handler"
            req.error_detail = f"{type(exc).__name__}: {str(exc)[:500]}"
            outcome = self.gateway.conf.error(500, retstat.ERR_SERVER_EXCEPTION, req.error_str)
        settled = self._record(msg, req, outcome, timed_out)
        if outcome.stat != retstat.OK:
            self.failed += 1
        if settled == "delayed":
            chain.notify("on_retry", msg, req, outcome)
        elif settled == "failed":
            chain.notify("on_dead_letter", msg, req, outcome)
        if chain.after_process:
            chain.notify("after_process", msg, req, outcome)
        try:
            self.gateway.finish(req, outcome, route.path)
        except Exception:
            log.exception("%s: writing the access log / metrics failed", msg.id)
            metrics.consumer_error("log")
        self.processed += 1

    def _progress_sink(self, msg: Message) -> Callable[[int, int, str], bool]:
        """``req.progress`` of a queued call: stored in the record, fenced by the claim's
        token; a Redis error is logged, not raised, so progress never fails the work."""

        def store(done: int, total: int, note: str) -> bool:
            try:
                return self.broker.progress(msg, done, total, note)
            except RedisError as exc:
                log.warning("%s: storing progress failed: %s", msg.id, exc)
                return False

        return store

    def _record(self, msg: Message, req: Request, outcome: Outcome,
                timed_out: bool = False) -> str | bool:
        """How the message was settled: the broker's answer (``"delayed"``: to be retried,
        ``"failed"``: in the failed set, else finished), False when fenced or not stored."""
        try:
            return self._store(msg, req, outcome, timed_out)
        except Exception as exc:  # an outcome that cannot be stored (not JSON-able ...)
            log.exception("%s: recording the outcome failed; failing the message", msg.id)
            metrics.consumer_error("record")
            try:
                return self.broker.fail(msg, f"the outcome could not be stored: "
                                             f"{type(exc).__name__}: {str(exc)[:300]}",
                                        None, req.cost, retry=False, kind=ErrorKind.UNSTORABLE)
            except Exception:
                log.exception("%s: could not fail it either; its lease will lapse", msg.id)
                return False

    def _store(self, msg: Message, req: Request, outcome: Outcome,
               timed_out: bool) -> str | bool:
        """Complete or fail the message by its stat; a failure gets its ``error_kind``
        here, from what happened (never from the error's wording)."""
        cost = req.cost
        reason = req.error_str or outcome.reason
        kind = ErrorKind.TIMEOUT if timed_out else ErrorKind.EXCEPTION
        for attempt in range(5):
            try:
                done: str | bool
                if outcome.stat == retstat.ERR_BAD_PARAMS:
                    done = self.broker.fail(msg, reason, outcome.data, cost, retry=False,
                                            kind=ErrorKind.REFUSED)
                elif outcome.stat == retstat.ERR_SERVER_EXCEPTION:
                    done = self.broker.fail(msg, req.error_detail or reason, outcome.data,
                                            cost, retry=True, kind=kind)
                else:  # shares a round trip with the runners finishing meanwhile
                    done = self._completions.submit((msg, outcome.data, cost))
                if not done:
                    req.log_res.add("fenced=1")  # reaped or deleted meanwhile: ignored
                elif done != "delayed":  # a final outcome, not a retry
                    if msg.notify:
                        self._notify(msg, "failed" if done == "failed" else "finished",
                                     outcome.stat, cost)
                    if msg.batch:
                        self._batch_ended(msg, "failed" if done == "failed" else
                                          "ok" if outcome.stat == retstat.OK else "notok")
                return done
            except (RedisError, Interrupted) as exc:
                log.warning("recording %s failed (try %d): %s", msg.id, attempt + 1, exc)
                if self._stopping.wait(0.2 * 2 ** attempt):
                    break
        log.error("gave up recording %s; its lease will lapse and it will run again", msg.id)
        return False

    def _notify(self, msg: Message, status: str, stat: str, cost: float) -> None:
        """Tell the publisher's notice topic, AFTER the result is recorded (so a notice
        always finds the result). At-least-once: a notice lost to a crash or a Redis outage
        right here is never sent, which is why a publisher sweeps for ended messages too."""
        for attempt in range(3):
            try:
                self.broker.notify(msg, status, stat, cost)
                return
            except RedisError as exc:
                log.warning("notifying %s of %s failed (try %d): %s", msg.notify, msg.id,
                            attempt + 1, exc)
                time.sleep(0.1 * 2 ** attempt)
        log.error("gave up notifying %s of %s; its sweep must find it", msg.notify, msg.id)

    def _batch_ended(self, msg: Message, outcome: str) -> None:
        """Count the end in the message's batch (and publish a callback that became due),
        AFTER the fenced complete / fail succeeded. A failure here is logged: the batch's
        reconcile (baichuan's maintenance, or reading the batch) counts it from the
        record instead, and the callback's derived id keeps it single."""
        for attempt in range(3):
            try:
                self.broker.batch_ended(msg, outcome)
                return
            except RedisError as exc:
                log.warning("counting %s in batch %s failed (try %d): %s", msg.id,
                            msg.batch, attempt + 1, exc)
                time.sleep(0.1 * 2 ** attempt)
        log.error("gave up counting %s in batch %s; its reconcile must", msg.id, msg.batch)

    # -- keeping ------------------------------------------------------------------------
    def _heartbeat(self) -> None:
        state = self.health()
        # busy runner threads and counts since start: the console's consumers page
        info = {"service": self.service, "host": socket.gethostname(), "pid": os.getpid(),
                "threads": self.threads, "busy": len(self._running),
                "processed": self.processed, "failed": self.failed, **state}
        # an unhealthy consumer stays listed (with healthy=false) but stops vouching for
        # its topics, so publishers are not told someone serves them
        self.broker.heartbeat(self.worker_id, self.topics, info, serving=state["healthy"])
        self._reported_healthy = state["healthy"]

    def _safe_heartbeat(self) -> None:
        try:
            self._heartbeat()
        except Exception as exc:
            log.warning("consumer %s: heartbeat failed: %s", self.worker_id, exc)

    def _keeper_loop(self) -> None:
        next_beat = time.monotonic() + HEARTBEAT_EVERY
        next_reap = time.monotonic() + random.uniform(0, REAP_EVERY)  # noqa: S311
        while not self._stopping.wait(0.25):
            try:
                next_beat, next_reap = self._keep_once(next_beat, next_reap)
            except Exception:
                log.exception("consumer %s: upkeep failed", self.worker_id)
                metrics.consumer_error("keep")

    def _keep_once(self, next_beat: float, next_reap: float) -> tuple[float, float]:
        now = time.monotonic()
        with self._work:
            running = list(self._running.values())
        for job in running:
            self._keep(job, now)
        # a shard down (behind Twemproxy) fails the steps of its topics only: the
        # heartbeat still refreshed the other topics (it is retried every second until it
        # all goes through) and every other topic is still reaped. Before, one dead
        # topic's reap pushed the heartbeat back at every tick, and after the heartbeat
        # TTL the live topics' publishes were refused for want of a consumer.
        if now >= next_beat or self.health()["healthy"] != self._reported_healthy:
            try:
                self._heartbeat()
                next_beat = now + HEARTBEAT_EVERY
            except RedisError as exc:
                log.warning("consumer heartbeat failed (partly, if a shard is down): %s", exc)
                next_beat = now + 1.0
        if now >= next_reap:
            every = min(REAP_EVERY, self.broker.lease / 2)
            next_reap = now + every * random.uniform(0.8, 1.2)  # noqa: S311
            for topic in self.topics:
                try:
                    self.broker.reap(topic)
                except ResponseError as exc:  # its shard is down: the others go on
                    log.warning("reaping %s failed: %s", topic, exc)
                except RedisError as exc:  # the store itself: no use trying the rest now
                    log.warning("reaping failed at %s: %s", topic, exc)
                    break
        return next_beat, next_reap

    def _keep(self, job: _Running, now: float) -> None:
        if now >= job.deadline:
            if not job.interrupted and not job.done:
                job.interrupted = True
                log.warning("%s on %s passed its %gs timeout: interrupting", job.msg.id,
                            job.msg.topic, job.msg.timeout)
                _interrupt(job.thread_id)
            return
        lease = min(job.msg.timeout, self.broker.lease)
        if now - job.extended >= lease / 3:
            job.extended = now
            try:
                if not self.broker.extend(job.msg):
                    log.warning("%s lost its lease (reaped or deleted)", job.msg.id)
            except RedisError as exc:
                log.warning("extending %s failed: %s", job.msg.id, exc)


def build_consumer(service: Service, settings: Settings,
                   broker: BrokerLike | None = None) -> Consumer:
    """A consumer for ``service``'s topics configured from ``settings``.

    It shares the process's :class:`~butterfly_common.runtime.ServiceRuntime` (routes,
    gateway and its hooks, config) with the HTTP app, and the process-wide broker.
    """
    from . import runtime
    from .mq import client

    rt = runtime.build_runtime(service, settings)
    broker = broker or client.broker()
    return Consumer(service.name, rt.routes, rt.gateway, broker,
                    threads=settings.consume_threads, max_idle=settings.consume_max_idle,
                    topics=settings.consume_topics)


def consumer_starter(service: Service) -> Callable[[Settings], Callable[[], None]]:
    """A background starter for ``butterfly serve`` with ``BUTTERFLY_CONSUME=1``."""

    def start(settings: Settings) -> Callable[[], None]:
        return build_consumer(service, settings).start().stop

    return start
